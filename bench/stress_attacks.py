"""The WebSocket attacks of the stress suite, and the attacker process that runs any attack.

``python -m bench.stress_attacks JOB_JSON`` runs one :class:`~bench.stress_wire.Job` (its share of an
attack: some connections from some source addresses) on uvloop and prints its tally as one JSON line.
The HTTP attacks are in :mod:`bench.stress_http`. Every attack ends by itself after ``seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import sys
from collections.abc import Awaitable, Callable

import orjson

from bench.stress_http import HTTP_ATTACKS
from bench.stress_wire import (
    PING,
    PONG,
    SLOW_RCVBUF,
    Conn,
    Job,
    Tally,
    connect,
    deadline,
    empty_frames,
    left,
    refusal,
    tcp,
    text_frame,
    ws_request,
)

OPEN_CONCURRENCY = 200  # handshakes in flight per attacker process
RETRY_CAP = 1.0  # seconds an attacker waits at most after a 429/503 before it tries again


async def open_ws(
    job: Job,
    t: Tally,
    i: int,
    path: str,
    until: float,
    read: bool = True,
    rcvbuf: int | None = None,
    watch: tuple[bytes, ...] = (),
) -> Conn | None:
    """Slot ``i``'s WebSocket: retried after refusals until ``until``; None when none opened
    (or the server said it is full: ``--max-connections``, counted and not retried)."""
    src = job.addrs[i % len(job.addrs)]
    while left(until) > 0:
        try:
            conn = await connect(job.port, src, ws_request(job.port, path), read, rcvbuf, watch=watch)
        except (OSError, TimeoutError):
            t.add("connect error")
            await asyncio.sleep(0.2)
            continue
        how = refusal(conn)
        t.add(how)
        if conn.status == 101:
            return conn
        if how == "503 full":
            return None
        await asyncio.sleep(min(conn.retry_after or 0.5, RETRY_CAP) * random.random() + 0.05)
    return None


async def _bounded(n: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Run ``one(i)`` for ``i`` in ``range(n)``, :data:`OPEN_CONCURRENCY` at a time."""
    sem = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def run(i: int) -> None:
        async with sem:
            await one(i)

    await asyncio.gather(*(run(i) for i in range(n)))


async def fd(job: Job, t: Tally) -> None:
    """Open ``n`` WebSockets (up to and past the server's limit), then ``idle`` TCP connections that send
    nothing; hold them ``seconds``; count what the server closed."""
    conns: list[Conn] = []
    opening = deadline(job.within)

    async def one(i: int) -> None:
        conn = await open_ws(job, t, i, "/ws", opening)
        if conn is not None:
            conns.append(conn)

    await _bounded(job.n, one)
    t.add("ws open", len(conns))
    loop = asyncio.get_running_loop()
    idle: list[Conn] = []
    for i in range(job.idle):
        try:
            sock = await asyncio.wait_for(tcp(job.port, job.addrs[i % len(job.addrs)]), 5)
        except (OSError, TimeoutError):
            t.add("idle connect error")
            continue
        _, conn = await loop.create_connection(lambda: Conn(b""), sock=sock)
        idle.append(conn)
    t.add("idle open", len(idle))
    await asyncio.sleep(job.seconds)
    t.add("ws closed by server", sum(not c.open for c in conns))
    t.add("idle closed by server", sum(not c.open for c in idle))
    for c in conns + idle:
        c.abort()


async def slow_readers(job: Job, t: Tally) -> None:
    """``n`` subscribers of ``symbols`` that never read (4 KiB receive buffer), held ``seconds``."""
    until = deadline(job.seconds)
    path = "/ws?symbols=" + ",".join(job.symbols)
    conns: list[Conn] = []

    async def one(i: int) -> None:
        conn = await open_ws(job, t, i, path, until, read=False, rcvbuf=SLOW_RCVBUF)
        if conn is not None:
            conns.append(conn)

    await _bounded(job.n, one)
    await asyncio.sleep(max(0.0, left(until)))
    for c in conns:
        c.abort()


async def connect_flood(job: Job, t: Tally) -> None:
    """``n`` WebSocket connects from one address as fast as they go (``size`` in flight), for at most
    ``seconds``; the accepted ones stay open (reading) to the end."""
    until = deadline(job.seconds)
    kept: list[Conn] = []
    todo = iter(range(job.n))

    async def worker() -> None:
        for i in todo:
            if left(until) <= 0:
                return
            try:
                conn = await connect(job.port, job.addrs[i % len(job.addrs)], ws_request(job.port), within=5)
            except (OSError, TimeoutError):
                t.add("connect error")
                continue
            t.add(refusal(conn))
            if conn.status == 101:
                kept.append(conn)

    await asyncio.gather(*(worker() for _ in range(job.size or 200)))
    t.add("attempts", sum(t.counts.values()))
    await asyncio.sleep(max(0.0, left(until)))
    for c in kept:
        c.abort()


async def ping_ids(job: Job, t: Tally) -> None:
    """``n`` connections that never read, each sending a second's worth of pings under the rate limit: one
    with a ``size``-byte id (over the cap) and 30 with a 250-byte id (echoed); reopened when closed."""
    until = deadline(job.seconds)
    big = text_frame(orjson.dumps({"op": "ping", "id": "x" * job.size}))
    small = text_frame(orjson.dumps({"op": "ping", "id": "y" * 250})) * 30
    batch = big + small

    async def one(i: int) -> None:
        await asyncio.sleep(random.random())
        while left(until) > 0:
            conn = await open_ws(job, t, i, "/ws", until, read=False, rcvbuf=SLOW_RCVBUF)
            if conn is None:
                return
            while conn.open and left(until) > 0:
                if conn.writable.is_set():
                    conn.send(batch)
                    t.add("batches sent")
                await asyncio.sleep(1.0)
            if not conn.open:
                t.add("closed by server")
            conn.abort()

    await asyncio.gather(*(one(i) for i in range(job.n)))


async def demand(job: Job, t: Tally) -> None:
    """``n`` reading connections, each subscribing ``size`` symbols of its own (the server must invent them:
    ``--unknown-symbols allow``), held ``seconds``."""
    until = deadline(job.seconds)
    conns: list[Conn] = []

    async def one(i: int) -> None:
        conn = await open_ws(job, t, i, "/ws", until, watch=(b'"subscribed"', b'"unavailable"'))
        if conn is None:
            return
        conns.append(conn)
        symbols = [f"Q{job.seed:02d}{i:03d}X{k:03d}" for k in range(job.size)]
        conn.send(text_frame(orjson.dumps({"op": "subscribe", "symbols": symbols})))

    await asyncio.gather(*(one(i) for i in range(job.n)))
    await asyncio.sleep(max(0.0, left(until)))
    t.add("subscribed", sum(b'"subscribed"' in c.seen for c in conns))
    t.add("told unavailable", sum(b'"unavailable"' in c.seen for c in conns))
    t.add("bytes received", sum(c.received for c in conns))
    for c in conns:
        c.abort()


FLOOD_FRAMES = 4096  # frames a write


def flood_chunks(kind: str) -> tuple[bytes, bytes]:
    """The first and every later write of a frame flood: pings, pongs, or empty continuation frames."""
    if kind == "cont-flood":  # a text frame that does not end its message, then empty continuations
        return empty_frames(0x01, 0x00, FLOOD_FRAMES), empty_frames(0x00, 0x00, FLOOD_FRAMES)
    opcode = PING if kind == "ping-flood" else PONG
    chunk = empty_frames(0x80 | opcode, 0x80 | opcode, FLOOD_FRAMES)
    return chunk, chunk


async def flood(job: Job, t: Tally) -> None:
    """``n`` connections writing control (or continuation) frames as fast as the socket takes them;
    reopened when the server closes them."""
    until = deadline(job.seconds)
    first, later = flood_chunks(job.attack)

    async def one(i: int) -> None:
        while left(until) > 0:
            conn = await open_ws(job, t, i, "/ws", until)
            if conn is None:
                return
            conn.send(first)
            opened = asyncio.get_running_loop().time()
            while conn.open and conn.close_code is None and left(until) > 0:
                await conn.writable.wait()
                conn.send(later)
                t.add("frames written", FLOOD_FRAMES)
                await asyncio.sleep(0)
            if conn.close_code is not None or not conn.open:
                t.add(f"closed {conn.close_code}")
                t.sample("seconds to close", asyncio.get_running_loop().time() - opened)
            conn.abort()

    await asyncio.gather(*(one(i) for i in range(job.n)))


async def churn(job: Job, t: Tally) -> None:
    """The soak: ``n`` clients connecting, subscribing, unsubscribing and leaving in random turns, and
    ``idle`` slow readers (never reading, replaced every 20 s), for ``seconds``."""
    until = deadline(job.seconds)
    rng = random.Random(job.seed)

    async def client(i: int) -> None:
        await asyncio.sleep(rng.random() * 2)
        while left(until) > 0:
            syms = rng.sample(job.symbols, rng.randint(1, 10))
            conn = await open_ws(job, t, i, "/ws?symbols=" + ",".join(syms), until)
            if conn is None:
                return
            t.add("connects")
            life = deadline(rng.uniform(2, 15))
            while conn.open and left(life) > 0 and left(until) > 0:
                await asyncio.sleep(rng.uniform(0.5, 3))
                op = rng.choice(("subscribe", "unsubscribe"))
                pick = rng.sample(job.symbols, rng.randint(1, 5)) if op == "subscribe" else syms[:1]
                conn.send(text_frame(orjson.dumps({"op": op, "symbols": pick})))
                t.add(op)
            if rng.random() < 0.5:
                conn.send(b"\x88\x82" + bytes(4) + b"\x03\xe8")  # a close frame (1000), zero mask
                await asyncio.sleep(0.1)
            conn.abort()
            await asyncio.sleep(rng.uniform(0.1, 1))

    async def slow(i: int) -> None:
        while left(until) > 0:
            path = "/ws?symbols=" + ",".join(job.symbols[:50])
            conn = await open_ws(job, t, i, path, until, read=False, rcvbuf=SLOW_RCVBUF)
            if conn is None:
                return
            t.add("slow readers")
            await asyncio.sleep(min(20.0, max(0.0, left(until))))
            conn.abort()

    await asyncio.gather(*(client(i) for i in range(job.n)), *(slow(job.n + i) for i in range(job.idle)))


WS_ATTACKS: dict[str, Callable[[Job, Tally], Awaitable[None]]] = {
    "fd": fd,
    "slow-readers": slow_readers,
    "connect-flood": connect_flood,
    "ping-ids": ping_ids,
    "demand": demand,
    "ping-flood": flood,
    "cont-flood": flood,
    "pong-flood": flood,
    "churn": churn,
}
ATTACKS = {**WS_ATTACKS, **HTTP_ATTACKS}


async def run(job: Job) -> Tally:
    """Run ``job`` and return its tally."""
    t = Tally()
    await ATTACKS[job.attack](job, t)
    return t


def main() -> None:
    job = Job(**orjson.loads(sys.argv[1]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    tally = uvloop.run(run(job))
    sys.stdout.write(orjson.dumps(tally.as_json()).decode() + "\n")
    sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stdout.close()


if __name__ == "__main__":
    main()
