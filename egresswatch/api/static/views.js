// The dashboard's pages. Each renders into `view` from the JSON API; names are text nodes only.

import { first, get, onLive, post } from "./api.js";
import { stackedBars } from "./chart.js";
import { ago, clear, h, link, name, table, visible, when } from "./dom.js";

const RANGES = [["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000]];

function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

function failure(err) {
  return h("p", { class: "error", role: "alert" }, "Could not load: ", String(err.message || err));
}

function eventRow(e) {
  return h("tr", { "data-id": e.event_id },
    h("td", {}, h("time", { datetime: e.time }, when(e.ts))),
    h("td", {}, e.kind),
    h("td", {}, e.pid === null ? name(null, e.attribution) :
      h("a", { href: link("process", e.pid) }, name(e.process), " ", h("span", { class: "pid" }, `(${e.pid})`))),
    h("td", {}, e.host ? h("a", { href: link("destination", e.host) }, name(e.host)) : name(e.qname || e.sni)),
    h("td", {}, name(e.category)),
    h("td", {}, name(e.tool)),
    h("td", {}, `${e.dst}:${e.dport}`),
    h("td", {}, e.node ? h("a", { href: "#/events?" + new URLSearchParams({ node: e.node }) }, name(e.node))
      : name(null, "unknown")));
}

// Node last: the agent that stored the event (docs/fleet.md); "unknown" before revision 0006.
const EVENT_HEADERS = ["Time", "Kind", "Process", "Destination", "Category", "Tool", "To", "Node"];

export async function overview(view, params) {
  const group = params.get("group") || "tool";
  const range = Number(params.get("range") || 86400);
  const until = Number(params.get("until") || 0) || Date.now() / 1000;
  const since = Number(params.get("since") || 0) || until - range;
  const chartBox = h("div", { class: "chart-slot" }, "Loading…");
  const controls = h("div", { class: "controls" },
    h("label", {}, "Stack by ", groupSelect(group, (g) => go("", { group: g, range }))),
    ...RANGES.map(([text, secs]) => h("a", { class: "button", href: "#/?" + new URLSearchParams({ group, range: secs }),
      "aria-current": !params.get("since") && secs === range ? "true" : null }, text)),
    params.get("since") ? h("a", { class: "button", href: "#/?" + new URLSearchParams({ group, range }) }, "Reset zoom") : null);
  const dests = h("div", {}, "Loading…");
  const latest = h("div", {}, "Loading…");
  const alertBox = h("div", {}, "Loading…");
  const sessionBox = h("div", {}, "Loading…");
  clear(view).append(h("h1", { class: "title" }, "Overview"),
    section("Egress timeline", controls, chartBox),
    h("div", { class: "grid" }, section("Open alerts", alertBox), section("Sessions", sessionBox)),
    h("div", { class: "grid" }, section("Top destinations", dests), section("Latest events", latest)));
  // Every part loads at once (from the answers preloaded in the page, the first time); each
  // draws when its answer arrives.
  const standard = !["group", "range", "since", "until"].some((k) => params.has(k));
  await Promise.all([
    openAlerts(view, alertBox),
    sessionList(sessionBox, 5),
    drawTimeline(chartBox, { since, until, group }, standard),
    topDestinations(dests),
    latestEvents(view, latest),
  ]);
  if (!performance.getEntriesByName("overview-drawn").length) performance.mark("overview-drawn");
  if (view.dataset.route === current()) view.dataset.drawn = "overview";
}

async function drawTimeline(box, { since, until, group }, standard) {
  try {
    const line = standard ? await first("timeline", "/api/timeline", { since, until, group })
      : await get("/api/timeline", { since, until, group });
    clear(box).append(stackedBars(line, (a, b) => go("", { group, since: a, until: b })));
  } catch (err) { clear(box).append(failure(err)); }
}

async function topDestinations(box) {
  try {
    const top = await first("destinations", "/api/destinations", { order: "count", limit: 10 });
    clear(box).append(table(["Destination", "Category", "Events", "Last"], top.destinations.map((d) =>
      h("tr", {}, h("td", {}, h("a", { href: link("destination", d.host) }, name(d.host))),
        h("td", {}, name(d.category)), h("td", { class: "num" }, d.count), h("td", {}, ago(d.last_seen)))),
      "Busiest destinations"));
  } catch (err) { clear(box).append(failure(err)); }
}

async function latestEvents(view, box) {
  try {
    const page = await first("events", "/api/events", { limit: 10 });
    const body = h("tbody", {}, page.events.map(eventRow));
    clear(box).append(h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Latest events" },
      h("table", { id: "latest" }, h("caption", {}, "Newest first; new ones appear live"),
        h("thead", {}, h("tr", {}, EVENT_HEADERS.map((t) => h("th", { scope: "col" }, t)))), body)));
    live(view, (e) => { body.prepend(eventRow(e)); while (body.children.length > 10) body.lastChild.remove(); });
  } catch (err) { clear(box).append(failure(err)); }
}

function groupSelect(current, change) {
  const select = h("select", { name: "group", on: { change: () => change(select.value) } },
    ["tool", "category", "host", "process", "node"].map((g) => h("option", { value: g }, g)));
  select.value = current;
  return select;
}

export function go(page, params) {
  location.hash = "#/" + page + "?" + new URLSearchParams(params);
}

// Subscriptions end when the view is replaced.
function live(view, fn) {
  const stop = onLive((record, kind) => {
    if (!view.isConnected || view.dataset.route !== current()) { stop(); return; }
    if (kind === "event") fn(record);
  });
}

function current() {
  return location.hash || "#/";
}

const FILTERS = [["since", "Since", "e.g. 1h, 7d"], ["kind", "Kind", "dns, tls, quic, flow"],
  ["tool", "Tool", ""], ["category", "Category", ""], ["host", "Host", "and names under it"],
  ["pid", "PID", ""], ["process", "Process", ""], ["node", "Node", "agent name"]];

export async function events(view, params) {
  const form = h("form", { class: "filters", role: "search" },
    FILTERS.map(([key, text, hint]) => h("label", {}, text,
      h("input", { name: key, value: params.get(key) || "", placeholder: hint, autocomplete: "off",
        inputmode: key === "pid" ? "numeric" : null }))),
    h("button", { type: "submit" }, "Filter"),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "live" }), " Live tail"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chosen = {};
    for (const [key] of FILTERS) if (form.elements[key].value) chosen[key] = form.elements[key].value;
    go("events", chosen);
  });
  const body = h("tbody", {});
  const more = h("button", { type: "button", hidden: true }, "Older events");
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  clear(view).append(h("h1", { class: "title" }, "Events"), form,
    h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Events" },
      h("table", { id: "events" }, h("caption", {}, "Newest first"),
        h("thead", {}, h("tr", {}, EVENT_HEADERS.map((t) => h("th", { scope: "col" }, t)))), body)),
    status, more);
  const query = {};
  for (const [key] of FILTERS) if (params.get(key)) query[key] = params.get(key);
  let cursor = null;
  const load = async () => {
    try {
      const page = await get("/api/events", { ...query, limit: 100, cursor });
      body.append(...page.events.map(eventRow));
      cursor = page.next;
      more.hidden = !cursor;
      status.textContent = body.children.length ? `${body.children.length} events shown` : "No events match.";
    } catch (err) { status.replaceChildren(failure(err)); }
  };
  more.addEventListener("click", load);
  await load();
  live(view, (e) => {
    if (form.elements.live.checked && matches(e, query)) body.prepend(eventRow(e));
  });
}

function matches(e, query) {
  for (const [key, value] of Object.entries(query)) {
    if (key === "since") continue;
    if (key === "host" && !(e.host === value || String(e.host || "").endsWith("." + value))) return false;
    if (key !== "host" && String(e[key === "process" ? "process" : key]) !== value) return false;
  }
  return true;
}

export async function destinations(view, params) {
  const order = params.get("order") || "recent";
  const body = h("tbody", {});
  const more = h("button", { type: "button", hidden: true }, "More");
  clear(view).append(h("h1", { class: "title" }, "Destinations"),
    h("div", { class: "controls" }, ["recent", "count"].map((o) =>
      h("a", { class: "button", href: "#/destinations?order=" + o, "aria-current": o === order ? "true" : null },
        o === "recent" ? "Most recent" : "Busiest"))),
    h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Destinations" },
      h("table", { id: "destinations" }, h("caption", {}, "Every host contacted"),
        h("thead", {}, h("tr", {}, ["Destination", "Category", "Tools", "Events", "First", "Last"]
          .map((t) => h("th", { scope: "col" }, t)))), body)), more);
  let cursor = null;
  const load = async () => {
    const page = await get("/api/destinations", { order, limit: 100, cursor });
    body.append(...page.destinations.map((d) => h("tr", {},
      h("td", {}, h("a", { href: link("destination", d.host) }, name(d.host))),
      h("td", {}, name(d.category)),
      h("td", {}, d.tools.length ? d.tools.map((t, i) => [i ? ", " : "", name(t.tool)]) : "—"),
      h("td", { class: "num" }, d.count), h("td", {}, when(d.first_seen)), h("td", {}, when(d.last_seen)))));
    cursor = page.next;
    more.hidden = !cursor;
  };
  more.addEventListener("click", load);
  try { await load(); } catch (err) { view.append(failure(err)); }
}

export async function destination(view, host) {
  clear(view).append(h("h1", { class: "title" }, "Destination ", name(host)));
  let d;
  try { d = await get("/api/destinations/" + encodeURIComponent(host)); } catch (err) { view.append(failure(err)); return; }
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Category"), h("dd", {}, name(d.category)),
    h("dt", {}, "Events"), h("dd", {}, d.count),
    h("dt", {}, "First seen"), h("dd", {}, when(d.first_seen)),
    h("dt", {}, "Last seen"), h("dd", {}, when(d.last_seen)),
    h("dt", {}, "Tools"), h("dd", {}, d.tools.length ? d.tools.map((t, i) => [i ? ", " : "", name(t.tool), ` (${t.count})`]) : "none"));
  const catalog = d.catalog ? h("div", {}, h("p", {}, "Matched catalog entry ", h("code", {}, visible(d.catalog.pattern))),
    h("ul", { class: "roles" }, d.catalog.roles.map((r) => h("li", {}, h("strong", {}, r.category), ": ", r.purpose,
      h("br", {}), h("small", {}, "Source: ", r.source), r.tools.length ? h("small", {}, " · Tools: ", r.tools.join(", ")) : null))))
    : h("p", { class: "muted" }, "Not in the catalog.");
  const recent = h("div", {}, "Loading…");
  view.append(section("Summary", facts), section("Catalog", catalog), section("Recent events", recent));
  try {
    const page = await get("/api/events", { host, limit: 50 });
    clear(recent).append(table(EVENT_HEADERS, page.events.map(eventRow), "Newest first"));
  } catch (err) { clear(recent).append(failure(err)); }
}

export async function process(view, pid) {
  clear(view).append(h("h1", { class: "title" }, `Process ${pid}`));
  let drill;
  try { drill = await get("/api/processes/" + encodeURIComponent(pid)); } catch (err) { view.append(failure(err)); return; }
  for (const p of drill.processes) {
    view.append(section(name(p.name), h("dl", { class: "facts" },
      h("dt", {}, "Executable"), h("dd", {}, name(p.exe)),
      h("dt", {}, "SHA-256"), h("dd", {}, h("code", { class: "hash" }, p.exe_sha256 || "—")),
      h("dt", {}, "Command line"), h("dd", {}, h("code", { class: "cmd" }, p.cmdline.map(visible).join(" "))),
      h("dt", {}, "User"), h("dd", {}, name(p.user)),
      h("dt", {}, "Tool"), h("dd", {}, name(p.tool)),
      h("dt", {}, "Container"), h("dd", {}, name(p.container, "host")),
      h("dt", {}, "Started"), h("dd", {}, when(p.start_time)),
      h("dt", {}, "Ancestry"), h("dd", {}, h("ol", { class: "ancestry" }, p.ancestry.map((a) =>
        h("li", {}, name(a.name), ` (${a.pid}) `, name(a.exe, ""))))))));
  }
  view.append(section("Newest events", table(EVENT_HEADERS, drill.events.map(eventRow), "Newest first")));
}

export async function tools(view) {
  clear(view).append(h("h1", { class: "title" }, "Tools"));
  let found;
  try { found = await get("/api/tools"); } catch (err) { view.append(failure(err)); return; }
  if (!found.tools.length) view.append(h("p", { class: "muted" }, "No local LLM tool has been seen yet."));
  const grid = h("div", { class: "grid" });
  for (const t of found.tools) {
    grid.append(h("section", { class: "card tool" },
      h("h2", {}, name(t.tool)),
      h("p", { class: t.offsite.length ? "verdict warn" : "verdict ok" },
        t.offsite.length ? ["Went beyond model downloads: ", t.offsite.join(", ")] : "Only model downloads and package registries"),
      h("p", {}, `${t.events} events to ${t.destinations} destinations from ${t.processes} processes; last ${ago(t.last_seen)}`),
      table(["Category", "Events", "Destinations"], t.categories.map((c) => h("tr", {},
        h("td", {}, h("a", { href: "#/destinations?order=count" }, name(c.category))),
        h("td", { class: "num" }, c.events), h("td", { class: "num" }, c.destinations))), "By category"),
      h("p", {}, "Executables: ", t.executables.length ? t.executables.map((x, i) => [i ? ", " : "", name(x)]) : "—")));
  }
  view.append(grid);
}


const SEVERITY_ORDER = ["critical", "high", "medium", "low", "info"];

function alertItem(a, onAck) {
  const button = h("button", { type: "button", class: "ack", "aria-label": `Acknowledge alert ${a.id}` }, "Acknowledge");
  const item = h("li", { class: `alert sev-${a.severity}`, "data-id": a.id },
    h("span", { class: "sev" }, a.severity), " ", h("strong", {}, name(a.rule)), " ",
    a.host ? h("a", { href: link("destination", a.host) }, name(a.host)) : null,
    a.count > 1 ? h("span", { class: "muted" }, ` ×${a.count}`) : null,
    h("div", { class: "msg" }, name(a.message)),
    h("div", { class: "muted" }, when(a.time),
      a.pid !== null ? [" · ", h("a", { href: link("process", a.pid) }, name(a.process), ` (${a.pid})`)] : null,
      a.session !== null ? [" · ", h("a", { href: link("session", a.session) }, `session ${a.session}`)] : null),
    button);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await post(`/api/alerts/${a.id}/ack`); item.remove(); onAck(); }
    catch (err) { button.disabled = false; item.append(failure(err)); }
  });
  return item;
}

async function openAlerts(view, box) {
  let found;
  try { found = await first("alerts", "/api/alerts", { open: true, limit: 50 }); } catch (err) { clear(box).append(failure(err)); return; }
  const list = h("ul", { class: "alerts", id: "open-alerts" });
  const empty = h("p", { class: "muted" }, "No open alerts.");
  const refresh = () => { empty.hidden = list.children.length > 0; };
  const sorted = found.alerts.sort((x, y) => SEVERITY_ORDER.indexOf(x.severity) - SEVERITY_ORDER.indexOf(y.severity));
  list.append(...sorted.map((a) => alertItem(a, refresh)));
  clear(box).append(list, empty);
  refresh();
  liveAlerts(view, (a) => { if (!a.acknowledged) { list.prepend(alertItem(a, refresh)); refresh(); } });
}

function liveAlerts(view, fn) {
  const route = view.dataset.route;
  const stop = onLive((record, kind) => {
    if (!view.isConnected || view.dataset.route !== route) { stop(); return; }
    if (kind === "alert") fn(record);
  });
}

function verdict(v) {
  return h("span", { class: `verdict-badge ${v}` }, v);
}

async function sessionList(box, limit) {
  let found;
  try { found = await first("sessions", "/api/sessions", { since: "30d" }); } catch (err) { clear(box).append(failure(err)); return; }
  const start = h("button", { type: "button", id: "start-session" }, "Start a manual session");
  start.addEventListener("click", async () => {
    start.disabled = true;
    try { await post("/api/sessions", {}); await sessionList(box, limit); }
    catch (err) { start.disabled = false; box.append(failure(err)); }
  });
  const rows = found.sessions.slice(0, limit).map((s) => {
    const stop = s.verdict === "open" ? h("button", { type: "button", "aria-label": `Stop session ${s.id}` }, "Stop") : null;
    if (stop) stop.addEventListener("click", async () => {
      stop.disabled = true;
      try { await post(`/api/sessions/${s.id}/stop`); await sessionList(box, limit); }
      catch (err) { stop.disabled = false; box.append(failure(err)); }
    });
    return h("tr", {},
      h("td", {}, h("a", { href: link("session", s.id) }, `#${s.id}`)),
      h("td", {}, when(s.start)), h("td", {}, s.end ? when(s.end) : "running"),
      h("td", {}, s.trigger), h("td", {}, s.tools.length ? s.tools.map((t, i) => [i ? ", " : "", name(t)]) : (s.strict ? "all" : "LLM tools")),
      h("td", {}, verdict(s.verdict)), h("td", { class: "num" }, s.egress), h("td", { class: "num" }, s.alerts),
      h("td", {}, stop));
  });
  clear(box).append(rows.length ? table(["Session", "Started", "Ended", "Trigger", "Tools", "Verdict", "Egress", "Alerts", ""], rows, "Newest first")
    : h("p", { class: "muted" }, "No sessions in the last 30 days."), h("p", {}, start));
}

export async function sessions(view) {
  const box = h("div", {}, "Loading…");
  clear(view).append(h("h1", { class: "title" }, "Sessions"), section("Inference sessions and their verdicts", box));
  await sessionList(box, 200);
}

export async function session(view, id) {
  clear(view).append(h("h1", { class: "title" }, `Session ${id}`));
  let file;
  try { file = await get(`/api/sessions/${encodeURIComponent(id)}/report`); } catch (err) { view.append(failure(err)); return; }
  const report = file.report; // the canonical report (egresswatch report SESSION --format json)
  const evidence = report.evidence.map((e) => ({ ...e, time: new Date(e.ts * 1000).toISOString() }));
  const s = report.session;
  view.append(h("p", { class: file.signature ? "signed" : "unsigned" }, file.signature
    ? `Signed by this machine's ed25519 key ${file.signature.public_key}; evidence SHA-256 ${report.evidence_sha256}.`
    : ["Unsigned: ", file.unsigned, `. Evidence SHA-256 ${report.evidence_sha256}.`]));
  view.append(section(["Verdict: ", verdict(s.verdict)], h("dl", { class: "facts" },
    h("dt", {}, "Started"), h("dd", {}, when(s.start)),
    h("dt", {}, "Ended"), h("dd", {}, s.end ? when(s.end) : "running"),
    h("dt", {}, "Trigger"), h("dd", {}, s.trigger, s.strict ? " (strict: every process)" : ""),
    h("dt", {}, "Tools"), h("dd", {}, s.tools.length ? s.tools.map((t, i) => [i ? ", " : "", name(t)]) : "LLM tools"),
    h("dt", {}, "Label"), h("dd", {}, name(s.label)),
    h("dt", {}, "Model"), h("dd", {}, name(s.model)),
    h("dt", {}, "Serving"), h("dd", {}, s.serving.length ? s.serving.map((p, i) => [i ? ", " : "", name(p.name), ` (${p.pid})`]) : "—"),
    h("dt", {}, "Egress events"), h("dd", {}, s.egress)),
    h("p", {}, "Download: ", h("a", { href: `/api/sessions/${s.id}/report?format=md` }, "Markdown"), " · ",
      h("a", { href: `/api/sessions/${s.id}/report?format=html` }, "HTML"), " · ",
      h("a", { href: `/api/sessions/${s.id}/report?format=json` }, "JSON"))));
  view.append(section(`Alerts (${report.alerts.length})`, report.alerts.length
    ? h("ul", { class: "alerts" }, report.alerts.map((a) => h("li", { class: `alert sev-${a.severity}` },
      h("span", { class: "sev" }, a.severity), " ", h("strong", {}, name(a.rule)), h("div", { class: "msg" }, name(a.message)))))
    : h("p", { class: "muted" }, "None.")));
  view.append(section(`Evidence (${evidence.length} events)`,
    table(EVENT_HEADERS, evidence.map(eventRow), "Egress while the session ran")));
}
