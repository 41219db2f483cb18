// Usage and cost: charts by day, model, key, provider and tag, and a CSV export.
import { api, card, el, hasLedger, table, usd } from "../lib.js";
import { barChart } from "../charts.js";

// The running totals name their groups by map key; the ledger's rows carry the group
// under the group_by item itself ("key", "day", "tag:<name>"), null where unset.
function rowsOf(group, by) {
  if (!group) return [];
  if (Array.isArray(group)) return group.map((g) => ({ ...g, name: g[by] === null || g[by] === undefined ? "(none)" : String(g[by]) }));
  return Object.entries(group).map(([name, t]) => ({ name, ...t }));
}

function csv(groups) {
  const lines = ["group,name,requests,prompt_tokens,completion_tokens,cost_usd"];
  const quote = (v) => `"${String(v).replaceAll('"', '""')}"`;
  for (const [group, rows] of Object.entries(groups)) {
    for (const r of rows) lines.push([group, quote(r.name), r.requests ?? 0, r.prompt_tokens ?? 0, r.completion_tokens ?? 0, r.cost_usd ?? 0].join(","));
  }
  return lines.join("\n") + "\n";
}

async function ledger(by) {
  // SPEC §11 group_by (durable usage): null where the gateway has no database.
  try {
    return await api(`/api/v1/usage?group_by=${encodeURIComponent(by)}`);
  } catch { return null; }
}

async function grouped(by) {
  const data = await ledger(by);
  return data ? rowsOf(data.groups, by) : null;
}

export async function render(root) {
  root.append(el("h1", { text: "Usage and cost" }));
  // With a database every figure comes from the ledger (all time, every replica);
  // without one, from the running totals since this process started (the ledger's
  // URLs would answer 404: not asked).
  const byDay = (await hasLedger()) ? await ledger("day") : null;
  let usage, groups;
  if (byDay) {
    const [model, key, provider] = await Promise.all(["model", "key", "provider"].map(grouped));
    usage = byDay;
    groups = { day: rowsOf(byDay.groups, "day"), model: model || [], key: key || [], provider: provider || [] };
  } else {
    usage = await api("/api/v1/usage");
    groups = { model: rowsOf(usage.models), key: rowsOf(usage.keys), provider: rowsOf(usage.providers) };
  }
  const total = usage.total || {};
  const since = usage.since ? new Date(usage.since * 1000).toLocaleString() : "the first request recorded";
  const link = el("a", { class: "button", href: "#", id: "export-csv", download: "llmgw-usage.csv", text: "Export CSV" });
  link.href = URL.createObjectURL(new Blob([csv(groups)], { type: "text/csv" }));
  root.append(
    el("p", { class: "muted", text: `Source: ${usage.source}; since ${since}. ` }, link),
    el("div", { class: "grid" },
      card("Requests", el("div", { class: "figure", text: String(total.requests ?? 0) })),
      card("Tokens", el("div", { class: "figure", text: String((total.prompt_tokens ?? 0) + (total.completion_tokens ?? 0)) })),
      card("Cost", el("div", { class: "figure", text: usd(total.cost_usd ?? 0) }))),
    el("div", { class: "grid" }, Object.entries(groups).map(([name, rows]) =>
      card(`Cost by ${name}`, barChart(`Cost by ${name}`, rows.map((r) => ({ label: r.name, value: r.cost_usd ?? 0 })), usd)))),
    el("div", { class: "grid" }, Object.entries(groups).map(([name, rows]) =>
      card(`Requests by ${name}`, barChart(`Requests by ${name}`, rows.map((r) => ({ label: r.name, value: r.requests ?? 0 })))))),
    !byDay ? el("p", { class: "muted", text: "By day and by tag need durable usage (database:); this gateway keeps totals since it started." }) : null,
    byDay ? tagForm() : null,
    card("By model", table([
      { label: "Model", key: "name" }, { label: "Requests", key: "requests" },
      { label: "Prompt tokens", key: "prompt_tokens" }, { label: "Completion tokens", key: "completion_tokens" },
      { label: "Cost", render: (r) => usd(r.cost_usd) }], groups.model)),
  );
  return () => URL.revokeObjectURL(link.href);
}

function tagForm() {
  // x-gateway.metadata tags are free-form: the operator names the one to group by.
  const input = el("input", { id: "tag-name", name: "tag", type: "text", autocomplete: "off", placeholder: "feature" });
  const out = el("div", { id: "tag-chart" });
  const form = el("form", { class: "inline", "aria-label": "Group by tag" },
    el("label", { for: "tag-name", text: "Group by tag " }), input,
    el("button", { type: "submit", text: "Show" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) return;
    const rows = await grouped(`tag:${name}`);
    out.replaceChildren(rows && rows.length
      ? barChart(`Cost by tag ${name}`, rows.map((r) => ({ label: r.name, value: r.cost_usd ?? 0 })), usd)
      : el("p", { class: "muted", text: `No usage carries the tag ${name}.` }));
  });
  return card("By tag", form, out);
}
