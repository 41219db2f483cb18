// Usage and cost: charts by day, model, key, provider and tag, and a CSV export.
import { api, card, el, table, usd } from "../lib.js";
import { barChart } from "../charts.js";

function rowsOf(group) {
  if (!group) return [];
  if (Array.isArray(group)) return group.map((g) => ({ name: String(g.name ?? g.key ?? g.day ?? g.group ?? "?"), ...g }));
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

async function grouped(by) {
  // SPEC §11 group_by (durable usage); the in-memory totals have no such groups.
  try {
    const data = await api(`/api/v1/usage?group_by=${encodeURIComponent(by)}`);
    const rows = rowsOf(data && (data.groups || data.data));
    return rows.length ? rows : null;
  } catch { return null; }
}

export async function render(root) {
  root.append(el("h1", { text: "Usage and cost" }));
  const usage = await api("/api/v1/usage");
  const groups = { model: rowsOf(usage.models), key: rowsOf(usage.keys), provider: rowsOf(usage.providers) };
  const byDay = await grouped("day");
  if (byDay) groups.day = byDay;
  const total = usage.total || {};
  const link = el("a", { class: "button", href: "#", id: "export-csv", download: "llmgw-usage.csv", text: "Export CSV" });
  link.href = URL.createObjectURL(new Blob([csv(groups)], { type: "text/csv" }));
  root.append(
    el("p", { class: "muted", text: `Source: ${usage.source}; since ${usage.since ? new Date(usage.since * 1000).toLocaleString() : "start"}. ` }, link),
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
    out.replaceChildren(rows
      ? barChart(`Cost by tag ${name}`, rows.map((r) => ({ label: r.name, value: r.cost_usd ?? 0 })), usd)
      : el("p", { class: "muted", text: `No usage carries the tag ${name}.` }));
  });
  return card("By tag", form, out);
}
