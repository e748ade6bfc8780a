// The page's quotes from a socket that sends changed-fields deltas (`/ws?delta=1`, docs/protocol.md):
// one merged, full quote per symbol. A `snapshot` entry replaces the symbol's quote; a `quotes` entry is
// the quote when there is none yet, is ignored when its `q` is not above the one held, and is otherwise
// merged into it (a `null` value deletes that field). Each merge makes a new object, so the quote shown
// before stays as it was (the table compares the two to flash the price cell).

function isNum(x) {
  return typeof x === "number" && Number.isFinite(x);
}

export class PageQuotes {
  constructor() {
    this.quotes = new Map(); // symbol → merged quote
    this.lastSeq = new Map(); // symbol → `q` of the entry applied last (forgotten on a tier move)
    this.fresh = new Set(); // symbols moved between tiers: their next entry is full and replaces the quote
  }

  /**
   * Apply `entry` (a Q entry with a string `s`); `replace` for a `snapshot`'s. Returns the merged quote,
   * or null when the entry was ignored (not newer than the quote held).
   */
  apply(entry, replace) {
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
    if (seq !== undefined) this.lastSeq.set(sym, seq);
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
    this.fresh.add(sym);
  }

  delete(sym) {
    this.quotes.delete(sym);
    this.lastSeq.delete(sym);
    this.fresh.delete(sym);
  }

  /** A new connection: every symbol starts again from its snapshot. */
  clear() {
    this.quotes.clear();
    this.lastSeq.clear();
    this.fresh.clear();
  }
}
