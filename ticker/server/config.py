"""What ``ticker serve`` can be told: one typed object whose fields carry their flag, env twin and default."""

from __future__ import annotations

from dataclasses import dataclass, field

from feeds.options import FeedOptions
from feeds.registry import feed_option
from ticker.auth.options import AuthOptions
from ticker.broker.options import broker_url, prefix_option
from ticker.errors import OptionError
from ticker.options import ProcessOptions, nested, option, optional_port, port, positive
from ticker.server.hosts import HostPolicy, allowed_hosts, host_policy
from ticker.server.peers import Network, trusted_networks
from ticker.server.peersockets import default_cap

LIMITS = "limits"
BROKER = "broker"
NETWORK = "network"


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"must be a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # NaN and infinity too
        raise OptionError(f"must be 0 or more, got {text!r}")
    return value


def _origins(text: str) -> frozenset[str]:
    return frozenset(p.strip().lower().rstrip("/") for p in text.split(",") if p.strip())


@dataclass(slots=True)
class Config:
    """Everything ``ticker serve`` can be told (flags and ``TICKER_*`` twins), typed.

    Raises ``ValueError`` when feeds are named for an edge node (``--broker redis://...``).
    """

    host: str = option("127.0.0.1", "address to listen on (127.0.0.1)", env="HOST")
    port: int = option(8888, "port to listen on; 0 picks one", env="PORT", parse=port)
    #: ``--feed`` as given; None picks the default for the broker (see :attr:`feeds`).
    feed: list[str] | None = feed_option(None, "none (default: simulated; none with --broker redis)")
    feed_options: FeedOptions = nested(
        FeedOptions, help={"symbols": "comma-separated symbols to carry (default: about 30 US tickers)"}
    )
    access: AuthOptions = nested(AuthOptions)
    flush_ms: float = option(
        20.0,
        "longest wait in ms for the next fan-out flush after one began; idle servers flush at once (20)",
        env="FLUSH_MS",
        parse=positive(float),
    )
    flush_duty: float = option(
        1.0,
        "after a flush that took T, the next begins no sooner than T times this after it ended (and at most "
        "--flush-ms after it began): higher gathers more updates per frame for less CPU, 0 writes every "
        "loop pass (1)",
        env="FLUSH_DUTY",
        parse=_non_negative,
    )
    allowed_origins: frozenset[str] = option(
        frozenset(),
        "extra browser origins allowed to open /ws and /sse and to call /api/*, comma-separated (default: same origin only)",
        env="ALLOWED_ORIGINS",
        parse=_origins,
    )
    allowed_hosts: frozenset[str] = option(
        frozenset(),
        "hosts the server answers for (host or host:port, comma-separated; * any); any other Host header"
        " gets 421 (default: the --host address, plus localhost, 127.0.0.1 and [::1] on loopback; any host"
        " on 0.0.0.0 or ::, with a warning)",
        env="ALLOWED_HOSTS",
        parse=allowed_hosts,
        group=NETWORK,
        metavar="HOSTS",
    )
    trusted_proxies: tuple[Network, ...] = option(
        (),
        "proxies (comma-separated IPs/CIDRs) whose X-Forwarded-For / X-Real-IP give the client address"
        " (default: none)",
        env="TRUSTED_PROXIES",
        parse=trusted_networks,
        group=NETWORK,
        metavar="CIDRS",
    )
    unknown_symbols: str = option(
        "refuse",
        "refuse: a symbol no running feed knows gets unknown_symbol; allow: accept any well-formed symbol",
        env="UNKNOWN_SYMBOLS",
        choices=("refuse", "allow"),
    )
    max_symbols: int = option(
        500, "symbols per connection (500)", env="MAX_SYMBOLS", parse=positive(int), group=LIMITS
    )
    max_active_symbols: int = option(
        5000,
        "symbols the node asks its feeds (or broker) for at once, over all connections; past it the symbols"
        " are shared round-robin between connections and the rest are unavailable (5000)",
        env="MAX_ACTIVE_SYMBOLS",
        parse=positive(int),
        group=LIMITS,
    )
    max_bar_subscriptions: int = option(
        10,
        "bar subscriptions (symbol and interval pairs) per connection (10)",
        env="MAX_BAR_SUBSCRIPTIONS",
        parse=positive(int),
        group=LIMITS,
    )
    max_message_bytes: int = option(
        64 * 1024,
        "largest client frame; larger ones close the connection with 1009 (65536)",
        env="MAX_MESSAGE_BYTES",
        parse=positive(int),
        group=LIMITS,
    )
    max_connections: int = option(
        50_000,
        "open connections before new ones get 503 (50000)",
        env="MAX_CONNECTIONS",
        parse=positive(int),
        group=LIMITS,
    )
    max_connections_per_ip: int = option(
        1000,
        "open /ws and /sse connections per client address (an IPv6 /64) before new ones get 429 (1000)",
        env="MAX_CONNECTIONS_PER_IP",
        parse=positive(int),
        group=LIMITS,
    )
    max_sockets_per_ip: int | None = option(
        None,
        "open TCP connections per peer address (an IPv6 /64; --trusted-proxies not counted), counted at"
        " accept: /ws, /sse, REST keep-alives and connections that sent nothing yet; past it new ones get"
        " 429 and are closed (default: --max-connections-per-ip plus a tenth, at least 100: 1100)",
        env="MAX_SOCKETS_PER_IP",
        parse=positive(int),
        group=LIMITS,
        metavar="N",
    )
    connect_rate: float = option(
        20.0,
        "/ws and /sse connects per second per client address; more get 429 (20)",
        env="CONNECT_RATE",
        parse=positive(float),
        group=LIMITS,
    )
    connect_burst: int = option(
        100,
        "connects per client address allowed in a burst (100)",
        env="CONNECT_BURST",
        parse=positive(int),
        group=LIMITS,
    )
    process_connect_rate: float = option(
        2000.0,
        "/ws and /sse connects per second over all addresses (per process); more get 503 (2000)",
        env="PROCESS_CONNECT_RATE",
        parse=positive(float),
        group=LIMITS,
    )
    process_connect_burst: int = option(
        2000,
        "connects over all addresses allowed in a burst (2000)",
        env="PROCESS_CONNECT_BURST",
        parse=positive(int),
        group=LIMITS,
    )
    rest_rate: float = option(
        20.0,
        "/api/* requests per second per client address; more get 429 (20)",
        env="REST_RATE",
        parse=positive(float),
        group=LIMITS,
    )
    rest_burst: int = option(
        600,
        "/api/* requests per client address allowed in a burst (600: the page names a full watchlist at once)",
        env="REST_BURST",
        parse=positive(int),
        group=LIMITS,
    )
    rate_limit: float = option(
        50.0,
        "client messages per second per connection (50)",
        env="RATE_LIMIT",
        parse=positive(float),
        group=LIMITS,
    )
    rate_burst: int = option(
        100, "client messages allowed in a burst (100)", env="RATE_BURST", parse=positive(int), group=LIMITS
    )
    ping_interval: float = option(
        20.0, "seconds between server pings (20)", env="PING_INTERVAL", parse=positive(float), group=LIMITS
    )
    ping_timeout: float = option(
        20.0,
        "seconds to wait for a pong before dropping the peer (20)",
        env="PING_TIMEOUT",
        parse=positive(float),
        group=LIMITS,
    )
    slow_bytes: int = option(
        256 << 10,
        "unsent bytes after which a connection is conflated (262144)",
        env="SLOW_BYTES",
        parse=positive(int),
        group=LIMITS,
    )
    slow_timeout: float = option(
        10.0,
        "seconds over --slow-bytes before closing with 1013 (10)",
        env="SLOW_TIMEOUT",
        parse=positive(float),
        group=LIMITS,
    )
    max_buffered_bytes: int = option(
        256 << 20,
        "unsent bytes of all connections together; past it the slowest readers are closed with 1013 (268435456)",
        env="MAX_BUFFERED_BYTES",
        parse=positive(int),
        group=LIMITS,
    )
    header_timeout: float = option(
        10.0,
        "seconds a client has to send a request's headers, from the connect or the end of the previous"
        " response: also how long an idle keep-alive connection stays open (10)",
        env="HEADER_TIMEOUT",
        parse=positive(float),
        group=LIMITS,
    )
    body_timeout: float = option(
        10.0,
        "seconds a client has to send a request body once its headers are in (10)",
        env="BODY_TIMEOUT",
        parse=positive(float),
        group=LIMITS,
    )
    stale_after: float = option(
        15.0,
        "seconds without feed data before /readyz fails (15)",
        env="STALE_AFTER",
        parse=positive(float),
        group=LIMITS,
    )
    workers: int = option(
        1, "server processes sharing the port with SO_REUSEPORT (1)", env="WORKERS", parse=positive(int)
    )
    #: Serve /metrics, /healthz and /readyz on this port too (worker i of --workers uses port + i).
    metrics_port: int | None = option(
        None,
        "also serve /metrics, /healthz, /readyz on this port; with --workers, worker i uses PORT+i",
        env="METRICS_PORT",
        parse=optional_port,
    )
    process: ProcessOptions = nested(ProcessOptions)
    #: ``memory``, ``redis://HOST:PORT/DB`` or ``redis+cluster://HOST:PORT,...`` (an edge node fed by ``ticker feed``).
    broker: str = option(
        "memory",
        "memory (in-process, default), redis://HOST:PORT/DB or redis+cluster://HOST:PORT[,HOST:PORT...]: "
        "an edge node fed by `ticker feed`",
        env="BROKER",
        parse=broker_url,
        group=BROKER,
    )
    broker_prefix: str = prefix_option(BROKER)
    demand_ttl: float = option(
        15.0,
        "seconds a node's advertised demand lives in Redis without a refresh (15; refreshed every third)",
        env="DEMAND_TTL",
        parse=positive(float),
        group=BROKER,
    )
    worker_index: int = 0
    #: The feeds this node runs: ``--feed`` without ``none``.
    feeds: list[str] = field(init=False)
    #: What ``Host`` and browser ``Origin`` the server answers (from host, allowed_hosts, allowed_origins, trusted_proxies).
    host_policy: HostPolicy = field(init=False)

    @property
    def sockets_per_ip(self) -> int:
        """``--max-sockets-per-ip`` in force (the default follows ``--max-connections-per-ip``)."""
        if self.max_sockets_per_ip is not None:
            return self.max_sockets_per_ip
        return default_cap(self.max_connections_per_ip)

    def __post_init__(self) -> None:
        self.host_policy = host_policy(
            self.host, self.allowed_hosts, self.allowed_origins, self.trusted_proxies
        )
        redis = self.broker != "memory"
        names = self.feed if self.feed is not None else (["none"] if redis else ["simulated"])
        self.feeds = [] if names == ["none"] else list(names)
        if redis and self.feeds:
            raise ValueError(
                "with --broker redis the feeds run in `ticker feed`; start edge nodes with --feed none (the default)"
            )
