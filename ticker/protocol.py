"""The wire protocol (Sans-I/O): parse client frames into commands, build server messages.

Nothing here touches a socket; the transports feed text in and write the bytes out.
The contract is written down in docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ticker.errors import BAD_JSON, BAD_REQUEST, UNKNOWN_OP, ProtocolError
from ticker.symbols import valid_symbol


@dataclass(slots=True)
class Subscribe:
    """``{"op":"subscribe"}``: ``symbols`` are the valid, normalized ones; ``invalid`` the refused inputs."""

    symbols: list[str]
    invalid: list[str] = field(default_factory=list)


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


Command = Subscribe | Unsubscribe | Ping | Auth

MAX_TOKEN_CHARS = 8192  # a JWT longer than this is refused unread


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
            orjson.dumps(ping_id)
        except orjson.JSONEncodeError:
            raise ProtocolError(BAD_REQUEST, "ping id is nested too deeply to echo") from None
        return Ping(ping_id)
    if op in ("subscribe", "unsubscribe"):
        raw = msg.get("symbols")
        if not isinstance(raw, list):
            raise ProtocolError(BAD_REQUEST, f'"{op}" needs "symbols": a list of symbol strings')
        valid, invalid = split_symbols(raw)
        return Subscribe(valid, invalid) if op == "subscribe" else Unsubscribe(valid, invalid)
    if op in ("auth", "refresh"):
        token = msg.get("token")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise ProtocolError(
                BAD_REQUEST, f'"{op}" needs "token": a JWT of at most {MAX_TOKEN_CHARS} characters'
            )
        return Auth(token, refresh=op == "refresh")
    raise ProtocolError(
        UNKNOWN_OP, f"unknown op {op[:64]!r} (known: subscribe, unsubscribe, ping, auth, refresh)"
    )


def encode_quotes(kind: bytes, entries: Sequence[bytes]) -> bytes:
    """``{"type":kind,"data":[...]}`` from already-encoded Q entries, joined without re-encoding."""
    return b'{"type":"' + kind + b'","data":[' + b",".join(entries) + b"]}"


QUOTES = b"quotes"
SNAPSHOT = b"snapshot"


def subscribed(symbols: Iterable[str], delayed: Iterable[str] = ()) -> bytes:
    """``{"type":"subscribed","symbols":[...],"delayed":[...]}``: the connection's full current set, and
    those of its symbols it receives delayed."""
    return orjson.dumps({"type": "subscribed", "symbols": sorted(symbols), "delayed": sorted(delayed)})


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


def status(entries: Sequence[dict[str, str]]) -> bytes:
    """``{"type":"status","data":[{"s","state","reason"},...]}``: symbols whose state is new to the client."""
    return orjson.dumps({"type": "status", "data": list(entries)})
