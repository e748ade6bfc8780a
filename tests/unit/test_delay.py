"""The delay line of the delayed tier: release times, coalescing, memory bound, keep deadlines."""

from __future__ import annotations

import random
from itertools import pairwise
from math import inf

import orjson

from ticker.delay import DelayLine
from ticker.quote import Quote, encode_entry

EPOCH = 1_700_000_000.0  # wall clock = EPOCH + monotonic clock in these tests


def q(sym: str, now: float, price: float = 1.0, ahead: float = 0.0) -> Quote:
    """A quote received at monotonic ``now``, stamped ``ahead`` seconds after the wall clock."""
    return Quote(sym, price, round((EPOCH + now + ahead) * 1000))


def rec(line: DelayLine, quote: Quote, seq: int, now: float) -> bytes:
    """What the server does after the hub took an update (and encoded it as ``q`` = ``seq``); return the entry."""
    encoded = encode_entry(quote, seq)
    if quote.symbol in line.recording:
        line.record(quote, encoded, seq, now, EPOCH + now)
    return encoded


def test_released_delay_after_arrival_unchanged():
    line = DelayLine(3)
    line.keep(["AAPL"], inf)
    encoded = rec(line, q("AAPL", 10.0), 1, 10.0)
    assert line.held() == 1 and line.next_due() == 13.0
    assert line.due(12.999) == []
    got = line.due(13.0)
    assert got == [("AAPL", encoded, 1)] and got[0][1] is not encoded  # a compact copy of the hub's bytes
    assert line.held() == 0 and line.next_due() is None and line.due(100.0) == []


def test_quote_stamped_in_the_future_is_held_delay_after_its_own_t():
    line = DelayLine(3)
    line.keep(["AAPL"], inf)
    rec(line, q("AAPL", 10.0, ahead=2.0), 1, 10.0)
    assert line.next_due() == 15.0
    assert line.due(14.9) == []
    assert [s for _, _, s in line.due(15.0)] == [1]
    # a quote stamped in the past is still held delay after its arrival
    line.keep(["MSFT"], inf)
    rec(line, q("MSFT", 20.0, ahead=-60.0), 2, 20.0)
    assert line.next_due() == 23.0


def test_updates_in_one_second_coalesce_to_the_newest_released_at_its_own_time():
    line = DelayLine(10)
    line.keep(["AAPL"], inf)
    entries = [rec(line, q("AAPL", t, price=t), seq, t) for seq, t in enumerate((0.1, 0.5, 0.9), 1)]
    assert line.held() == 1
    assert line.next_due() == 10.9  # the later release time: the newest is never early
    assert line.due(10.5) == []
    assert line.due(10.9) == [("AAPL", entries[2], 3)]


def test_due_returns_only_the_latest_due_entry_of_each_symbol():
    line = DelayLine(10)
    line.keep(["AAPL", "MSFT"], inf)
    for seq, t in enumerate((0.2, 1.2, 2.2), 1):
        rec(line, q("AAPL", t), seq, t)
    rec(line, q("MSFT", 1.5), 1, 1.5)
    assert line.held() == 4
    got = line.due(12.5)
    assert sorted((sym, seq) for sym, _, seq in got) == [("AAPL", 3), ("MSFT", 1)]
    assert line.held() == 0


def test_never_newer_than_as_of_delay_ago_and_seq_order_kept_under_random_traffic():
    rnd = random.Random(7)
    delay = 2.5
    line = DelayLine(delay)
    syms = [f"S{i}" for i in range(20)]
    line.keep(syms, inf)
    arrived: dict[tuple[str, int], float] = {}
    seqs = dict.fromkeys(syms, 0)
    last_out = dict.fromkeys(syms, 0)
    released = 0
    now = 0.0

    def take(at: float) -> None:
        nonlocal released
        for sym, encoded, seq in line.due(at):
            entry = orjson.loads(encoded)
            assert (entry["s"], entry["q"]) == (sym, seq)
            assert arrived[sym, seq] + delay <= at
            assert entry["t"] / 1000.0 + delay <= EPOCH + at + 1e-3  # t is rounded to the ms
            assert seq > last_out[sym]
            last_out[sym] = seq
            released += 1

    for _ in range(5000):
        now += rnd.expovariate(200.0)
        sym = rnd.choice(syms)
        seqs[sym] += 1
        arrived[sym, seqs[sym]] = now
        ahead = rnd.choice((0.0, 0.0, 0.0, -1.0, 0.7, 4.0))
        rec(line, q(sym, now, ahead=ahead), seqs[sym], now)
        if rnd.random() < 0.05:  # a timer, sometimes late
            take(now)
    take(inf)
    assert line.held() == 0 and released > 100


def test_one_entry_per_second_per_symbol_under_100_ticks_a_second():
    line = DelayLine(10)
    syms = ["AAPL", "MSFT", "NVDA"]
    line.keep(syms, inf)
    out: dict[str, list[tuple[float, int]]] = {s: [] for s in syms}
    most = 0
    for k in range(3000):  # 30 s at 100 ticks/s for each symbol
        now = k / 100
        while (at := line.next_due()) is not None and at <= now:  # the timer
            for sym, _, seq in line.due(at):
                out[sym].append((at, seq))
        for sym in syms:
            rec(line, q(sym, now), k + 1, now)
        most = max(most, line.held())
    assert most <= 11 * len(syms)
    for sym in syms:
        times = [at for at, _ in out[sym]]
        assert 19 <= len(times) <= 21  # the 20 s after the delay: about one release a second
        assert all(0.9 < b - a < 1.1 for a, b in pairwise(times))
        assert [seq for _, seq in out[sym]] == sorted(seq for _, seq in out[sym])


def test_entries_per_symbol_capped_even_with_a_stalled_timer_and_skewed_clock():
    line = DelayLine(3)
    line.keep(["AAPL"], inf)
    for k in range(2000):  # 20 s, no due() call; the provider's clock runs 100 s ahead
        now = k / 100
        rec(line, q("AAPL", now, ahead=100.0 if k % 2 else 0.0), k + 1, now)
    assert line.held() <= 4
    [(_, _, seq)] = line.due(inf)
    assert seq == 2000


def test_keep_inf_is_shortened_only_by_stop_keeping_and_finite_keeps_only_extend():
    line = DelayLine(5)
    line.keep(["A"], inf)
    line.keep(["A"], 30.0)  # a REST read while streamed delayed: does not end the stream's keep
    assert line.recording["A"] == inf
    line.keep(["A"], inf)
    line.stop_keeping(["A"], 20.0)  # the last delayed subscriber left at 15
    assert line.recording["A"] == 30.0  # the REST read's later deadline still holds
    line.stop_keeping(["A"], 40.0)
    assert line.recording["A"] == 40.0
    line.keep(["B"], 10.0)
    line.keep(["B"], 8.0)
    assert line.recording["B"] == 10.0
    line.keep(["B"], 12.0)
    assert line.recording["B"] == 12.0
    line.stop_keeping(["C"], 12.0)  # not kept: nothing to end
    assert "C" not in line.recording


def test_recording_stops_at_the_deadline_held_entries_still_release_then_forgotten():
    line = DelayLine(3)
    line.keep(["A"], 5.0)
    rec(line, q("A", 1.0), 1, 1.0)
    rec(line, q("A", 4.5), 2, 4.5)
    assert [s for _, _, s in line.due(5.0)] == [1]
    assert "A" not in line.recording  # the deadline passed
    rec(line, q("A", 5.5), 3, 5.5)  # not recorded any more
    assert line.held() == 1
    assert [s for _, _, s in line.due(7.5)] == [2]
    assert line.held() == 0 and line.next_due() is None
    assert line._lines == {}  # forgotten: no state left for it
    line.keep(["A"], 20.0)  # kept again: recorded again
    rec(line, q("A", 8.0), 4, 8.0)
    assert line.next_due() == 11.0


def test_record_after_the_deadline_stops_recording_without_a_due_call():
    line = DelayLine(3)
    line.keep(["A"], 5.0)
    rec(line, q("A", 5.0), 1, 5.0)
    assert "A" not in line.recording and line.held() == 0 and line.next_due() is None


def test_due_stops_recording_symbols_past_their_deadline_even_without_traffic():
    line = DelayLine(3)
    line.keep(["A", "B"], 5.0)
    line.keep(["B"], 9.0)
    line.due(6.0)
    assert set(line.recording) == {"B"}
    line.due(9.0)
    assert line.recording == {} and line._lines == {}


def test_next_due_is_exact_after_the_head_is_replaced():
    line = DelayLine(10)
    assert line.next_due() is None
    line.keep(["A", "B"], inf)
    rec(line, q("A", 0.2), 1, 0.2)
    assert line.next_due() == 10.2
    rec(line, q("A", 0.7), 2, 0.7)  # replaces the head: released later
    assert line.next_due() == 10.7
    rec(line, q("B", 0.5), 1, 0.5)
    assert line.next_due() == 10.5
    rec(line, q("A", 1.3), 3, 1.3)
    assert [(x, s) for x, _, s in line.due(10.5)] == [("B", 1)]
    assert line.next_due() == 10.7
    assert [s for _, _, s in line.due(10.7)] == [2]
    assert line.next_due() == 11.3


def test_heaps_stay_bounded_under_a_long_stream():
    rnd = random.Random(3)
    line = DelayLine(5)
    syms = [f"S{i}" for i in range(100)]
    line.keep(syms, inf)
    now = 0.0
    for i in range(10_000):
        now += 0.003
        sym = rnd.choice(syms)
        rec(line, q(sym, now), i + 1, now)
        if i % 37 == 0:
            line.keep([rnd.choice(syms)], now + 5)  # REST reads
        if i % 50 == 0:
            line.due(now)
        assert len(line._heap) <= min(len(syms), line.held())
        assert len(line._deadlines) <= len(syms)
        assert line.held() <= len(syms) * 6


def test_no_delay_releases_at_once():
    line = DelayLine(0)
    line.keep(["A"], inf)
    rec(line, q("A", 1.0), 1, 1.0)
    rec(line, q("A", 1.0), 2, 1.0)
    assert [s for _, _, s in line.due(1.0)] == [2]


def test_record_returns_the_release_time_and_inf_when_not_held():
    line = DelayLine(3)
    line.keep(["A"], inf)
    quote = q("A", 1.0)
    assert line.record(quote, encode_entry(quote, 1), 1, 1.0, EPOCH + 1.0) == 4.0
    ahead = q("A", 1.5, ahead=60.0)
    assert line.record(ahead, encode_entry(ahead, 2), 2, 1.5, EPOCH + 1.5) == 64.5
    other = q("B", 2.0)
    assert line.record(other, encode_entry(other, 1), 1, 2.0, EPOCH + 2.0) == inf  # B is not kept


def test_prune_ends_keeps_past_their_deadline_without_any_quote():
    line = DelayLine(5)
    line.keep([f"R{i}" for i in range(1000)], 10.0)  # REST reads of symbols that never get a quote
    line.keep(["A"], inf)
    line.keep(["B"], 20.0)
    line.keep(["C"], 30.0)
    rec(line, q("C", 29.0), 1, 29.0)
    line.prune(9.9)
    assert len(line.recording) == 1003
    line.prune(10.0)
    assert set(line.recording) == {"A", "B", "C"} and len(line._deadlines) == 2
    line.stop_keeping(["A"], 15.0)
    line.prune(30.0)
    assert line.recording == {} and line._deadlines == [] and line._timed == set() and line._pinned == {}
    assert set(line._lines) == {"C"} and line.held() == 1  # C's entry still leaves at its time
    assert [(sym, s) for sym, _, s in line.due(34.0)] == [("C", 1)]
    assert line._lines == {} and line.held() == 0


def test_a_full_line_drops_its_released_prefix_and_keeps_no_released_entry_bytes():
    line = DelayLine(100)
    line.keep(["A"], inf)
    released: list[int] = []
    for k in range(2000):  # one update a second for 2000 s: 100 entries held at once
        now = float(k)
        released += [s for _, _, s in line.due(now)]
        rec(line, q("A", now), k + 1, now)
        held = line._lines["A"]
        assert len(held.times) - held.head + 1 == line.held() <= 101
        assert len(held.times) == len(held.seqs) == len(held.lens) <= 101 + 17
        assert len(held.data) == sum(held.lens[held.head :])  # the held entries but the newest, no more
    assert released == list(range(1, 1901))
