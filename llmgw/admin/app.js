// The dashboard shell: sign-in, the page router (#/name), sign-out.
import { api, el, errorBox, session } from "./lib.js";
import * as overview from "./pages/overview.js";
import * as providers from "./pages/providers.js";
import * as keys from "./pages/keys.js";
import * as usage from "./pages/usage.js";
import * as requests from "./pages/requests.js";
import * as config from "./pages/config.js";
import * as playground from "./pages/playground.js";

const PAGES = { overview, providers, keys, usage, requests, config, playground };
let stop = null;

function $(id) { return document.getElementById(id); }

function showSignIn(status) {
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("page").replaceChildren();
  $("sign-in").hidden = false;
  if (!status.admin_key_set) {
    $("sign-in-hint").textContent = "No auth.admin_key is set: only this machine (loopback) may sign in; leave the key empty.";
  }
  $("admin-key").focus();
}

async function route() {
  if (stop) { stop(); stop = null; }
  const name = (location.hash.replace(/^#\/?/, "") || "overview").split("?")[0];
  const page = PAGES[name] || overview;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = el("div");
  $("page").replaceChildren(root);
  try {
    stop = (await page.render(root)) || null;
  } catch (error) {
    root.append(errorBox(error));
  }
}

async function start() {
  const status = await api("/admin/session");
  if (!status.signed_in) { showSignIn(status); return; }
  session.csrf = status.csrf;
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  await route();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter;
  $("sign-in-error").textContent = "";
  if (button) button.disabled = true;
  try {
    await api("/admin/session", { method: "POST", body: { key: $("admin-key").value } });
    $("admin-key").value = "";
    await start();
  } catch (error) {
    $("sign-in-error").textContent = error.message;
  } finally {
    if (button) button.disabled = false;
  }
});

$("sign-out").addEventListener("click", async () => {
  try { await api("/admin/session", { method: "DELETE" }); } finally {
    session.csrf = null;
    if (stop) { stop(); stop = null; }
    await start();
  }
});

window.addEventListener("hashchange", () => { if (session.csrf) route(); });
window.addEventListener("llmgw:signed-out", () => { session.csrf = null; start(); });
start();
