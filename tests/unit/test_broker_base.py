"""What every broker does with an in-process feed's quotes: nothing before start, each in order after."""

from __future__ import annotations

from ticker.broker.memory import MemoryBroker
from ticker.quote import Quote


async def test_several_quotes_go_to_the_node_at_once_or_one_by_one_and_none_before_start_or_after_stop() -> (
    None
):
    broker = MemoryBroker()
    each: list[Quote] = []
    batches: list[list[Quote]] = []
    quotes = [Quote("AAPL", 1.0, 1), Quote("MSFT", 2.0, 1), Quote("AAPL", 3.0, 2)]
    broker.publish_many(quotes)  # not started: nobody to take them
    await broker.start(each.append)
    broker.publish_many(quotes)  # a node that takes them one by one
    assert each == quotes and batches == []
    broker.deliver_many = batches.append
    broker.publish_many(quotes)
    assert batches == [quotes] and len(each) == 3
    await broker.stop()
    broker.publish_many(quotes)
    assert batches == [quotes] and len(each) == 3
