// The watchlist table: one row per symbol, updated in place (only the cells whose text changed),
// a short flash of the price cell on up and down ticks, a bounded SVG sparkline per row, sorting, stale
// marking, the company name under the ticker, a badge for a symbol that is not live (its state, the
// reason as its tooltip) and the "Delayed" badge of symbols the server sends late (a user not entitled
// to real-time quotes). Wide screens also show the day's open, high and low and a day-range bar. Rows
// are focusable: a click or Enter on one opens its detail panel (detail.js), Up and Down move between rows.

const SVG_NS = "http://www.w3.org/2000/svg";
export const SPARK_POINTS = 60; // points kept per row for its sparkline
const SPARK_BUCKET_MS = 500; // one point per half second: the sparkline shows the last 30 s
const SPARK_W = 60;
const SPARK_H = 20;
const RESORT_MS = 1_000; // a sort on a live column re-orders at most once a second, so rows stay readable
const FLASH_MS = 250; // how long a price cell stays tinted after a tick (short: 2 ticks/s stay readable)

const fmt = {
  price: new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 4 }),
  change: new Intl.NumberFormat(undefined, {
    minimumFractionDigits: 2,
    maximumFractionDigits: 4,
    signDisplay: "exceptZero",
  }),
  pct: new Intl.NumberFormat(undefined, {
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
    signDisplay: "exceptZero",
  }),
  volume: new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 }),
  time: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }),
  day: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" }),
};

/** The badge text of each state that is not live (docs/protocol.md, "Symbol states"). */
export const STATE_BADGE = {
  pending: "Pending",
  down: "Down",
  unavailable: "Unavailable",
  closed: "Closed",
  halted: "Halted",
};

let todayStart = 0; // local midnight today (epoch ms), and when to work it out again
let todayEnd = 0;

/** The time of quote timestamp `t` as shown: "15:59:59" today, "Nov 28 15:59:59" on an earlier day. */
export function quoteTime(t, now = Date.now()) {
  if (now >= todayEnd || now < todayStart) {
    const d = new Date(now);
    todayStart = d.setHours(0, 0, 0, 0);
    todayEnd = new Date(todayStart).setDate(new Date(todayStart).getDate() + 1);
  }
  const time = fmt.time.format(t);
  return t < todayStart ? `${fmt.day.format(t)} ${time}` : time;
}

const NUMERIC_KEYS = new Set(["p", "c", "cp", "o", "h", "l", "b", "a", "v", "t"]);

/** The text of quote field `key` (p b a v c cp o h l pc vw t) of `q`, as the table and the detail panel show it. */
export function fieldText(q, key) {
  const x = q ? q[key] : undefined;
  if (!isNum(x)) return "—";
  switch (key) {
    case "c":
      return fmt.change.format(x);
    case "cp":
      return `${fmt.pct.format(x)}%`;
    case "v":
      return fmt.volume.format(x);
    case "t":
      return quoteTime(x);
    default:
      return fmt.price.format(x);
  }
}

/** Where `p` sits between the day's low `l` and high `h`, 0 to 1 (0.5 for a flat day); null when unknown. */
export function rangePosition(q) {
  if (!q || !isNum(q.p) || !isNum(q.l) || !isNum(q.h) || q.h < q.l) return null;
  if (q.h === q.l) return 0.5;
  return Math.min(1, Math.max(0, (q.p - q.l) / (q.h - q.l)));
}

function isNum(x) {
  return typeof x === "number" && Number.isFinite(x);
}

function cell(tag, className) {
  const el = document.createElement(tag);
  el.className = className;
  el.setAttribute("role", "cell");
  el.textContent = "—";
  el._text = "—";
  return el;
}

function setText(el, text) {
  if (el._text !== text) {
    el._text = text;
    el.textContent = text;
  }
}

/** The badge text for a delay of `seconds`: 900 → "Delayed 15 min", 3 → "Delayed 3 s". */
export function delayLabel(seconds) {
  if (!isNum(seconds) || seconds <= 0) return "Delayed";
  const s = Math.round(seconds);
  if (s < 60) return `Delayed ${s} s`;
  if (s % 3600 === 0) return `Delayed ${s / 3600} h`;
  if (s % 60 === 0) return `Delayed ${s / 60} min`;
  return `Delayed ${Math.floor(s / 60)} min ${s % 60} s`;
}

function direction(x) {
  if (!isNum(x) || x === 0) return "flat";
  return x > 0 ? "up" : "down";
}

class Row {
  constructor(sym) {
    this.sym = sym;
    this.q = null;
    this.history = [];
    this.bucketAt = -Infinity;
    this.flashUntil = 0;
    const tr = document.createElement("tr");
    tr.dataset.testid = `row-${sym}`;
    tr.dataset.symbol = sym;
    tr.className = "waiting";
    tr.setAttribute("role", "row"); // the CSS grid layout needs explicit table roles
    tr.tabIndex = 0; // a click or Enter opens the detail panel
    tr.setAttribute("aria-haspopup", "dialog");
    tr.setAttribute("aria-expanded", "false");
    const th = document.createElement("th");
    th.scope = "row";
    th.setAttribute("role", "rowheader");
    th.className = "col-symbol";
    const name = document.createElement("span");
    name.className = "sym";
    name.textContent = sym;
    const badge = document.createElement("span");
    badge.className = "stale-badge";
    badge.textContent = "stale";
    this.stateBadge = document.createElement("span");
    this.stateBadge.className = "state-badge";
    this.stateBadge.dataset.testid = "row-state";
    this.stateBadge.hidden = true;
    const line = document.createElement("span");
    line.className = "sym-line";
    line.append(name, badge, this.stateBadge);
    this.delayedBadge = document.createElement("span");
    this.delayedBadge.className = "delayed-badge";
    this.delayedBadge.dataset.testid = "delayed-badge";
    this.delayedBadge.hidden = true;
    this.nameEl = document.createElement("span");
    this.nameEl.className = "sym-name";
    this.nameEl.dataset.testid = "row-name";
    this.nameEl.hidden = true;
    const sub = document.createElement("span");
    sub.className = "sub-line";
    sub.append(this.delayedBadge, this.nameEl);
    th.append(line, sub);
    this.state = "live";
    this.price = cell("td", "num col-last");
    this.price.dataset.testid = `price-${sym}`;
    this.change = cell("td", "num col-chg");
    this.pct = cell("td", "num col-pct");
    this.open = cell("td", "num col-open");
    this.high = cell("td", "num col-high");
    this.low = cell("td", "num col-low");
    this.rangeCell = document.createElement("td");
    this.rangeCell.className = "col-range";
    this.rangeCell.setAttribute("role", "cell");
    this.range = document.createElement("span");
    this.range.className = "range";
    this.range.dataset.testid = "day-range";
    this.range.setAttribute("role", "img");
    this.range.setAttribute("aria-label", "Day range unknown");
    this.range.dataset.state = "unknown";
    this.rangeMark = document.createElement("span");
    this.rangeMark.className = "range-mark";
    this.range.append(this.rangeMark);
    this.rangeCell.append(this.range);
    this.rangePos = null;
    this.bid = cell("td", "num col-bid");
    this.ask = cell("td", "num col-ask");
    this.volume = cell("td", "num col-vol");
    this.time = cell("td", "num col-time");
    const sparkCell = document.createElement("td");
    sparkCell.className = "col-spark";
    sparkCell.setAttribute("role", "cell");
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.setAttribute("class", "spark");
    this.svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.setAttribute("aria-hidden", "true");
    this.line = document.createElementNS(SVG_NS, "polyline");
    this.svg.append(this.line);
    sparkCell.append(this.svg);
    const removeCell = document.createElement("td");
    removeCell.className = "col-remove";
    removeCell.setAttribute("role", "cell");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.dataset.testid = `remove-${sym}`;
    remove.dataset.symbol = sym;
    remove.setAttribute("aria-label", `Remove ${sym}`);
    remove.title = `Remove ${sym}`;
    remove.textContent = "×";
    removeCell.append(remove);
    this.removeButton = remove;
    tr.append(th, this.price, this.change, this.pct, this.open, this.high, this.low, this.rangeCell);
    tr.append(this.bid, this.ask, this.volume, this.time, sparkCell, removeCell);
    this.el = tr;
  }

  /**
   * Show quote `q` (already known to be newer than the one shown) at time `now` (performance.now()).
   * Returns true when the price cell started flashing.
   */
  apply(q, now) {
    const prev = this.q;
    this.q = q;
    if (prev === null) this.el.classList.remove("waiting");
    this.el.classList.remove("stale");
    let flashed = false;
    if (prev !== null && q.p !== prev.p) {
      // A plain tint, cleared by QuoteTable.sweep: no per-frame animation to repaint.
      const dir = q.p > prev.p ? "up" : "down";
      if (this.price.dataset.flash !== dir) this.price.dataset.flash = dir;
      this.flashUntil = now + FLASH_MS;
      flashed = true;
    }
    setText(this.price, fmt.price.format(q.p));
    this.price.dataset.value = String(q.p);
    if (isNum(q.q)) this.price.dataset.q = String(q.q); // the sequence number of the quote shown
    const dir = direction(isNum(q.c) ? q.c : q.cp);
    if (this.change.dataset.dir !== dir) {
      this.change.dataset.dir = dir;
      this.pct.dataset.dir = dir;
    }
    setText(this.change, isNum(q.c) ? fmt.change.format(q.c) : "—");
    setText(this.pct, isNum(q.cp) ? `${fmt.pct.format(q.cp)}%` : "—");
    setText(this.bid, isNum(q.b) ? fmt.price.format(q.b) : "—");
    setText(this.ask, isNum(q.a) ? fmt.price.format(q.a) : "—");
    setText(this.volume, isNum(q.v) ? fmt.volume.format(q.v) : "—");
    setText(this.open, fieldText(q, "o"));
    setText(this.high, fieldText(q, "h"));
    setText(this.low, fieldText(q, "l"));
    this._drawRange(q);
    const when = isNum(q.t) ? quoteTime(q.t) : "—";
    if (this.time._text !== when) this.time.classList.toggle("dated", when.length > 8);
    setText(this.time, when);
    // The sparkline keeps the last price of each half-second bucket and is redrawn when one closes.
    if (now - this.bucketAt >= SPARK_BUCKET_MS) {
      this.bucketAt = now;
      this.history.push(q.p);
      if (this.history.length > SPARK_POINTS) this.history.shift();
      this._drawSpark();
    } else {
      this.history[this.history.length - 1] = q.p; // drawn when the bucket closes
    }
    return flashed;
  }

  /** The company name under the ticker (none when unknown, or when it is just the ticker again). */
  setName(name) {
    const text = typeof name === "string" && name && name !== this.sym ? name : "";
    if (this.nameEl.textContent === text) return;
    this.nameEl.textContent = text;
    this.nameEl.title = text;
    this.nameEl.hidden = !text;
  }

  /** Badge the row with `state` (anything but "live") and its `reason` as the tooltip; "live" clears it. */
  setState(state, reason) {
    const label = STATE_BADGE[state];
    const badge = this.stateBadge;
    const title = label ? reason || label : "";
    if (this.state === state && badge.title === title) return;
    this.state = label ? state : "live";
    badge.textContent = label || "";
    badge.title = title;
    badge.hidden = !label;
    if (label) this.el.dataset.state = state;
    else delete this.el.dataset.state;
  }

  /** Show or hide the "Delayed" badge (`label` is its text). */
  setDelayed(on, label) {
    const badge = this.delayedBadge;
    if (on && badge.textContent !== label) {
      badge.textContent = label;
      badge.title = `${label.replace(/^Delayed/, "Quotes of " + this.sym + " are delayed by")}: you are not entitled to real-time quotes`;
    }
    if (badge.hidden === on) {
      badge.hidden = !on;
      this.el.classList.toggle("delayed", on);
    }
  }

  // The day-range bar: low on the left, high on the right, the last price marked (moved only when it
  // moves by a visible amount; the row is a layout boundary, so this re-lays out one small cell).
  _drawRange(q) {
    const pos = rangePosition(q);
    const shown = pos === null ? null : Math.round(pos * 200) / 2; // half-percent steps
    if (shown === this.rangePos) return;
    this.rangePos = shown;
    const r = this.range;
    if (shown === null) {
      r.dataset.state = "unknown";
      delete r.dataset.pos;
      r.setAttribute("aria-label", "Day range unknown");
      return;
    }
    delete r.dataset.state;
    r.dataset.pos = String(shown);
    this.rangeMark.style.left = `${shown}%`;
    r.setAttribute("aria-label", `Day range ${fieldText(q, "l")} to ${fieldText(q, "h")}, last ${fieldText(q, "p")}`);
    r.title = r.getAttribute("aria-label");
  }

  _drawSpark() {
    const h = this.history;
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of h) {
      if (p < lo) lo = p;
      if (p > hi) hi = p;
    }
    const span = hi - lo || 1;
    const step = SPARK_W / Math.max(h.length - 1, 1); // the line spans the width, newest on the right
    const pts = new Array(h.length);
    for (let i = 0; i < h.length; i++) {
      const y = SPARK_H - 1 - ((h[i] - lo) / span) * (SPARK_H - 2);
      pts[i] = `${(i * step).toFixed(1)},${y.toFixed(1)}`;
    }
    this.line.setAttribute("points", pts.join(" "));
    const trend = direction(h[h.length - 1] - h[0]);
    if (this.svg.dataset.trend !== trend) this.svg.dataset.trend = trend;
  }

  sortValue(key) {
    if (key === "symbol") return this.sym;
    const v = this.q ? this.q[key] : undefined;
    return isNum(v) ? v : null;
  }
}

export class QuoteTable {
  /** tbody: where rows live; thead: its sort buttons; onRemove(sym) and onSort(sort) report clicks. */
  constructor(tbody, thead, { onRemove, onSort, onOpen = () => {} }) {
    this.tbody = tbody;
    this.thead = thead;
    this.rows = new Map();
    this.order = []; // watchlist order
    this.sort = null; // {key, dir} or null
    this.dirty = false;
    this.lastSortAt = 0;
    this.flashing = new Set(); // rows whose price cell is tinted
    tbody.addEventListener("click", (ev) => {
      const btn = ev.target.closest("button.remove");
      if (btn) {
        onRemove(btn.dataset.symbol);
        return;
      }
      const tr = ev.target.closest("tr[data-symbol]");
      if (tr && !ev.target.closest("a, button, input")) onOpen(tr.dataset.symbol);
    });
    tbody.addEventListener("keydown", (ev) => {
      const tr = ev.target;
      if (!(tr instanceof HTMLTableRowElement) || !tr.dataset.symbol || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      let to = null;
      if (ev.key === "Enter") {
        ev.preventDefault();
        onOpen(tr.dataset.symbol);
      } else if (ev.key === "ArrowDown") to = tr.nextElementSibling;
      else if (ev.key === "ArrowUp") to = tr.previousElementSibling;
      else if (ev.key === "Home") to = tbody.firstElementChild;
      else if (ev.key === "End") to = tbody.lastElementChild;
      if (to) {
        ev.preventDefault();
        to.focus();
      }
    });
    thead.addEventListener("click", (ev) => {
      const th = ev.target.closest("th[data-key]");
      if (!th || !ev.target.closest("button")) return;
      onSort(this._nextSort(th.dataset.key));
    });
  }

  has(sym) {
    return this.rows.has(sym);
  }

  /** The newest quote shown in `sym`'s row, or null. */
  quote(sym) {
    return this.rows.get(sym)?.q ?? null;
  }

  /** `sym`'s row element (to give the focus back to), or null. */
  rowElement(sym) {
    return this.rows.get(sym)?.el ?? null;
  }

  /** Mark `sym`'s row as the one the detail panel shows (null: none). */
  setOpen(sym) {
    for (const row of this.rows.values()) {
      const on = row.sym === sym;
      if ((row.el.getAttribute("aria-expanded") === "true") !== on) {
        row.el.setAttribute("aria-expanded", on ? "true" : "false");
        row.el.classList.toggle("open", on);
      }
    }
  }

  get symbols() {
    return [...this.order];
  }

  /** Make the rows match `symbols` (in that order), keeping rows that stay. */
  setSymbols(symbols) {
    const keep = new Set(symbols);
    for (const sym of [...this.rows.keys()]) if (!keep.has(sym)) this.remove(sym);
    for (const sym of symbols) if (!this.rows.has(sym)) this.rows.set(sym, new Row(sym));
    this.order = [...symbols];
    this.applyOrder(true);
  }

  add(sym) {
    if (this.rows.has(sym)) return;
    this.rows.set(sym, new Row(sym));
    this.order.push(sym);
    this.applyOrder(true);
  }

  remove(sym) {
    const row = this.rows.get(sym);
    if (!row) return;
    row.el.remove();
    this.rows.delete(sym);
    this.flashing.delete(row);
    this.order = this.order.filter((s) => s !== sym);
  }

  /** The remove button to focus after `sym` goes: the next row's, else the previous row's, else null. */
  neighbourButton(sym) {
    const el = this.rows.get(sym)?.el;
    const next = el?.nextElementSibling || el?.previousElementSibling;
    return next ? next.querySelector("button.remove") : null;
  }

  /** Apply a batch of quotes (the newest per symbol) in one go; `now` is the frame's time. */
  update(quotes, now) {
    for (const q of quotes) {
      const row = this.rows.get(q.s);
      if (row && row.apply(q, now)) this.flashing.add(row);
    }
    if (this.sort && this.sort.key !== "symbol") this.dirty = true;
  }

  /** End the flashes that are over; true while some are still on (the caller asks for another frame). */
  sweep(now) {
    for (const row of this.flashing) {
      if (now >= row.flashUntil) {
        delete row.price.dataset.flash;
        this.flashing.delete(row);
      }
    }
    return this.flashing.size > 0;
  }

  /** Show `name` under the ticker of `sym`'s row (if it has one). */
  setName(sym, name) {
    this.rows.get(sym)?.setName(name);
  }

  /** Badge `sym`'s row with its state (see Row.setState). */
  setState(sym, state, reason) {
    this.rows.get(sym)?.setState(state, reason);
  }

  /** Badge the rows whose symbol is in `delayed` (a Set) with `label`, and unbadge the others. */
  setDelayed(delayed, label) {
    for (const row of this.rows.values()) row.setDelayed(delayed.has(row.sym), label);
  }

  /** Mark every row that shows data as stale (their numbers are no longer live). */
  markStale() {
    for (const row of this.rows.values()) if (row.q) row.el.classList.add("stale");
  }

  setSort(sort) {
    this.sort = sort && this.thead.querySelector(`th[data-key="${CSS.escape(sort.key)}"]`) ? sort : null;
    for (const th of this.thead.querySelectorAll("th[data-key]")) {
      const on = this.sort && th.dataset.key === this.sort.key;
      th.setAttribute("aria-sort", on ? (this.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
    this.applyOrder(true);
  }

  /** Re-order the rows after updates, at most once a second (call once per frame). */
  maybeResort(now) {
    if (this.dirty && now - this.lastSortAt >= RESORT_MS) this.applyOrder(false);
  }

  _nextSort(key) {
    // asc → desc → watchlist order
    if (!this.sort || this.sort.key !== key) return { key, dir: 1 };
    return this.sort.dir > 0 ? { key, dir: -1 } : null;
  }

  applyOrder(force) {
    // Moving a row that holds keyboard focus would drop the focus: live re-sorting waits meanwhile.
    if (!force && this.tbody.contains(document.activeElement)) return;
    this.dirty = false;
    this.lastSortAt = performance.now();
    let rows = this.order.map((s) => this.rows.get(s));
    const sort = this.sort;
    if (sort) {
      const numeric = NUMERIC_KEYS.has(sort.key);
      rows = rows
        .map((row, i) => ({ row, i, v: row.sortValue(sort.key) }))
        .sort((x, y) => {
          if (x.v === null || y.v === null) return x.v === y.v ? x.i - y.i : x.v === null ? 1 : -1;
          const d = numeric ? x.v - y.v : x.v.localeCompare(y.v);
          return d !== 0 ? d * sort.dir : x.i - y.i;
        })
        .map((x) => x.row);
    }
    const kids = this.tbody.children;
    for (let i = 0; i < rows.length; i++) {
      if (kids[i] !== rows[i].el) this.tbody.insertBefore(rows[i].el, kids[i] || null);
    }
  }
}
