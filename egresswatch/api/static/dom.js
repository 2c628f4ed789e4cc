// DOM building without HTML parsing: every string becomes a text node, never markup.

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\ufff9-\ufffb\u{e0000}-\u{e007f}]/gu;

// Attacker-chosen names with their invisible and direction-changing characters shown as \uXXXX.
export function visible(text) {
  if (text === null || text === undefined) return "";
  return String(text).replace(UNSAFE, (ch) => "\\u" + ch.codePointAt(0).toString(16).padStart(4, "0"));
}

const ATTRS = new Set(["class", "id", "type", "role", "title", "colspan", "scope", "for", "name",
  "value", "placeholder", "aria-label", "aria-live", "aria-sort", "aria-current", "aria-pressed",
  "aria-expanded", "tabindex", "min", "max", "inputmode", "autocomplete", "datetime", "hidden"]);

// h("a", {href: "#/x", class: "c"}, "text", child) -> element. Only known attributes are set;
// href must be an in-app "#/" link (built with link()).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "href") {
      if (!String(value).startsWith("#/") && !String(value).startsWith("/")) throw new Error("external link");
      el.setAttribute("href", value);
    } else if (key === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (ATTRS.has(key) || key.startsWith("data-")) {
      el.setAttribute(key, value === true ? "" : String(value));
    } else {
      throw new Error("attribute not allowed: " + key);
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A name from the wire: escaped, isolated from the surrounding text direction, wrapped anywhere.
export function name(text, fallback = "—") {
  if (text === null || text === undefined || text === "") return h("span", { class: "none" }, fallback);
  return h("bdi", { class: "name", title: visible(text) }, visible(text));
}

export function link(path, ...parts) {
  return "#/" + [path, ...parts.map((p) => encodeURIComponent(String(p)))].join("/");
}

export function when(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function table(headers, rows, caption) {
  const head = h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)));
  return h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, rows)));
}
