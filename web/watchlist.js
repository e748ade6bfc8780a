// Where the watchlist comes from and where it goes: `?symbols=` in the URL wins (a shared link),
// then localStorage, then a default for the first visit. Edits are saved to localStorage and,
// when the page was opened from a link, mirrored into the URL so a reload shows the same list.

import { parseSymbols } from "./symbols.js";

const LIST_KEY = "ticker.watchlist";
const SORT_KEY = "ticker.sort";
export const DEFAULT_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY"];

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage blocked: the list lives for this page view only
  }
}

/** The starting watchlist: {symbols, source: "url" | "saved" | "default", rejected: [typed pieces]}. */
export function loadWatchlist(search = window.location.search) {
  const params = new URLSearchParams(search);
  if (params.has("symbols")) {
    const { valid, invalid } = parseSymbols(params.get("symbols") || "");
    return { symbols: valid, source: "url", rejected: invalid };
  }
  const raw = storage()?.getItem(LIST_KEY);
  if (raw !== null && raw !== undefined) {
    try {
      const saved = JSON.parse(raw);
      if (Array.isArray(saved)) {
        return { symbols: parseSymbols(saved.join(",")).valid, source: "saved", rejected: [] };
      }
    } catch {
      /* a corrupt entry falls back to the default */
    }
  }
  return { symbols: [...DEFAULT_SYMBOLS], source: "default", rejected: [] };
}

/** Persist `symbols`; keep the URL's `?symbols=` (when present) in step with the list. */
export function saveWatchlist(symbols) {
  try {
    storage()?.setItem(LIST_KEY, JSON.stringify(symbols));
  } catch {
    /* quota or blocked storage: nothing to lose but persistence */
  }
  const url = new URL(window.location.href);
  if (url.searchParams.has("symbols")) window.history.replaceState(null, "", withSymbols(url, symbols));
}

// Symbols only hold characters that are safe in a query string, so the list stays readable.
function withSymbols(url, symbols) {
  const params = new URLSearchParams(url.search);
  params.delete("symbols");
  const rest = params.toString();
  url.search = (rest ? rest + "&" : "") + "symbols=" + symbols.join(",");
  return url.toString();
}

/** A link that opens this page with `symbols` as the watchlist. */
export function shareUrl(symbols) {
  const url = new URL(window.location.href);
  url.hash = "";
  return withSymbols(url, symbols);
}

/** The saved sort: {key, dir} or null. */
export function loadSort() {
  try {
    const s = JSON.parse(storage()?.getItem(SORT_KEY) || "null");
    if (s && typeof s.key === "string" && (s.dir === 1 || s.dir === -1)) return s;
  } catch {
    /* ignore */
  }
  return null;
}

export function saveSort(sort) {
  try {
    storage()?.setItem(SORT_KEY, JSON.stringify(sort));
  } catch {
    /* ignore */
  }
}
