// The detail panel: a click or Enter on a row opens it (a side panel on a wide screen, a full sheet on a
// phone). It shows the symbol's name, exchange and state, every field of its quote (those hidden on a
// phone too) and an intraday chart (chart.js) of 1m, 5m, 1h or 1d bars, filled from the server's history
// and updated live (the caller subscribes and unsubscribes bars over its socket: onSubscribe and
// onUnsubscribe; a later `bars` replaces the history, and a subscription the server ends says so). Escape or the close button closes it and the focus goes back to the row. The symbol
// and the interval are in the URL (`?s=AAPL&i=1m`), so a link opens the panel.

import { BarChart } from "./chart.js";
import { normalizeSymbol } from "./symbols.js";
import { fieldText } from "./table.js";

export const INTERVALS = ["1m", "5m", "1h", "1d"];
export const DEFAULT_INTERVAL = "1m";
/** Bars of history asked for per interval: a day of 1m, two days of 5m, two weeks of 1h, a year of 1d. */
export const HISTORY = { "1m": 1440, "5m": 576, "1h": 336, "1d": 366 };

/** The quote fields the panel lists, in order, with their labels. */
export const FIELDS = [
  ["p", "Last"],
  ["c", "Change"],
  ["cp", "Change %"],
  ["b", "Bid"],
  ["a", "Ask"],
  ["o", "Open"],
  ["h", "High"],
  ["l", "Low"],
  ["pc", "Previous close"],
  ["vw", "VWAP"],
  ["v", "Volume"],
  ["t", "Updated"],
];

/** The panel a URL asks for: {symbol, interval}, or null (no `s`, or not a valid symbol). */
export function readLocation(search = window.location.search) {
  const params = new URLSearchParams(search);
  const symbol = normalizeSymbol(params.get("s") || "");
  if (!symbol) return null;
  const i = params.get("i");
  return { symbol, interval: INTERVALS.includes(i) ? i : DEFAULT_INTERVAL };
}

/** `href` with the panel's `s` and `i` set (or removed, for a null symbol); other parameters kept. */
export function withPanel(href, symbol, interval) {
  const url = new URL(href);
  const params = new URLSearchParams(url.search);
  params.delete("s");
  params.delete("i");
  const rest = params.toString().replace(/%2C/gi, ","); // keep ?symbols=A,B readable
  const mine = symbol ? `s=${encodeURIComponent(symbol)}&i=${interval}` : "";
  url.search = [rest, mine].filter(Boolean).join("&");
  return url.toString();
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class DetailPanel {
  /**
   * root: the panel's element (index.html); hooks: quoteOf(sym) the newest quote or null, nameOf(sym),
   * stateOf(sym) → {state, label, reason}, entryOf(sym) → a Promise of the directory entry (or null),
   * onSubscribe(sym, interval) and onUnsubscribe(sym, interval) for the bars, onClose(sym) after it closed.
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.symbol = null;
    this.interval = DEFAULT_INTERVAL;
    this.ready = false; // the current subscription's history has arrived
    this.ended = false; // the server ended the current subscription (bars_unsubscribed)
    this.q = null;
    this.returnTo = null;
    const $ = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.symEl = root.querySelector(".detail-sym");
    this.nameEl = $("detail-name");
    this.exchangeEl = $("detail-exchange");
    this.stateEl = $("detail-state");
    this.priceEl = root.querySelector(".detail-price");
    this.moveEl = root.querySelector(".detail-move");
    this.noteEl = root.querySelector(".chart-note");
    this.chartEl = $("detail-chart");
    this.chart = new BarChart(this.chartEl);
    this.buttons = new Map(INTERVALS.map((iv) => [iv, $(`detail-interval-${iv}`)]));
    this.fields = new Map();
    const list = root.querySelector(".detail-fields");
    for (const [key, label] of FIELDS) {
      const wrap = el("div", "field");
      const dd = el("dd", "num", "—");
      dd.dataset.testid = `detail-field-${key}`;
      dd.dataset.field = key;
      wrap.append(el("dt", "", label), dd);
      list.append(wrap);
      this.fields.set(key, dd);
    }
    $("detail-close").addEventListener("click", () => this.close());
    for (const [iv, btn] of this.buttons) btn.addEventListener("click", () => this.setInterval(iv));
    document.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape" || !this.symbol || ev.defaultPrevented) return;
      if (ev.target instanceof Element && ev.target.closest("#add-form")) return; // the search box's own Escape
      ev.preventDefault();
      this.close();
    });
  }

  get isOpen() {
    return this.symbol !== null;
  }

  /**
   * Show `sym` (at `interval`, else the current one). `focus`: move the focus into the panel (and back to
   * `returnTo`, or the row, when it closes).
   */
  open(sym, { interval = this.interval, focus = true, returnTo = null } = {}) {
    const iv = INTERVALS.includes(interval) ? interval : DEFAULT_INTERVAL;
    if (this.symbol !== sym || this.interval !== iv) {
      if (this.symbol) this.hooks.onUnsubscribe(this.symbol, this.interval);
      const fresh = this.symbol !== sym;
      this.symbol = sym;
      this.interval = iv;
      if (fresh) this._fill();
      this._startBars();
    }
    this.root.hidden = false;
    document.body.classList.add("detail-open");
    this._syncUrl();
    if (focus) {
      this.returnTo = returnTo;
      this.root.focus();
    }
  }

  close() {
    if (!this.symbol) return;
    const sym = this.symbol;
    this.hooks.onUnsubscribe(sym, this.interval);
    this.symbol = null;
    this.ready = false;
    this.root.hidden = true;
    document.body.classList.remove("detail-open");
    this._syncUrl();
    this.hooks.onClose(sym);
    const back = this.returnTo && this.returnTo.isConnected ? this.returnTo : null;
    this.returnTo = null;
    if (back && this.root.contains(document.activeElement)) back.focus();
    else if (back && document.activeElement === document.body) back.focus();
  }

  /** Switch the chart to `interval` (its history is asked for again). */
  setInterval(interval) {
    if (!this.symbol || !INTERVALS.includes(interval)) return;
    if (interval === this.interval && !this.ended) return; // an ended chart's own interval: subscribe again
    this.hooks.onUnsubscribe(this.symbol, this.interval);
    this.interval = interval;
    this._startBars();
    this._syncUrl();
  }

  /** The subscription the socket should hold for the panel: {symbol, interval}, or null when closed. */
  get subscription() {
    return this.symbol ? { symbol: this.symbol, interval: this.interval } : null;
  }

  /** A newer quote of the panel's symbol. */
  showQuote(q) {
    if (!q || q.s !== this.symbol) return;
    this.q = q;
    for (const [key, dd] of this.fields) {
      const text = fieldText(q, key);
      if (dd._text !== text) {
        dd._text = text;
        dd.textContent = text;
      }
    }
    const price = fieldText(q, "p");
    if (this.priceEl.textContent !== price) this.priceEl.textContent = price;
    const c = typeof q.c === "number" ? q.c : q.cp;
    const dir = typeof c !== "number" || c === 0 ? "flat" : c > 0 ? "up" : "down";
    const move = `${fieldText(q, "c")} (${fieldText(q, "cp")})`;
    if (this.moveEl.textContent !== move) this.moveEl.textContent = move;
    if (this.moveEl.dataset.dir !== dir) this.moveEl.dataset.dir = dir;
  }

  /** The name, exchange or state may have changed: show them again. */
  refreshInfo() {
    if (!this.symbol) return;
    const name = this.hooks.nameOf(this.symbol);
    this.nameEl.textContent = name && name !== this.symbol ? name : "";
    const st = this.hooks.stateOf(this.symbol);
    this.stateEl.textContent = st.label;
    this.stateEl.title = st.reason || "";
    this.stateEl.dataset.state = st.state;
  }

  /**
   * The history of a bars subscription (`bars` message). It may come again for the same subscription (the
   * server's history arrived after its first answer, or a resubscribe): it replaces what the chart holds.
   */
  setBars(sym, interval, bars) {
    if (sym !== this.symbol || interval !== this.interval) return;
    const token = this.token;
    this.chart.mount().then(
      () => {
        if (token !== this.token) return; // the panel moved on meanwhile
        this.ready = true;
        this.ended = false;
        this.chart.setBars(bars);
        this._note(this.chart.count ? "" : "No bars yet for this interval.", this.chart.count ? "ready" : "empty");
        for (const b of this.pendingBars.splice(0)) this.chart.upsert(b);
      },
      (err) => this._note(`The chart could not be shown: ${err.message}.`, "error"),
    );
  }

  /** A live bar (`bar` message): upserted by its start time. */
  addBar(sym, interval, bar) {
    if (sym !== this.symbol || interval !== this.interval || this.ended) return;
    if (!this.ready) {
      this.pendingBars.push(bar); // before its history has been drawn
      return;
    }
    this.chart.upsert(bar);
    if (this.chartEl.dataset.state !== "ready" && this.chart.count) this._note("", "ready");
  }

  /** The server refused the bars subscription (its error messages). */
  barsFailed(messages) {
    if (!this.symbol) return;
    this._note(messages.join(" ") || "The server sent no bars.", "error");
  }

  /**
   * The server ended the panel's bars subscription (a `bars_unsubscribed` the page did not ask for): the chart
   * keeps what it has and says that it is no longer live; an interval button subscribes again.
   */
  barsEnded() {
    if (!this.symbol) return;
    this.ended = true;
    this._note("The server ended this chart's live bars. Choose an interval to try again.", "ended");
  }

  _startBars() {
    this.token = (this.token ?? 0) + 1;
    this.ready = false;
    this.ended = false;
    this.pendingBars = [];
    for (const [iv, btn] of this.buttons) btn.setAttribute("aria-pressed", iv === this.interval ? "true" : "false");
    this.chartEl.dataset.interval = this.interval;
    this.chart.setInterval(this.interval);
    this.chart.clear();
    this._note("Loading bars…", "loading");
    this.chart.mount().catch((err) => this._note(`The chart could not be shown: ${err.message}.`, "error"));
    this.hooks.onSubscribe(this.symbol, this.interval);
  }

  _note(text, state) {
    this.noteEl.textContent = text;
    this.noteEl.hidden = !text;
    this.chartEl.dataset.state = state;
  }

  // A new symbol: its header and fields from what the page knows, its exchange from the directory.
  _fill() {
    const sym = this.symbol;
    this.symEl.textContent = sym;
    this.exchangeEl.textContent = "";
    this.q = null;
    for (const dd of this.fields.values()) {
      dd._text = "—";
      dd.textContent = "—";
    }
    this.priceEl.textContent = "—";
    this.moveEl.textContent = "";
    this.refreshInfo();
    const q = this.hooks.quoteOf(sym);
    if (q) this.showQuote(q);
    this.hooks.entryOf(sym).then((entry) => {
      if (this.symbol !== sym || !entry) return;
      this.exchangeEl.textContent = entry.exchange || "";
      if (entry.name && !this.nameEl.textContent && entry.name !== sym) this.nameEl.textContent = entry.name;
    });
  }

  _syncUrl() {
    const next = withPanel(window.location.href, this.symbol, this.interval);
    if (next !== window.location.href) window.history.replaceState(null, "", next);
  }
}
