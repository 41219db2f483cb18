// Small SVG charts drawn here (no library): time lines and horizontal bars.
import { el } from "./lib.js";

const W = 600, H = 160, PAD = { left: 44, right: 8, top: 8, bottom: 20 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function short(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (value !== 0 && Math.abs(value) < 0.01) return value.toExponential(0);
  return String(Math.round(value * 100) / 100);
}

// series: [{name, values: [number|null]}]; times: [unix seconds]
export function lineChart(title, times, series) {
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const top = niceMax(Math.max(0, ...all));
  const x = (i) => PAD.left + (i / Math.max(1, times.length - 1)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / top) * (H - PAD.top - PAD.bottom);
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${title}: latest ${series.map((s) => `${s.name} ${short(s.values.at(-1) ?? 0)}`).join(", ")}`,
    preserveAspectRatio: "none" });
  for (const frac of [0, 0.5, 1]) {
    svg.append(el("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(top * frac), y2: y(top * frac) }));
    svg.append(el("text", { x: 2, y: y(top * frac) + 3, text: short(top * frac) }));
  }
  if (times.length) {
    const stamp = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    svg.append(el("text", { x: PAD.left, y: H - 4, text: stamp(times[0]) }));
    svg.append(el("text", { x: W - PAD.right - 50, y: H - 4, text: stamp(times.at(-1)) }));
  }
  series.forEach((s, index) => {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += `${d && s.values[i - 1] !== null && s.values[i - 1] !== undefined ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (d) svg.append(el("path", { class: `line c${index}`, d, fill: "none" }));
  });
  const legend = el("div", { class: "legend" }, series.map((s, i) =>
    el("span", {}, el("span", { class: `swatch c${i}` }), `${s.name}: ${short(s.values.at(-1) ?? 0)}`)));
  return el("div", {}, svg, legend);
}

// items: [{label, value}], value formatted by format()
export function barChart(title, items, format = short) {
  const rows = items.slice(0, 12);
  const top = Math.max(0, ...rows.map((r) => r.value)) || 1;
  const rowH = 22, height = Math.max(rowH, rows.length * rowH) + 4;
  const svg = el("svg", { class: "chart bars", viewBox: `0 0 ${W} ${height}`, role: "img",
    "aria-label": `${title}: ${rows.map((r) => `${r.label} ${format(r.value)}`).join(", ") || "no data"}` });
  svg.style.height = `${height / 2 + 20}px`;
  rows.forEach((r, i) => {
    const width = Math.max(1, (r.value / top) * (W - 260));
    svg.append(el("text", { class: "label", x: 0, y: i * rowH + 15, text: r.label.slice(0, 28) }));
    svg.append(el("rect", { class: `c${i % 5}`, x: 180, y: i * rowH + 4, width, height: rowH - 8, rx: 2 }));
    svg.append(el("text", { x: 186 + width, y: i * rowH + 15, text: format(r.value) }));
  });
  if (!rows.length) svg.append(el("text", { x: 0, y: 15, text: "no data yet" }));
  return svg;
}
