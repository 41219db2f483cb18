// Shared helpers: the admin API with the session's CSRF token, and DOM building.
export const session = { csrf: null };

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let body = options.body;
  if (body !== undefined && typeof body !== "string") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = (data && data.error && data.error.message)
      || (data && Array.isArray(data.errors) && data.errors.join("; "))
      || `${response.status} ${response.statusText}`;
    if (response.status === 401 && path.startsWith("/api/")) window.dispatchEvent(new Event("llmgw:signed-out"));
    throw new ApiError(response.status, message);
  }
  return data;
}

// Whether the gateway keeps a usage ledger (a database), asked without a 404:
// /api/v1/requests answers from it (source: database) or from this process's memory.
export async function hasLedger() {
  try { return (await api("/api/v1/requests?limit=1")).source === "database"; } catch { return false; }
}

// el("p", {class: "x", text: "hi"}, child...) — text only, never HTML.
export function el(tag, props = {}, ...children) {
  const svg = ["svg", "g", "path", "line", "rect", "text", "polyline", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function card(title, ...children) {
  return el("section", { class: "card", "aria-label": title }, el("h2", { text: title }), ...children);
}

export function table(columns, rows) {
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c.label })))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => {
      const value = c.render ? c.render(row) : row[c.key];
      return el("td", {}, value === null || value === undefined ? "—" : value);
    }))))));
}

export function usd(value) {
  if (value === null || value === undefined) return "—";
  return value < 0.01 && value > 0 ? `$${value.toFixed(6)}` : `$${value.toFixed(2)}`;
}

export function errorBox(error) {
  return el("p", { class: "error", role: "alert", text: error.message || String(error) });
}
