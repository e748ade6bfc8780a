// The trader's page: wires the watchlist, the table and the connection together.
// Incoming quotes go into a map (newest per symbol) and reach the DOM at most once per animation frame.
// /config.json says first whether the server wants a token (`--auth jwt`); then the page signs in
// over the socket and refreshes the token before it expires (see auth.js). The add box searches the
// server's symbol directory (search.js); rows show company names (names.js) and the state of each
// symbol the server says is not live, which the connection pill sums up (pill.js). A click or Enter on
// a row opens its detail panel (detail.js): every field of the quote and a live chart of its bars, which
// this module subscribes over the same socket (`subscribe_bars`) while the panel shows them.
// The socket sends changed-fields deltas (`?delta=1`), merged into full quotes (deltas.js); rows on screen
// get every update, rows out of view and a hidden tab's rows one a second (`max_hz`, rates.js).

import { refreshDelay, TokenSource } from "./auth.js";
import { backoffDelay, Connection, socketUrl } from "./connection.js";
import { PageQuotes } from "./deltas.js";
import { DetailPanel, HISTORY, readLocation } from "./detail.js";
import { NameBook } from "./names.js";
import { pillFor } from "./pill.js";
import { RowRates } from "./rates.js";
import { namesIt, SymbolSearch } from "./search.js";
import { normalizeSymbol, parseSymbols, SYMBOL_RULE } from "./symbols.js";
import { delayLabel, QuoteTable, STATE_BADGE } from "./table.js";
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

/**
 * Counters for the curious (and for the browser tests): frames rendered, quotes applied or ignored, live
 * bars, how many symbols the server's last `subscribed` said it throttles (its `rates`), and the epoch of the
 * `q` shown (the last snapshot's `e`).
 */
const stats = { frames: 0, applied: 0, ignored: 0, perSecond: 0, latencyMs: null, latencyMaxMs: null, bars: 0, throttled: 0, epoch: null };
window.tickerStats = stats;

const pending = new Map(); // symbol → newest merged quote not yet on screen
const book = new PageQuotes(); // symbol → merged quote on this connection (snapshots replace, deltas merge)
let delayedSet = new Set(); // the symbols the server sends delayed, as its last `subscribed` said
const symStates = new Map(); // symbol → {state, reason} of the subscribed symbols that are not live
const adding = new Set(); // symbols asked for, whose row waits for the server to take them
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
  onOpen: (sym) => openDetail(sym),
});

// Rate changes (a row scrolled in or out of view, the tab hidden or shown): a subscribe per rate.
const rates = new RowRates((symbols, rate) => sendOp("subscribe", symbols, "rate", {}, rate) !== null);

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
  renderStatus();
}

/** The request headers of the HTTP API: with `--auth jwt` the current token, or null while there is none. */
function apiHeaders() {
  const headers = { Accept: "application/json" };
  if (!authOn) return headers;
  if (!tokens?.token) return null;
  headers.Authorization = `Bearer ${tokens.token.value}`;
  return headers;
}

const names = new NameBook({
  headers: apiHeaders,
  onName: (sym, name) => {
    table.setName(sym, name);
    if (detail.symbol === sym) detail.refreshInfo();
  },
});
const search = new SymbolSearch(input, $("symbol-suggestions"), {
  headers: apiHeaders,
  onChoose: (entry) => {
    names.remember(entry.s, entry.name);
    input.value = "";
    addSymbols([entry.s]);
  },
});

// ---- the detail panel ---------------------------------------------------------------------------

const entries = new Map(); // symbol → Promise of its directory entry (or null), asked once per page view

function entryOf(sym) {
  if (!entries.has(sym)) {
    const headers = apiHeaders();
    const ask = headers
      ? fetch(`/api/symbols/${encodeURIComponent(sym)}`, { headers })
          .then((res) => (res.ok ? res.json() : null))
          .catch(() => null)
      : Promise.resolve(null);
    entries.set(
      sym,
      ask.then((entry) => {
        if (!entry || entry.s !== sym) {
          entries.delete(sym); // asked again next time
          return null;
        }
        names.remember(sym, entry.name);
        return entry;
      }),
    );
  }
  return entries.get(sym);
}

/** The state line of the panel: live, the symbol's state, or not connected; "Delayed ..." when it is. */
function stateOf(sym) {
  if (connState !== "connected") return { state: "stale", label: "Not connected", reason: "" };
  const st = symStates.get(sym);
  const delayed = delayedSet.has(sym) ? ` · ${delayText}` : "";
  if (st) return { state: st.state, label: (STATE_BADGE[st.state] || st.state) + delayed, reason: st.reason };
  return { state: "live", label: `Live${delayed}`, reason: "" };
}

// The bars subscription is followed by a ping like the quote ops: the errors before its pong are its own.
function sendBarsOp(msg, kind) {
  if (!conn || (authOn && !authed) || !conn.send(msg)) return; // onOpen (or the sign-in) sends it again
  opSeq += 1;
  const id = `op-${opSeq}`;
  conn.send({ op: "ping", id });
  outstanding.push({ id, op: msg.op, symbols: [msg.symbol], interval: msg.interval, kind, errors: [] });
}

// `bars_unsubscribed`: the answer to the page's own unsubscribe_bars (an op still waiting for its pong), or
// the server ended the panel's subscription (a refreshed token forbids the symbol, a pending symbol turned
// out unknown): then the panel says so rather than freeze.
function barsEnded(symbol, interval) {
  const own = outstanding.find(
    (op) => op.kind === "bars-off" && !op.answered && op.symbols[0] === symbol && op.interval === interval,
  );
  if (own) {
    own.answered = true;
    return;
  }
  const sub = detail.subscription;
  if (sub && sub.symbol === symbol && sub.interval === interval) detail.barsEnded();
}

function subscribeBars(symbol, interval) {
  sendBarsOp({ op: "subscribe_bars", symbol, interval, history: HISTORY[interval] }, "bars");
}

function unsubscribeBars(symbol, interval) {
  sendBarsOp({ op: "unsubscribe_bars", symbol, interval }, "bars-off");
}

const detail = new DetailPanel($("detail"), {
  quoteOf: (sym) => table.quote(sym),
  nameOf: (sym) => names.get(sym),
  stateOf,
  entryOf,
  onSubscribe: subscribeBars,
  onUnsubscribe: unsubscribeBars,
  onClose: () => {
    table.setOpen(null);
    rates.pin(null);
  },
});

function openDetail(sym, options = {}) {
  if (!table.has(sym)) return;
  table.setOpen(sym);
  rates.pin(sym);
  detail.open(sym, { returnTo: table.rowElement(sym), ...options });
}

// After a (re)connect and sign-in: the panel's bars again.
function resubscribeBars() {
  const sub = detail.subscription;
  if (sub) subscribeBars(sub.symbol, sub.interval);
}

function addRow(sym) {
  table.add(sym);
  rates.observe(sym, table.rowElement(sym));
  table.setName(sym, names.get(sym));
  const st = symStates.get(sym);
  if (st) table.setState(sym, st.state, st.reason);
}

// ---- subscriptions ------------------------------------------------------------------------------
// Each subscribe/unsubscribe is followed by a ping with id "op-N". Replies arrive in order, so every
// `error` before that pong belongs to op N. An add's rows appear only for the symbols the server took.

let opSeq = 0;
let outstanding = []; // ops awaiting their barrier pong, oldest first
let serverSet = new Set();

// Returns the op, or null when it could not be sent (the next resubscribe sends the whole list).
// `maxHz`: a subscribe's rate (`max_hz`), null for the full rate.
function sendOp(op, symbols, kind, extra = {}, maxHz = null) {
  if (!symbols.length || !conn || (authOn && !authed)) return null;
  opSeq += 1;
  const id = `op-${opSeq}`;
  const msg = maxHz === null ? { op, symbols } : { op, symbols, max_hz: maxHz };
  if (!conn.send(msg)) return null; // not connected: onOpen resubscribes the whole list
  conn.send({ op: "ping", id });
  const entry = { id, op, symbols, kind, errors: [], ...extra };
  outstanding.push(entry);
  return entry;
}

// Subscribe every row (after a connect or sign-in), one subscribe per rate: rows on screen first.
function subscribeAll() {
  for (const [rate, symbols] of rates.plan(table.symbols)) {
    if (sendOp("subscribe", symbols, "resync", {}, rate)) rates.asked(symbols, rate);
  }
}

// An add is settled: the symbols the server took have their rows (see `subscribed`), the others none.
function settleAdd(op) {
  const taken = op.symbols.filter((s) => serverSet.has(s));
  const refused = op.symbols.filter((s) => !serverSet.has(s));
  for (const sym of op.symbols) adding.delete(sym);
  for (const sym of taken) if (!table.has(sym)) addRow(sym);
  for (const sym of refused) if (table.has(sym)) dropRow(sym);
  for (const sym of refused) rates.forget(sym);
  persist();
  const unknown = op.errors.filter((e) => e.code === "unknown_symbol");
  const other = op.errors.filter((e) => e.code !== "unknown_symbol");
  const parts = [...op.before];
  if (unknown.length) parts.push(...unknown.map((e) => e.message || e.code));
  const notAdded = refused.filter((s) => !unknown.some((e) => Array.isArray(e.symbols) && e.symbols.includes(s)));
  if (other.length) {
    const text = other.map((e) => e.message || e.code).join(" ");
    parts.push(notAdded.length ? `Not added: ${notAdded.join(", ")}. ${text}` : text);
  }
  if (taken.length) parts.push(`Added ${taken.join(", ")}.`);
  parts.push(...op.after);
  const failed = refused.length > 0 || op.invalid.length > 0;
  say(parts.join(" "), failed || op.errors.length ? "error" : "info", failed);
  // What could not be added stays in the box for fixing (unless the trader typed on meanwhile).
  // (For a typo, the Down arrow then opens the list of the closest matches.)
  if (input.value === op.typed) input.value = [...refused, ...op.invalid].join(" ");
}

// Names for the rows whose symbols the server took and knows (a pending one's comes once it is live).
function fetchNames(symbols) {
  names.fetchMissing(symbols.filter((s) => serverSet.has(s) && table.has(s) && symStates.get(s)?.state !== "pending"));
}

function settle(op) {
  if (op.kind === "bars") {
    const sub = detail.subscription;
    if (op.errors.length && sub && sub.symbol === op.symbols[0]) {
      detail.barsFailed(op.errors.map((e) => e.message || e.code));
    }
    return;
  }
  if (op.kind === "bars-off") return; // nothing to say: the panel has moved on
  if (op.kind === "add") settleAdd(op);
  else if (op.errors.length) say(op.errors.map((e) => e.message || e.code).join(" "), "error");
  if (op.op === "subscribe" && op.kind !== "rate") fetchNames(op.symbols);
}

// Symbols the user may not see (`forbidden_symbol`, on a subscribe or after a refresh narrowed the
// entitlements) leave the table and the saved watchlist, like symbols the server refused.
function dropForbidden(symbols) {
  const gone = symbols.filter((s) => typeof s === "string" && table.has(s));
  for (const sym of gone) dropRow(sym);
  if (gone.length) persist();
}

function clearStates() {
  for (const sym of symStates.keys()) table.setState(sym, "live", "");
  symStates.clear();
}

// `status`: the symbols whose state changed (a symbol back to live clears its badge).
function applyStatus(data) {
  if (!Array.isArray(data)) return;
  for (const e of data) {
    if (!e || typeof e.s !== "string" || typeof e.state !== "string") continue;
    const reason = typeof e.reason === "string" ? e.reason : "";
    if (symStates.get(e.s)?.state === "pending" && e.state !== "pending") fetchNames([e.s]);
    if (e.state === "live") symStates.delete(e.s);
    else symStates.set(e.s, { state: e.state, reason });
    table.setState(e.s, e.state, reason);
  }
  renderStatus();
  detail.refreshInfo();
}

function onMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "quotes":
    case "snapshot":
      receive(msg.data, msg.type === "snapshot", msg.e);
      break;
    case "subscribed":
      if (Array.isArray(msg.symbols)) {
        serverSet = new Set(msg.symbols);
        // Rows of the symbols being added appear once the server takes them (before their snapshot).
        const taken = [...adding].filter((s) => serverSet.has(s) && !table.has(s));
        for (const sym of taken) addRow(sym);
        for (const sym of [...symStates.keys()]) if (!serverSet.has(sym)) symStates.delete(sym);
        if (taken.length) persist();
      }
      setDelayed(new Set(Array.isArray(msg.delayed) ? msg.delayed : []));
      if (msg.rates && typeof msg.rates === "object") stats.throttled = Object.keys(msg.rates).length;
      break;
    case "status":
      applyStatus(msg.data);
      break;
    case "bars":
      detail.setBars(msg.s, msg.interval, msg.data);
      break;
    case "bar":
      stats.bars += 1;
      detail.addBar(msg.s, msg.interval, msg.bar);
      break;
    case "bars_unsubscribed":
      barsEnded(msg.s, msg.interval);
      break;
    case "authenticated":
      onAuthenticated(msg);
      break;
    case "error":
      if (msg.code === "unauthorized" && refreshing !== null) {
        refreshRefused(); // the server keeps the token in force: get another one
        break;
      }
      // Symbols the server will not carry leave the table (a saved or linked list, or a symbol that
      // was pending and turned out unknown once the directory loaded).
      if ((msg.code === "forbidden_symbol" || msg.code === "unknown_symbol") && Array.isArray(msg.symbols)) {
        dropForbidden(msg.symbols);
      }
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

// A symbol that moved between tiers (a refresh changed the entitlements) takes its next entry whatever its
// `q`: delayed entries keep their original `q`, below the real-time ones already applied.
function setDelayed(delayed) {
  for (const sym of delayedSet) if (!delayed.has(sym)) book.retier(sym);
  for (const sym of delayed) if (!delayedSet.has(sym)) book.retier(sym);
  delayedSet = delayed;
  table.setDelayed(delayed, delayText);
  detail.refreshInfo();
}

function onOpen() {
  outstanding = [];
  book.newConnection(); // deltas start over; the snapshot's `e` says whether the `q` shown still count
  rates.reset();
  stats.throttled = 0;
  delayedSet = new Set();
  refreshing = null;
  clearStates(); // the server says again which symbols are not live
  if (authOn) {
    authed = false;
    conn.send({ op: "auth", token: socketToken }); // the first message; subscribing waits for the answer
    renderStatus();
    return;
  }
  subscribeAll();
  resubscribeBars();
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
    table.markStale(); // says it all: no state badges on top
    clearStates();
    // Adds the server did not answer: their rows go in now and the resubscribe asks again.
    if (adding.size) {
      for (const sym of adding) if (!table.has(sym)) addRow(sym);
      adding.clear();
      persist();
    }
  }
  renderStatus();
  detail.refreshInfo();
}

// data-feed on the pill, while connected: "live" or the worst state among the watched symbols.
function setFeed(feed) {
  if ((status.dataset.feed ?? null) === feed) return;
  if (feed === null) delete status.dataset.feed;
  else status.dataset.feed = feed;
}

function renderStatus() {
  status.dataset.state = connState;
  const info = connInfo;
  setFeed(null);
  if (connState === "connected") {
    if (authOn && !authed) {
      statusText.textContent = "Signing in…";
      status.title = "Connected · waiting for the server to accept the sign-in";
      return;
    }
    const problems = table.symbols.filter((s) => symStates.has(s)).map((s) => [s, symStates.get(s)]);
    const pill = pillFor(problems);
    setFeed(pill.feed);
    statusText.textContent = pill.text;
    const link = info.rttMs === null ? "Connected" : `Connected · round trip ${info.rttMs} ms`;
    status.title = pill.title ? `${link} · ${pill.title}` : link;
    return;
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

let authOn = false;
let delayText = delayLabel(900);
let tokens = null; // TokenSource, with --auth jwt and a token URL
let socketToken = null; // the token the current socket signs in with
let authed = false; // the current socket was answered `authenticated`
let refreshTimer = 0;
let refreshing = null; // the token of a refresh the server has not answered yet
let refreshFailures = 0; // refreshes in a row that failed (endpoint unreachable, token refused)
let signInTimer = 0;

// Before each connect: the current token, or a fresh one when it is close to expiry or was refused.
async function beforeConnect() {
  socketToken = tokens ? await tokens.current() : null;
  return socketToken !== null; // null: sign-in required, wait for the retry timer or the button
}

function onAuthenticated(msg) {
  const first = !authed;
  authed = true;
  if (refreshing !== null) socketToken = refreshing; // the refresh's token is the one in force now
  refreshing = null;
  refreshFailures = 0;
  clearTimeout(refreshTimer);
  const expMs = isNum(msg.exp) ? msg.exp * 1000 : tokens?.token?.expMs;
  refreshTimer = isNum(expMs) ? setTimeout(refreshToken, refreshDelay(expMs)) : 0;
  if (!first) return; // a refresh: entitlements may have narrowed (the server sends subscribed, then errors)
  renderStatus();
  subscribeAll();
  resubscribeBars();
}

// Replace the live socket's token before it expires, without reconnecting.
async function refreshToken() {
  refreshTimer = 0;
  let token;
  try {
    token = await tokens.fresh();
  } catch {
    retryRefresh(); // the endpoint could not be reached
    return;
  }
  // null: sign-in required (the banner says so); the socket lives until its token expires.
  if (token === null || !authed) return;
  if (conn.send({ op: "refresh", token })) refreshing = token;
}

// The server refused the refresh's token (`unauthorized`): the one in force stays in force, here too
// (for the API's requests and a reconnect), and another token is fetched after a backoff.
function refreshRefused() {
  refreshing = null;
  tokens.keep(socketToken);
  retryRefresh();
}

function retryRefresh() {
  if (!authed) return; // the next connect fetches a token anyway
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshToken, backoffDelay(refreshFailures));
  refreshFailures += 1;
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

// A `snapshot`'s entries (`replace`) are full quotes and replace what the page holds; a `quotes` entry is
// merged into it (see deltas.js). Rows show merged quotes only, and only those with a price. `epoch`: the
// snapshot's `e`; under the same one (a reconnect to any node) the page never shows an older `q` again.
function receive(data, replace, epoch) {
  if (replace) {
    book.snapshot(epoch);
    stats.epoch = book.epoch;
  }
  if (!Array.isArray(data)) return;
  for (const entry of data) {
    if (!entry || typeof entry.s !== "string" || !table.has(entry.s)) continue;
    const q = book.apply(entry, replace);
    if (q === null) {
      stats.ignored += 1; // a repeat or an out-of-date entry
      continue;
    }
    if (isNum(q.p)) pending.set(q.s, q);
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
  if (detail.symbol) {
    const q = batch.find((x) => x.s === detail.symbol);
    if (q) detail.showQuote(q);
  }
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
  if (detail.symbol === sym) detail.close();
  table.remove(sym);
  rates.forget(sym);
  pending.delete(sym);
  book.delete(sym);
  symStates.delete(sym);
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

// Add `symbols` (valid ones). `invalid`: pieces of `typed` (the box's text) that break the symbol rule.
// While connected, rows appear once the server takes their symbols (settleAdd says what happened);
// otherwise at once, and the next subscribe asks the server.
function addSymbols(symbols, invalid = [], typed = "") {
  const fresh = symbols.filter((s) => !table.has(s) && !adding.has(s));
  const already = symbols.filter((s) => table.has(s));
  const before = [];
  if (invalid.length) {
    const quoted = invalid.map((s) => `“${s}”`).join(", ");
    before.push(`${quoted} ${invalid.length === 1 ? "is not a valid symbol" : "are not valid symbols"}: use ${SYMBOL_RULE}.`);
  }
  const after = [];
  if (already.length) after.push(`${already.join(", ")} ${already.length === 1 ? "is" : "are"} already in the watchlist.`);
  // New rows go last (unless sorted by symbol): below the viewport when the last row is, so at its rate.
  const last = table.sort?.key === "symbol" ? null : ($("rows").lastElementChild?.dataset.symbol ?? null);
  const rate = rates.wantAfter(last);
  const op = fresh.length ? sendOp("subscribe", fresh, "add", { before, after, invalid, typed }, rate) : null;
  if (op) {
    for (const sym of fresh) adding.add(sym);
    rates.asked(fresh, rate);
    return;
  }
  for (const sym of fresh) addRow(sym);
  if (fresh.length) persist();
  if (fresh.length) before.push(`Added ${fresh.join(", ")}.`);
  say([...before, ...after].join(" "), invalid.length ? "error" : "info", invalid.length > 0);
  if (input.value === typed) input.value = invalid.join(" "); // keep what needs fixing, clear what was added
}

// What the directory says `text` asks for: the exact ticker, or the best match when `text` names it
// ("tesla", "Tesla Inc" → TSLA); null when it does neither (a list of tickers, or a typo).
async function resolve(text) {
  const results = await search.results(text);
  const sym = normalizeSymbol(text);
  const exact = sym ? results.find((r) => r.s === sym) : undefined;
  if (exact) return exact;
  const top = results[0];
  return top && namesIt(text, top.name) ? top : null;
}

// Enter or Add (a highlighted suggestion is picked by search.js before this).
let addTurn = 0; // the latest Enter/Add: an older one still waiting for its lookup must not speak after it

async function addFromInput(ev) {
  ev.preventDefault();
  const turn = ++addTurn;
  const typed = input.value;
  const text = typed.trim();
  search.close();
  input.focus();
  if (!text) {
    say("Type a symbol to add, for example AAPL.", "error", true);
    return;
  }
  const found = await resolve(text);
  if (turn !== addTurn) return; // the trader has moved on (another Enter, an emptied box): this answer is stale
  if (found) {
    names.remember(found.s, found.name);
    addSymbols([found.s], [], typed);
    return;
  }
  const { valid, invalid } = parseSymbols(text);
  addSymbols(valid, invalid, typed);
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
  conn = new Connection(socketUrl(window.location, "delta=1"), handlers);
  conn.start();
}

const initial = loadWatchlist();
table.setSymbols(initial.symbols);
for (const sym of initial.symbols) {
  table.setName(sym, names.get(sym));
  rates.observe(sym, table.rowElement(sym));
}
table.setSort(loadSort());
if (initial.rejected.length) {
  say(`Ignored from the link: ${initial.rejected.map((s) => `“${s}”`).join(", ")} (use ${SYMBOL_RULE}).`, "error");
}
refreshSummary();
$("add-form").addEventListener("submit", addFromInput);
$("share").addEventListener("click", share);
// A link with `?s=SYMBOL[&i=INTERVAL]` opens that symbol's panel (the symbol joins the watchlist).
const linked = readLocation();
if (linked) {
  if (!table.has(linked.symbol)) {
    addRow(linked.symbol);
    persist();
  }
  openDetail(linked.symbol, { interval: linked.interval });
}
start();
