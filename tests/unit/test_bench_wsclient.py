"""The load generator's WebSocket client, without a network: handshake, frame walking, counting."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.wsclient import Stats, Subscriber
from tests.support.wsframes import client_frame


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def server_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    opcode, n = frame[0] & 0x0F, frame[1] & 0x7F
    assert frame[1] & 0x80, "client frames must be masked"
    offset = 2 if n < 126 else 4
    mask, body = frame[offset : offset + 4], frame[offset + 4 :]
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def quotes(n: int, t: int) -> bytes:
    entries = ",".join(f'{{"s":"S{i:03d}","p":1.5,"t":{t},"q":{i}}}' for i in range(n))
    return f'{{"type":"quotes","data":[{entries}]}}'.encode()


async def opened(stats: Stats) -> tuple[Subscriber, FakeTransport]:
    sub = Subscriber(stats, "127.0.0.1:1", "/ws", b'{"op":"subscribe","symbols":["S000"]}')
    transport = FakeTransport()
    sub.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written[0].startswith(b"GET /ws HTTP/1.1\r\n")
    assert b"Sec-WebSocket-Version: 13" in transport.written[0]
    # The response may arrive split, with the first frame right behind it.
    sub.data_received(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
    assert not sub.open.done()
    sub.data_received(b"\r\n" + server_frame(1, b'{"type":"subscribed","symbols":["S000"]}'))
    await sub.open
    return sub, transport


async def test_counts_updates_frames_and_latency_across_split_chunks():
    stats = Stats()
    stats.expected = 1
    sub, transport = await opened(stats)
    assert stats.subscribed == 1 and stats.all_acked.is_set()
    sub.subscribe()
    assert unmask(transport.written[-1]) == (1, b'{"op":"subscribe","symbols":["S000"]}')

    t = int(time.time() * 1000) - 40
    stream = server_frame(1, quotes(3, t)) + server_frame(1, quotes(200, t)) + server_frame(1, quotes(1, t))
    assert len(quotes(200, t)) > 126  # exercises the 16-bit length
    for i in range(0, len(stream), 7):  # worst case: tiny reads splitting headers and payloads
        sub.data_received(stream[i : i + 7])
    assert stats.frames == 3
    assert stats.updates == 204
    assert sum(stats.latency.values()) == pytest.approx(204)
    assert all(39 <= ms <= 40 + 5000 for ms in stats.latency)
    assert stats.disconnects == stats.server_errors == 0


async def test_answers_ping_and_notes_close_and_error():
    stats = Stats()
    sub, transport = await opened(stats)
    sub.data_received(
        server_frame(1, b'{"type":"error","code":"bad_request","message":"x"}') + server_frame(9, b"hi")
    )
    assert stats.server_errors == 1
    assert unmask(transport.written[-1]) == (0xA, b"hi")
    sub.data_received(server_frame(8, b"\x03\xe9bye"))
    assert stats.disconnects == 1 and transport.closed
    assert unmask(transport.written[-1]) == (8, b"\x03\xe9")
    sub.connection_lost(None)
    assert stats.disconnects == 1  # not counted twice


async def test_refused_handshake_fails_the_connect():
    stats = Stats()
    sub = Subscriber(stats, "127.0.0.1:1", "/ws", b"{}")
    transport = FakeTransport()
    sub.connection_made(transport)  # type: ignore[arg-type]
    sub.data_received(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ConnectionError, match="403"):
        await sub.open
    assert transport.closed


def test_client_frames_are_masked_for_every_length():
    for n in (0, 5, 125, 126, 70_000):
        payload = bytes(i % 251 for i in range(n))
        frame = client_frame(1, payload)
        if n >= 65536:  # 64-bit length: unmask by hand
            mask, body = frame[10:14], frame[14:]
            assert frame[1] == 0x80 | 127 and int.from_bytes(frame[2:10], "big") == n
            assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == payload
        else:
            assert unmask(frame) == (1, payload)


def test_stats_reset_keeps_connection_state():
    stats = Stats()
    stats.subscribed, stats.frames, stats.latency[3] = 2, 5, 1.0
    stats.reset()
    assert stats.subscribed == 2 and stats.frames == 0 and stats.latency == {}
    assert isinstance(stats.all_acked, asyncio.Event)


def bar_message(symbol: str, interval: str, t: int) -> bytes:
    return f'{{"type":"bar","s":"{symbol}","interval":"{interval}","bar":{{"t":{t},"o":1,"h":2,"l":1,"c":2,"v":5}}}}'.encode()


async def test_bar_subscriptions_are_acknowledged_and_counted_apart_from_quotes():
    stats = Stats()
    stats.expected = 1
    bar_requests = (
        b'{"op":"subscribe_bars","symbol":"S000","interval":"1s","history":0}',
        b'{"op":"subscribe_bars","symbol":"S000","interval":"1m","history":0}',
    )
    sub = Subscriber(
        stats, "127.0.0.1:1", "/ws", b'{"op":"subscribe","symbols":["S000"]}', None, False, bar_requests
    )
    transport = FakeTransport()
    sub.connection_made(transport)  # type: ignore[arg-type]
    sub.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    await sub.open
    sub.subscribe()
    sent, frames = transport.written[-1], []
    while sent:  # the subscribe and both subscribe_bars went out in one write, in that order
        n = sent[1] & 0x7F
        frames.append(unmask(sent[: 6 + n]))
        sent = sent[6 + n :]
    assert frames == [(1, b'{"op":"subscribe","symbols":["S000"]}')] + [(1, r) for r in bar_requests]

    t = int(time.time() * 1000) - 30
    old = t - 3_600_000  # a bar's start, an hour back: never read as a quote's t
    sub.data_received(
        server_frame(1, b'{"type":"subscribed","symbols":["S000"]}')
        + server_frame(1, b'{"type":"bars","s":"S000","interval":"1s","delayed":false,"data":[]}')
        + server_frame(1, quotes(2, t))
    )
    assert not sub.acked and stats.subscribed == 0  # one bars reply still missing
    assert stats.updates == 2 and stats.frames == 1
    sub.data_received(
        server_frame(
            1,
            f'{{"type":"bars","s":"S000","interval":"1m","delayed":false,"data":[{{"t":{old},"o":1,"h":1,"l":1,"c":1,"v":1}}]}}'.encode(),
        )
    )
    assert sub.acked and stats.subscribed == 1 and stats.all_acked.is_set()

    stream = server_frame(1, bar_message("S000", "1s", old)) + server_frame(1, quotes(3, t))
    stream += server_frame(1, bar_message("S000", "1s", old)) + server_frame(
        1, bar_message("S000", "1m", old)
    )
    for i in range(0, len(stream), 11):
        sub.data_received(stream[i : i + 11])
    sub.data_received(server_frame(1, bar_message("S000", "1m", old)))  # a chunk of bars alone
    assert stats.bars == 4
    assert stats.updates == 5 and stats.frames == 2
    assert sum(stats.latency.values()) == pytest.approx(5)
    assert all(29 <= ms <= 30 + 5000 for ms in stats.latency)  # no bar start taken for a quote's t
    assert stats.server_errors == stats.disconnects == 0
