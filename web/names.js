// Company names for the rows: from the directory (`/api/symbols/<SYMBOL>`) or the search's results,
// kept in memory and in localStorage so a reload shows them at once. Names the page does not know yet
// (or learnt more than a day ago) are fetched a few at a time, each symbol at most once per page view.

const KEY = "ticker.names";
const MAX_KEPT = 500; // names kept in localStorage (the oldest go first)
const FRESH_MS = 86_400_000; // a saved name older than this is asked again (it is shown meanwhile)
export const PARALLEL = 4; // name requests in flight at once
const RATE_LIMITED_TRIES = 5; // a name refused for the request rate is asked again this many times
const MAX_WAIT_S = 30; // the longest Retry-After waited for

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** The names the page knows, by symbol. */
export class NameBook {
  /**
   * headers(): the request headers for the API (a token with `--auth jwt`), or null while there is none;
   * onName(sym, name) runs whenever a name is learnt.
   */
  constructor({ headers, onName }) {
    this.headers = headers;
    this.onName = onName;
    this.names = new Map(); // symbol → [name, learnt at (epoch ms)]
    this.asked = new Set(); // symbols fetched (or being fetched) in this page view
    try {
      const saved = JSON.parse(storage()?.getItem(KEY) || "[]");
      if (Array.isArray(saved)) {
        for (const [sym, name, at] of saved.filter(Array.isArray)) {
          if (typeof sym === "string" && typeof name === "string" && typeof at === "number") {
            this.names.set(sym, [name, at]);
          }
        }
      }
    } catch {
      /* a corrupt entry: start again */
    }
  }

  get(sym) {
    return this.names.get(sym)?.[0];
  }

  /**
   * Learn `name` for `sym` (from the search, say); saved, and reported when it changed. A name that is
   * just the ticker again (a replay's directory) is no name.
   */
  remember(sym, name) {
    if (typeof sym !== "string" || typeof name !== "string" || !name || name === sym) return;
    const had = this.get(sym);
    this.names.delete(sym); // re-inserted last: the most recent is kept longest
    this.names.set(sym, [name, Date.now()]);
    while (this.names.size > MAX_KEPT) this.names.delete(this.names.keys().next().value);
    this._save();
    if (had !== name) this.onName(sym, name);
  }

  /** Fetch the names of `symbols` not known (or not fresh) yet, nor asked for before, PARALLEL at a time. */
  async fetchMissing(symbols) {
    const headers = this.headers();
    if (!headers) return;
    const now = Date.now();
    const known = (s) => this.names.has(s) && now - this.names.get(s)[1] < FRESH_MS;
    const queue = symbols.filter((s) => !known(s) && !this.asked.has(s));
    for (const s of queue) this.asked.add(s);
    const worker = async () => {
      for (let sym = queue.shift(); sym !== undefined; sym = queue.shift()) {
        if (!(await this._fetchOne(sym, headers))) this.asked.delete(sym); // not answered: may try later
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
  }

  // True when the server answered (with a name or a refusal), false when it could not be asked.
  // A 429 (the server's per-address rate of /api requests) is waited out as its Retry-After says, with
  // a random share more so that the page's workers do not come back in step, and asked again.
  async _fetchOne(sym, headers) {
    for (let attempt = 0; attempt < RATE_LIMITED_TRIES; attempt++) {
      try {
        const res = await fetch(`/api/symbols/${encodeURIComponent(sym)}`, { headers });
        if (res.status === 429) {
          const after = Math.min(MAX_WAIT_S, Number(res.headers.get("Retry-After")) || 1);
          await new Promise((done) => setTimeout(done, after * 1000 * (1 + Math.random())));
          continue;
        }
        if (!res.ok) return res.status < 500 && res.status !== 401; // 404 unknown, 403 forbidden: no name
        const body = await res.json();
        if (body && body.s === sym) this.remember(sym, body.name);
        return true;
      } catch {
        return false;
      }
    }
    return false;
  }

  _save() {
    try {
      storage()?.setItem(KEY, JSON.stringify([...this.names].map(([sym, [name, at]]) => [sym, name, at])));
    } catch {
      /* quota or blocked storage: names are fetched again next time */
    }
  }
}
