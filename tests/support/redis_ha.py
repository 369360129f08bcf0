"""Real Redis deployments with replicas, started on free ports: Sentinel and Cluster.

``SentinelDeployment``: a primary, replicas (``--replicaof``) and three sentinels
(``redis-server sentinel.conf --sentinel``, the same binary Debian's ``redis-sentinel`` runs)
that fail over after ``down_after_ms``. ``ClusterDeployment``: three primaries joined by
``redis-cli --cluster create``, with or without one replica each, on
``cluster-require-full-coverage no`` (the primaries left serve their slots when one is lost).
Every server keeps its AOF (``appendfsync always``), as ``RedisServer`` does.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.support.processes import RedisServer, free_port, wait_until

SERVICE = "tickwork"


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=1, socket_connect_timeout=1)


def _info(port: int, section: str, password: str | None = None) -> dict[str, Any]:
    """``INFO section`` as redis-py parses it (``{}`` when the server does not answer)."""
    try:
        with _client(port, password) as client:
            info: dict[str, Any] = client.info(section)
    except (redis.RedisError, OSError):
        return {}
    return info


_PORT_ATTEMPTS = 3


def _answers(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def start_on_a_free_port(server: RedisServer, *, renew: Callable[[], None] = lambda: None) -> None:
    """``server.start()``; again on a new port (and whatever ``renew`` renews) when another
    process took the free port it was given between the choice and the bind."""
    for attempt in range(_PORT_ATTEMPTS):
        try:
            server.start()
            return
        except AssertionError:
            if attempt == _PORT_ATTEMPTS - 1:
                raise
            server.port = free_port()
            renew()


def stop_server(server: RedisServer) -> None:
    """``server.stop()``, sending SIGTERM again while the server refuses to go: a replica
    that is writing its first AOF after a sync answers "Writing initial AOF, can't exit" and
    keeps running."""
    proc = server.proc
    for _ in range(10):
        if proc is None or proc.poll() is not None:
            break
        proc.send_signal(signal.SIGCONT)  # a frozen server handles no signal
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            continue
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    server.proc = None


class SentinelDeployment:
    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        # 1 s made the sentinels fail over a primary that was only slow on this loaded
        # machine (two primaries for seconds); 2 s did not.
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 5000,
        password: str | None = None,
    ) -> None:
        self.directory = directory
        self.password = password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        primary_port = free_port()
        auth = ("--masterauth", password) if password else ()
        self.servers = [RedisServer(directory / "redis-0", primary_port, password=password,
                                    extra_args=auth)]  # fmt: skip
        for i in range(1, replicas + 1):
            self.servers.append(
                RedisServer(
                    directory / f"redis-{i}",
                    password=password,
                    extra_args=("--replicaof", "127.0.0.1", str(primary_port), *auth),
                )
            )
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _sentinel_conf(self, index: int) -> Path:
        d = self.directory / f"sentinel-{index}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"
        lines = [
            f"port {self.sentinel_ports[index]}",
            "bind 127.0.0.1",
            f"dir {d}",
            f"logfile {d / 'sentinel.log'}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.servers[0].port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed; run `make redis-server`"
        auth = ("--masterauth", self.password) if self.password else ()
        try:
            start_on_a_free_port(self.servers[0])
            for server in self.servers[1:]:
                server.extra_args = ("--replicaof", "127.0.0.1", str(self.servers[0].port), *auth)
                start_on_a_free_port(server)
            wait_until(
                lambda: self.replicas_in_sync(self.servers[0].port) >= len(self.servers) - 1,
                timeout=20,
                what="the replicas to sync",
            )
            for index in range(len(self.sentinel_ports)):
                self.sentinel_procs.append(self._start_sentinel(binary, index))
            wait_until(self._sentinels_agree, timeout=20, what="the sentinels to see each other")
        except BaseException:
            self.stop()
            raise

    def _start_sentinel(self, binary: str, index: int) -> subprocess.Popen[bytes]:
        """A sentinel that listens; on a new port when another process took the free one."""
        for _ in range(_PORT_ATTEMPTS):
            proc = subprocess.Popen(
                [binary, str(self._sentinel_conf(index)), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if (
                wait_until(
                    lambda p=proc: p.poll() is not None or _answers(self.sentinel_ports[index]),
                    timeout=10,
                    what=f"sentinel {index} to listen",
                )
                and proc.poll() is None
            ):
                return proc
            self.sentinel_ports[index] = free_port()
        raise AssertionError(f"sentinel {index} found no free port")

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with _client(port) as client:
                    state = client.sentinel_master(SERVICE)
            except (redis.RedisError, OSError):
                return False
            others = int(state["num-other-sentinels"])
            replicas = int(state["num-slaves"])
            if others < len(self.sentinel_ports) - 1 or replicas < len(self.servers) - 1:
                return False
        return True

    def replicas_in_sync(self, port: int) -> int:
        info = _info(port, "replication", self.password)
        if info.get("role") != "master":
            return 0
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        )

    def primary_port(self) -> int | None:
        """The primary the sentinels name now (the first that answers)."""
        for port in self.sentinel_ports:
            try:
                with _client(port) as client:
                    address = client.sentinel_get_master_addr_by_name(SERVICE)
            except (redis.RedisError, OSError):
                continue
            if address:
                return int(address[1])
        return None

    def read_anchor(self, schedule_key: str) -> float:
        """A worker's schedule anchor, read from the current primary."""
        port = self.primary_port()
        assert port is not None
        with _client(port, self.password) as client:
            return float(client.hget(schedule_key, "anchor") or 0)

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def cut_off_replicas(self) -> None:
        """The replicas stop receiving writes but stay promotable: each gets a wrong primary
        password and its link is dropped, so it cannot sync again (needs ``password``)."""
        assert self.password, "cutting the replicas off needs a password-protected deployment"
        primary = self.primary_port()
        assert primary is not None
        for server in self.servers:
            if server.port != primary and server.proc is not None:
                with _client(server.port, self.password) as client:
                    client.config_set("masterauth", "wrong")
        with _client(primary, self.password) as client:
            client.client_kill_filter(_type="replica")
        wait_until(
            lambda: self.replicas_in_sync(primary) == 0, timeout=10, what="the links to drop"
        )

    def reconnect_replicas(self) -> None:
        """Undo ``cut_off_replicas`` on the replicas still running."""
        for server in self.servers:
            if server.proc is not None:
                with _client(server.port, self.password) as client:
                    client.config_set("masterauth", self.password or "")

    def kill_primary(self) -> tuple[RedisServer, float, float]:
        """SIGKILL the current primary; (the server, when, when the sentinels named another)."""
        port = self.primary_port()
        assert port is not None, "the sentinels name no primary"
        server = self.server_on(port)
        at = time.time()
        server.stop(sig=signal.SIGKILL)
        wait_until(
            lambda: self.primary_port() not in (None, port),
            timeout=self.down_after_ms / 1000 + self.failover_timeout_ms / 1000 + 30,
            interval=0.01,
            what="the sentinels to promote a replica",
        )
        return server, at, time.time()

    def restart(self, server: RedisServer) -> None:
        """Start a killed server again (its AOF kept) as a replica of the current primary, as
        a restarted pod's start script would (the sentinels would convert it too, but only
        some ten seconds later)."""
        primary = self.primary_port()
        assert primary is not None and primary != server.port
        auth = ("--masterauth", self.password) if self.password else ()
        server.extra_args = ("--replicaof", "127.0.0.1", str(primary), *auth)
        server.start()
        wait_until(
            lambda: (
                _info(server.port, "replication", self.password).get("master_link_status") == "up"
            ),
            timeout=30,
            what=f"redis on port {server.port} to rejoin as a replica",
        )

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
        self.sentinel_procs.clear()
        for server in self.servers:
            stop_server(server)


def _cluster_args(directory: Path) -> tuple[str, ...]:
    return (
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
        "--cluster-node-timeout", "1000",
        # The bus port is the port + 10000 unless given: past 65535 for half the free ports.
        "--cluster-port", str(free_port()),
        "--cluster-require-full-coverage", "no",
        # A replica takes over however long it was cut off from its primary.
        "--cluster-replica-validity-factor", "0",
    )  # fmt: skip


class ClusterDeployment:
    def __init__(
        self, directory: Path, *, primaries: int = 3, replicas_per_primary: int = 0
    ) -> None:
        self.directory = directory
        self.replicas_per_primary = replicas_per_primary
        self.servers = [
            RedisServer(directory / f"node-{i}", extra_args=_cluster_args(directory / f"node-{i}"))
            for i in range(primaries * (1 + replicas_per_primary))
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:3])

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli is not installed; run `make redis-server`"
        try:
            for server in self.servers:

                def renew(s: RedisServer = server) -> None:
                    s.extra_args = _cluster_args(s.directory)  # a new bus port too

                start_on_a_free_port(server, renew=renew)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
                 "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )  # fmt: skip
            wait_until(self._all_ok, timeout=30, what="the cluster to be ok on every node")
            wait_until(self._replicas_linked, timeout=30, what="the replicas to sync")
        except BaseException:
            self.stop()
            raise

    def _all_ok(self) -> bool:
        return all(self.state(s.port) == "ok" for s in self.servers if s.proc is not None)

    def _replicas_linked(self) -> bool:
        roles = [_info(s.port, "replication") for s in self.servers]
        return all(info.get("master_link_status") == "up" for info in roles if info.get(
            "role") == "slave") and sum(info.get("role") == "slave" for info in roles) == len(
            self.servers) - 3  # fmt: skip

    def state(self, port: int) -> str:
        try:
            with _client(port) as client:
                text = client.execute_command("CLUSTER", "INFO").decode()
        except (redis.RedisError, OSError):
            return "unreachable"
        return dict(line.split(":", 1) for line in text.split()).get("cluster_state", "")

    def primary_of(self, key: str) -> RedisServer:
        """The server that serves ``key``'s slot now."""
        for server in self.servers:
            if server.proc is None:
                continue
            with _client(server.port) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return next(s for s in self.servers if s.port == int(primary[1]))
        raise AssertionError(f"no node serves the slot of {key!r}")

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The servers that replicate ``primary`` now."""
        return [
            s
            for s in self.servers
            if s.proc is not None
            and _info(s.port, "replication").get("master_port") == primary.port
        ]

    def restart_as_replica(self, server: RedisServer) -> None:
        """Start a killed primary again: the cluster makes it its successor's replica."""
        server.start()
        wait_until(self._all_ok, timeout=30, what="the cluster to be ok on every node")
        wait_until(self._replicas_linked, timeout=30, what="the replicas to sync")

    def kill(self, server: RedisServer) -> float:
        at = time.time()
        server.stop(sig=signal.SIGKILL)
        return at

    def stop(self) -> None:
        for server in self.servers:
            stop_server(server)
