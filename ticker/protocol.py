"""The wire protocol (Sans-I/O): parse client frames into commands, build server messages.

Nothing here touches a socket; the transports feed text in and write the bytes out.
The contract is written down in docs/protocol.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ticker.bars import DEFAULT_LIMIT, MAX_LIMIT, Bar, parse_interval
from ticker.errors import BAD_JSON, BAD_REQUEST, UNKNOWN_OP, InvalidSymbol, ProtocolError
from ticker.symbols import valid_symbol
from ticker.views import FIELDS as FIELD_NAMES
from ticker.views import MIN_HZ, canonical_fields, unknown_fields


@dataclass(slots=True)
class Subscribe:
    """``{"op":"subscribe"}``: ``symbols`` are the valid, normalized ones; ``invalid`` the refused inputs;
    ``max_hz`` the rate asked for them (None: unthrottled)."""

    symbols: list[str]
    invalid: list[str] = field(default_factory=list)
    max_hz: float | None = None


@dataclass(slots=True)
class Unsubscribe:
    """``{"op":"unsubscribe"}``, with the same split as :class:`Subscribe`."""

    symbols: list[str]
    invalid: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Ping:
    """``{"op":"ping","id":...}``; ``id`` is echoed back unchanged."""

    id: Any = None


@dataclass(slots=True)
class Auth:
    """``{"op":"auth","token":...}`` (the first message of a browser) or ``{"op":"refresh","token":...}``."""

    token: str
    refresh: bool = False


@dataclass(slots=True)
class SubscribeBars:
    """``{"op":"subscribe_bars","symbol":...,"interval":...,"history":N}``: the last ``history`` bars, then live ones."""

    symbol: str
    interval: str
    history: int = DEFAULT_LIMIT


@dataclass(slots=True)
class UnsubscribeBars:
    """``{"op":"unsubscribe_bars","symbol":...,"interval":...}``."""

    symbol: str
    interval: str


#: An option an ``options`` message leaves as it is.
UNCHANGED: Any = object()


@dataclass(slots=True)
class Options:
    """``{"op":"options","fields":[...]|null,"delta":bool}``: ``fields`` (None: all) and ``delta``, each
    :data:`UNCHANGED` when the message leaves it out."""

    fields: Any = UNCHANGED
    delta: Any = UNCHANGED


Command = Subscribe | Unsubscribe | Ping | Auth | SubscribeBars | UnsubscribeBars | Options
KNOWN_OPS = "subscribe, unsubscribe, subscribe_bars, unsubscribe_bars, options, ping, auth, refresh"

MAX_TOKEN_CHARS = 8192  # a JWT longer than this is refused unread
#: The largest ping ``id`` echoed, in bytes of compact JSON: a pong never costs more than its ping.
MAX_PING_ID_BYTES = 256


def split_symbols(raw: Iterable[object]) -> tuple[list[str], list[str]]:
    """Normalize ``raw`` symbols: (valid ones in first-seen order without duplicates, invalid inputs as text)."""
    valid: dict[str, None] = {}
    invalid: list[str] = []
    for item in raw:
        sym = valid_symbol(item)
        if sym is not None:
            valid[sym] = None
        else:
            invalid.append(item[:40] if isinstance(item, str) else _short_json(item))
    return list(valid), invalid


def _short_json(value: object) -> str:
    try:
        return orjson.dumps(value).decode()[:40]
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper than it writes)
        return "<nested value>"


def parse_client_message(data: str | bytes) -> Command:
    """Parse one client text frame; raise :class:`ProtocolError` for anything malformed."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"frame is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_REQUEST, 'a message must be a JSON object with an "op" field')
    op = msg.get("op")
    if not isinstance(op, str):
        raise ProtocolError(BAD_REQUEST, 'missing or non-string "op" field')
    if op == "ping":
        ping_id = msg.get("id")
        try:
            size = len(orjson.dumps(ping_id))
        except orjson.JSONEncodeError:
            raise ProtocolError(BAD_REQUEST, "ping id is nested too deeply to echo") from None
        if size > MAX_PING_ID_BYTES:
            raise ProtocolError(
                BAD_REQUEST, f"ping id is {size} bytes of JSON; at most {MAX_PING_ID_BYTES} are echoed"
            )
        return Ping(ping_id)
    if op in ("subscribe", "unsubscribe"):
        raw = msg.get("symbols")
        if not isinstance(raw, list):
            raise ProtocolError(BAD_REQUEST, f'"{op}" needs "symbols": a list of symbol strings')
        valid, invalid = split_symbols(raw)
        if op == "unsubscribe":
            return Unsubscribe(valid, invalid)
        return Subscribe(valid, invalid, parse_max_hz(msg["max_hz"]) if "max_hz" in msg else None)
    if op == "options":
        return _options(msg)
    if op in ("auth", "refresh"):
        token = msg.get("token")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise ProtocolError(
                BAD_REQUEST, f'"{op}" needs "token": a JWT of at most {MAX_TOKEN_CHARS} characters'
            )
        return Auth(token, refresh=op == "refresh")
    if op in ("subscribe_bars", "unsubscribe_bars"):
        return _bars_command(op, msg)
    raise ProtocolError(UNKNOWN_OP, f"unknown op {op[:64]!r} (known: {KNOWN_OPS})")


def parse_max_hz(value: object) -> float:
    """A ``max_hz`` value: a finite number of at least :data:`~ticker.views.MIN_HZ`; else ``bad_request``."""
    if type(value) not in (int, float) or not MIN_HZ <= value < float("inf"):  # type: ignore[operator]
        raise ProtocolError(
            BAD_REQUEST, f'"max_hz" must be a number of entries per second, at least {MIN_HZ}'
        )
    return float(value)  # type: ignore[arg-type]


def parse_fields(value: object) -> tuple[str, ...] | None:
    """A ``fields`` value: a non-empty list of field names (canonical order) or null (all fields)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(f, str) for f in value):
        raise ProtocolError(BAD_REQUEST, '"fields" must be a non-empty list of field names, or null for all')
    bad = unknown_fields(value)
    if bad:
        shown = ", ".join(f[:16] for f in bad[:10])
        raise ProtocolError(BAD_REQUEST, f"unknown fields: {shown} (known: {', '.join(FIELD_NAMES)})")
    return canonical_fields(value)


def parse_delta(value: object) -> bool:
    """A ``delta`` value: true or false."""
    if not isinstance(value, bool):
        raise ProtocolError(BAD_REQUEST, '"delta" must be true or false')
    return value


def _options(msg: dict[str, Any]) -> Options:
    if "fields" not in msg and "delta" not in msg:
        raise ProtocolError(
            BAD_REQUEST, '"options" needs "fields" (a list of field names, or null) or "delta"'
        )
    out = Options()
    if "fields" in msg:
        out.fields = parse_fields(msg["fields"])
    if "delta" in msg:
        out.delta = parse_delta(msg["delta"])
    return out


def _bars_command(op: str, msg: dict[str, Any]) -> SubscribeBars | UnsubscribeBars:
    raw = msg.get("symbol")
    if not isinstance(raw, str):
        raise ProtocolError(BAD_REQUEST, f'"{op}" needs "symbol": one symbol string')
    symbol = valid_symbol(raw)
    if symbol is None:
        raise InvalidSymbol(raw[:40])
    if "interval" not in msg:
        raise ProtocolError(BAD_REQUEST, f'"{op}" needs "interval": one of 1s, 1m, 5m, 1h, 1d')
    interval = parse_interval(msg["interval"])
    if op == "unsubscribe_bars":
        return UnsubscribeBars(symbol, interval)
    history = msg.get("history", DEFAULT_LIMIT)
    if type(history) is not int or not 0 <= history <= MAX_LIMIT:
        raise ProtocolError(BAD_REQUEST, f'"history" must be a whole number of bars from 0 to {MAX_LIMIT}')
    return SubscribeBars(symbol, interval, history)


def encode_quotes(kind: bytes, entries: Sequence[bytes]) -> bytes:
    """``{"type":kind,"data":[...]}`` from already-encoded Q entries, joined without re-encoding."""
    return b'{"type":"' + kind + b'","data":[' + b",".join(entries) + b"]}"


QUOTES = b"quotes"
SNAPSHOT = b"snapshot"
#: What an epoch (a snapshot's ``e``, an SSE stream's ``id``) may be: 1 to 64 of these characters.
EPOCH = re.compile(r"[A-Za-z0-9#:._-]{1,64}")


def encode_snapshot(entries: Sequence[bytes], epoch: str) -> bytes:
    """``{"type":"snapshot","e":epoch,"data":[...]}``: full entries, and the epoch of the source that numbered
    their ``q`` (a client keeps deduplicating across reconnects while it stays the same)."""
    return b'{"type":"snapshot","e":"' + epoch.encode() + b'","data":[' + b",".join(entries) + b"]}"


def subscribed(
    symbols: Iterable[str], delayed: Iterable[str] = (), rates: dict[str, float] | None = None
) -> bytes:
    """``{"type":"subscribed","symbols":[...],"delayed":[...],"rates":{...}}``: the connection's full current set,
    those of its symbols it receives delayed, and the granted maximum rate of those that have one."""
    return orjson.dumps(
        {
            "type": "subscribed",
            "symbols": sorted(symbols),
            "delayed": sorted(delayed),
            "rates": dict(sorted((rates or {}).items())),
        }
    )


def options(fields: tuple[str, ...] | None, delta: bool) -> bytes:
    """``{"type":"options","fields":[...]|null,"delta":bool}``: the connection's options in force."""
    return orjson.dumps(
        {"type": "options", "fields": None if fields is None else list(fields), "delta": delta}
    )


def authenticated(sub: str, exp: float) -> bytes:
    """``{"type":"authenticated","sub":...,"exp":...}``: the token in force and when it expires (epoch s)."""
    return orjson.dumps({"type": "authenticated", "sub": sub, "exp": int(exp)})


def pong(ping_id: Any) -> bytes:
    """``{"type":"pong","id":...}`` echoing the ping's id."""
    return orjson.dumps({"type": "pong", "id": ping_id})


def error(
    code: str,
    message: str,
    symbols: Sequence[str] | None = None,
    suggestions: dict[str, list[str]] | None = None,
) -> bytes:
    """``{"type":"error","code":...,"message":...}``, with ``"symbols"`` when the error names symbols and
    ``"suggestions"`` (symbol → closest known symbols) for ``unknown_symbol``."""
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if symbols is not None:
        msg["symbols"] = list(symbols)
    if suggestions:
        msg["suggestions"] = suggestions
    return orjson.dumps(msg)


def bars(symbol: str, interval: str, data: Sequence[Bar], delayed: bool = False) -> bytes:
    """``{"type":"bars","s","interval","delayed","data":[bar,...]}``: a bar subscription's history, oldest first."""
    return orjson.dumps({"type": "bars", "s": symbol, "interval": interval, "delayed": delayed, "data": data})


def bar(symbol: str, interval: str, data: Bar) -> bytes:
    """``{"type":"bar","s","interval","bar":{t,o,h,l,c,v}}``: one bar that changed or opened (upsert by ``t``)."""
    return (
        b'{"type":"bar","s":"'
        + symbol.encode()
        + b'","interval":"'
        + interval.encode()
        + b'","bar":'
        + data.encode()
        + b"}"
    )


def bars_unsubscribed(symbol: str, interval: str) -> bytes:
    """``{"type":"bars_unsubscribed","s","interval"}``: the bar subscription ended (asked for, or dropped)."""
    return orjson.dumps({"type": "bars_unsubscribed", "s": symbol, "interval": interval})


def status(entries: Sequence[dict[str, str]]) -> bytes:
    """``{"type":"status","data":[{"s","state","reason"},...]}``: symbols whose state is new to the client."""
    return orjson.dumps({"type": "status", "data": list(entries)})
