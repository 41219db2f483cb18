// Playground: pick a model or alias, stream a chat through the gateway itself, and see
// who answered (X-LLMGW-* headers, the x-gateway routing note when there is one).
import { card, el, errorBox, table } from "../lib.js";

const SHOWN = /^(x-llmgw-|x-cache|x-request-id|age$|x-ratelimit-|retry-after)/i;

function clientHeaders(key) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

export async function render(root) {
  root.append(el("h1", { text: "Playground" }));
  const models = el("datalist", { id: "pg-models" });
  const form = el("form", { id: "playground" },
    el("label", { for: "pg-key", text: "Client key (only if the gateway requires one; not stored)" }),
    el("input", { id: "pg-key", type: "password", autocomplete: "off" }),
    el("label", { for: "pg-model", text: "Model or alias" }),
    el("input", { id: "pg-model", list: "pg-models", required: true }), models,
    el("label", { for: "pg-message", text: "Message" }),
    el("textarea", { id: "pg-message", required: true, text: "Say hello in five words." }),
    el("label", {}, el("input", { id: "pg-stream", type: "checkbox", checked: true }), " Stream"),
    el("button", { type: "submit", id: "pg-send", text: "Send" }));
  const answer = el("div", { class: "answer", id: "pg-answer", "aria-live": "polite" });
  const decision = el("div", { id: "pg-decision" });
  const headers = el("div", { id: "pg-headers" });
  root.append(el("div", { class: "row" }, card("Request", form),
    el("div", {}, card("Answer", answer), card("Routing decision", decision), card("Response headers", headers))));

  async function loadModels() {
    const key = document.getElementById("pg-key").value;
    try {
      const response = await fetch("/v1/models", { headers: clientHeaders(key) });
      if (!response.ok) return;
      const { data } = await response.json();
      models.replaceChildren(...data.map((m) => el("option", { value: m.id })));
      const input = document.getElementById("pg-model");
      if (!input.value && data.length) input.value = data[0].id;
    } catch { /* the list is a convenience */ }
  }
  document.getElementById("pg-key").addEventListener("change", loadModels);
  await loadModels();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const send = document.getElementById("pg-send");
    send.disabled = true;
    answer.textContent = "";
    decision.replaceChildren();
    headers.replaceChildren();
    const stream = document.getElementById("pg-stream").checked;
    const body = { model: document.getElementById("pg-model").value,
      messages: [{ role: "user", content: document.getElementById("pg-message").value }], stream };
    const started = performance.now();
    try {
      const response = await fetch("/v1/chat/completions", { method: "POST",
        headers: clientHeaders(document.getElementById("pg-key").value), body: JSON.stringify(body) });
      const seen = [...response.headers].filter(([name]) => SHOWN.test(name)).map(([name, value]) => ({ name, value }));
      headers.replaceChildren(table([{ label: "Header", key: "name" }, { label: "Value", key: "value" }], seen));
      let note = null;
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        throw new Error((error.error && error.error.message) || `${response.status}`);
      }
      if (stream) {
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            for (const line of event.split(/\r?\n/)) {
              if (line.startsWith(": x-gateway ")) { try { note = JSON.parse(line.slice(12)); } catch { /* not ours */ } }
              if (!line.startsWith("data:")) continue;
              const data = line.slice(5).trim();
              if (data === "[DONE]") continue;
              const chunk = JSON.parse(data);
              if (chunk.error) throw new Error(chunk.error.message || "stream error");
              const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
              if (delta && delta.content) answer.append(delta.content);
            }
          }
        }
      } else {
        const data = await response.json();
        answer.textContent = data.choices?.[0]?.message?.content ?? "";
        note = data["x-gateway"] || null;
      }
      const h = (name) => response.headers.get(name);
      decision.replaceChildren(...[el("p", { id: "pg-route",
        text: `${body.model} → ${h("x-llmgw-provider") || "?"}/${h("x-llmgw-model") || "?"} after ${h("x-llmgw-attempts") || "0"} attempt(s), cache ${h("x-cache") || "—"}, ${Math.round(performance.now() - started)} ms` }),
        note ? el("pre", { text: JSON.stringify(note, null, 2) }) : null].filter(Boolean));
    } catch (error) {
      decision.replaceChildren(errorBox(error));
    } finally {
      send.disabled = false;
    }
  });
  return null;
}
