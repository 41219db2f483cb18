// Keys: managed client keys (SPEC §11: /api/v1/keys) — create (shown once), revoke,
// budgets and usage. Degrades to a notice where the gateway has no managed keys.
import { api, ApiError, card, el, errorBox, table, usd } from "../lib.js";

function listOf(data) {
  if (Array.isArray(data)) return data;
  return (data && (data.data || data.keys)) || [];
}

export async function render(root) {
  root.append(el("h1", { text: "Keys" }));
  try {
    await api("/api/v1/keys");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      root.append(card("Managed keys not available",
        el("p", { text: "This gateway does not offer managed keys (no /api/v1/keys). Client keys are set in gateway.yaml under auth.keys." })));
      return null;
    }
    throw error;
  }
  // Usage per key from the ledger (SPEC §11 group_by=key), else the running totals;
  // budgets are /api/v1/budget's list, one entry per scope "key:<name>". Read again
  // with the list, so a key just created or used shows its figures.
  const usageByKey = new Map();
  let budgets = [];
  async function figures() {
    const [ledger, totals, budget] = await Promise.all([
      api("/api/v1/usage?group_by=key").catch(() => null),
      api("/api/v1/usage").catch(() => null),
      api("/api/v1/budget").catch(() => null),
    ]);
    usageByKey.clear();
    if (ledger && Array.isArray(ledger.groups)) {
      for (const row of ledger.groups) if (row.key) usageByKey.set(row.key, row);
    } else if (totals && totals.keys) {
      for (const [name, row] of Object.entries(totals.keys)) usageByKey.set(name, row);
    }
    budgets = (budget && budget.budgets) || [];
  }
  const spent = (name) => usageByKey.get(name) || null;
  const budgetOf = (name) => budgets.find((b) => b.scope === `key:${name}`) || null;
  const when = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";

  const shown = el("div", { class: "spaced", "aria-live": "assertive" });
  const problem = el("div", { class: "spaced" });
  const form = el("form", { class: "inline", id: "create-key" },
    el("div", {}, el("label", { for: "key-name", text: "Name" }), el("input", { id: "key-name", name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.@:\\-]*", maxlength: 200 })),
    el("div", {}, el("label", { for: "key-models", text: "Models (comma separated, empty = all)" }), el("input", { id: "key-models", name: "models" })),
    el("div", {}, el("label", { for: "key-rpm", text: "Requests per minute" }), el("input", { id: "key-rpm", name: "rpm", type: "number", min: 1 })),
    el("div", {}, el("label", { for: "key-budget", text: "Monthly budget (USD)" }), el("input", { id: "key-budget", name: "budget", type: "number", min: 0, step: "0.01" })),
    el("button", { type: "submit", text: "Create key" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    const data = new FormData(form);
    const body = { name: data.get("name") };
    const models = String(data.get("models") || "").split(",").map((m) => m.trim()).filter(Boolean);
    if (models.length) body.models = models;
    if (data.get("rpm")) body.limits = { rpm: Number(data.get("rpm")) };
    if (data.get("budget")) body.budget = { monthly_usd: Number(data.get("budget")) };
    try {
      const created = await api("/api/v1/keys", { method: "POST", body });
      form.reset();
      shown.replaceChildren(card(`Key "${created.name || body.name}" created`,
        el("p", { text: "Copy it now: it is shown once and never again." }),
        el("div", { class: "secret", id: "new-key", text: created.key })));
      await drawList();
    } catch (error) { problem.replaceChildren(errorBox(error)); }
  });

  const list = el("div", { class: "spaced" });
  async function drawList() {
    const [current] = await Promise.all([api("/api/v1/keys").then(listOf), figures()]);
    list.replaceChildren(card("Client keys", table([
      { label: "Name", key: "name" },
      { label: "Models", render: (k) => (k.models || []).join(", ") || "all" },
      { label: "Requests", render: (k) => spent(k.name)?.requests ?? 0 },
      { label: "Cost", render: (k) => usd(spent(k.name)?.cost_usd ?? 0) },
      { label: "Budget", render: (k) => {
        const b = budgetOf(k.name);
        if (b && b.limit_usd !== null) return `${usd(b.spent_usd)} of ${usd(b.limit_usd)}`;
        if (b && b.limit_tokens !== null) return `${b.tokens} of ${b.limit_tokens} tokens`;
        if (k.budget && k.budget.monthly_usd != null) return `limit ${usd(k.budget.monthly_usd)}`;
        return "—";
      } },
      { label: "Expires", render: (k) => (k.expires_at ? when(k.expires_at) : "never") },
      { label: "", render: (k) => (!k.managed ? el("span", { class: "muted", text: "in the config file" })
        : el("button", { type: "button", class: "danger", "aria-label": `Revoke ${k.name}`, text: "Revoke",
          onclick: async () => {
            if (!confirm(`Revoke key ${k.name}? Requests with it fail at once.`)) return;
            try { await api(`/api/v1/keys/${encodeURIComponent(k.name)}`, { method: "DELETE" }); await drawList(); }
            catch (error) { problem.replaceChildren(errorBox(error)); }
          } })) },
    ], current)));
  }
  await drawList();
  root.append(card("Create a key", form), problem, shown, list);
  return null;
}
