// Config: the running config (secrets redacted), the last reload, and a reload button.
import { api, card, el, errorBox } from "../lib.js";

export async function render(root) {
  root.append(el("h1", { text: "Config" }));
  const body = el("div");
  const result = el("div", { "aria-live": "polite" });
  const button = el("button", { type: "button", id: "reload", text: "Reload config now" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const r = await api("/api/v1/config/reload", { method: "POST" });
      result.replaceChildren(el("p", { class: "ok", text: `Reload: ${r.result} (hash ${r.hash})` }));
    } catch (error) { result.replaceChildren(errorBox(error)); }
    finally { button.disabled = false; await draw(); }
  });
  async function draw() {
    const c = await api("/api/v1/config");
    const last = c.last_reload || {};
    body.replaceChildren(
      el("div", { class: "grid" },
        card("Running config", el("p", { text: `hash ${c.hash}` }), el("p", { class: "muted", text: c.path || "(no file)" }),
          el("p", { class: "muted", text: `loaded ${c.loaded_at ? new Date(c.loaded_at * 1000).toLocaleString() : "?"}` })),
        card("Last reload", el("p", {}, el("span", { class: `pill ${last.result === "error" ? "error" : "success"}`, text: last.result || "none yet" })),
          el("p", { class: "muted", text: last.at ? `${last.trigger || ""} at ${new Date(last.at * 1000).toLocaleString()}` : "" }),
          (last.errors || []).length ? el("pre", { text: last.errors.join("\n") }) : null)),
      card("Config (secrets redacted)", el("pre", { text: JSON.stringify(c.config, null, 2) })));
  }
  root.append(el("p", {}, button), result, body);
  await draw();
  return null;
}
