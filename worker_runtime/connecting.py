"""The Redis client for a URL: one server, a primary found through Sentinel, or a Cluster.

Every network setting is chosen here, sized to the lease timing, never left to redis-py's
moving defaults: socket and connect timeouts of ``LeaseTiming.op_timeout_seconds``, one
immediate retry on a dropped connection (every script is safe to repeat), a health check on
connections idle for longer than the TTL, and at most ``POOL_MAX_CONNECTIONS`` connections
(per node in a Cluster).

* ``redis://``, ``rediss://``, ``unix://``: one server (redis-py reads the URL itself).
* ``redis+sentinel://`` / ``rediss+sentinel://``: redis-py's ``Sentinel``; each new
  connection asks the sentinels for the current primary, and a connection to a primary that
  was demoted (``READONLY``) is dropped, so calls reach the new primary after a failover.
  The sentinels get the same timeouts and TLS settings, and their own credentials
  (``sentinel_username``/``sentinel_password``).
* ``redis+cluster://`` / ``rediss+cluster://``: redis-py's ``RedisCluster`` started from the
  given nodes. It does not require every slot to be served: the workers whose slots are on a
  lost primary pause, the others go on (the servers need ``cluster-require-full-coverage
  no`` for that too).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_urls import Deployment, RedisTarget, parse_redis_url

__all__ = ["POOL_MAX_CONNECTIONS", "REDIS_ERRORS", "Client", "connect", "deployment_of"]

#: Connections per process (per node in a Cluster), shared by every worker's lease
#: (``RedisLeases`` sends at most this many pipelines at once and queues the rest). 1,000
#: workers at 1 s make about 2,200 calls a second, batched into far fewer pipelines: a few
#: connections carry them.
POOL_MAX_CONNECTIONS = 8
#: One more connection than pipelines: the subscription to lease releases.
_POOL_SIZE = POOL_MAX_CONNECTIONS + 1

#: A client of one server (or of a Sentinel-managed primary), or of a Redis Cluster.
Client = Redis | RedisCluster

# What a call raises when the server cannot be reached (tests simulate outages with these).
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

_TRUE = ("true", "yes", "1")


def deployment_of(url: str) -> Deployment:
    return parse_redis_url(url).deployment


def _network_options(timing: LeaseTiming, *, tcp: bool) -> dict[str, Any]:
    op_timeout = timing.op_timeout_seconds
    options: dict[str, Any] = {
        "socket_timeout": op_timeout,
        "socket_connect_timeout": op_timeout,
        "retry_on_timeout": False,
        # One immediate retry on a dropped connection; every script is safe to repeat.
        "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
        "health_check_interval": max(1, round(timing.ttl_seconds)),
        "client_name": "tickwork",
        "protocol": 2,
    }
    if tcp:
        options["socket_keepalive"] = True  # TCP only: a unix socket has no keepalive
    return options


def _tls_options(target: RedisTarget) -> dict[str, Any]:
    """The ``ssl_*`` options of a TLS URL as keyword arguments (redis-py's types)."""
    if not target.tls:
        return {}
    options: dict[str, Any] = {"ssl": True}
    for name, value in target.options.items():
        if name.startswith("ssl_"):
            options[name] = value.lower() in _TRUE if name == "ssl_check_hostname" else value
    return options


def _credentials(target: RedisTarget, password: str | None) -> dict[str, Any]:
    """The data nodes' user and password (``password`` from the file or env wins)."""
    options: dict[str, Any] = {}
    if target.username:
        options["username"] = target.username
    if password or target.password:
        options["password"] = password or target.password
    return options


class SentinelRedis(Redis):
    """The primary's client; closing it also closes the sentinels' clients."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        if isinstance(pool, SentinelConnectionPool):
            # Each sentinel's client (redis-py's own Sentinel.aclose is newer than 5.0.1).
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def connect(url: str, *, password: str | None, timing: LeaseTiming) -> Client:
    """The client for ``url`` (checked already); ``password`` is the data nodes'."""
    target = parse_redis_url(url)
    if target.deployment is Deployment.SENTINEL:
        return _sentinel(target, password=password, timing=timing)
    if target.deployment is Deployment.CLUSTER:
        return _cluster(target, password=password, timing=timing)
    options = _network_options(timing, tcp=not url.startswith("unix:"))
    if password:
        options["password"] = password
    pool = ConnectionPool.from_url(url, max_connections=_POOL_SIZE, **options)
    return Redis.from_pool(pool)


def _sentinel(target: RedisTarget, *, password: str | None, timing: LeaseTiming) -> Redis:
    assert target.service is not None  # parse_redis_url requires it
    network = _network_options(timing, tcp=True)
    tls = _tls_options(target)
    sentinel_auth = {
        name.removeprefix("sentinel_"): target.options[name]
        for name in ("sentinel_username", "sentinel_password")
        if name in target.options
    }
    # The sentinels' clients are Redis() objects, which take no retry_on_timeout.
    sentinel_network = {
        k: v for k, v in network.items() if k not in ("client_name", "retry_on_timeout")
    }
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts),
        sentinel_kwargs={**sentinel_network, **tls, **sentinel_auth},
    )
    client: Redis = sentinels.master_for(
        target.service,
        redis_class=SentinelRedis,
        max_connections=_POOL_SIZE,
        db=target.db,
        **network,
        **tls,
        **_credentials(target, password),
    )
    return client


def _cluster(target: RedisTarget, *, password: str | None, timing: LeaseTiming) -> RedisCluster:
    network = _network_options(timing, tcp=True)
    # The cluster client takes no retry_on_timeout. Its own retry is none: on an unreachable
    # node, redis-py's cluster pipeline would close every connection of the client (those
    # other pipelines are using too) and send everything again; the runtime retries instead.
    network.pop("retry_on_timeout")
    network["retry"] = Retry(NoBackoff(), retries=0)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        require_full_coverage=False,
        max_connections=POOL_MAX_CONNECTIONS,
        **network,
        **_tls_options(target),
        **_credentials(target, password),
    )
