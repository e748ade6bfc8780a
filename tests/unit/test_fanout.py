"""The fan-out with fake transports, a fake clock and a hand-driven scheduler: no sockets, no event loop."""

from __future__ import annotations

import orjson
import pytest

from tests.support.clock import ManualClock, ManualScheduler
from tests.support.fanoutkit import FLUSH, SLOW, TIMEOUT, FakeSse, FakeSubscriber, Rig
from ticker.delay import DelayLine, delayed_key
from ticker.hub import Hub
from ticker.metrics.registry import Metrics
from ticker.quote import Quote
from ticker.server import heap
from ticker.server.fanout import DUTY, SWEEP_INTERVAL, Connection, Fanout


def quotes(frame: bytes) -> tuple[str, dict[str, float]]:
    """The message type and symbol -> price of one WebSocket frame (short, unmasked text frame)."""
    assert frame[0] == 0x81
    msg = orjson.loads(frame[2:] if frame[1] < 126 else frame[4:])
    return msg["type"], {q["s"]: q["p"] for q in msg["data"]}


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_every_member_of_a_batch_gets_the_same_bytes_object(rig: Rig):
    ws = [rig.conn(f"w{i}", ["AAPL", "MSFT"]) for i in range(3)]
    sse = [rig.conn(f"s{i}", ["AAPL", "MSFT"], FakeSse) for i in range(2)]
    rig.publish("AAPL", 1.0)
    rig.publish("MSFT", 2.0)
    rig.sched.advance()
    assert all(len(c.frames) == 1 for c in ws + sse)
    assert all(c.frames[0] is ws[0].frames[0] for c in ws)
    assert all(c.frames[0] is sse[0].frames[0] for c in sse)
    assert quotes(ws[0].frames[0]) == ("quotes", {"AAPL": 1.0, "MSFT": 2.0})
    assert len(FakeSubscriber.framed) == 1 and len(FakeSse.framed) == 1  # framed once per batch per transport
    assert (
        FakeSubscriber.framed[0] is FakeSse.framed[0]
    )  # encoded once: both transports wrap the same payload
    assert rig.counter("ticker_frames_sent_total") == 5
    assert rig.counter("ticker_updates_sent_total") == 10


def test_a_batch_of_mixed_transports_is_framed_once_per_transport_and_every_frame_counted(rig: Rig):
    conns = [rig.conn(f"c{i}", ["AAPL", "MSFT"], FakeSse if i % 2 else FakeSubscriber) for i in range(40)]
    conns[3].gone = conns[4].gone = True  # one of each transport: not written, not counted
    rig.publish("AAPL", 1.0)
    rig.publish("MSFT", 2.0)
    rig.sched.advance()
    assert len(FakeSubscriber.framed) == 1 and len(FakeSse.framed) == 1
    written = [f for c in conns for f in c.frames]
    assert len(written) == 38 and {len(f) for f in written} == {
        len(conns[0].frames[0]),
        len(conns[1].frames[0]),
    }
    assert all(c.frames[0] is conns[i % 2].frames[0] for i, c in enumerate(conns) if not c.gone)
    assert rig.counter("ticker_frames_sent_total") == 38
    assert rig.counter("ticker_updates_sent_total") == 76
    assert rig.counter("ticker_bytes_sent_total") == sum(map(len, written))


def test_an_idle_server_writes_each_update_on_the_next_loop_pass(rig: Rig):
    a = rig.conn("a", ["AAPL"])
    rig.publish("AAPL", 1.0)
    rig.publish("AAPL", 2.0)  # the same loop pass: one entry, the latest
    rig.sched.advance()
    rig.sched.advance(0.001)  # a millisecond later, far inside the flush interval
    rig.publish("AAPL", 3.0)
    rig.sched.advance()
    assert [quotes(f)[1] for f in a.frames] == [{"AAPL": 2.0}, {"AAPL": 3.0}]


def test_batches_grow_with_the_time_flushes_take(rig: Rig):
    a = rig.conn("a", ["AAPL", "MSFT"])
    a.clock, a.cost = rig.clock, 0.004  # each flush writes for 4 ms
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    assert len(a.frames) == 1
    rig.publish("AAPL", 2.0)  # came in while the flush wrote
    rig.publish("MSFT", 5.0)
    rig.sched.advance()
    assert len(a.frames) == 1, "the next flush waits as long as the last one took (DUTY 1)"
    rig.sched.advance(0.004 * DUTY - 0.0001)
    rig.publish("AAPL", 3.0)
    assert len(a.frames) == 1
    rig.sched.advance(0.0001)
    assert [quotes(f)[1] for f in a.frames] == [{"AAPL": 1.0}, {"AAPL": 3.0, "MSFT": 5.0}]


def test_no_update_waits_longer_than_the_flush_interval_however_long_flushes_take(rig: Rig):
    a = rig.conn("a", ["AAPL"])
    a.clock, a.cost = rig.clock, FLUSH * 1.5  # a flush longer than the interval
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    rig.publish("AAPL", 2.0)
    rig.sched.advance()  # the interval since the last flush began is over: the next loop pass
    assert len(a.frames) == 2
    b = rig.conn("b", ["MSFT"])
    b.clock, b.cost = rig.clock, FLUSH / 4  # flushes of b alone take 5 ms: the next waits 5 ms ...
    rig.publish("MSFT", 1.0)
    rig.sched.advance()
    rig.publish("MSFT", 2.0)
    rig.sched.advance(FLUSH / 4 - 0.0001)
    assert len(b.frames) == 1
    rig.sched.advance(0.0001)
    assert len(b.frames) == 2


def test_a_fixed_schedule_sends_one_frame_per_flush_interval_with_the_latest_values():
    rig = Rig(duty=None)
    a = rig.conn("a", ["AAPL"])
    b = rig.conn("b", ["AAPL", "MSFT"])
    rig.publish("AAPL", 1.0)
    rig.sched.advance()  # quiet period: flushed on the next pass
    assert [quotes(f)[1] for f in a.frames] == [{"AAPL": 1.0}]
    for price in (2.0, 3.0, 4.0):
        rig.publish("AAPL", price)
    rig.publish("MSFT", 9.0)
    rig.sched.advance(FLUSH / 2)
    assert len(a.frames) == 1, "a flush came before the interval was over"
    rig.sched.advance(FLUSH / 2)
    assert [quotes(f)[1] for f in a.frames] == [{"AAPL": 1.0}, {"AAPL": 4.0}]
    assert [quotes(f)[1] for f in b.frames] == [{"AAPL": 1.0}, {"AAPL": 4.0, "MSFT": 9.0}]
    assert len(FakeSubscriber.framed) == 4  # one frame per symbol set and flush, however many updates
    assert rig.sched.waiting() == []


def test_a_connection_past_slow_bytes_is_conflated_while_the_others_keep_receiving(rig: Rig):
    slow, fast = rig.conn("slow", ["AAPL", "MSFT"]), rig.conn("fast", ["AAPL", "MSFT"])
    slow.unsent = SLOW + 1
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    assert len(slow.frames) == 1 and rig.fanout.is_conflating(slow) and not rig.fanout.is_conflating(fast)
    for price in (2.0, 3.0):
        rig.publish("AAPL", price)
        rig.sched.advance(FLUSH)
    rig.publish("MSFT", 5.0)
    rig.sched.advance(FLUSH)
    assert len(slow.frames) == 1
    assert len(fast.frames) == 4
    assert rig.counter("ticker_updates_conflated_total") == 1  # AAPL at 3.0 replaced AAPL at 2.0
    assert rig.fanout.stats() == {"slow": 1}


def test_a_conflated_connection_resumes_with_the_latest_values_once_below_half(rig: Rig):
    slow = rig.conn("slow", ["AAPL", "MSFT", "NVDA"])
    slow.unsent = SLOW + 1
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    rig.publish("AAPL", 2.0)
    rig.publish("MSFT", 3.0)
    rig.sched.advance(FLUSH)
    slow.unsent = SLOW // 2 + 1  # drained, but not below half: still conflated
    rig.sched.advance(SWEEP_INTERVAL)
    assert len(slow.frames) == 1 and rig.fanout.is_conflating(slow)
    slow.unsent = SLOW // 2
    rig.sched.advance(SWEEP_INTERVAL)
    assert not rig.fanout.is_conflating(slow)
    assert [quotes(f) for f in slow.frames[1:]] == [("quotes", {"AAPL": 2.0, "MSFT": 3.0})]
    slow.unsent = 0
    rig.sched.advance(SWEEP_INTERVAL)
    assert rig.sched.waiting() == []  # nobody conflated and nothing unsent: the sweep stops
    rig.publish("NVDA", 4.0)
    rig.sched.advance(FLUSH)
    assert quotes(slow.frames[-1]) == ("quotes", {"NVDA": 4.0})


def test_a_connection_over_the_bound_past_slow_timeout_is_closed_1013(rig: Rig):
    slow = rig.conn("slow", ["AAPL"])
    slow.unsent = SLOW + 1
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    rig.sched.advance(TIMEOUT - SWEEP_INTERVAL)
    assert not slow.closed_slow
    rig.sched.advance(2 * SWEEP_INTERVAL)
    assert slow.closed_slow
    assert rig.counter("ticker_slow_consumer_disconnects_total") == 1
    assert not rig.fanout.is_conflating(slow) and rig.sched.waiting() == []


def test_control_messages_over_the_bound_conflate_and_unsubscribed_symbols_are_not_owed(rig: Rig):
    c = rig.conn("c", ["AAPL", "MSFT"])
    rig.fanout.mark_slow(c)
    assert rig.fanout.is_conflating(c)
    rig.publish("AAPL", 1.0)
    rig.publish("MSFT", 2.0)
    rig.sched.advance()
    assert c.frames == []
    rig.hub.unsubscribe(c, ["AAPL"])
    rig.fanout.unsubscribed(c, ["AAPL"])
    rig.hub.subscribe(c, ["AAPL"])  # the session answers this with a snapshot of AAPL itself
    rig.sched.advance(SWEEP_INTERVAL)
    assert [quotes(f)[1] for f in c.frames] == [{"MSFT": 2.0}]


BUDGET = 2000  # three quarters of it: 1500


def test_past_the_budget_the_slowest_is_conflated_then_closed_while_the_others_keep_receiving():
    rig = Rig(BUDGET)
    a, b, c = (rig.conn(n, ["AAPL"]) for n in "abc")
    fast = rig.conn("fast", ["AAPL"])
    a.unsent, b.unsent, c.unsent = 900, 700, 300  # 1900: under the budget, nobody is touched
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    assert rig.fanout.buffered_total() == 1900 and rig.fanout.stats() == {"slow": 0}
    b.unsent, c.unsent = 800, 600  # 2300: 800 over three quarters of the budget
    rig.publish("AAPL", 2.0)
    rig.sched.advance(FLUSH)
    assert rig.fanout.is_conflating(a)  # the most unsent bytes: conflated first (900 covers the 800)
    assert not (rig.fanout.is_conflating(b) or rig.fanout.is_conflating(c) or a.closed_slow)
    rig.publish("AAPL", 3.0)
    rig.sched.advance(SWEEP_INTERVAL)  # still over at the next check: the conflated one is closed
    assert a.closed_slow and not (b.closed_slow or c.closed_slow)
    assert rig.fanout.buffered_total() == 1400
    assert rig.counter("ticker_buffer_budget_disconnects_total") == 1
    assert rig.counter("ticker_slow_consumer_disconnects_total") == 1
    assert [quotes(f)[1] for f in fast.frames] == [{"AAPL": 1.0}, {"AAPL": 2.0}, {"AAPL": 3.0}]
    assert len(b.frames) == len(c.frames) == 3 and len(a.frames) == 2


def test_shedding_goes_on_under_the_budget_until_three_quarters_and_starts_only_past_it():
    rig = Rig(BUDGET)
    a, b, c = (rig.conn(n, ["AAPL"]) for n in "abc")
    a.unsent, b.unsent, c.unsent = 900, 800, 700  # 2400: a is conflated (its 900 cover the 900 over 1500)
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    assert rig.fanout.is_conflating(a) and not rig.fanout.is_conflating(b)
    b.unsent = 900  # 2500 at the sweep: a is closed, and b conflated for the 100 still over 1500
    rig.sched.advance(SWEEP_INTERVAL)
    assert a.closed_slow and rig.fanout.is_conflating(b) and not b.closed_slow
    d = rig.conn("d", ["AAPL"])
    d.unsent = 200
    rig.fanout.replied(d, 200)
    b.unsent, c.unsent = 450, 990  # 1640: under the budget, still over three quarters of it
    rig.sched.advance(SWEEP_INTERVAL)
    assert rig.fanout.is_conflating(b), "under half of --slow-bytes but not empty: not resumed while shedding"
    assert rig.fanout.is_conflating(c) and not (b.closed_slow or c.closed_slow)
    rig.sched.advance(SWEEP_INTERVAL)  # still 1640: the most unsent bytes go first
    assert c.closed_slow and not b.closed_slow
    assert rig.fanout.buffered_total() == 650
    rig.sched.advance(SWEEP_INTERVAL)  # under three quarters: shedding ends
    rig.sched.advance(SWEEP_INTERVAL)
    assert not rig.fanout.is_conflating(b)  # resumed under half of --slow-bytes
    e = rig.conn("e", ["AAPL"])
    e.unsent = 990  # 1640 again, but shedding starts only past the budget
    rig.publish("AAPL", 2.0)
    rig.sched.advance(FLUSH)
    rig.sched.advance(SWEEP_INTERVAL)
    assert rig.fanout.buffered_total() == 1640
    assert not any(rig.fanout.is_conflating(x) for x in (b, d, e))
    assert rig.counter("ticker_buffer_budget_disconnects_total") == 2


def test_replies_count_toward_the_budget_and_a_reader_that_never_takes_them_is_closed():
    rig = Rig(BUDGET)
    c = rig.conn("c", ["AAPL"])
    rig.fanout.replied(c, 500)
    assert rig.fanout.buffered_total() == 500 and not rig.fanout.is_conflating(c)
    rig.fanout.replied(c, SLOW + 1)  # past --slow-bytes: conflated
    assert rig.fanout.is_conflating(c) and not c.closed_slow
    rig.fanout.replied(c, 4 * SLOW + 1)  # past four times it: closed at once
    assert c.closed_slow and rig.fanout.buffered_total() == 0
    others = [rig.conn(f"o{i}", ["AAPL"]) for i in range(3)]
    for o in others:
        rig.fanout.replied(o, 900)  # 2700: over the budget; checked at the end of this loop pass
    assert not any(rig.fanout.is_conflating(o) for o in others)
    rig.sched.advance()
    assert sum(rig.fanout.is_conflating(o) for o in others) == 2  # 1200 over 1500: two of them
    for o in others:
        o.unsent = 900
    rig.sched.advance(SWEEP_INTERVAL)
    assert sum(o.closed_slow for o in others) == 2
    rig.fanout.replied(others[0], -1)  # a reply to a closed connection changes nothing
    assert rig.fanout.buffered_total() == 900


def test_the_backlog_is_refreshed_by_the_sweep_and_forgotten_with_the_connection(rig: Rig):
    c = rig.conn("c", ["AAPL"])
    c.unsent = 300
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    assert rig.fanout.buffered_total() == 300 and rig.sched.waiting() != []
    c.unsent = 100
    rig.sched.advance(SWEEP_INTERVAL)
    assert rig.fanout.buffered_total() == 100
    rig.hub.remove(c)
    rig.fanout.remove(c)
    assert rig.fanout.buffered_total() == 0
    rig.sched.advance(SWEEP_INTERVAL)
    assert rig.sched.waiting() == []
    slow = rig.conn("slow", ["AAPL"])
    rig.fanout.replied(slow, 4 * SLOW + 1)  # closed at once
    assert slow.closed_slow and rig.fanout.buffered_total() == 0
    # what went away (when to trim the heap): c's bytes and its objects
    assert rig.fanout.take_released() == 100 + heap.CONNECTION_BYTES
    rig.hub.remove(slow)
    rig.fanout.remove(slow)  # the transport let go of the closed one's socket: its bytes are freed now
    assert rig.fanout.take_released() == 4 * SLOW + 1 + heap.CONNECTION_BYTES
    assert rig.fanout.take_released() == 0


def test_resync_sends_one_snapshot_payload_per_symbol_set_and_marks_conflated_connections(rig: Rig):
    for sym, price in (("AAPL", 1.0), ("MSFT", 2.0), ("NVDA", 3.0)):
        rig.publish(sym, price)
    rig.sched.advance()
    ab = [rig.conn("ab1", ["AAPL", "MSFT"]), rig.conn("ab2", ["MSFT", "AAPL"])]
    ab_sse = rig.conn("ab-sse", ["AAPL", "MSFT"], FakeSse)
    n = rig.conn("n", ["NVDA"])
    idle = rig.conn("idle", [])
    unknown = rig.conn("unknown", ["ZZZZ"])  # no last value: nothing to send
    slow = rig.conn("slow", ["NVDA", "AAPL"])
    rig.fanout.mark_slow(slow)
    conns: list[Connection] = [*ab, ab_sse, n, idle, unknown, slow]
    FakeSubscriber.framed.clear()
    FakeSse.framed.clear()

    assert rig.fanout.resync(conns) == 4

    assert ab[0].frames[0] is ab[1].frames[0]
    assert quotes(ab[0].frames[0]) == ("snapshot", {"AAPL": 1.0, "MSFT": 2.0})
    assert quotes(n.frames[0]) == ("snapshot", {"NVDA": 3.0})
    assert idle.frames == unknown.frames == slow.frames == []
    assert len(FakeSubscriber.framed) == 2 and FakeSse.framed == [
        FakeSubscriber.framed[0]
    ]  # one payload per symbol set
    assert FakeSse.framed[0] is FakeSubscriber.framed[0]
    rig.sched.advance(SWEEP_INTERVAL)  # the conflated one resumes with every symbol it holds
    assert [quotes(f) for f in slow.frames] == [("quotes", {"AAPL": 1.0, "NVDA": 3.0})]


def test_a_closed_connection_is_skipped_and_not_counted(rig: Rig):
    gone, live = rig.conn("gone", ["AAPL"]), rig.conn("live", ["AAPL"])
    gone.gone = True
    rig.publish("AAPL", 1.0)
    rig.sched.advance()
    assert len(live.frames) == 1 and gone.frames == []
    assert rig.counter("ticker_frames_sent_total") == 1
    assert not rig.fanout.is_conflating(gone)


def test_a_removed_connection_is_forgotten(rig: Rig):
    c = rig.conn("c", ["AAPL"])
    rig.fanout.mark_slow(c)
    rig.hub.remove(c)
    rig.fanout.remove(c)
    assert rig.fanout.stats() == {"slow": 0} and not rig.fanout.is_conflating(c)
    rig.sched.advance(TIMEOUT + 1)
    assert not c.closed_slow


def test_close_cancels_the_pending_flush_and_sweep_and_schedules_no_more(rig: Rig):
    c = rig.conn("c", ["AAPL"])
    rig.publish("AAPL", 1.0)
    rig.fanout.mark_slow(rig.conn("slow", ["AAPL"]))
    handles = rig.sched.waiting()
    assert len(handles) == 2
    rig.fanout.close()
    assert all(h.cancelled for h in handles)
    rig.publish("AAPL", 2.0)
    rig.fanout.mark_slow(c)
    assert rig.sched.waiting() == []
    rig.sched.advance(1.0)
    assert c.frames == []


EPOCH = 1_700_000_000.0  # the wall clock of the delayed-tier tests is EPOCH + the monotonic clock


def delayed_fanout(delay: float) -> tuple[ManualClock, ManualScheduler, Hub[Connection], DelayLine, Fanout]:
    """A fan-out with a delay line of ``delay`` seconds, on a hand-moved clock."""
    clock = ManualClock()
    sched = ManualScheduler(clock)
    hub: Hub[Connection] = Hub()
    line = DelayLine(delay)
    fanout = Fanout(
        hub,
        Metrics(),
        flush_interval=FLUSH,
        clock=clock,
        scheduler=sched,
        delay=line,
        wall=lambda: EPOCH + clock.now,
    )
    FakeSubscriber.framed = []
    return clock, sched, hub, line, fanout


def stamp(clock: ManualClock, ahead: float = 0.0) -> int:
    """A quote's ``t`` now, or ``ahead`` seconds later (a provider whose clock runs ahead)."""
    return int((EPOCH + clock.now + ahead) * 1000)


def test_delayed_subscribers_get_each_quote_delay_seconds_late_with_its_own_t_and_q():
    clock, sched, hub, line, fanout = delayed_fanout(3.0)
    live, late = FakeSubscriber("live"), FakeSubscriber("late")
    for c, key in ((live, "AAPL"), (late, delayed_key("AAPL"))):
        hub.add(c)
        hub.subscribe(c, [key])
    line.keep(["AAPL"], float("inf"))

    first_t = stamp(clock)
    fanout.publish(Quote("AAPL", 1.0, first_t))
    first_q = hub.state("AAPL").seq  # type: ignore[union-attr]
    sched.advance(0)
    sched.advance(1.5)
    fanout.publish(Quote("AAPL", 2.0, stamp(clock)))
    sched.advance(FLUSH)
    assert [quotes(f)[1] for f in live.frames] == [{"AAPL": 1.0}, {"AAPL": 2.0}] and late.frames == []
    sched.advance(1.38)  # 2.9 s after the first quote: still nothing
    assert late.frames == []
    sched.advance(0.2)
    [frame] = late.frames
    entry = orjson.loads(frame[2:])["data"][0]
    assert (entry["p"], entry["t"], entry["q"]) == (1.0, first_t, first_q)  # the original t and q
    sched.advance(1.5)
    assert [quotes(f)[1] for f in late.frames] == [{"AAPL": 1.0}, {"AAPL": 2.0}]
    assert line.held() == 0 and [h for h in sched.waiting()] == []
    assert hub.last(delayed_key("AAPL")) is None and hub.last("AAPL") is not None  # no Quote kept delayed


def test_a_quote_stamped_ahead_does_not_hold_back_the_other_delayed_symbols():
    clock, sched, hub, line, fanout = delayed_fanout(3.0)
    late = FakeSubscriber("late")
    hub.add(late)
    hub.subscribe(late, [delayed_key("AAPL"), delayed_key("MSFT")])
    line.keep(["AAPL", "MSFT"], float("inf"))

    fanout.publish(Quote("MSFT", 1.0, stamp(clock, ahead=60.0)))  # released 63 s from now
    sched.advance(0.5)
    fanout.publish(Quote("AAPL", 2.0, stamp(clock)))  # due 3 s from now: the release timer moves earlier
    assert len(sched.waiting()) == 1  # the timer set for MSFT was replaced, not doubled
    sched.advance(2.9)
    assert late.frames == []
    sched.advance(0.1 + FLUSH)
    assert [quotes(f)[1] for f in late.frames] == [{"AAPL": 2.0}]
    sched.advance(59.4)  # 62.9 s after MSFT arrived
    assert len(late.frames) == 1
    sched.advance(0.1 + FLUSH)
    assert [quotes(f)[1] for f in late.frames] == [{"AAPL": 2.0}, {"MSFT": 1.0}]
    assert line.held() == 0 and sched.waiting() == []


def test_several_quotes_at_once_do_what_publishing_each_would():
    one_by_one, at_once = Rig(), Rig()
    batch = [("AAPL", 1.0), ("MSFT", 2.0), ("AAPL", 3.0), ("IBM", 4.0), ("TSLA", 5.0)]  # TSLA: nobody's
    conns = []
    for r in (one_by_one, at_once):
        conns.append((r.conn("a", ["AAPL", "MSFT"]), r.conn("b", ["IBM"]), r.conn("c", ["AAPL"])))
    for symbol, price in batch:
        one_by_one.publish(symbol, price)
    at_once.fanout.publish_many([Quote(s, p, 1) for s, p in batch])
    assert [h.when for h in at_once.sched.waiting()] == [h.when for h in one_by_one.sched.waiting()]
    assert [h.when for h in at_once.sched.waiting()] == [at_once.clock.now]  # one flush, on the next pass
    for r in (one_by_one, at_once):
        r.sched.advance()
    (a1, b1, c1), (a2, b2, c2) = conns
    assert quotes(a2.frames[0]) == ("quotes", {"AAPL": 3.0, "MSFT": 2.0})  # the latest of each symbol
    assert (a2.frames, b2.frames, c2.frames) == (
        a1.frames,
        b1.frames,
        c1.frames,
    )  # the same bytes, q included
    for symbol in ("AAPL", "MSFT", "IBM", "TSLA"):
        assert at_once.hub.state(symbol).seq == one_by_one.hub.state(symbol).seq  # type: ignore[union-attr]
    assert (
        at_once.counter("ticker_updates_sent_total") == one_by_one.counter("ticker_updates_sent_total") == 4
    )


def test_several_quotes_at_once_each_go_on_the_delay_line():
    clock, sched, hub, line, fanout = delayed_fanout(3.0)
    late = FakeSubscriber("late")
    hub.add(late)
    hub.subscribe(late, [delayed_key("AAPL")])
    line.keep(["AAPL", "MSFT"], float("inf"))
    t = stamp(clock)
    # the second AAPL stamped 1.5 s ahead: released 1.5 s after the first, so the line holds both
    fanout.publish_many([Quote("AAPL", 1.0, t), Quote("MSFT", 2.0, t), Quote("AAPL", 3.0, t + 1500)])
    assert line.held() == 3  # each one recorded with the entry the hub made of it, not only the last
    sched.advance(3.1)
    sched.advance(1.5)
    got = [orjson.loads(f[2:])["data"][0] for f in late.frames]
    assert [(e["p"], e["t"]) for e in got] == [(1.0, t), (3.0, t + 1500)]
    assert got[1]["q"] == got[0]["q"] + 1 == hub.state("AAPL").seq  # type: ignore[union-attr]
