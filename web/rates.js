// How fast the page asks the server for each row's quotes (docs/clients.md, "The page"): the full rate
// (a subscribe without `max_hz`) for rows on screen and for the detail panel's symbol, OFFSCREEN_HZ for
// rows scrolled out of view, and OFFSCREEN_HZ for every row while the tab is hidden. An
// IntersectionObserver reports rows entering and leaving the viewport; its reports are gathered for
// SETTLE_MS (a scroll moves many rows, frame after frame) and then sent as at most one subscribe per rate,
// of the symbols whose rate changes only (subscribing a symbol already held changes its rate). A change of
// the tab's visibility is sent at once.

export const OFFSCREEN_HZ = 1;
const SETTLE_MS = 100;

/** Symbols grouped by rate: Map of rate (null: the full rate) → symbols, the full rate first. */
function byRate(pairs) {
  const groups = new Map([[null, []]]);
  for (const [sym, rate] of pairs) {
    if (!groups.has(rate)) groups.set(rate, []);
    groups.get(rate).push(sym);
  }
  for (const [rate, symbols] of groups) if (!symbols.length) groups.delete(rate);
  return groups;
}

export class RowRates {
  /**
   * `send(symbols, rate)` subscribes `symbols` at `rate` (null: the full rate, no `max_hz`) and returns
   * whether it could (false while not connected: the next full subscribe asks again).
   */
  constructor(send, doc = document) {
    this.send = send;
    this.doc = doc;
    // symbol → {el: its row or null, onScreen: true | false | null (not reported yet), asked: the rate
    // last asked of the server (null: full), undefined when not asked on this connection}
    this.rows = new Map();
    this.pinned = null;
    this.timer = 0;
    this.observer =
      typeof IntersectionObserver === "function" ? new IntersectionObserver((entries) => this._seen(entries)) : null;
    doc.addEventListener("visibilitychange", () => this.flush());
  }

  get hidden() {
    return this.doc.visibilityState === "hidden";
  }

  /** Watch `sym`'s row element `el` (a row added, or its element replaced). */
  observe(sym, el) {
    const row = this._row(sym);
    if (row.el === el) return;
    if (row.el) this.observer?.unobserve(row.el);
    row.el = el;
    this.observer?.observe(el);
  }

  /** `sym` left the watchlist (or was refused): stop watching its row. */
  forget(sym) {
    const row = this.rows.get(sym);
    if (!row) return;
    if (row.el) this.observer?.unobserve(row.el);
    this.rows.delete(sym);
  }

  /** The symbol shown in the detail panel (null: none) gets the full rate wherever its row is. */
  pin(sym) {
    if (this.pinned === sym) return;
    this.pinned = sym;
    this._schedule();
  }

  /** The rate `sym` should have now (null: the full rate). A row not reported yet counts as on screen. */
  want(sym) {
    if (this.hidden) return OFFSCREEN_HZ;
    if (sym === this.pinned) return null;
    return this.rows.get(sym)?.onScreen === false ? OFFSCREEN_HZ : null;
  }

  /**
   * The rate to add symbols at, whose rows do not exist yet and will come after `lastSym`'s row (null:
   * where they go is not known): OFFSCREEN_HZ when the tab is hidden or that row is below the viewport.
   */
  wantAfter(lastSym) {
    if (this.hidden) return OFFSCREEN_HZ;
    const row = lastSym === null ? undefined : this.rows.get(lastSym);
    return row && row.onScreen === false && row.below ? OFFSCREEN_HZ : null;
  }

  /** `symbols` grouped by the rate each should have now (see byRate). */
  plan(symbols) {
    return byRate(symbols.map((sym) => [sym, this.want(sym)]));
  }

  /** The server was asked for `symbols` at `rate` (a symbol without a row yet is taken to be where `rate` says). */
  asked(symbols, rate) {
    for (const sym of symbols) {
      const row = this._row(sym);
      row.asked = rate;
      if (!row.el && row.onScreen === null && rate !== null && !this.hidden) {
        row.onScreen = false; // wantAfter: it goes below the viewport
        row.below = true;
      }
    }
  }

  /** A new connection: nothing is asked on it yet. */
  reset() {
    clearTimeout(this.timer);
    this.timer = 0;
    for (const row of this.rows.values()) row.asked = undefined;
  }

  /** Ask the server for the rate changes not asked for yet (rows that exist and were subscribed only). */
  flush() {
    clearTimeout(this.timer);
    this.timer = 0;
    const changed = [];
    for (const [sym, row] of this.rows) {
      if (!row.el || row.asked === undefined) continue; // its (re)subscribe carries its rate
      const rate = this.want(sym);
      if (rate !== row.asked) changed.push([sym, rate]);
    }
    for (const [rate, symbols] of byRate(changed)) if (this.send(symbols, rate)) this.asked(symbols, rate);
  }

  _row(sym) {
    let row = this.rows.get(sym);
    if (!row) {
      row = { el: null, onScreen: null, below: false, asked: undefined };
      this.rows.set(sym, row);
    }
    return row;
  }

  _seen(entries) {
    let changed = false;
    for (const e of entries) {
      const row = this.rows.get(e.target.dataset.symbol);
      if (!row || row.el !== e.target) continue;
      const bottom = e.rootBounds ? e.rootBounds.bottom : window.innerHeight;
      row.below = !e.isIntersecting && e.boundingClientRect.top >= bottom;
      if (row.onScreen !== e.isIntersecting) {
        row.onScreen = e.isIntersecting;
        changed = true;
      }
    }
    if (changed) this._schedule();
  }

  _schedule() {
    if (!this.timer) this.timer = setTimeout(() => this.flush(), SETTLE_MS);
  }
}
