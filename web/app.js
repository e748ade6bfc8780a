// The trader's page: wires the watchlist, the table and the connection together.
// Incoming quotes go into a map (newest per symbol) and reach the DOM at most once per animation frame.
// /config.json says first whether the server wants a token (`--auth jwt`); then the page signs in
// over the socket and refreshes the token before it expires (see auth.js).

import { refreshDelay, TokenSource } from "./auth.js";
import { backoffDelay, Connection, socketUrl } from "./connection.js";
import { parseSymbols, SYMBOL_RULE } from "./symbols.js";
import { delayLabel, QuoteTable } from "./table.js";
import { loadSort, loadWatchlist, saveSort, saveWatchlist, shareUrl } from "./watchlist.js";

const $ = (id) => document.getElementById(id);
const input = $("symbol-input");
const message = $("message");
const status = $("conn-status");
const statusText = status.querySelector(".conn-text");
const latencyEl = $("latency");
const emptyEl = $("empty");
const summaryEl = $("summary");
const signInEl = $("sign-in");

/** Counters for the curious (and for the browser tests): frames rendered, quotes applied or ignored. */
const stats = { frames: 0, applied: 0, ignored: 0, perSecond: 0, latencyMs: null, latencyMaxMs: null };
window.tickerStats = stats;

const pending = new Map(); // symbol → newest Q not yet on screen
const lastSeq = new Map(); // symbol → highest `q` seen on this connection (since its last tier move)
let delayedSet = new Set(); // the symbols the server sends delayed, as its last `subscribed` said
let rafId = 0;
let latSum = 0;
let latMax = 0;
let latCount = 0;
let appliedAtLastTick = 0;

const table = new QuoteTable($("rows"), document.querySelector("#watchlist thead"), {
  onRemove: removeSymbol,
  onSort(sort) {
    table.setSort(sort);
    saveSort(sort);
  },
});

function say(text, kind = "info", invalidInput = false) {
  message.textContent = text;
  message.dataset.kind = kind;
  input.setAttribute("aria-invalid", invalidInput ? "true" : "false");
}

function refreshSummary() {
  const n = table.symbols.length;
  emptyEl.hidden = n > 0;
  summaryEl.textContent = `${n} symbol${n === 1 ? "" : "s"} · ${stats.perSecond} updates/s`;
}

function persist() {
  saveWatchlist(table.symbols);
  refreshSummary();
}

// ---- subscriptions ------------------------------------------------------------------------------
// Each subscribe/unsubscribe is followed by a ping with id "op-N". Replies arrive in order, so every
// `error` before that pong belongs to op N: its symbols the server did not take are dropped again.

let opSeq = 0;
let outstanding = []; // ops awaiting their barrier pong, oldest first
let serverSet = new Set();

function sendOp(op, symbols, kind) {
  if (!symbols.length || !conn || (authOn && !authed)) return; // the next (re)subscribe sends the list
  opSeq += 1;
  const id = `op-${opSeq}`;
  if (!conn.send({ op, symbols })) return; // not connected: onOpen resubscribes the whole list
  conn.send({ op: "ping", id });
  outstanding.push({ id, op, symbols, kind, errors: [] });
}

function settle(op) {
  if (!op.errors.length) return;
  const text = op.errors.map((e) => e.message || e.code).join(" ");
  if (op.kind !== "add") {
    say(text, "error");
    return;
  }
  const refused = op.symbols.filter((s) => !serverSet.has(s));
  for (const sym of refused) dropRow(sym);
  if (refused.length) persist();
  say(refused.length ? `Not added: ${refused.join(", ")}. ${text}` : text, "error", refused.length > 0);
}

// Symbols the user may not see (`forbidden_symbol`, on a subscribe or after a refresh narrowed the
// entitlements) leave the table and the saved watchlist, like symbols the server refused.
function dropForbidden(symbols) {
  const gone = symbols.filter((s) => typeof s === "string" && table.has(s));
  for (const sym of gone) dropRow(sym);
  if (gone.length) persist();
}

function onMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "quotes":
    case "snapshot":
      receive(msg.data);
      break;
    case "subscribed":
      if (Array.isArray(msg.symbols)) serverSet = new Set(msg.symbols);
      setDelayed(new Set(Array.isArray(msg.delayed) ? msg.delayed : []));
      break;
    case "authenticated":
      onAuthenticated(msg);
      break;
    case "error":
      if (msg.code === "forbidden_symbol" && Array.isArray(msg.symbols)) dropForbidden(msg.symbols);
      if (outstanding.length) outstanding[0].errors.push(msg);
      else say(msg.message || String(msg.code), "error");
      break;
    case "pong": {
      // Settle every op up to this one (an op whose own ping was dropped settles with the next).
      const i = outstanding.findIndex((op) => op.id === msg.id);
      for (const op of outstanding.splice(0, i + 1)) settle(op);
      break;
    }
    default:
      break; // unknown types are ignored: newer servers may add some
  }
}

// A symbol that moved between tiers (a refresh changed the entitlements) starts again from the next
// snapshot: delayed entries keep their original `q`, below the real-time ones already applied.
function setDelayed(delayed) {
  for (const sym of delayedSet) if (!delayed.has(sym)) lastSeq.delete(sym);
  for (const sym of delayed) if (!delayedSet.has(sym)) lastSeq.delete(sym);
  delayedSet = delayed;
  table.setDelayed(delayed, delayText);
}

function onOpen() {
  outstanding = [];
  lastSeq.clear(); // a restarted server counts its sequences from scratch
  delayedSet = new Set();
  if (authOn) {
    authed = false;
    conn.send({ op: "auth", token: socketToken }); // the first message; subscribing waits for the answer
    renderStatus();
    return;
  }
  sendOp("subscribe", table.symbols, "resync");
}

let connState = "disconnected";
let connInfo = { attempt: 0, rttMs: null };

function onState(state, info) {
  connState = state;
  connInfo = info;
  if (state !== "connected") {
    authed = false;
    clearTimeout(refreshTimer);
    refreshTimer = 0;
    pending.clear();
    table.markStale();
  }
  renderStatus();
}

function renderStatus() {
  status.dataset.state = connState;
  const info = connInfo;
  if (connState === "connected") {
    if (authOn && !authed) {
      statusText.textContent = "Signing in…";
      status.title = "Connected · waiting for the server to accept the sign-in";
      return;
    }
    statusText.textContent = "Live";
    status.title = info.rttMs === null ? "Connected" : `Connected · round trip ${info.rttMs} ms`;
  } else if (connState === "reconnecting") {
    statusText.textContent = "Reconnecting…";
    status.title = `Connection lost · attempt ${info.attempt}`;
  } else if (info.reason === "signin") {
    statusText.textContent = "Sign-in required";
    status.title = "Sign in, then press Try again";
  } else {
    statusText.textContent = info.reason === "offline" ? "Offline" : "Disconnected";
    status.title = info.reason === "offline" ? "No network · waiting for it to return" : "Trying to connect";
  }
}

let conn = null; // the Connection, made once /config.json has answered

// ---- signing in (a server with --auth jwt) ------------------------------------------------------

const SIGN_IN_RETRY_MS = 30_000; // while sign-in is required, the token endpoint is asked this often
const REFRESH_RETRY_MS = 5_000; // after a failed token refresh (network), try again this soon

let authOn = false;
let delayText = delayLabel(900);
let tokens = null; // TokenSource, with --auth jwt and a token URL
let socketToken = null; // the token the current socket signs in with
let authed = false; // the current socket was answered `authenticated`
let refreshTimer = 0;
let signInTimer = 0;
let suggestionsLoaded = false;

// Before each connect: the current token, or a fresh one when it is close to expiry or was refused.
async function beforeConnect() {
  socketToken = tokens ? await tokens.current() : null;
  return socketToken !== null; // null: sign-in required, wait for the retry timer or the button
}

function onAuthenticated(msg) {
  const first = !authed;
  authed = true;
  clearTimeout(refreshTimer);
  const expMs = isNum(msg.exp) ? msg.exp * 1000 : tokens?.token?.expMs;
  refreshTimer = isNum(expMs) ? setTimeout(refreshToken, refreshDelay(expMs)) : 0;
  if (!first) return; // a refresh: entitlements may have narrowed (the server sends subscribed, then errors)
  renderStatus();
  sendOp("subscribe", table.symbols, "resync");
  if (!suggestionsLoaded) loadSuggestions();
}

// Replace the live socket's token before it expires, without reconnecting.
async function refreshToken() {
  refreshTimer = 0;
  let token;
  try {
    token = await tokens.fresh();
  } catch {
    if (authed) refreshTimer = setTimeout(refreshToken, REFRESH_RETRY_MS);
    return;
  }
  // null: sign-in required (the banner says so); the socket lives until its token expires.
  if (token !== null && authed) conn.send({ op: "refresh", token });
}

function onClose(code) {
  if (!tokens) return;
  if (code === 4001 || code === 4003) tokens.invalidate(); // refused or expired: fetch a new one first
  if (code === 4029) say("Too many open connections for your account: close another ticker page.", "error");
}

function onSignIn(required) {
  signInEl.hidden = !required;
  clearTimeout(signInTimer);
  signInTimer = required ? setTimeout(retrySignIn, SIGN_IN_RETRY_MS) : 0;
  renderStatus();
}

function retrySignIn() {
  if (!tokens) return;
  clearTimeout(signInTimer);
  signInTimer = setTimeout(retrySignIn, SIGN_IN_RETRY_MS); // cleared by onSignIn(false) on success
  if (authed) refreshToken();
  else conn?.connectNow();
}

// ---- quotes -------------------------------------------------------------------------------------

function isNum(x) {
  return typeof x === "number" && Number.isFinite(x);
}

function receive(data) {
  if (!Array.isArray(data)) return;
  for (const q of data) {
    if (!q || typeof q.s !== "string" || !isNum(q.p) || !table.has(q.s)) continue;
    if (isNum(q.q)) {
      const last = lastSeq.get(q.s);
      if (last !== undefined && q.q <= last) {
        stats.ignored += 1; // a repeat (snapshot after an update) or an out-of-date entry
        continue;
      }
      lastSeq.set(q.s, q.q);
    }
    pending.set(q.s, q);
  }
  if (pending.size && !rafId) rafId = requestAnimationFrame(render);
}

function render(now) {
  rafId = 0;
  const batch = [...pending.values()];
  pending.clear();
  if (batch.length) stats.frames += 1;
  table.update(batch, now);
  const wall = Date.now();
  for (const q of batch) {
    if (!isNum(q.t)) continue;
    const lat = Math.max(0, wall - q.t);
    latSum += lat;
    latCount += 1;
    if (lat > latMax) latMax = lat;
  }
  stats.applied += batch.length;
  table.maybeResort(now);
  if (table.sweep(now)) rafId = requestAnimationFrame(render);
}

setInterval(() => {
  if (latCount) {
    stats.latencyMs = Math.round(latSum / latCount);
    stats.latencyMaxMs = Math.round(latMax);
    latencyEl.textContent = `latency ${stats.latencyMs} ms`;
    latencyEl.title = `Feed timestamp to screen over the last second: average ${stats.latencyMs} ms, worst ${stats.latencyMaxMs} ms`;
  } else {
    stats.latencyMs = stats.latencyMaxMs = null;
    latencyEl.textContent = "latency —";
  }
  latSum = latMax = latCount = 0;
  stats.perSecond = stats.applied - appliedAtLastTick;
  appliedAtLastTick = stats.applied;
  table.maybeResort(performance.now());
  refreshSummary();
}, 1_000);

// ---- editing the watchlist ----------------------------------------------------------------------

function dropRow(sym) {
  table.remove(sym);
  pending.delete(sym);
  lastSeq.delete(sym);
}

function removeSymbol(sym) {
  if (!table.has(sym)) return;
  const focusWasInTable = $("rows").contains(document.activeElement);
  const next = table.neighbourButton(sym);
  dropRow(sym);
  persist();
  sendOp("unsubscribe", [sym], "remove");
  say(`Removed ${sym}.`);
  if (focusWasInTable) (next || input).focus();
}

function addFromInput(ev) {
  ev.preventDefault();
  const { valid, invalid } = parseSymbols(input.value);
  if (!valid.length && !invalid.length) {
    say("Type a symbol to add, for example AAPL.", "error", true);
    input.focus();
    return;
  }
  const fresh = valid.filter((s) => !table.has(s));
  const already = valid.filter((s) => table.has(s));
  for (const sym of fresh) table.add(sym);
  if (fresh.length) {
    persist();
    sendOp("subscribe", fresh, "add");
  }
  const parts = [];
  if (invalid.length) {
    const quoted = invalid.map((s) => `“${s}”`).join(", ");
    parts.push(`${quoted} ${invalid.length === 1 ? "is not a valid symbol" : "are not valid symbols"}: use ${SYMBOL_RULE}.`);
  }
  if (fresh.length) parts.push(`Added ${fresh.join(", ")}.`);
  if (already.length) parts.push(`${already.join(", ")} ${already.length === 1 ? "is" : "are"} already in the watchlist.`);
  say(parts.join(" "), invalid.length ? "error" : "info", invalid.length > 0);
  input.value = invalid.join(" "); // keep what needs fixing, clear what was added
  input.focus();
}

async function loadSuggestions() {
  const headers = { Accept: "application/json" };
  if (authOn) {
    if (!tokens?.token) return;
    headers.Authorization = `Bearer ${tokens.token.value}`;
  }
  suggestionsLoaded = true;
  try {
    const res = await fetch("/api/symbols", { headers });
    if (!res.ok) return;
    const body = await res.json();
    const list = $("symbol-suggestions");
    const frag = document.createDocumentFragment();
    for (const sym of Array.isArray(body.symbols) ? body.symbols : []) {
      if (typeof sym !== "string") continue;
      const opt = document.createElement("option");
      opt.value = sym;
      frag.append(opt);
    }
    list.replaceChildren(frag);
  } catch {
    /* suggestions are a convenience; typing a symbol still works */
  }
}

async function share() {
  const url = shareUrl(table.symbols);
  try {
    await navigator.clipboard.writeText(url);
    say(`Link copied: ${url}`);
  } catch {
    say(`Share this link: ${url}`);
  }
}

// ---- start --------------------------------------------------------------------------------------

/** /config.json, retried with the connection's backoff until the server answers. */
async function loadConfig() {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch("/config.json", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (res.ok) {
        const cfg = await res.json();
        if (cfg && typeof cfg === "object") return cfg;
      }
    } catch {
      /* the server is not there yet */
    }
    status.title = `Waiting for the server · attempt ${attempt + 1}`;
    await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt)));
  }
}

async function start() {
  const cfg = await loadConfig();
  authOn = cfg.auth === "jwt";
  if (isNum(cfg.delay)) delayText = delayLabel(cfg.delay);
  const handlers = { onState, onOpen, onMessage };
  if (authOn) {
    Object.assign(handlers, { beforeConnect, onClose });
    if (typeof cfg.token_url === "string" && cfg.token_url) {
      tokens = new TokenSource(cfg.token_url, { onSignIn });
    } else {
      $("sign-in-detail").textContent = "This server needs a token, and no token URL is configured for the page.";
      signInEl.hidden = false;
    }
    $("sign-in-retry").addEventListener("click", retrySignIn);
    window.addEventListener("focus", () => {
      if (tokens?.signInRequired) retrySignIn(); // back from signing in in another tab
    });
  }
  conn = new Connection(socketUrl(), handlers);
  conn.start();
  if (!authOn) loadSuggestions();
}

const initial = loadWatchlist();
table.setSymbols(initial.symbols);
table.setSort(loadSort());
if (initial.rejected.length) {
  say(`Ignored from the link: ${initial.rejected.map((s) => `“${s}”`).join(", ")} (use ${SYMBOL_RULE}).`, "error");
}
refreshSummary();
$("add-form").addEventListener("submit", addFromInput);
$("share").addEventListener("click", share);
start();
