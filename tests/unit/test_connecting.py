"""The client each URL form builds (before any connection is made), and the hash slots of a
worker's keys: no I/O."""

from __future__ import annotations

from redis.asyncio import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection
from redis.crc import key_slot

from worker_runtime.connecting import POOL_MAX_CONNECTIONS, connect
from worker_runtime.keys import WorkerKeys
from worker_runtime.leasing import LeaseTiming
from worker_runtime.redis_leases import durable_by_default
from worker_runtime.redis_urls import Deployment

TIMING = LeaseTiming(ttl_seconds=3.0)


async def test_a_tls_sentinel_url_makes_tls_clients_of_the_primary_and_of_every_sentinel() -> None:
    client = connect(
        "rediss+sentinel://:pw@s1:26380,s2/mymaster/2?ssl_ca_certs=/ca.crt&sentinel_password=sp",
        password=None,
        timing=TIMING,
    )
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "mymaster"
        assert pool.connection_class is SentinelManagedSSLConnection
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["ssl_ca_certs"]) == (2, "pw", "/ca.crt")
        assert kwargs["socket_timeout"] == TIMING.op_timeout_seconds
        assert pool.max_connections == POOL_MAX_CONNECTIONS + 1  # + the release subscription
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26380, 26379]
        for sentinel in sentinels:
            sentinel_kwargs = sentinel.connection_pool.connection_kwargs
            assert sentinel.connection_pool.connection_class is SSLConnection
            assert sentinel_kwargs["password"] == "sp"
            assert sentinel_kwargs["socket_timeout"] == TIMING.op_timeout_seconds
    finally:
        await client.aclose()


async def test_the_password_file_wins_over_the_url_for_the_data_nodes() -> None:
    client = connect("redis+sentinel://:url-pw@s1/m", password="file-pw", timing=TIMING)
    try:
        assert client.connection_pool.connection_kwargs["password"] == "file-pw"
    finally:
        await client.aclose()


async def test_a_tls_cluster_url_starts_from_every_node_given_over_tls() -> None:
    client = connect(
        "rediss+cluster://u:pw@n1:7000,n2?ssl_ca_certs=/ca.crt", password=None, timing=TIMING
    )
    try:
        assert isinstance(client, RedisCluster)
        nodes = client.nodes_manager.startup_nodes
        assert sorted(nodes) == ["n1:7000", "n2:6379"]
        kwargs = client.nodes_manager.connection_kwargs
        assert kwargs["connection_class"] is SSLConnection
        assert (kwargs["username"], kwargs["password"]) == ("u", "pw")
        assert kwargs["ssl_ca_certs"] == "/ca.crt"
        assert kwargs["socket_timeout"] == TIMING.op_timeout_seconds
    finally:
        await client.aclose()


def test_durable_writes_are_on_by_default_only_with_sentinel() -> None:
    assert durable_by_default(Deployment.SENTINEL)
    assert not durable_by_default(Deployment.SINGLE)
    assert not durable_by_default(Deployment.CLUSTER)


def test_every_key_of_a_worker_lies_in_one_cluster_slot_and_workers_spread_over_slots() -> None:
    names = [f"worker-{i}" for i in range(50)] + ["a", "ns:Passive.Users/1", "x_y"]
    slots = set()
    for name in names:
        keys = WorkerKeys(name)
        worker_slots = {key_slot(k.encode()) for k in (keys.lease, keys.fence, keys.schedule,
                                                      keys.status)}  # fmt: skip
        assert len(worker_slots) == 1, name
        slots |= worker_slots
    assert len(slots) > len(names) // 2  # distinct workers land on distinct slots
