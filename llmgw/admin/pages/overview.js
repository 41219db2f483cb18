// Overview: live charts from /api/v1/stats/live, refreshed every two seconds.
import { api, card, el, errorBox, hasLedger, usd } from "../lib.js";
import { lineChart } from "../charts.js";

const WINDOW = 180;
const LEDGER_EVERY = 5; // refreshes between two reads of the day's cost from the ledger

// With a database the day's cost is the ledger's, as /api/v1/usage reports it: every
// replica's requests and their hedged racers that lost (the live ring counts this
// process's). Null where there is no ledger to read.
async function ledgerToday() {
  const day = new Date().toISOString().slice(0, 10);
  try { return (await api(`/api/v1/usage?from=${day}`)).total.cost_usd; } catch { return null; }
}

export async function render(root) {
  root.append(el("h1", { text: "Overview" }));
  const figures = el("div", { class: "grid" });
  const charts = el("div", { class: "grid" });
  const problem = el("div");
  root.append(figures, charts, problem);
  let ledgerCost = (await hasLedger()) ? await ledgerToday() : null;
  let ticks = 0;

  async function refresh() {
    let live;
    try { live = await api(`/api/v1/stats/live?seconds=${WINDOW}`); } catch (error) {
      problem.replaceChildren(errorBox(error)); return;
    }
    problem.replaceChildren();
    if (ledgerCost !== null && ++ticks % LEDGER_EVERY === 0) ledgerCost = (await ledgerToday()) ?? ledgerCost;
    const s = live.seconds;
    const times = s.map((x) => x.t);
    const last = s.slice(-10);
    const rate = last.reduce((a, x) => a + x.requests, 0) / last.length;
    const lookups = s.reduce((a, x) => a + x.cache_lookups, 0);
    const hits = s.reduce((a, x) => a + x.cache_hits, 0);
    const errors = s.reduce((a, x) => a + x.errors, 0);
    figures.replaceChildren(
      card("Requests/s (10 s)", el("div", { class: "figure", text: rate.toFixed(1) })),
      card("Errors (3 min)", el("div", { class: "figure", text: String(errors) })),
      card("Cache hit ratio (3 min)", el("div", { class: "figure", text: lookups ? `${Math.round((100 * hits) / lookups)}%` : "—" })),
      card("Cost today (UTC)", el("div", { class: "figure", text: usd(ledgerCost ?? live.cost_today_usd) }),
        el("div", { class: "muted", text: ledgerCost === null ? "this process" : "every replica, from the ledger" })),
    );
    charts.replaceChildren(
      card("Requests per second", lineChart("Requests per second", times, [
        { name: "requests", values: s.map((x) => x.requests) },
        { name: "errors", values: s.map((x) => x.errors) }])),
      card("Latency (ms)", lineChart("Latency", times, [
        { name: "p50", values: s.map((x) => x.p50_ms) },
        { name: "p95", values: s.map((x) => x.p95_ms) }])),
      card("Cache hit ratio (%)", lineChart("Cache hit ratio", times, [
        { name: "hit %", values: s.map((x) => (x.cache_lookups ? (100 * x.cache_hits) / x.cache_lookups : null)) }])),
      card("Cost per second (USD)", lineChart("Cost", times, [
        { name: "cost", values: s.map((x) => x.cost_usd) }])),
    );
  }
  await refresh();
  const timer = setInterval(refresh, 2000);
  return () => clearInterval(timer);
}
