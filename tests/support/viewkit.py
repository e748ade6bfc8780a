"""Clients and checks for the tests of rates, fields and deltas (issue 16) against a real server.

:class:`PolledWs` and :class:`PolledSse` read their socket only when the test calls :meth:`poll`, and then take
everything it holds at that moment: on loopback a write of the server is in the client's socket as soon as it
is made, so polling one client right after another orders what they got as the server wrote it; a client not
polled is a stalled reader. :class:`Merged` applies entries by the merge rule of docs/protocol.md.
"""

from __future__ import annotations

import itertools
import select
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import h11
import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from feeds.recording.format import write_all
from tests.support.timing import timeout
from ticker.quote import Quote

Message = dict[str, Any]
#: Wall-clock arrival time (``time.time()``, the clock of the quotes' ``t``) and the decoded message.
Arrival = tuple[float, Message]
QUOTE_KINDS = ("snapshot", "quotes")


def _open(port: int, rcvbuf: int | None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout(5))
    sock.connect(("127.0.0.1", port))
    return sock


def _drain(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything ``sock`` (non-blocking) holds now, and whether the peer has closed."""
    chunks: list[bytes] = []
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return b"".join(chunks), False
        except ConnectionError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


class _Polled:
    """What both clients share: the socket, the messages received with their arrival times, waiting."""

    sock: socket.socket

    def __init__(self, on_message: Callable[[Message], None] | None) -> None:
        self.on_message = on_message
        self.msgs: list[Arrival] = []
        self.eof = False
        self._cursor = 0  # the messages :meth:`wait` has looked at

    def fileno(self) -> int:
        return self.sock.fileno()

    def _take(self, at: float, msg: Message) -> None:
        if self.on_message is not None:
            self.on_message(msg)
        self.msgs.append((at, msg))

    def poll(self) -> list[Arrival]:
        """Read what the socket holds now (never waiting); the messages it completed."""
        raise NotImplementedError

    def wait(self, pred: Callable[[Message], object], within: float = 5.0) -> Message:
        """The first message matching ``pred`` after the one the last :meth:`wait` returned (polling for more as
        need be); fail after ``within`` seconds (scaled)."""
        deadline = time.monotonic() + timeout(within)
        while True:
            while self._cursor < len(self.msgs):
                msg = self.msgs[self._cursor][1]
                self._cursor += 1
                if pred(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                raise AssertionError(f"no matching message (eof: {self.eof}); last: {self.msgs[-3:]}")
            select.select([self.sock], [], [], min(left, 0.05))
            self.poll()

    def until(self, cond: Callable[[], object], within: float = 5.0, what: str = "messages") -> None:
        """Poll until ``cond()`` is truthy; fail with ``what`` after ``within`` seconds (scaled)."""
        deadline = time.monotonic() + timeout(within)
        while not cond():
            if time.monotonic() > deadline or self.eof:
                raise AssertionError(
                    f"timed out waiting for {what} (eof: {self.eof}); last: {self.msgs[-3:]}"
                )
            select.select([self.sock], [], [], 0.05)
            self.poll()

    def entries(self, kinds: Sequence[str] = QUOTE_KINDS) -> list[tuple[float, str, Message]]:
        """(arrival, message type, entry) of every Q entry received so far, in order."""
        return [(at, m["type"], e) for at, m in self.msgs if m["type"] in kinds for e in m["data"]]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PolledWs(_Polled):
    """A WebSocket client of ``/ws`` on a plain socket (websockets' sans-I/O protocol), read by :meth:`poll`."""

    def __init__(
        self,
        port: int,
        path: str = "/ws",
        headers: Iterable[tuple[str, str]] = (),
        rcvbuf: int | None = None,
        on_message: Callable[[Message], None] | None = None,
    ) -> None:
        super().__init__(on_message)
        self.sock = _open(port, rcvbuf)
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), max_size=None)
        request = self.proto.connect()
        for name, value in headers:
            request.headers[name] = value
        self.proto.send_request(request)
        self._send_pending()
        self._parts: list[bytes] = []
        while self.proto.state is State.CONNECTING:
            data = self.sock.recv(1 << 16)
            assert data, "closed during the handshake"
            self.proto.receive_data(data)
        if self.proto.handshake_exc is not None:
            raise self.proto.handshake_exc
        self.sock.setblocking(False)
        self._events(time.time())

    def _send_pending(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.sock.sendall(data)

    def send(self, obj: Any) -> None:
        """Send ``obj`` as a JSON text message."""
        self.proto.send_text(orjson.dumps(obj))
        self.sock.setblocking(True)
        try:
            self._send_pending()
        finally:
            self.sock.setblocking(False)

    def _events(self, at: float) -> list[Arrival]:
        got: list[Arrival] = []
        for ev in self.proto.events_received():
            if not isinstance(ev, Frame):
                continue  # the handshake's response
            if ev.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._parts.append(bytes(ev.data))
                if ev.fin:
                    msg = orjson.loads(b"".join(self._parts))
                    self._parts = []
                    self._take(at, msg)
                    got.append((at, msg))
            elif ev.opcode is Opcode.CLOSE:
                self.eof = True
        return got

    def poll(self) -> list[Arrival]:
        if self.eof:
            return []
        data, eof = _drain(self.sock)
        at = time.time()
        if data:
            self.proto.receive_data(data)
        if eof:
            self.proto.receive_eof()
            self.eof = True
        got = self._events(at)
        try:
            self._send_pending()  # pongs to the server's pings
        except OSError:
            self.eof = True
        return got


class PolledSse(_Polled):
    """A client of ``/sse`` (HTTP/1.1 chunked, parsed by h11) on a plain socket, read by :meth:`poll`; each event's
    JSON is a message (its ``type`` is the event's name)."""

    def __init__(
        self,
        port: int,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        rcvbuf: int | None = None,
        on_message: Callable[[Message], None] | None = None,
    ) -> None:
        super().__init__(on_message)
        self.sock = _open(port, rcvbuf)
        self.http = h11.Connection(h11.CLIENT)
        head = [("Host", f"127.0.0.1:{port}"), ("Accept", "text/event-stream"), *headers]
        self.sock.sendall(self.http.send(h11.Request(method="GET", target=path, headers=head)) or b"")
        self.sock.sendall(self.http.send(h11.EndOfMessage()) or b"")
        self.status = 0
        self.events: list[tuple[float, str, Message]] = []  # (arrival, event name, data) as sent
        self._buf = b""
        self.sock.setblocking(False)
        deadline = time.monotonic() + timeout(5)
        while not self.status:
            self.poll()
            assert not self.eof and time.monotonic() < deadline, "no response"
            select.select([self.sock], [], [], 0.05)
        assert self.status == 200, self.status

    def poll(self) -> list[Arrival]:
        if self.eof:
            return []
        data, eof = _drain(self.sock)
        at = time.time()
        if data:
            self.http.receive_data(data)
        if eof:
            self.http.receive_data(b"")
        got: list[Arrival] = []
        while True:
            ev = self.http.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                break
            if isinstance(ev, h11.Response):
                self.status = ev.status_code
            elif isinstance(ev, h11.Data):
                self._buf += bytes(ev.data)
                got.extend(self._split(at))
            elif isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                self.eof = True
                break
        if eof:
            self.eof = True
        return got

    def _split(self, at: float) -> list[Arrival]:
        got: list[Arrival] = []
        while b"\n\n" in self._buf:
            block, self._buf = self._buf.split(b"\n\n", 1)
            name, data = "message", []
            for line in block.split(b"\n"):
                field, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if field == b"event":
                    name = value.decode()
                elif field == b"data":
                    data.append(value)
            if data:
                msg = orjson.loads(b"\n".join(data))
                self.events.append((at, name, msg))
                self._take(at, msg)
                got.append((at, msg))
        return got


def poll_all(clients: Sequence[_Polled], seconds: float) -> None:
    """Poll ``clients`` in turn, in that order, for a window of ``seconds`` (a window, not a timeout)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        select.select(clients, [], [], min(left, 0.05))
        for c in clients:
            c.poll()


class Merged:
    """Per-symbol state built by the merge rule of docs/protocol.md ("Deltas"): a ``snapshot`` entry replaces
    the state; a ``quotes`` entry with no state yet is the state, one whose ``q`` is not above the state's is
    ignored, any other sets each field it carries and deletes each it carries as ``null``."""

    def __init__(self) -> None:
        self.state: dict[str, Message] = {}

    def apply(self, kind: str, entry: Message) -> Message | None:
        """Apply one entry of a ``kind`` message; a copy of the symbol's state after it (None: ignored)."""
        s = entry["s"]
        cur = self.state.get(s)
        if kind == "snapshot" or cur is None:
            cur = self.state[s] = {k: v for k, v in entry.items() if v is not None}
        elif entry["q"] <= cur["q"]:
            return None
        else:
            for k, v in entry.items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = v
        return dict(cur)


def restrict(entry: Message, fields: Iterable[str] | None) -> Message:
    """A full entry as a subscriber of ``fields`` (None: all) gets it: ``s``, ``t``, ``q`` and those fields."""
    if fields is None:
        return entry
    keep = {"s", "t", "q", *fields}
    return {k: v for k, v in entry.items() if k in keep}


def throttle_violations(states: Sequence[tuple[float, Message]], interval: float) -> list[str]:
    """What breaks "at most one entry every ``interval`` seconds" in one symbol's (arrival, merged state)
    sequence on one connection, checked without timing assumptions.

    Entry i+1 was sent at least ``interval`` after entry i, which was sent after its quote existed (its ``t``,
    whole ms rounded down, on the wall clock shared with the server): so it arrives no earlier than
    ``t_i + interval``; and entry n no earlier than ``t_1 + (n - 1) * interval``. Neither bound depends on
    the machine's speed or load (a late entry only arrives later). The 2 ms margin: the server spaces entries
    on its monotonic clock, the check reads the wall clock; on Linux both advance at the same NTP-slewed rate,
    so it covers float rounding only (a step of the wall clock during the test would not be covered).
    """
    slew = 0.002
    bad: list[str] = []
    for (_, prev), (at, cur) in itertools.pairwise(states):
        early = prev["t"] / 1000 + interval - slew - at
        if early > 0:
            bad.append(f"q {cur['q']} arrived {early:.3f} s too soon after q {prev['q']}")
    if states:
        first, last_at = states[0][1], states[-1][0]
        most = (last_at - first["t"] / 1000 + slew) / interval + 1
        if len(states) > most:
            bad.append(f"{len(states)} entries from q {first['q']} in {last_at - first['t'] / 1000:.3f} s")
    return bad


def of(client: _Polled, kind: str) -> list[Message]:
    return [m for _, m in client.msgs if m["type"] == kind]


def arrivals(client: _Polled, symbol: str, start: int = 0) -> list[tuple[float, Message]]:
    """(arrival, merged state) of each entry of ``symbol`` (full entries or deltas, snapshots included) in the
    messages from index ``start`` on."""
    merged = Merged()
    out = []
    for at, m in client.msgs[start:]:
        for e in m["data"] if m["type"] in QUOTE_KINDS else []:
            if e["s"] == symbol and (state := merged.apply(m["type"], e)) is not None:
                out.append((at, state))
    return out


def top_q(client: _Polled, kinds: Sequence[str] = QUOTE_KINDS) -> int:
    return max((e["q"] for _, _, e in client.entries(kinds)), default=0)


def by_q(client: _Polled) -> dict[tuple[str, int], Message]:
    """A full subscriber's entries by (symbol, q)."""
    return {(e["s"], e["q"]): e for _, _, e in client.entries()}


def catch_up(
    full: PolledWs, others: Sequence[_Polled], symbols: Sequence[str] | None = None
) -> dict[tuple[str, int], Message]:
    """Poll ``full`` until it has every symbol's (of ``symbols``, None: all) greatest ``q`` the ``others``
    received; its entries by (s, q)."""
    want: dict[str, int] = {}
    for c in others:
        for _, _, e in c.entries():
            if symbols is None or e["s"] in symbols:
                want[e["s"]] = max(want.get(e["s"], 0), e["q"])

    def caught() -> bool:
        full.poll()
        have: dict[str, int] = {}
        for _, _, e in full.entries():
            have[e["s"]] = max(have.get(e["s"], 0), e["q"])
        return all(have.get(s, 0) >= q for s, q in want.items())

    full.until(caught, 10.0, "the full subscriber to get as far as the others")
    return by_q(full)


def merged_mismatches(
    client: _Polled,
    full: dict[tuple[str, int], Message],
    fields: Sequence[str] | None,
    every_q: bool = True,
    symbols: Sequence[str] | None = None,
    count_from: int = 0,
) -> tuple[int, list[str]]:
    """Apply ``client``'s entries by the merge rule: (how many states of the messages from index ``count_from``
    on were compared with the full subscriber's entry of the same (s, q) restricted to ``fields``, the states
    that differ, and with ``every_q`` those the full subscriber never got); only the entries of ``symbols``
    (None: all) are compared."""
    merged = Merged()
    compared, bad = 0, []
    for i, (_, m) in enumerate(client.msgs):
        for e in m["data"] if m["type"] in QUOTE_KINDS else []:
            state = merged.apply(m["type"], e)
            if state is None or (symbols is not None and e["s"] not in symbols):
                continue
            ref = full.get((e["s"], e["q"]))
            if ref is None:
                if every_q:
                    bad.append(f"{e['s']} q {e['q']}: no such entry at the full subscriber")
                continue
            if state != restrict(ref, fields):
                bad.append(f"{e['s']} q {e['q']}: merged {state} != full {restrict(ref, fields)}")
            compared += i >= count_from
    return compared, bad


def write_flip_recording(path: Path, seconds: float = 4.0, step_ms: int = 50) -> Path:
    """A recording (``--feed replay --replay-loop``) of two symbols, each quoted every ``step_ms``: ``FLIP``,
    whose price and volume change every quote and whose bid is there for two quotes, then gone for two (a
    delta sends it as ``null``), and ``HOLD``, whose price, bid and ask change every tenth quote only."""
    t0 = int(time.time() * 1000)
    records: list[tuple[int, Quote]] = []
    for i in range(int(seconds * 1000 / step_ms)):
        t = t0 + i * step_ms
        price = round(100 + (i % 13) * 0.01, 2)
        bid = round(price - 0.01, 2) if (i // 2) % 2 == 0 else None
        records.append((t, Quote("FLIP", price, t, bid=bid, ask=round(price + 0.01, 2), volume=1000.0 + i)))
        hold = round(50 + (i // 10) * 0.05, 2)
        records.append((t, Quote("HOLD", hold, t, bid=round(hold - 0.02, 2), ask=round(hold + 0.02, 2))))
    write_all(path, ["test"], records)
    return path
