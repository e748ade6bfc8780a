// The trader's page: wires the watchlist, the table and the connection together.
// Incoming quotes go into a map (newest per symbol) and reach the DOM at most once per animation frame.

import { Connection, socketUrl } from "./connection.js";
import { parseSymbols, SYMBOL_RULE } from "./symbols.js";
import { QuoteTable } from "./table.js";
import { loadSort, loadWatchlist, saveSort, saveWatchlist, shareUrl } from "./watchlist.js";

const $ = (id) => document.getElementById(id);
const input = $("symbol-input");
const message = $("message");
const status = $("conn-status");
const statusText = status.querySelector(".conn-text");
const latencyEl = $("latency");
const emptyEl = $("empty");
const summaryEl = $("summary");

/** Counters for the curious (and for the browser tests): frames rendered, quotes applied or ignored. */
const stats = { frames: 0, applied: 0, ignored: 0, perSecond: 0, latencyMs: null, latencyMaxMs: null };
window.tickerStats = stats;

const pending = new Map(); // symbol → newest Q not yet on screen
const lastSeq = new Map(); // symbol → highest `q` seen on this connection
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
  if (!symbols.length) return;
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

function onMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "quotes":
    case "snapshot":
      receive(msg.data);
      break;
    case "subscribed":
      if (Array.isArray(msg.symbols)) serverSet = new Set(msg.symbols);
      break;
    case "error":
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

function onOpen() {
  outstanding = [];
  lastSeq.clear(); // a restarted server counts its sequences from scratch
  sendOp("subscribe", table.symbols, "resync");
}

function onState(state, info) {
  status.dataset.state = state;
  if (state === "connected") {
    statusText.textContent = "Live";
    status.title = info.rttMs === null ? "Connected" : `Connected · round trip ${info.rttMs} ms`;
    return;
  }
  pending.clear();
  table.markStale();
  if (state === "reconnecting") {
    statusText.textContent = "Reconnecting…";
    status.title = `Connection lost · attempt ${info.attempt}`;
  } else {
    statusText.textContent = info.reason === "offline" ? "Offline" : "Disconnected";
    status.title = info.reason === "offline" ? "No network · waiting for it to return" : "Trying to connect";
  }
}

const conn = new Connection(socketUrl(), { onState, onOpen, onMessage });

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
  try {
    const res = await fetch("/api/symbols", { headers: { Accept: "application/json" } });
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

const initial = loadWatchlist();
table.setSymbols(initial.symbols);
table.setSort(loadSort());
if (initial.rejected.length) {
  say(`Ignored from the link: ${initial.rejected.map((s) => `“${s}”`).join(", ")} (use ${SYMBOL_RULE}).`, "error");
}
refreshSummary();
$("add-form").addEventListener("submit", addFromInput);
$("share").addEventListener("click", share);
conn.start();
loadSuggestions();
