// Signing in when the server runs with `--auth jwt`: the page's token comes from the deployer's
// token endpoint (`token_url` of /config.json), fetched with the browser's credentials (cookies). It
// answers {"token": "<jwt>"}, or 401 when the user is not signed in. The token is kept in memory only.

export const RENEW_MARGIN_MS = 5_000; // a refresh goes out at least this long before `exp`
const REUSE_MIN_MS = 15_000; // a reconnect reuses the token only while it is valid this much longer

/** The `exp` claim of JWT `token` in epoch milliseconds, or null when it cannot be read. */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to refresh a token that expires at `expMs` (epoch ms), as a delay from `now`: at 80 % of the
 * remaining lifetime, and at least RENEW_MARGIN_MS before expiry (never less than a second).
 */
export function refreshDelay(expMs, now = Date.now()) {
  const left = expMs - now;
  return Math.max(1_000, Math.min(left * 0.8, left - RENEW_MARGIN_MS));
}

/** Fetches and keeps the page's token; reports whether the user must sign in first. */
export class TokenSource {
  /** url: the token endpoint; onSignIn(required) runs whenever that state changes. */
  constructor(url, { onSignIn }) {
    this.url = url;
    this.onSignIn = onSignIn;
    this.token = null; // {value, expMs}
    this.signInRequired = false;
    this.inflight = null;
  }

  /**
   * A fresh token from the endpoint, or null when it answers 401/403 (sign-in required). Throws when the
   * endpoint cannot be reached or answers anything else (the caller retries with its backoff).
   */
  fresh() {
    if (!this.inflight) {
      this.inflight = this._fetch().finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  /** The current token when it stays valid a while longer, else a fresh one (see `fresh`). */
  async current() {
    const t = this.token;
    if (t && t.expMs !== null && t.expMs - Date.now() > REUSE_MIN_MS) return t.value;
    return this.fresh();
  }

  /**
   * Go back to `value`, the token in force on the socket, after the server refused a fresher one (a
   * refused `refresh` leaves the old token in force): API requests and a reconnect use it until the
   * caller's retry gets a token the server accepts.
   */
  keep(value) {
    this.token = typeof value === "string" && value ? { value, expMs: tokenExpiry(value) } : null;
  }

  /** Forget the token (the server refused it or it expired): the next `current()` fetches one. */
  invalidate() {
    this.token = null;
  }

  async _fetch() {
    const res = await fetch(this.url, {
      credentials: "include",
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (res.status === 401 || res.status === 403) {
      this.token = null;
      this._setSignIn(true);
      return null;
    }
    if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
    const body = await res.json();
    if (!body || typeof body.token !== "string" || !body.token) throw new Error("token endpoint sent no token");
    this.token = { value: body.token, expMs: tokenExpiry(body.token) };
    this._setSignIn(false);
    return body.token;
  }

  _setSignIn(required) {
    if (this.signInRequired === required) return;
    this.signInRequired = required;
    this.onSignIn(required);
  }
}
