// Recent requests with filters, from /api/v1/requests.
import { api, card, el, table, usd } from "../lib.js";

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
      { label: "Tokens", render: (r) => `${r.prompt_tokens ?? "—"} / ${r.completion_tokens ?? "—"}` },
      { label: "Cost", render: (r) => usd(r.cost_usd) }, { label: "Error", key: "error" },
      { label: "Request id", key: "request_id" },
    ], data)));
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); load().catch((e) => body.replaceChildren(el("p", { class: "error", text: e.message }))); });
  await load();
  return null;
}
