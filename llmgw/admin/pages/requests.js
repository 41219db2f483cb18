// Recent requests with filters, from /api/v1/requests.
import { api, card, el, table, usd } from "../lib.js";

// A hedged request's racers that lost after they had begun answering were billed too:
// the ledger lists them under the request (hedge_losers), their cost not in its own.
function losersOf(r) {
  return Array.isArray(r.hedge_losers) ? r.hedge_losers : [];
}

function sum(values) {
  const known = values.filter((v) => v !== null && v !== undefined);
  return known.length ? known.reduce((a, v) => a + v, 0) : null;
}

const tokens = (r) => `${r.prompt_tokens ?? "—"} / ${r.completion_tokens ?? "—"}`;
const target = (r) => [r.provider, r.upstream_model].filter(Boolean).join(" / ") || "—";

// The Cost cell: the request's own cost; with hedge losers, a marker with their count
// that opens the spend each attempt caused and the request's total.
function cost(r) {
  const losers = losersOf(r);
  if (!losers.length) return usd(r.cost_usd);
  const spent = [r, ...losers];
  const total = sum(spent.map((x) => x.cost_usd));
  const count = spent.reduce((a, x) => a + (x.prompt_tokens ?? 0) + (x.completion_tokens ?? 0), 0);
  const noun = losers.length === 1 ? "hedge loser" : "hedge losers";
  return el("details", { class: "hedge" },
    el("summary", {}, `${usd(r.cost_usd)} `, el("span", { class: "pill hedge", title: `${losers.length} ${noun} billed too`, text: `+${losers.length} ${noun}` })),
    table([
      { label: "Attempt", render: (x) => (x === r ? "answered" : "hedge loser") },
      { label: "Provider / model", render: target },
      { label: "Tokens", render: tokens },
      { label: "Cost", render: (x) => usd(x.cost_usd) },
    ], spent),
    el("p", { class: "total", text: `Total spend ${usd(total)}, ${count} tokens (all counted in usage)` }));
}

export async function render(root) {
  root.append(el("h1", { text: "Recent requests" }));
  const form = el("form", { class: "inline", id: "request-filters" },
    el("div", {}, el("label", { for: "f-key", text: "Key" }), el("input", { id: "f-key", name: "key" })),
    el("div", {}, el("label", { for: "f-model", text: "Model" }), el("input", { id: "f-model", name: "model" })),
    el("div", {}, el("label", { for: "f-status", text: "Status (e.g. 200, 5xx)" }), el("input", { id: "f-status", name: "status", pattern: "[1-5]([0-9]{2}|xx)" })),
    el("div", {}, el("label", { for: "f-limit", text: "How many" }), el("input", { id: "f-limit", name: "limit", type: "number", min: 1, max: 1000, value: 100 })),
    el("button", { type: "submit", text: "Filter" }));
  const body = el("div");
  root.append(form, body);
  async function load() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
    const { data } = await api(`/api/v1/requests?${params}`);
    body.replaceChildren(card(`${data.length} requests, newest first`, table([
      { label: "Time", render: (r) => { const at = r.time ?? r.ts; return at ? new Date(at * 1000).toLocaleTimeString() : ""; } },
      { label: "Status", render: (r) => el("span", { class: `pill ${r.status >= 400 ? "error" : "success"}`, text: String(r.status) }) },
      { label: "Key", key: "key" }, { label: "Model", key: "model" },
      { label: "Provider", key: "provider" }, { label: "Cache", key: "cache" },
      { label: "Attempts", key: "attempts" }, { label: "Latency ms", key: "latency_ms" },
      { label: "Tokens", render: tokens },
      { label: "Cost", render: cost }, { label: "Error", key: "error" },
      { label: "Request id", key: "request_id" },
    ], data)));
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); load().catch((e) => body.replaceChildren(el("p", { class: "error", text: e.message }))); });
  await load();
  return null;
}
