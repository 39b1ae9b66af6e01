// luatos-fota dashboard: plain JS over the admin API (/admin/api/...), no build step.
// The token is asked once and kept in sessionStorage (gone when the tab closes). Every value
// that came from a device (ids, versions, audit details) is inserted as text, never as HTML.
"use strict";

const API = "/admin/api";
const TOKEN_KEY = "luatos-fota-token";
const REFRESH_MS = 15000;
const BAN_NAMES = { 0: "ok", 21: "barred", 40: "loop ban" };
const AUDIT_PAGE = 100;
const HISTORY_PAGE = 50;

const $ = (id) => document.getElementById(id);
const state = {
  tab: "devices", products: new Map(), online: new Map(), timer: null,
  device: null, deviceCursor: [null], auditCursor: [null],
};

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
    else if (key === "style") Object.assign(node.style, value);  // CSSOM: allowed by a strict CSP
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

function productCell(id) {
  const p = state.products.get(id);
  if (!p) return productName(id);
  return [productName(id), el("div", { class: "hint mono", title: "project key" }, p.project_key)];
}

// The audit detail as "key value" pairs, the reason first and on its own.
function detailNodes(detail) {
  if (detail === null || detail === undefined || detail === "") return [];
  if (typeof detail === "string") return [detail];
  const entries = Object.entries(detail).filter(([, v]) => v !== null && v !== undefined && v !== "");
  entries.sort(([a], [b]) => (b === "reason") - (a === "reason"));
  return entries.map(([k, v]) => el("span", { class: k === "reason" ? "kv reason" : "kv" },
    el("span", { class: "k" }, k.replace(/_/g, " ")),
    typeof v === "object" ? JSON.stringify(v) : String(v)));
}

function deviceLink(key) {
  return el("button", { type: "button", class: "link mono", "data-action": "open-device",
    onclick: () => openDevice(key) }, key);
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
      el("td", {}, deviceLink(key)),
      el("td", {}, productCell(d.product_id)),
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
      el("span", { class: "served", style: { width: `${pct(served)}%` } }),
      el("span", { class: "confirmed", style: { width: `${pct(confirmed)}%` } })),
    el("small", {}, `targeted ${targeted} · served ${served} · confirmed ${confirmed}`
      + (stat && stat.failed ? ` · failed ${stat.failed}` : "")));
}

function targetText(r) {
  if (r.target_mode === "percent") return `${r.percent}%`;
  if (r.target_mode === "devices") return `${(r.devices || []).length} device(s)`;
  return "all";
}

async function setTarget(r, input) {
  const percent = Number(input.value);
  if (input.value.trim() === "" || !(percent >= 0 && percent <= 100)) {
    notify("enter a percentage from 0 to 100", "error");
    return;
  }
  const was = r.target_mode === "percent" ? `${r.percent}%` : targetText(r);
  if (!window.confirm(`Release #${r.id} (${r.script_version}): target ${was} -> ${percent}% of the product's devices?`)) return;
  await api("POST", `/releases/${r.id}/target`, { mode: "percent", percent });
  notify(`release #${r.id} now targets ${percent}% of devices`);
  await loadReleases();
}

async function targetAll(r) {
  if (!window.confirm(`Release #${r.id} (${r.script_version}): target every device of the product?`)) return;
  await api("POST", `/releases/${r.id}/target`, { mode: "all" });
  notify(`release #${r.id} now targets all devices`);
  await loadReleases();
}

function targetCell(r) {
  const input = el("input", { type: "number", min: "0", max: "100", step: "any", "aria-label": `percent for release ${r.id}`,
    value: r.target_mode === "percent" ? r.percent : "", placeholder: "%", "data-role": "percent" });
  return [targetText(r), el("span", { class: "target-edit" }, input,
    el("button", { type: "button", class: "small", "data-action": "set-percent", onclick: () => guarded(() => setTarget(r, input)) }, "Set %"),
    r.target_mode === "all" ? null
      : el("button", { type: "button", class: "small", "data-action": "target-all", onclick: () => guarded(() => targetAll(r)) }, "All"))];
}

async function archiveRelease(r) {
  if (!window.confirm(`Archive release #${r.id} (${r.script_version})? It stops being served for good `
    + "and moves out of this list (devices keep what they installed).")) return;
  await api("POST", `/releases/${r.id}/archive`);
  notify(`release #${r.id} archived`);
  await loadReleases();
}

function stateBadge(r) {
  if (r.archived) return el("span", { class: "badge muted" }, "archived");
  return r.enabled ? el("span", { class: "badge ok" }, "enabled") : el("span", { class: "badge muted" }, "paused");
}

function releaseActions(r) {
  if (r.archived) return [];
  return [
    r.enabled
      ? el("button", { type: "button", class: "small", "data-action": "pause", onclick: () => guarded(() => setEnabled(r.id, false)) }, "Pause")
      : el("button", { type: "button", class: "small", "data-action": "enable", onclick: () => guarded(() => setEnabled(r.id, true)) }, "Enable"),
    el("button", { type: "button", class: "small danger", "data-action": "archive", onclick: () => guarded(() => archiveRelease(r)) }, "Archive"),
  ];
}

async function setEnabled(id, enabled) {
  await api("POST", `/releases/${id}/${enabled ? "enable" : "pause"}`);
  notify(`release #${id} ${enabled ? "enabled" : "paused"}`);
  await loadReleases();
}

async function loadReleases() {
  const [rels, stats] = await Promise.all([api("GET", "/releases?links=1"), api("GET", "/stats"), loadProducts()]);
  const byId = new Map(stats.releases.map((s) => [s.release_id, s]));
  const showArchived = $("releases-archived").checked;
  const archived = rels.releases.filter((r) => r.archived).length;
  const shown = rels.releases.filter((r) => showArchived || !r.archived);
  $("releases-count").textContent = archived ? `${shown.length} (${archived} archived)` : `${shown.length}`;
  const rows = shown.slice().reverse().map((r) => el("tr", { dataset: { release: r.id }, class: r.archived ? "archived" : null },
    el("td", {}, r.id),
    el("td", {}, productCell(r.product_id)),
    el("td", { class: "mono", title: r.sha256 }, r.script_version),
    el("td", { class: "mono" }, r.core_version || "—"),
    el("td", {}, r.kind, r.forced ? el("span", { class: "badge warn" }, " forced") : null),
    el("td", {}, r.archived ? targetText(r) : targetCell(r)),
    el("td", {}, progress(byId.get(r.id))),
    el("td", {}, preflightBadge(r)),
    el("td", {}, stateBadge(r)),
    el("td", {}, releaseActions(r),
      el("a", { href: r.download_link || r.download_path, class: "hint release-size" }, `${(r.size / 1024).toFixed(1)} KiB`))));
  fill($("releases-body"), rows, 10, "No releases yet: upload a package.");
}

const PREFLIGHT_BADGE = { passed: "ok", failed: "bad", unsupported: "warn", skipped: "warn", pending: "muted", running: "muted" };

function preflightBadge(r) {
  const status = r.preflight_status || "none";
  const result = r.preflight_result || {};
  const title = [result.summary, ...(result.warnings || []).map((w) => `warning: ${w}`)].filter(Boolean).join("\n");
  return el("span", { class: `badge ${PREFLIGHT_BADGE[status] || "muted"}`, title, "data-preflight": status }, status);
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
  form.append("skip_preflight", $("up-skip-preflight").checked ? "true" : "false");
  form.append("downgrade", $("up-downgrade").checked ? "true" : "false");
  const baseline = $("up-baseline").files[0];
  if (baseline && !$("up-skip-preflight").checked) form.append("baseline", baseline, baseline.name);
  const button = $("upload-submit");
  button.disabled = true;
  try {
    const rel = await api("POST", "/releases", form);
    const pre = rel.preflight_status === "pending" ? "; preflight running, enabled when it passes" : `; preflight ${rel.preflight_status}`;
    notify(`release #${rel.id} created: version ${rel.script_version} (${rel.kind}, ${rel.size} bytes)${pre}`);
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

// One page of audit rows, newest first; `cursor` is a stack of before_id values (null = newest).
async function auditPage(params, cursor, size) {
  const before = cursor[cursor.length - 1];
  params.set("limit", String(size + 1));  // one extra row says whether an older page exists
  if (before !== null) params.set("before_id", String(before));
  const data = await api("GET", `/audit?${params}`);
  const rows = data.audit.slice(0, size);
  return { rows, older: data.audit.length > size ? rows[rows.length - 1].id : null };
}

function pagerState(prefix, cursor, page) {
  $(`${prefix}-newer`).disabled = cursor.length <= 1;
  $(`${prefix}-older`).disabled = page.older === null;
  $(`${prefix}-older`).dataset.before = page.older === null ? "" : String(page.older);
}

function pageText(cursor, page, size) {
  if (!page.rows.length) return "";
  const first = (cursor.length - 1) * size + 1;
  return `entries ${first}–${first + page.rows.length - 1}${page.older === null ? " (oldest)" : ""}`;
}

let auditSeq = 0;
async function loadAudit() {
  const seq = ++auditSeq;
  const params = new URLSearchParams();
  const device = $("audit-device").value.trim();
  const event = $("audit-event").value.trim();
  if (device) params.set("device", device);
  if (event) params.set("event", event);
  const page = await auditPage(params, state.auditCursor, AUDIT_PAGE);
  if (seq !== auditSeq) return;  // a newer filter was applied meanwhile
  const rows = page.rows.map((a) => el("tr", { dataset: { id: a.id } },
    el("td", { class: "mono time" }, when(a.ts)),
    el("td", {}, a.event),
    el("td", {}, a.device_key ? deviceLink(a.device_key) : ""),
    el("td", {}, a.release_id ?? ""),
    el("td", {}, a.status ?? ""),
    el("td", {}, a.code ?? ""),
    el("td", {}, a.actor || ""),
    el("td", { class: "detail" }, detailNodes(a.detail))));
  fill($("audit-body"), rows, 8, "No audit entries match.");
  $("audit-body").dataset.filter = `${device}|${event}`;
  $("audit-range").textContent = pageText(state.auditCursor, page, AUDIT_PAGE);
  pagerState("audit", state.auditCursor, page);
}

// ------------------------------------------------------------------ products

async function loadProductsTab() {
  const [, rels, devs] = await Promise.all([loadProducts(), api("GET", "/releases"), api("GET", "/devices?limit=10000")]);
  const count = (rows, id) => rows.filter((x) => x.product_id === id).length;
  const products = [...state.products.values()];
  $("products-count").textContent = `${products.length}`;
  const rows = products.map((p) => el("tr", { dataset: { product: p.id } },
    el("td", {}, p.id),
    el("td", {}, p.name || "—"),
    el("td", { class: "mono", "data-role": "project-key" }, p.project_key),
    el("td", { class: "mono" }, p.firmware_name),
    el("td", {}, p.auto_register ? "register on first check-in" : "pre-registered only (code 17)"),
    el("td", {}, count(rels.releases, p.id)),
    el("td", {}, count(devs.devices, p.id))));
  fill($("products-body"), rows, 7, "No products yet: luatos-fota product add --project-key KEY --firmware-name NAME");
}

// ------------------------------------------------------------------ one device

function openDevice(key) {
  state.device = key;
  state.deviceCursor = [null];
  return showTab("device");
}

function fact(name, ...value) {
  return [el("dt", {}, name), el("dd", {}, ...value)];
}

async function loadDevice() {
  const key = state.device;
  if (!key) return showTab("devices");
  $("device-title").textContent = key;
  const params = new URLSearchParams({ device: key });
  const [d, page] = await Promise.all([
    api("GET", `/devices/${encodeURIComponent(key)}`),
    auditPage(params, state.deviceCursor, HISTORY_PAGE),
    state.products.size ? null : loadProducts(),
    loadOnline(),
  ]);
  if (key !== state.device) return;
  const p = state.products.get(d.product_id);
  $("device-info").replaceChildren(
    ...fact("Product", productName(d.product_id), p ? el("span", { class: "hint mono" }, `  ${p.project_key} / ${p.firmware_name}`) : null),
    ...fact("Reported version", el("span", { class: "mono" }, d.reported_version || "—"),
      el("span", { class: "hint" }, "  (core.xxx.zzz as libfota2 sends it)")),
    ...fact("Last seen", d.last_seen ? `${when(d.last_seen)} UTC (${ago(d.last_seen)})` : "never", d.last_ip ? el("span", { class: "hint mono" }, `  from ${d.last_ip}`) : null),
    ...fact("First seen", d.first_seen ? `${when(d.first_seen)} UTC` : "—"),
    ...fact("State", banBadge(d), d.ban_reason ? el("span", { class: "hint" }, `  ${d.ban_reason}`) : null),
    ...fact("Pinned to release", d.pinned_release_id ? `#${d.pinned_release_id}` : "—"),
    ...fact("Push channel", state.online.get(key.toUpperCase()) ? el("span", { class: "badge ok" }, "online") : "not connected"));
  const rows = page.rows.map((a) => el("tr", { dataset: { id: a.id, event: a.event } },
    el("td", { class: "mono time" }, when(a.ts)),
    el("td", {}, a.event),
    el("td", {}, a.release_id ?? ""),
    el("td", {}, a.status ?? ""),
    el("td", {}, a.code ?? ""),
    el("td", { class: "detail" }, detailNodes(a.detail))));
  fill($("device-history-body"), rows, 6, "Nothing recorded for this device.");
  $("device-history-range").textContent = pageText(state.deviceCursor, page, HISTORY_PAGE);
  pagerState("device", state.deviceCursor, page);
  return undefined;
}

function turnPage(prefix, cursor, loader, older) {
  if (older) {
    const before = $(`${prefix}-older`).dataset.before;
    if (!before) return undefined;
    cursor.push(Number(before));
  } else if (cursor.length > 1) {
    cursor.pop();
  }
  return guarded(loader);
}

// ------------------------------------------------------------------ shell

const LOADERS = {
  devices: loadDevices, products: loadProductsTab, device: loadDevice, releases: loadReleases,
  upload: loadProducts, push: loadPush, audit: loadAudit,
};

function showTab(name) {
  state.tab = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    const selected = button.dataset.tab === name || (name === "device" && button.dataset.tab === "devices");
    button.setAttribute("aria-selected", String(selected));
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
  $("releases-archived").addEventListener("change", () => guarded(loadReleases));
  $("push-refresh").addEventListener("click", () => guarded(loadPush));
  const newAudit = () => { state.auditCursor = [null]; return guarded(loadAudit); };
  $("audit-refresh").addEventListener("click", newAudit);
  $("audit-device").addEventListener("keydown", (e) => { if (e.key === "Enter") newAudit(); });
  $("audit-event").addEventListener("keydown", (e) => { if (e.key === "Enter") newAudit(); });
  $("audit-older").addEventListener("click", () => turnPage("audit", state.auditCursor, loadAudit, true));
  $("audit-newer").addEventListener("click", () => turnPage("audit", state.auditCursor, loadAudit, false));
  $("device-older").addEventListener("click", () => turnPage("device", state.deviceCursor, loadDevice, true));
  $("device-newer").addEventListener("click", () => turnPage("device", state.deviceCursor, loadDevice, false));
  $("device-back").addEventListener("click", () => showTab("devices"));
  $("device-refresh").addEventListener("click", () => guarded(loadDevice));
  $("up-target").addEventListener("change", syncTargetFields);
  $("upload-form").addEventListener("submit", (e) => guarded(() => upload(e)));
  syncTargetFields();
  if (token()) signedIn();
}

init();
