// The JSON API and the live stream, same origin only.

export class ApiError extends Error {}

export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) query.set(k, v);
  const url = path + (query.toString() ? "?" + query : "");
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// The overview's first answers, sent inside the HTML (api/preload.py) as an inert JSON block.
// Each is taken once, while the first page renders; after that every answer comes from the API.
let preloaded = null;

function preloadedAnswers() {
  if (preloaded === null) {
    const block = document.getElementById("preload");
    preloaded = block ? JSON.parse(block.textContent) : {};
    if (block) block.remove();
  }
  return preloaded;
}

// The preloaded answer for `key` (once), else the API's answer to `path` with `params`.
export async function first(key, path, params = {}) {
  const answers = preloadedAnswers();
  if (key in answers) {
    const found = answers[key];
    delete answers[key];
    return found;
  }
  return get(path, params);
}

// Called once the first page has rendered: later pages must not show answers from page load.
export function dropPreloaded() {
  preloaded = {};
  const block = document.getElementById("preload");
  if (block) block.remove();
}

export async function post(path, body = {}) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

// One EventSource for the page; listeners get each stored event record.
const listeners = new Set();
let source = null;

export function onLive(fn) {
  listeners.add(fn);
  if (!source) {
    source = new EventSource("/api/stream");
    source.addEventListener("event", (msg) => {
      const record = JSON.parse(msg.data);
      for (const l of listeners) l(record, "event");
    });
    source.addEventListener("alert", (msg) => {
      const record = JSON.parse(msg.data);
      for (const l of listeners) l(record, "alert");
    });
  }
  return () => listeners.delete(fn);
}
