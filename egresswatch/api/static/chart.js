// A stacked bar chart of /api/timeline in plain SVG (no library): bars per bucket, one colour
// per group, a <title> per segment, drag across the plot to zoom into a range.

import { h, visible, when } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 800, H = 220, LEFT = 44, BOTTOM = 22, TOP = 8;

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function label(group) {
  return group === null ? "(none)" : visible(group);
}

export function stackedBars(line, onZoom) {
  const width = line.width;
  const first = Math.floor(line.since / width) * width;
  const slots = Math.max(1, Math.ceil((line.until - first) / width));
  const index = new Map(line.groups.map((g, i) => [g, i]));
  const stacks = new Map();
  for (const p of line.points) {
    if (!stacks.has(p.start)) stacks.set(p.start, []);
    stacks.get(p.start).push(p);
  }
  let top = 1;
  for (const pts of stacks.values()) top = Math.max(top, pts.reduce((a, p) => a + p.count, 0));
  const plotW = W - LEFT, plotH = H - BOTTOM - TOP;
  const barW = plotW / slots;
  const x = (t) => LEFT + ((t - first) / width) * barW;
  const y = (n) => TOP + plotH - (n / top) * plotH;
  const total = line.points.reduce((a, p) => a + p.count, 0);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${total} events from ${when(line.since)} to ${when(line.until)}, per ${line.bucket}` });
  svg.append(s("line", { x1: LEFT, x2: W, y1: y(0), y2: y(0), class: "axis" }));
  svg.append(s("text", { x: LEFT - 4, y: y(top) + 10, class: "tick", "text-anchor": "end" }, top));
  svg.append(s("text", { x: LEFT - 4, y: y(0), class: "tick", "text-anchor": "end" }, 0));
  for (let i = 0; i <= 4; i++) {
    const t = line.since + ((line.until - line.since) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    svg.append(s("text", { x: x(t), y: H - 6, class: "tick", "text-anchor": anchor }, when(t).slice(5, 16)));
  }
  for (const [start, pts] of stacks) {
    let base = 0;
    for (const p of pts) {
      const rect = s("rect", { x: x(start) + 0.5, width: Math.max(1, barW - 1), y: y(base + p.count),
        height: Math.max(0.5, y(base) - y(base + p.count)), class: `bar s${index.get(p.group) % 12}` },
        s("title", {}, `${when(start)}  ${label(p.group)}: ${p.count}`));
      svg.append(rect);
      base += p.count;
    }
  }
  if (onZoom) zoomable(svg, first, width, barW, onZoom);
  const legend = h("ul", { class: "legend", "aria-label": "Groups" }, line.groups.map((g, i) =>
    h("li", {}, h("span", { class: `swatch s${i % 12}` }), h("bdi", { class: "name" }, label(g)))));
  return h("figure", { class: "chart-box" }, svg, legend);
}

function zoomable(svg, first, width, barW, onZoom) {
  const band = s("rect", { class: "band", y: 0, height: H, x: 0, width: 0, visibility: "hidden" });
  svg.append(band);
  let from = null;
  const toX = (ev) => {
    const box = svg.getBoundingClientRect();
    return Math.min(W, Math.max(LEFT, ((ev.clientX - box.left) / box.width) * W));
  };
  const toT = (px) => first + ((px - LEFT) / barW) * width;
  svg.addEventListener("pointerdown", (ev) => { from = toX(ev); svg.setPointerCapture(ev.pointerId); });
  svg.addEventListener("pointermove", (ev) => {
    if (from === null) return;
    const to = toX(ev);
    band.setAttribute("x", Math.min(from, to));
    band.setAttribute("width", Math.abs(to - from));
    band.setAttribute("visibility", "visible");
  });
  svg.addEventListener("pointerup", (ev) => {
    if (from === null) return;
    const to = toX(ev);
    const [a, b] = [Math.min(from, to), Math.max(from, to)];
    from = null;
    band.setAttribute("visibility", "hidden");
    if (b - a > 4) onZoom(toT(a), toT(b));
  });
}
