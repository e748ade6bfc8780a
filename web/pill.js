// What the connection pill says once the socket is up: `Live` only when every watched symbol is live
// (the server's `status` messages name those that are not); otherwise the worst problem among them.

/** States that are not live, worst first, with the pill's words for each. */
const WORST_FIRST = [
  ["down", "Feed down"],
  ["unavailable", "Unavailable"],
  ["halted", "Halted"],
  ["pending", "Pending"],
  ["closed", "Market closed"], // last: the pill says it only when every symbol that is not live is closed
];
const NAMED = 3; // symbols named in the tooltip

/**
 * The pill for `problems`, a list of [symbol, {state, reason}] for the watched symbols that are not
 * live: {feed, text, title} with feed "live" and text "Live" when there are none.
 */
export function pillFor(problems) {
  for (const [state, text] of WORST_FIRST) {
    const hit = problems.filter(([, st]) => st.state === state);
    if (!hit.length) continue;
    const named = hit.slice(0, NAMED).map(([sym, st]) => `${sym}: ${st.reason || state}`);
    if (hit.length > NAMED) named.push(`and ${hit.length - NAMED} more`);
    const others = problems.length - hit.length;
    if (others) named.push(`${others} other symbol${others === 1 ? "" : "s"} not live`);
    return { feed: state, text, title: named.join(" · ") };
  }
  return { feed: "live", text: "Live", title: "" };
}
