// Providers: status, circuits, latency and error rate from /api/v1/providers/status.
import { api, card, el, table } from "../lib.js";
import { barChart } from "../charts.js";

export async function render(root) {
  root.append(el("h1", { text: "Providers" }));
  const body = el("div");
  root.append(body);
  async function refresh() {
    const { providers } = await api("/api/v1/providers/status");
    const rows = Object.entries(providers).map(([name, p]) => ({ name, ...p }));
    body.replaceChildren(
      el("div", { class: "grid" },
        card("Latency (ms, moving average)", barChart("Latency", rows.filter((r) => r.latency_ms !== null)
          .map((r) => ({ label: r.name, value: r.latency_ms })))),
        card("Error rate (%)", barChart("Error rate", rows.filter((r) => r.requests)
          .map((r) => ({ label: r.name, value: (100 * r.errors) / r.requests })), (v) => `${v.toFixed(1)}%`))),
      card("Status", table([
        { label: "Provider", key: "name" },
        { label: "Type", key: "type" },
        { label: "Enabled", render: (r) => el("span", { class: `pill ${r.enabled ? "enabled" : "disabled"}`,
          text: r.enabled ? "enabled" : `disabled: ${r.disabled_reason}` }) },
        { label: "Circuit", render: (r) => el("span", { class: `pill ${r.circuit}`, text: r.circuit }) },
        { label: "Latency ms", key: "latency_ms" },
        { label: "Requests", key: "requests" },
        { label: "Errors", key: "errors" },
        { label: "Last error", key: "last_error" },
        { label: "In flight", render: (r) => `${r.in_flight}${r.max_concurrency ? ` / ${r.max_concurrency}` : ""}` },
        { label: "Models", render: (r) => r.models.join(", ") || "(explicit only)" },
      ], rows)));
  }
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
