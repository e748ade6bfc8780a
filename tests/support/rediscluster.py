"""A real Redis Cluster for tests and the bench: ``redis-server`` processes in cluster mode on loopback ephemeral
ports, joined by ``redis-cli --cluster create`` (3 masters with one replica each by default; fewer than 3 masters
by ``CLUSTER ADDSLOTSRANGE`` and ``MEET``, which redis-cli refuses), then checked until every node says
``cluster_state:ok``. Nodes can be killed (``kill -9``) or frozen (SIGSTOP) and the promotion of a replica
awaited."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from tests.support.leasekit import QuoteRecorder, record_published
from tests.support.redisproc import FeedProcess, local_client, local_command, redis_server_path
from tests.support.serverproc import ServerProcess
from tests.support.system import free_port
from tests.support.timing import eventually_sync, timeout
from ticker.broker.redis_layout import Layout
from ticker.broker.redis_slots import slot_of

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a master unreachable this long is failed over by its replica


def redis_cli_path() -> str:
    """The redis-cli binary, or skip when it is missing (.ci/system-deps.sh installs it)."""
    path = shutil.which("redis-cli")
    if path is None:
        pytest.skip("redis-cli is not installed (.ci/system-deps.sh installs it)")
    return path


@dataclass
class ClusterNodeProcess:
    """One ``redis-server --cluster-enabled yes`` on 127.0.0.1:``port``."""

    port: int
    dir: str
    bus_port: int = field(default_factory=free_port)  # the cluster bus (default port + 10000 may not exist)
    proc: subprocess.Popen[bytes] | None = None
    frozen: bool = False  # SIGSTOPped: alive, but answering nothing

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_path(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(self.bus_port),
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--repl-diskless-sync-delay",  # a replica syncs at once (5 s by default)
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        """A plain client of this node alone (decoded replies; no redirections followed)."""
        return local_client(self.port)

    def command(self, *args: Any) -> Any:
        return local_command(self.port, *args)

    def pings(self) -> bool:
        """Whether it answers PING now."""
        try:
            return self.command("PING") is True
        except (OSError, redis.RedisError):
            return False

    def info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict."""
        text = str(self.command("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def freeze(self) -> None:
        """SIGSTOP, as a hung host would be: its connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: it runs again."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout(5))


@dataclass
class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, on loopback; every key and channel of a test goes
    through it. ``url`` is the ``redis+cluster://`` URL of every node (any of them is a seed)."""

    masters: int = 3
    replicas: int = 1
    nodes: list[ClusterNodeProcess] = field(default_factory=list)
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="ticker-cluster-"))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self, within: float = 30.0) -> LocalCluster:
        """Start the nodes, create the cluster, wait until every node says it is ok and every replica is synced."""
        for _ in range(self.masters * (1 + self.replicas)):
            node = ClusterNodeProcess(free_port(), self.dir)
            node.start()
            self.nodes.append(node)
        for node in self.nodes:
            eventually_sync(node.pings, 10.0, f"redis-server on {node.address}")
        if self.masters < 3 and not self.replicas:  # redis-cli creates no cluster of fewer than 3 masters
            self._create_small()
        else:
            self._create(within)
        eventually_sync(self.healthy, within, "every cluster node to say cluster_state:ok, replicas synced")
        return self

    def _create(self, within: float) -> None:
        """``redis-cli --cluster create``: equal contiguous slot ranges, replicas assigned by redis-cli."""
        subprocess.run(
            [
                redis_cli_path(),
                "--cluster",
                "create",
                *(n.address for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout(within),
        )

    def _create_small(self) -> None:
        """One or two masters without replicas: equal contiguous slot ranges, as redis-cli would assign."""
        for i, node in enumerate(self.nodes):
            first, last = i * 16384 // self.masters, (i + 1) * 16384 // self.masters - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", first, last)
            if i:
                node.command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port, self.nodes[0].bus_port)

    def healthy(self) -> bool:
        """Whether every live node says ``cluster_state:ok`` with every slot served, all of them see the same
        ``masters`` masters owning the slots, every replica's link to its master is up, and every node knows
        every other (connected, none failing) and that each master has its ``replicas`` replicas: a node that
        learnt of a replica late would not count its master's failure towards a failover."""
        live = self.live()
        try:
            for n in live:
                info = n.info()
                if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
                if (
                    n.command("ROLE")[0] == "slave"
                    and n.command("INFO", "replication").get("master_link_status") != "up"
                ):
                    return False
                if not self._knows_all(n, {m.port for m in live}):
                    return False
            views = {tuple(sorted(self.slot_owners(n).items())) for n in live}
        except (OSError, redis.RedisError):
            return False
        return len(views) == 1 and len({port for _, port in next(iter(views))}) == self.masters

    def _knows_all(self, node: ClusterNodeProcess, ports: set[int]) -> bool:
        """Whether ``node``'s ``CLUSTER NODES`` lists every one of ``ports``, each connected and not failing, and
        ``replicas`` replicas of each master that owns slots."""
        rows = [line.split() for line in str(node.command("CLUSTER", "NODES")).splitlines() if line.strip()]
        seen: dict[int, list[str]] = {int(r[1].split("@")[0].rsplit(":", 1)[1]): r for r in rows}
        if set(seen) != ports:
            return False
        for row in seen.values():
            flags = row[2].split(",")
            if {"fail", "fail?", "handshake", "noaddr"} & set(flags) or row[7] != "connected":
                return False
        owners = [r[0] for r in seen.values() if "master" in r[2].split(",") and len(r) > 8]
        return all(sum(1 for r in seen.values() if r[3] == owner) == self.replicas for owner in owners)

    @staticmethod
    def slot_owners(node: ClusterNodeProcess) -> dict[int, int]:
        """First slot of each range → the port of the master owning it, as ``node`` sees it."""
        return {int(r[0]): int(r[2][1]) for r in node.command("CLUSTER", "SLOTS")}

    def live(self) -> list[ClusterNodeProcess]:
        """The nodes running (not killed, not frozen)."""
        return [n for n in self.nodes if n.alive and not n.frozen]

    def by_port(self, port: int) -> ClusterNodeProcess:
        return next(n for n in self.nodes if n.port == port)

    def master_of(self, slot: int) -> ClusterNodeProcess:
        """The master owning ``slot``, as a live node sees it now."""
        for start, end, owner, *_ in self.live()[0].command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return self.by_port(int(owner[1]))
        raise LookupError(f"slot {slot} is not covered")

    def replica_of(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        """A replica of ``master`` (from ``CLUSTER NODES``)."""
        master_id = master.command("CLUSTER", "MYID")
        for line in str(master.command("CLUSTER", "NODES")).splitlines():
            fields = line.split()
            if len(fields) > 3 and "slave" in fields[2] and fields[3] == master_id:
                return self.by_port(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        raise LookupError(f"{master.address} has no replica")

    def promoted(self, replica: ClusterNodeProcess) -> bool:
        """Whether ``replica`` is a master now and every live node agrees the cluster is ok."""
        try:
            return replica.command("ROLE")[0] == "master" and all(
                n.info().get("cluster_state") == "ok"
                and replica.port in {int(r[2][1]) for r in n.command("CLUSTER", "SLOTS")}
                for n in self.live()
            )
        except (OSError, redis.RedisError):
            return False

    def flushall(self) -> None:
        """Delete every key of every master (a test starts from an empty cluster)."""
        for port in {int(r[2][1]) for r in self.live()[0].command("CLUSTER", "SLOTS")}:
            self.by_port(port).command("FLUSHALL")

    def stop(self) -> None:
        for n in self.nodes:
            if n.frozen:
                n.thaw()
            n.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_feed(cluster: LocalCluster, *extra: str) -> FeedProcess:
    """A `ticker feed` of the simulated market (seed 1, 20 ticks/s) publishing to ``cluster``."""
    sim = ["--feed", "simulated", "--seed", "1", "--sim-rate", "20"]
    return FeedProcess(["--broker", cluster.url, *sim, "--log-level", "info", *extra])


def cluster_edge(cluster: LocalCluster, *extra: str) -> ServerProcess:
    """An edge node (`ticker serve --broker redis+cluster://...`) reading from ``cluster``."""
    return ServerProcess(["--broker", cluster.url, "--feed", "none", "--log-level", "info", *extra])


def spread_symbols(cluster: LocalCluster, candidates: Iterable[str], per_master: int = 1) -> list[str]:
    """``per_master`` symbols of ``candidates`` on each master (by where the layout puts their keys)."""
    layout = Layout("ticker", cluster=True)
    picked: dict[int, list[str]] = {}
    for s in candidates:
        port = cluster.master_of(slot_of(layout.channel(s))).port
        if len(picked.setdefault(port, [])) < per_master:
            picked[port].append(s)
    assert all(len(v) == per_master for v in picked.values()) and len(picked) == cluster.masters, picked
    return [s for group in picked.values() for s in group]


@dataclass
class ShardQuoteRecorder(QuoteRecorder):
    """:class:`~tests.support.leasekit.QuoteRecorder` on a cluster: ``SSUBSCRIBE`` to the quote channels of
    ``symbols`` on the master of each, every quote kept in arrival order (per master, Redis's order)."""

    cluster: LocalCluster | None = None
    symbols: tuple[str, ...] = ()
    _clients: list[Redis] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> ShardQuoteRecorder:
        assert self.cluster is not None
        layout = Layout(self.prefix, cluster=True)
        by_port: dict[int, list[bytes]] = {}
        for s in self.symbols:
            ch = layout.channel(s)
            by_port.setdefault(self.cluster.master_of(slot_of(ch)).port, []).append(ch)
        for port, channels in by_port.items():
            client = Redis(host="127.0.0.1", port=port)
            self._clients.append(client)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            for ch in channels:  # one channel per SSUBSCRIBE: they may be on different slots
                await pubsub.ssubscribe(ch)
            self._tasks.append(asyncio.get_running_loop().create_task(self._read_shard(pubsub)))
        return self

    async def _read_shard(self, pubsub: Any) -> None:
        await record_published(pubsub, "smessage", self.quotes)

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:
            await client.aclose()
