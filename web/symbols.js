// Symbol rules of the wire protocol (docs/protocol.md): 1 to 32 characters of A-Z 0-9 . - : / _,
// lower case is upper-cased. The page checks them before sending, so a typo never reaches the server.

export const SYMBOL_RE = /^[A-Z0-9.\-:/_]{1,32}$/;
export const SYMBOL_RULE = "1–32 characters: letters A–Z, digits 0–9 and . - : / _";

/** The normalized symbol for `raw`, or null when it breaks the rule. */
export function normalizeSymbol(raw) {
  // ASCII only, checked before upper-casing (as the server does): "ﬁ" never becomes "FI", nor "ß" "SS",
  // and a no-break space is not trimmed.
  if (typeof raw !== "string" || !/^[\x00-\x7f]*$/.test(raw)) return null;
  const sym = raw.replace(/^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g, "").toUpperCase();
  return SYMBOL_RE.test(sym) ? sym : null;
}

/**
 * Split what a trader typed ("aapl, msft nvda") into valid symbols (normalized, first-seen order,
 * no duplicates) and the invalid pieces as typed.
 */
export function parseSymbols(text) {
  const valid = [];
  const invalid = [];
  for (const piece of String(text).split(/[\s,;]+/)) {
    if (!piece) continue;
    const sym = normalizeSymbol(piece);
    if (sym === null) invalid.push(piece);
    else if (!valid.includes(sym)) valid.push(sym);
  }
  return { valid, invalid };
}
