"""The fan-out's test rig: fake transports, a fake clock and a hand-driven scheduler (no sockets, no loop)."""

from __future__ import annotations

from typing import ClassVar

from tests.support.clock import ManualClock, ManualScheduler
from ticker.errors import ProtocolError
from ticker.frames import ws_text_frame
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.server.fanout import DUTY, Connection, Fanout

FLUSH = 0.02
SLOW = 1000
TIMEOUT = 10.0


class FakeSubscriber(Connection):
    """Records its frames; ``unsent`` is what it reports as still buffered; ``gone`` makes writes fail."""

    transport: ClassVar[str] = "ws"
    framed: ClassVar[list[bytes]]  # payloads handed to this transport's framer, in order

    @staticmethod
    def framer(payload: bytes) -> bytes:
        FakeSubscriber.framed.append(payload)
        return ws_text_frame(payload)

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[bytes] = []
        self.unsent = 0
        self.gone = False
        self.closed_slow = False
        #: Seconds each write takes on :attr:`clock` (set both to make flushes take time).
        self.cost = 0.0
        self.clock: ManualClock | None = None

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def write_frame(self, frame: bytes) -> int:
        if self.gone:
            return -1
        self.frames.append(frame)
        if self.clock is not None:
            self.clock.now += self.cost
        return self.unsent

    def buffered(self) -> int:
        return self.unsent

    def close_slow(self) -> None:
        self.closed_slow = self.gone = True  # as a transport: nothing more is written after Close

    def close_going_away(self) -> None:
        raise AssertionError("not expected here")

    def abort(self) -> None:
        raise AssertionError("not expected here")

    def send_message(self, kind: str, payload: bytes) -> None:
        self.frames.append(ws_text_frame(payload))

    def drop_symbols(self, symbols: list[str], refusal: ProtocolError) -> None:
        raise AssertionError("not expected here")


class FakeSse(FakeSubscriber):
    transport: ClassVar[str] = "sse"
    framed: ClassVar[list[bytes]]

    @staticmethod
    def framer(payload: bytes) -> bytes:
        FakeSse.framed.append(payload)
        return b"data: " + payload + b"\n\n"


class Rig:
    def __init__(self, budget: int = 1 << 30, duty: float | None = DUTY) -> None:
        FakeSubscriber.framed, FakeSse.framed = [], []
        self.clock = ManualClock()
        self.sched = ManualScheduler(self.clock)
        self.hub: Hub[Connection] = Hub()
        self.metrics = Metrics()
        self.fanout = Fanout(
            self.hub,
            self.metrics,
            flush_interval=FLUSH,
            slow_bytes=SLOW,
            slow_timeout=TIMEOUT,
            max_buffered=budget,
            clock=self.clock,
            scheduler=self.sched,
            duty=duty,
        )

    def conn(
        self, name: str, symbols: list[str], kind: type[FakeSubscriber] = FakeSubscriber
    ) -> FakeSubscriber:
        c = kind(name)
        self.hub.add(c)
        if symbols:
            self.hub.subscribe(c, symbols)
        return c

    def publish(self, symbol: str, price: float) -> None:
        self.fanout.publish(Quote(symbol, price, 1))

    def counter(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(name) or 0.0
