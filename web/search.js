// The add box's search: as the trader types, `/api/search` is asked (debounced) and its best matches
// are offered in a listbox under the box (ticker, name, exchange). The ARIA 1.2 combobox pattern: the
// input keeps the focus; arrow keys move the highlighted option (aria-activedescendant), Enter picks it,
// Escape closes the list (a second Escape clears the box), a click picks an option.

export const DEBOUNCE_MS = 120;
export const LIMIT = 8;
const ANSWER_WITHIN_MS = 3_000; // a search that takes longer counts as no answer

/** The words of `text` the way the server's search reads them: case, accents and punctuation dropped. */
export function words(text) {
  return String(text)
    .replace(/['\u2019]/g, "")
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean);
}

/** Whether `text` names `name`: each of its words is a whole word of the name ("tesla inc" → "Tesla, Inc."). */
export function namesIt(text, name) {
  const mine = words(text);
  if (!mine.length || typeof name !== "string") return false;
  const theirs = new Set(words(name));
  return mine.every((w) => theirs.has(w));
}

/** Whether `text` is a list of tickers (commas or semicolons): searching it makes no sense. */
export function isList(text) {
  return /[,;]/.test(text);
}

export class SymbolSearch {
  /**
   * input: the combobox's text box; list: its listbox; headers(): the API's request headers or null
   * (no token yet); onChoose(entry) when an option is picked.
   */
  constructor(input, list, { headers, onChoose }) {
    this.input = input;
    this.list = list;
    this.headers = headers;
    this.onChoose = onChoose;
    this.entries = []; // shown in the list
    this.active = -1; // index of the highlighted option, -1 for none
    this.last = { q: null, results: [] }; // the newest answer
    this.timer = 0;
    this.seq = 0; // answers to older requests are dropped
    this.abort = null;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);
    input.addEventListener("input", () => this._typed());
    input.addEventListener("keydown", (ev) => this._key(ev));
    input.addEventListener("blur", () => this.close());
    list.addEventListener("mousedown", (ev) => ev.preventDefault()); // keep the focus in the box
    list.addEventListener("click", (ev) => {
      const li = ev.target.closest("[role=option]");
      if (li) this._choose(Number(li.dataset.index));
    });
  }

  /**
   * The results for `text`: the newest answer when it was for this text, else a search of its own now
   * (that typing meanwhile does not cancel); [] when the server cannot answer.
   */
  async results(text) {
    const q = text.trim();
    if (!q) return [];
    if (this.last.q === q) return this.last.results;
    const results = await this._fetch(q, new AbortController());
    if (results && this.input.value.trim() === q) this.last = { q, results };
    return results || [];
  }

  /** Open the list for `text` (searched now unless the newest answer is for it), `highlight` its option at
   * that index (-1: the last one) — the arrow keys on a closed list. */
  async open(text, highlight) {
    const q = text.trim();
    if (!q || isList(q)) return;
    clearTimeout(this.timer); // searched here and now: the debounced search of the same text is not wanted
    if (this.last.q === q) this._render(q, this.last.results);
    else await this._search(q);
    const n = this.entries.length;
    if (n && !this.list.hidden) this._setActive(highlight < 0 ? n - 1 : Math.min(highlight, n - 1));
  }

  close() {
    this._setActive(-1);
    delete this.list.dataset.query;
    if (this.list.hidden) return;
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
  }

  _typed() {
    clearTimeout(this.timer);
    const q = this.input.value.trim();
    if (!q || isList(q)) {
      this.seq += 1; // an answer still on its way is not wanted any more
      this.close();
      return;
    }
    this.timer = setTimeout(() => this._search(q), DEBOUNCE_MS);
  }

  // The search as the trader types: a newer one cancels it; its answer opens the list.
  async _search(q) {
    const seq = ++this.seq;
    this.abort?.abort();
    this.abort = new AbortController();
    const results = await this._fetch(q, this.abort);
    if (results === null || seq !== this.seq) return; // no answer, or a newer search is under way
    this.last = { q, results };
    if (this.input.value.trim() === q && document.activeElement === this.input) this._render(q, results);
  }

  // `/api/search` for `q`: its results, or null without an answer (no token yet, an error, too slow).
  async _fetch(q, abort) {
    const headers = this.headers();
    if (!headers) return null;
    const timer = setTimeout(() => abort.abort(), ANSWER_WITHIN_MS);
    try {
      const url = `/api/search?q=${encodeURIComponent(q)}&limit=${LIMIT}`;
      const res = await fetch(url, { headers, signal: abort.signal });
      const body = res.ok ? await res.json() : null;
      if (!body || !Array.isArray(body.results)) return null;
      return body.results.filter((r) => r && typeof r.s === "string");
    } catch {
      return null; // typing a ticker still works
    } finally {
      clearTimeout(timer);
    }
  }

  _render(q, results) {
    // A late answer for the query on show keeps the option the trader highlighted meanwhile.
    const kept = this.list.dataset.query === q && this.active >= 0 ? this.entries[this.active]?.s : undefined;
    this.entries = results;
    this.list.dataset.query = q; // what the options answer
    this.active = -1;
    this.input.removeAttribute("aria-activedescendant");
    const frag = document.createDocumentFragment();
    results.forEach((r, i) => {
      const li = document.createElement("li");
      li.id = `${this.list.id}-${i}`;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", "false");
      li.dataset.testid = "symbol-suggestion";
      li.dataset.symbol = r.s;
      li.dataset.index = String(i);
      const sym = document.createElement("span");
      sym.className = "opt-sym";
      sym.textContent = r.s;
      const name = document.createElement("span");
      name.className = "opt-name";
      name.textContent = typeof r.name === "string" && r.name !== r.s ? r.name : "";
      const where = document.createElement("span");
      where.className = "opt-exchange";
      where.textContent = typeof r.exchange === "string" ? r.exchange : "";
      li.append(sym, name, where);
      frag.append(li);
    });
    this.list.replaceChildren(frag);
    const open = results.length > 0;
    this.list.hidden = !open;
    this.input.setAttribute("aria-expanded", open ? "true" : "false");
    if (kept !== undefined) {
      const i = results.findIndex((r) => r.s === kept);
      if (i >= 0) this._setActive(i);
    }
  }

  _setActive(i) {
    const prev = this.list.children[this.active];
    if (prev) prev.setAttribute("aria-selected", "false");
    this.active = i;
    const li = this.list.children[i];
    if (li && i >= 0) {
      li.setAttribute("aria-selected", "true");
      this.input.setAttribute("aria-activedescendant", li.id);
      li.scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  }

  _choose(i) {
    const entry = this.entries[i];
    if (!entry) return;
    this.close();
    this.onChoose(entry);
  }

  _key(ev) {
    const open = !this.list.hidden && this.entries.length > 0;
    switch (ev.key) {
      case "ArrowDown":
      case "ArrowUp": {
        if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
        ev.preventDefault();
        if (!open) {
          this.open(this.input.value, ev.key === "ArrowDown" ? 0 : -1);
          return;
        }
        const n = this.entries.length;
        const step = ev.key === "ArrowDown" ? 1 : -1;
        // From nothing highlighted, Down goes to the first option and Up to the last; both wrap.
        const next = this.active < 0 ? (step > 0 ? 0 : n - 1) : (this.active + step + n) % n;
        this._setActive(next);
        break;
      }
      case "Enter":
        if (open && this.active >= 0) {
          ev.preventDefault(); // the highlighted option, not the form
          this._choose(this.active);
        }
        break;
      case "Escape":
        if (open) {
          ev.preventDefault();
          this.close();
        } else if (this.input.value) {
          ev.preventDefault();
          this.input.value = "";
          this._typed();
        }
        break;
      case "Tab":
        this.close();
        break;
      default:
        break;
    }
  }
}
