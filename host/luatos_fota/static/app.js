// luatos-fota dashboard: plain JS over the admin API (/admin/api/...), no build step.
// The token is asked once and kept in sessionStorage (gone when the tab closes). Every value
// that came from a device (ids, versions, audit details) is inserted as text, never as HTML.
"use strict";

const API = "/admin/api";
const TOKEN_KEY = "luatos-fota-token";
const REFRESH_MS = 15000;
const BAN_NAMES = { 0: "ok", 21: "barred", 40: "loop ban" };

const $ = (id) => document.getElementById(id);
const state = { tab: "devices", products: new Map(), online: new Map(), timer: null };

// ------------------------------------------------------------------ helpers

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class ApiError extends Error {
  constructor(status, body) {
    const msg = (body && (body.msg || body.error)) || `HTTP ${status}`;
    super(body && body.field ? `${body.field}: ${msg}` : msg);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(API + path, init);
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = { msg: text.slice(0, 300) }; }
  }
  if (resp.status === 401) {
    signOut("The token was refused; enter it again.");
    throw new ApiError(401, data);
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", {}, el("td", { colspan: columns, class: "empty" }, emptyText)));
    return;
  }
  tbody.append(...rows);
}

function ago(epochSeconds) {
  if (!epochSeconds) return "never";
  const s = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

function when(epochSeconds) {
  if (!epochSeconds) return "";
  return new Date(epochSeconds * 1000).toISOString().replace("T", " ").slice(0, 19);
}

let statusTimer = null;
function notify(text, kind = "ok") {
  const box = $("status");
  box.textContent = text;
  box.className = `show ${kind}`;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { box.className = ""; }, kind === "error" ? 9000 : 3500);
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) notify(err.message || String(err), "error");
    return undefined;
  }
}

function productName(id) {
  const p = state.products.get(id);
  return p ? (p.name || p.firmware_name) : (id == null ? "—" : `#${id}`);
}

// ------------------------------------------------------------------ devices

async function loadProducts() {
  const data = await api("GET", "/products");
  state.products = new Map(data.products.map((p) => [p.id, p]));
  const select = $("up-product");
  const previous = select.value;
  select.replaceChildren(...data.products.map((p) =>
    el("option", { value: p.id }, `${p.name || p.firmware_name} (${p.project_key} / ${p.firmware_name})`)));
  if (previous) select.value = previous;
}

async function loadOnline() {
  try {
    const data = await api("GET", "/push/online");
    state.online = new Map(data.online.map((o) => [String(o.device).toUpperCase(), o]));
    return data.online;
  } catch (err) {
    if (err instanceof ApiError && err.status === 503) { state.online = new Map(); return null; }
    throw err;
  }
}

function banBadge(device) {
  const code = device.ban_code || 0;
  const name = BAN_NAMES[code] || `banned (${code})`;
  return el("span", { class: `badge ${code ? "bad" : "ok"}`, title: device.ban_reason || "" }, name);
}

async function setBan(key, ban) {
  if (ban) {
    const reason = window.prompt(`Bar device ${key} from updates? Reason:`, "barred from the dashboard");
    if (reason === null) return;
    await api("POST", `/devices/${encodeURIComponent(key)}/ban`, { reason });
    notify(`${key} barred`);
  } else {
    await api("POST", `/devices/${encodeURIComponent(key)}/unban`);
    notify(`${key} unbanned`);
  }
  await loadDevices();
}

let devicesSeq = 0;
async function loadDevices() {
  const seq = ++devicesSeq;
  const banned = $("devices-banned").value;
  const [data] = await Promise.all([
    api("GET", `/devices?limit=1000${banned ? `&banned=${banned}` : ""}`),
    state.products.size ? null : loadProducts(),
    loadOnline(),
  ]);
  if (seq !== devicesSeq) return;  // a newer filter was applied meanwhile
  const filter = $("devices-filter").value.trim().toLowerCase();
  const devices = data.devices.filter((d) => !filter
    || d.device_key.toLowerCase().includes(filter) || (d.reported_version || "").toLowerCase().includes(filter));
  $("devices-count").textContent = `${devices.length} shown`;
  const rows = devices.map((d) => {
    const key = d.device_key;
    const online = state.online.get(key.toUpperCase());
    const banned = (d.ban_code || 0) !== 0;
    return el("tr", { dataset: { device: key } },
      el("td", { class: "mono" }, key),
      el("td", {}, productName(d.product_id)),
      el("td", { class: "mono" }, d.reported_version || "—"),
      el("td", { title: when(d.last_seen) }, ago(d.last_seen)),
      el("td", {}, d.check_ins ?? 0),
      el("td", {}, online ? el("span", { class: "badge ok" }, "online") : el("span", { class: "badge muted" }, "—")),
      el("td", {}, banBadge(d), d.ban_reason ? el("div", { class: "hint" }, d.ban_reason) : null),
      el("td", {},
        banned
          ? el("button", { type: "button", class: "small", "data-action": "unban", onclick: () => guarded(() => setBan(key, false)) }, "Unban")
          : el("button", { type: "button", class: "small danger", "data-action": "ban", onclick: () => guarded(() => setBan(key, true)) }, "Ban"),
        online
          ? el("button", { type: "button", class: "small", "data-action": "push", onclick: () => guarded(() => pushDevice(key)) }, "Push")
          : null));
  });
  fill($("devices-body"), rows, 8, "No devices yet: they appear after their first check-in.");
}

// ------------------------------------------------------------------ releases

function progress(stat) {
  const targeted = stat ? stat.targeted : 0;
  const served = stat ? stat.served : 0;
  const confirmed = stat ? stat.confirmed : 0;
  const pct = (n) => (targeted ? Math.min(100, (100 * n) / targeted) : 0);
  return el("div", { class: "progress" },
    el("div", { class: "bar", title: `served ${served} / confirmed ${confirmed} of ${targeted}` },
      el("span", { class: "served", style: `width:${pct(served)}%` }),
      el("span", { class: "confirmed", style: `width:${pct(confirmed)}%` })),
    el("small", {}, `targeted ${targeted} · served ${served} · confirmed ${confirmed}`
      + (stat && stat.failed ? ` · failed ${stat.failed}` : "")));
}

function targetText(r) {
  if (r.target_mode === "percent") return `${r.percent}%`;
  if (r.target_mode === "devices") return `${(r.devices || []).length} device(s)`;
  return "all";
}

async function setEnabled(id, enabled) {
  await api("POST", `/releases/${id}/${enabled ? "enable" : "pause"}`);
  notify(`release #${id} ${enabled ? "enabled" : "paused"}`);
  await loadReleases();
}

async function loadReleases() {
  const [rels, stats] = await Promise.all([api("GET", "/releases?links=1"), api("GET", "/stats"), loadProducts()]);
  const byId = new Map(stats.releases.map((s) => [s.release_id, s]));
  $("releases-count").textContent = `${rels.releases.length}`;
  const rows = rels.releases.slice().reverse().map((r) => el("tr", { dataset: { release: r.id } },
    el("td", {}, r.id),
    el("td", {}, productName(r.product_id)),
    el("td", { class: "mono", title: r.sha256 }, r.script_version),
    el("td", { class: "mono" }, r.core_version || "—"),
    el("td", {}, r.kind, r.forced ? el("span", { class: "badge warn" }, " forced") : null),
    el("td", {}, targetText(r)),
    el("td", {}, progress(byId.get(r.id))),
    el("td", {}, r.enabled ? el("span", { class: "badge ok" }, "enabled") : el("span", { class: "badge muted" }, "paused")),
    el("td", {},
      r.enabled
        ? el("button", { type: "button", class: "small", "data-action": "pause", onclick: () => guarded(() => setEnabled(r.id, false)) }, "Pause")
        : el("button", { type: "button", class: "small", "data-action": "enable", onclick: () => guarded(() => setEnabled(r.id, true)) }, "Enable"),
      el("a", { href: r.download_link || r.download_path, class: "hint", style: "margin-left:8px" }, `${(r.size / 1024).toFixed(1)} KiB`))));
  fill($("releases-body"), rows, 9, "No releases yet: upload a package.");
}

// ------------------------------------------------------------------ upload

function syncTargetFields() {
  const mode = $("up-target").value;
  $("up-percent").disabled = mode !== "percent";
  $("up-devices").disabled = mode !== "devices";
}

async function upload(event) {
  event.preventDefault();
  const file = $("up-file").files[0];
  if (!file) { notify("choose a package file", "error"); return; }
  const form = new FormData();
  form.append("product_id", $("up-product").value);
  form.append("file", file, file.name);
  for (const name of ["version", "core", "kind", "notes"]) {
    const value = $(`up-${name}`).value.trim();
    if (value) form.append(name, value);
  }
  const mode = $("up-target").value;
  if (mode === "percent") form.append("percent", $("up-percent").value);
  if (mode === "devices") form.append("devices", $("up-devices").value);
  form.append("enabled", $("up-enabled").checked ? "true" : "false");
  const button = $("upload-submit");
  button.disabled = true;
  try {
    const rel = await api("POST", "/releases", form);
    notify(`release #${rel.id} created: version ${rel.script_version} (${rel.kind}, ${rel.size} bytes)`);
    $("upload-form").reset();
    syncTargetFields();
    showTab("releases");
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ push

async function pushDevice(key) {
  const releaseId = window.prompt(`Push to ${key}: release number to install`, "");
  if (!releaseId) return;
  const res = await api("POST", "/push", { devices: [key], release_id: Number(releaseId) });
  const result = Object.values(res.results)[0];
  notify(`push to ${key}: ${result}`, result === "sent" ? "ok" : "error");
}

async function loadPush() {
  const online = await loadOnline();
  if (online === null) {
    $("push-count").textContent = "";
    fill($("push-body"), [], 7, "The push channel is not running (start the server with --push-port).");
    return;
  }
  $("push-count").textContent = `${online.length} online`;
  const rows = online.map((o) => el("tr", { dataset: { device: o.device } },
    el("td", { class: "mono" }, o.device),
    el("td", { class: "mono" }, o.version || "—"),
    el("td", { class: "mono" }, o.core || "—"),
    el("td", { class: "mono", title: o.instance ? `server instance ${o.instance}` : "" },
      o.here === false ? `${o.peer} (via ${o.instance})` : o.peer),
    el("td", {}, o.connected_at),
    el("td", { class: "mono", title: o.last_answer_at || "" }, o.last_answer ? JSON.stringify(o.last_answer) : "—"),
    el("td", {}, el("button", { type: "button", class: "small", onclick: () => guarded(() => pushDevice(o.device)) }, "Push"))));
  fill($("push-body"), rows, 7, "No device is connected to the push channel.");
}

// ------------------------------------------------------------------ audit

function detailText(detail) {
  if (detail === null || detail === undefined || detail === "") return "";
  if (typeof detail === "string") return detail;
  return Object.entries(detail)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("  ");
}

let auditSeq = 0;
async function loadAudit() {
  const seq = ++auditSeq;
  const params = new URLSearchParams({ limit: "300" });
  const device = $("audit-device").value.trim();
  const event = $("audit-event").value.trim();
  if (device) params.set("device", device);
  if (event) params.set("event", event);
  const data = await api("GET", `/audit?${params}`);
  if (seq !== auditSeq) return;  // a newer filter was applied meanwhile
  const rows = data.audit.map((a) => el("tr", {},
    el("td", { class: "mono" }, when(a.ts)),
    el("td", {}, a.event),
    el("td", { class: "mono" }, a.device_key || ""),
    el("td", {}, a.release_id ?? ""),
    el("td", {}, a.status ?? ""),
    el("td", {}, a.code ?? ""),
    el("td", {}, a.actor || ""),
    el("td", { class: "mono" }, detailText(a.detail))));
  fill($("audit-body"), rows, 8, "No audit entries match.");
  $("audit-body").dataset.filter = `${device}|${event}`;
}

// ------------------------------------------------------------------ shell

const LOADERS = { devices: loadDevices, releases: loadReleases, upload: loadProducts, push: loadPush, audit: loadAudit };

function showTab(name) {
  state.tab = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("section[data-panel]")) {
    panel.classList.toggle("hidden", panel.dataset.panel !== name);
  }
  return guarded(LOADERS[name]);
}

function signedIn() {
  $("login-needed").classList.add("hidden");
  $("token-form").classList.add("hidden");
  $("sign-out").classList.remove("hidden");
  $("tabs").classList.remove("hidden");
  clearInterval(state.timer);
  state.timer = setInterval(() => { if (state.tab !== "upload") guarded(LOADERS[state.tab]); }, REFRESH_MS);
  return showTab(state.tab);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  $("token-form").classList.remove("hidden");
  $("sign-out").classList.add("hidden");
  $("tabs").classList.add("hidden");
  for (const panel of document.querySelectorAll("section[data-panel]")) panel.classList.add("hidden");
  $("login-needed").classList.remove("hidden");
  if (message) notify(message, "error");
}

async function submitToken(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  try {
    await api("GET", "/products");  // check the token before showing anything
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) notify(err.message, "error");
    return;
  }
  await signedIn();
}

function init() {
  $("token-form").addEventListener("submit", submitToken);
  $("sign-out").addEventListener("click", () => signOut());
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("devices-refresh").addEventListener("click", () => guarded(loadDevices));
  $("devices-filter").addEventListener("input", () => guarded(loadDevices));
  $("devices-banned").addEventListener("change", () => guarded(loadDevices));
  $("releases-refresh").addEventListener("click", () => guarded(loadReleases));
  $("push-refresh").addEventListener("click", () => guarded(loadPush));
  $("audit-refresh").addEventListener("click", () => guarded(loadAudit));
  $("audit-device").addEventListener("keydown", (e) => { if (e.key === "Enter") guarded(loadAudit); });
  $("audit-event").addEventListener("keydown", (e) => { if (e.key === "Enter") guarded(loadAudit); });
  $("up-target").addEventListener("change", syncTargetFields);
  $("upload-form").addEventListener("submit", (e) => guarded(() => upload(e)));
  syncTargetFields();
  if (token()) signedIn();
}

init();
