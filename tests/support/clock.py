"""A clock and a scheduler that tests move by hand: no event loop, no real time."""

from __future__ import annotations

from collections.abc import Callable


class ManualClock:
    """A ``time.monotonic`` stand-in: calling it returns :attr:`now`, which only the test moves."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Handle:
    """A call kept by :class:`ManualScheduler`, due at ``when``; :meth:`cancel` calls it off."""

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualScheduler:
    """Keeps the calls it is given; :meth:`advance` moves the clock and runs those that fall due."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.handles: list[Handle] = []

    def call_soon(self, callback: Callable[[], object], /) -> Handle:
        return self.call_later(0.0, callback)

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Handle:
        h = Handle(self.clock.now + delay, callback)
        self.handles.append(h)
        return h

    def waiting(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        while due := sorted((h for h in self.waiting() if h.when <= self.clock.now), key=lambda h: h.when):
            h = due[0]
            self.handles.remove(h)
            h.callback()
