"""A ``--workers`` worker's node when the feeds run in the feed process (:mod:`ticker.server.feedhost`).

The node gets one :class:`~feeds.relayed.RelayedFeed` per configured feed, over one
:class:`~feeds.relaylink.FeedProcessLink`; the link names the feed process's epoch to the node
(:meth:`~ticker.server.node.Node.set_epoch`), and hands a catch-up's last values straight to the node's
broker (they count for no feed), leaving out any the node already holds.
"""

from __future__ import annotations

from feeds.registry import create_feeds
from feeds.relayed import RelayedFeed
from feeds.relaylink import FeedProcessLink
from ticker.quote import Quote
from ticker.server.config import Config
from ticker.server.node import Node


def relayed_node(config: Config, path: str) -> Node:
    """Worker ``config.worker_index``'s node, fed by the feed process listening at ``path``."""
    link = FeedProcessLink(path, config.feeds, config.worker_index)
    # Built, never started: they say which symbols each feed owns, as the feed process's do.
    templates = create_feeds(config.feeds, config.feed_options)
    node = Node(config, feeds=[RelayedFeed(t, link, i) for i, t in enumerate(templates)])
    hub, publish = node.hub, node.broker.publish

    def catch_up(quote: Quote) -> None:
        held = hub.last(quote.symbol)
        if held is None or held.seq < quote.seq:
            publish(quote)

    link.on_epoch = node.set_epoch
    link.catch_up = catch_up
    return node
