// The WebSocket to the server: connect, report state, reconnect with exponential backoff and jitter,
// and detect a dead link with the protocol's ping op. What to (re)subscribe is the caller's business:
// `onOpen` runs after every successful connect; an optional `beforeConnect` (getting a token) runs
// before every attempt.

const BASE_MS = 500; // first retry ceiling
const CAP_MS = 15_000; // largest retry ceiling
const STABLE_MS = 5_000; // a connection open this long resets the backoff
const PING_EVERY_MS = 15_000;
const PONG_WITHIN_MS = 10_000;

/** Retry delay for `attempt` (0-based): "equal jitter" — half the ceiling plus a random half. */
export function backoffDelay(attempt, rand = Math.random) {
  const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + rand() * (ceiling / 2);
}

/** The socket URL for this page: same host, ws or wss to match http or https; `query` (e.g. "delta=1") if any. */
export function socketUrl(loc = window.location, query = "") {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws${query ? `?${query}` : ""}`;
}

export class Connection {
  /**
   * handlers: onState(state, info) with state "connected" | "reconnecting" | "disconnected" and
   * info {attempt, retryAt, rttMs, reason}; onOpen(); onMessage(msg) for every parsed JSON frame
   * other than this class's own heartbeat pongs. Optional: onClose(code) when the socket closes, and
   * async beforeConnect() before each attempt: true goes on, false holds (state "disconnected",
   * reason "signin") until connectNow(), a throw retries after the backoff.
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.pongTimer = 0;
    this.pingSeq = 0;
    this.pingSentAt = 0;
    this.openedAt = 0;
    this.rttMs = null;
    this.state = "disconnected";
    this.everConnected = false;
    this.preparing = false;
  }

  start() {
    window.addEventListener("online", () => this.connectNow());
    window.addEventListener("offline", () => this._drop("offline"));
    this._connect();
  }

  /** Skip the remaining backoff wait (used when the network comes back). */
  connectNow() {
    if (this.ws || this.preparing) return;
    this.attempt = 0;
    this._connect();
  }

  /** Send `obj` as JSON; false when the socket is not open (the next onOpen resends the state). */
  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.handlers.onState(state, { attempt: this.attempt, rttMs: this.rttMs, ...extra });
  }

  async _connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    if (navigator.onLine === false) {
      this._setState("disconnected", { reason: "offline" });
      return;
    }
    if (this.handlers.beforeConnect) {
      if (this.preparing || this.ws) return;
      this.preparing = true;
      let go;
      try {
        go = await this.handlers.beforeConnect();
      } catch {
        this.preparing = false;
        this._retry();
        return;
      }
      this.preparing = false;
      if (this.ws || this.retryTimer) return; // connected or planned meanwhile
      if (!go) {
        this._setState("disconnected", { reason: "signin" });
        return;
      }
      if (navigator.onLine === false) {
        this._setState("disconnected", { reason: "offline" });
        return;
      }
    }
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.openedAt = Date.now();
      this.everConnected = true;
      this._setState("connected");
      this._schedulePing(1_000); // an early first ping gives a round-trip time to show
      this.handlers.onOpen();
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
      if (msg && msg.type === "pong" && typeof msg.id === "string" && msg.id.startsWith("hb-")) {
        this._pong(msg.id);
        return;
      }
      this.handlers.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      if (this.handlers.onClose) this.handlers.onClose(ev.code);
      this._drop("closed");
    };
    ws.onerror = () => {}; // a close event always follows
  }

  // Forget the current socket (if any) and plan the next attempt.
  _drop(reason) {
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState <= WebSocket.OPEN) ws.close();
    }
    if (this.openedAt && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
    this.openedAt = 0;
    if (reason === "offline") {
      clearTimeout(this.retryTimer);
      this._setState("disconnected", { reason });
    } else {
      this._retry();
    }
  }

  _retry() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._connect(), delay);
    this._setState(this.everConnected ? "reconnecting" : "disconnected", { retryAt: Date.now() + delay });
  }

  _schedulePing(delay = PING_EVERY_MS) {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      this.pingSeq += 1;
      this.pingSentAt = performance.now();
      if (!this.send({ op: "ping", id: `hb-${this.pingSeq}` })) return;
      this.pongTimer = setTimeout(() => this._drop("no pong"), PONG_WITHIN_MS);
    }, delay);
  }

  _pong(id) {
    if (id !== `hb-${this.pingSeq}`) return;
    clearTimeout(this.pongTimer);
    this.rttMs = Math.round(performance.now() - this.pingSentAt);
    this._setState("connected");
    this._schedulePing();
  }
}
