// The page's quotes from a socket that sends changed-fields deltas (`/ws?delta=1`, docs/protocol.md):
// one merged, full quote per symbol. A `snapshot` entry replaces the symbol's quote; a `quotes` entry is
// the quote when there is none yet, is ignored when its `q` is not above the one held, and is otherwise
// merged into it (a `null` value deletes that field). Each merge makes a new object, so the quote shown
// before stays as it was (the table compares the two to flash the price cell).
//
// The epoch rule (docs/protocol.md): `q` is numbered once at the source, which a snapshot's `e` names. The
// merged quotes are the connection's (the bases of its deltas); the `q` shown last per symbol, and the epoch,
// outlive a reconnect: under the same `e` (any node of the same source) an entry whose `q` is not above the
// one shown is merged but not shown again, so the page never goes back to an older price; another `e` starts
// again.

function isNum(x) {
  return typeof x === "number" && Number.isFinite(x);
}

export class PageQuotes {
  constructor() {
    this.quotes = new Map(); // symbol → merged quote
    this.lastSeq = new Map(); // symbol → `q` of the entry applied last (forgotten on a tier move)
    this.fresh = new Set(); // symbols moved between tiers: their next entry is full and replaces the quote
    this.epoch = null; // the `e` of the source that numbered the `q` shown (null: none said yet)
    this.shown = new Map(); // symbol → `q` of the entry shown last under `epoch` (kept across reconnects)
    this.told = false; // whether this connection said its epoch (its first snapshot)
  }

  /** A `snapshot` message's `e`: another epoch than the one in force starts every symbol again. */
  snapshot(epoch) {
    const e = typeof epoch === "string" ? epoch : null;
    if (e !== this.epoch || (e === null && !this.told)) this.restart(e);
    this.told = true;
  }

  /** Another numbering: forget the `q` shown and merged; the merged quotes stay the bases of the next deltas. */
  restart(epoch) {
    this.epoch = epoch;
    this.shown.clear();
    this.lastSeq.clear();
    this.told = true;
  }

  /**
   * Apply `entry` (a Q entry with a string `s`); `replace` for a `snapshot`'s (after `snapshot(e)`). Returns the
   * merged quote, or null when there is nothing new to show (not newer than the quote held or shown).
   */
  apply(entry, replace) {
    if (!this.told) this.restart(null); // entries before any snapshot: nothing says the numbering goes on
    const sym = entry.s;
    const prev = this.quotes.get(sym);
    const seq = isNum(entry.q) ? entry.q : undefined;
    if (!replace && prev !== undefined && seq !== undefined) {
      const last = this.lastSeq.get(sym);
      if (last !== undefined && seq <= last) return null;
    }
    const next = replace || prev === undefined || this.fresh.has(sym) ? {} : { ...prev };
    this.fresh.delete(sym);
    for (const key of Object.keys(entry)) {
      if (key === "__proto__") continue;
      const value = entry[key];
      if (value === null) delete next[key];
      else next[key] = value;
    }
    this.quotes.set(sym, next);
    if (seq === undefined) return next;
    this.lastSeq.set(sym, seq);
    const shown = this.shown.get(sym);
    if (shown !== undefined && seq <= shown) return null; // shown already, or older (a node behind)
    this.shown.set(sym, seq);
    return next;
  }

  /** The merged quote of `sym`, or undefined. */
  get(sym) {
    return this.quotes.get(sym);
  }

  /**
   * `sym` moved between tiers (real-time, delayed): its next entry is applied whatever its `q` (delayed
   * entries keep their original, lower `q`) and replaces the quote held, which stays shown until then (the
   * first entry of the new tier is full: the other tier's deltas are not of this tier's values).
   */
  retier(sym) {
    this.lastSeq.delete(sym);
    this.shown.delete(sym);
    this.fresh.add(sym);
  }

  delete(sym) {
    this.quotes.delete(sym);
    this.lastSeq.delete(sym);
    this.shown.delete(sym);
    this.fresh.delete(sym);
  }

  /** A new connection: its deltas start from its snapshot, whose `e` says whether the `q` shown still count. */
  newConnection() {
    this.quotes.clear();
    this.lastSeq.clear();
    this.fresh.clear();
    this.told = false;
  }
}
