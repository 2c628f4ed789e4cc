// The dashboard's shell: hash routing, theme, agent status line.

import { dropPreloaded, first } from "./api.js";
import { ago, h } from "./dom.js";
import * as views from "./views.js";

const view = document.getElementById("view");

function route() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  view.dataset.route = location.hash || "#/";
  delete view.dataset.drawn;  // set by a page once all of it has drawn (the overview does)
  for (const a of document.querySelectorAll("nav a")) {
    const here = a.getAttribute("href") === "#/" + (parts[0] || "");
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const page = parts[0] || "";
  if (page === "events") return views.events(view, params);
  if (page === "destinations") return views.destinations(view, params);
  if (page === "destination") return views.destination(view, parts[1]);
  if (page === "process") return views.process(view, parts[1]);
  if (page === "tools") return views.tools(view);
  if (page === "sessions") return views.sessions(view);
  if (page === "session") return views.session(view, parts[1]);
  return views.overview(view, params);
}

async function agentStatus() {
  const line = document.getElementById("agent");
  try {
    const health = await first("health", "/api/health");
    const agent = health.agent;
    line.className = "agent " + health.status;
    line.textContent = health.status === "no-agent" ? "no agent has run on this store"
      : `agent ${health.status}; last event ${ago(agent.last_event_ts)}`;
  } catch (err) {
    line.className = "agent stale";
    line.textContent = "store unreachable";
  }
}

function theme() {
  const button = document.getElementById("theme");
  const saved = localStorage.getItem("theme");
  if (saved) document.documentElement.dataset.theme = saved;
  button.addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("theme", next);
  });
}

function keys() {
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const to = { o: "#/", e: "#/events", d: "#/destinations", t: "#/tools", s: "#/sessions" }[ev.key];
    if (to) { location.hash = to; view.focus(); }
    if (ev.key === "/") { const first = view.querySelector("input"); if (first) { ev.preventDefault(); first.focus(); } }
  });
}

window.addEventListener("hashchange", () => { route(); view.focus(); });
theme();
keys();
route();  // takes the preloaded answers it uses before its first await
agentStatus();
dropPreloaded();
setInterval(agentStatus, 10000);
