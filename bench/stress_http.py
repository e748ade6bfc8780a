"""The HTTP attacks of the stress suite: REST clients, slowloris headers, trickling bodies, look-alike hosts.

Run by the attacker process of :mod:`bench.stress_attacks`; each ends by itself after the job's ``seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from bench.stress_wire import (
    Conn,
    Job,
    Tally,
    connect,
    deadline,
    http_request,
    left,
    read_response,
    refusal,
    tcp,
    ws_request,
)


async def rest(job: Job, t: Tally) -> None:
    """``n`` keep-alive clients asking ``/api/quotes`` back to back (ignoring ``Retry-After``)."""
    until = deadline(job.seconds)
    request = http_request(job.port, "/api/quotes?symbols=" + ",".join(job.symbols[:2]))

    async def one(i: int) -> None:
        src = job.addrs[i % len(job.addrs)]
        while left(until) > 0:
            try:
                sock = await asyncio.wait_for(tcp(job.port, src), 5)
                reader, writer = await asyncio.open_connection(sock=sock)
            except (OSError, TimeoutError):
                t.add("connect error")
                await asyncio.sleep(0.2)
                continue
            try:
                while left(until) > 0:
                    writer.write(request)
                    status, headers = await asyncio.wait_for(read_response(reader), 10)
                    t.add(str(status))
                    if headers.get("connection", "").lower() == "close":
                        break
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                t.add("dropped")
            finally:
                writer.transport.abort()

    await asyncio.gather(*(one(i) for i in range(job.n)))


async def _lifetimes(job: Job, t: Tally, first: bytes, piece: bytes, every: float, what: str) -> None:
    """``n`` connections that send ``first``, then ``piece`` every ``every`` seconds until the server answers
    or closes; each one's time to its answer and to its close is sampled; a closed one is reopened."""
    until = deadline(job.seconds)
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        await asyncio.sleep(random.random() * min(1.0, job.seconds / 4))
        src = job.addrs[i % len(job.addrs)]
        while left(until) > 0:
            try:
                sock = await asyncio.wait_for(tcp(job.port, src), 5)
                _, conn = await loop.create_connection(lambda: Conn(first), sock=sock)
            except (OSError, TimeoutError):
                t.add("connect error")
                await asyncio.sleep(0.2)
                continue
            t0 = loop.time()
            while conn.open and left(until) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.closed), every)
                conn.send(piece)
            if conn.open:
                t.add(f"{what} open at the end")
                conn.abort()
                return
            t.add(refusal(conn) if conn.status else "closed without an answer")
            t.sample("seconds to close", loop.time() - t0)
            await asyncio.sleep(1.0)  # a slow attacker: it comes back, but not at once

    await asyncio.gather(*(one(i) for i in range(job.n)))


async def slowloris(job: Job, t: Tally) -> None:
    """``n`` connections sending a request's headers one byte every 2 s (``--header-timeout`` closes them)."""
    first = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{job.port}\r\n".encode()
    await _lifetimes(job, t, first, b"x", 2.0, "slow headers")


async def slow_post(job: Job, t: Tally) -> None:
    """``n`` POSTs announcing a 1 MB body, sent one byte a second (no route takes a body: refused at once)."""
    first = http_request(
        job.port, "/api/quotes", "POST", extra="Content-Type: application/json\r\nContent-Length: 1000000\r\n"
    )
    await _lifetimes(job, t, first, b"{", 1.0, "slow body")


def rebinding_requests(port: int) -> dict[str, bytes]:
    """Requests a page on a rebinding domain (or another origin) would send; none may be served."""
    evil = f"evil.example:{port}"
    return {
        "ws Host evil": ws_request(port, host=evil),
        "ws Host+Origin evil": ws_request(port, host=evil, extra=f"Origin: http://{evil}\r\n"),
        "ws Host 127.0.0.1.evil": ws_request(port, host=f"127.0.0.1.evil.example:{port}"),
        "sse Host+Origin evil": http_request(
            port, "/sse?symbols=AAPL", host=evil, extra=f"Origin: http://{evil}\r\n"
        ),
        "rest Host evil": http_request(port, "/api/quotes?symbols=AAPL", host=evil),
        "page Host evil": http_request(port, "/", host=evil),
        "ws Origin chrome-extension": ws_request(
            port, extra=f"Origin: chrome-extension://127.0.0.1:{port}\r\n"
        ),
        "ws Origin https": ws_request(port, extra=f"Origin: https://127.0.0.1:{port}\r\n"),
        "ws Origin other port": ws_request(port, extra=f"Origin: http://127.0.0.1:{port + 1}\r\n"),
        "ws Origin null": ws_request(port, extra="Origin: null\r\n"),
        "sse Origin evil": http_request(port, "/sse?symbols=AAPL", extra=f"Origin: http://{evil}\r\n"),
        "rest preflight evil": http_request(
            port,
            "/api/quotes",
            "OPTIONS",
            extra=f"Origin: http://{evil}\r\nAccess-Control-Request-Method: GET\r\n",
        ),
    }


async def rebinding(job: Job, t: Tally) -> None:
    """``n`` loops sending the :func:`rebinding_requests` in turn for ``seconds`` (20 a second each);
    counted by answer, and ``accepted`` for any 101 or 2xx."""
    until = deadline(job.seconds)
    requests = list(rebinding_requests(job.port).items())

    async def one(i: int) -> None:
        k = i
        while left(until) > 0:
            name, request = requests[k % len(requests)]
            k += 1
            try:
                conn = await connect(job.port, job.addrs[k % len(job.addrs)], request, within=5)
            except (OSError, TimeoutError):
                t.add("connect error")
                continue
            conn.abort()
            t.add(f"{name}: {conn.status}")
            t.add("requests")
            if conn.status == 101 or 200 <= conn.status < 300:
                t.add("accepted")
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one(i) for i in range(job.n)))


HTTP_ATTACKS: dict[str, Callable[[Job, Tally], Awaitable[None]]] = {
    "rest": rest,
    "slowloris": slowloris,
    "slow-post": slow_post,
    "rebinding": rebinding,
}
