"""The per-cluster pool's circuit breakers and connection options, against real sockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from shadowmesh.model.trafficpolicy import ConnectionPool
from shadowmesh.routing.balance import make_balancer
from shadowmesh.routing.decision import Endpoint, Upstream
from shadowmesh.routing.upstreampolicy import ConnectionLimits, UpstreamPolicy
from shadowmesh.upstream.clusterpool import GuardedPool, Overflow, UpstreamPools
from shadowmesh.upstream.connection import Pool
from shadowmesh.upstream.tls import TlsContexts
from tests.support.upstreams import RecordingUpstream


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    made = RecordingUpstream()
    yield made
    made.close()


def guarded(**pool: int | float) -> GuardedPool:
    limits = ConnectionLimits(ConnectionPool(**pool))  # type: ignore[arg-type]
    return GuardedPool("outbound|80||a", UpstreamPolicy(limits=limits), TlsContexts())


def test_pending_overflow_fails_fast(upstream: RecordingUpstream) -> None:
    async def run() -> None:
        pool = guarded(max_connections=1, http1_max_pending_requests=1)
        ep = Endpoint("127.0.0.1", upstream.port)
        first = asyncio.ensure_future(pool.connect(ep))
        await asyncio.sleep(0)  # the first is pending (connecting)
        with pytest.raises(Overflow):
            await pool.connect(ep)
        conn = await first
        assert pool.stats["upstream_rq_pending_overflow"] == 1
        # Connected: nothing pending. One more waits (the one connection is busy) ...
        second = asyncio.ensure_future(pool.connect(ep))
        await asyncio.sleep(0.01)
        assert not second.done() and pool.pending == 1
        assert pool.stats["upstream_cx_overflow"] == 1
        with pytest.raises(Overflow):  # ... and a third overflows
            await pool.connect(ep)
        pool.put(conn)  # the first is done: its connection goes straight to the waiter
        assert await second is conn
        assert pool.connections == 1
        pool.close()
        conn.close()

    asyncio.run(run())


def test_max_requests_per_connection_closes_and_lets_a_waiter_connect(
    upstream: RecordingUpstream,
) -> None:
    async def run() -> None:
        pool = guarded(max_connections=1, max_requests_per_connection=1)
        ep = Endpoint("127.0.0.1", upstream.port)
        conn = await pool.connect(ep)
        waiter = asyncio.ensure_future(pool.connect(ep))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        conn.requests = 1  # it served its one request
        pool.put(conn)
        assert conn.closed and pool.stats["upstream_cx_max_requests"] == 1
        fresh = await asyncio.wait_for(waiter, 5)
        assert fresh is not conn and pool.connections == 1
        assert pool.stats["upstream_cx_total"] == 2
        fresh.close()
        await asyncio.sleep(0.01)
        assert pool.connections == 0

    asyncio.run(run())


def test_idle_timeout_and_max_connection_duration(upstream: RecordingUpstream) -> None:
    async def run() -> None:
        pool = guarded(http_idle_timeout=30.0, max_connection_duration=600.0)
        ep = Endpoint("127.0.0.1", upstream.port)
        conn = await pool.connect(ep)
        pool.put(conn)
        assert pool.take(ep) is conn
        pool.put(conn)
        conn.idle_since -= 31  # type: ignore[attr-defined]  # idle past the timeout
        assert pool.take(ep) is None and conn.closed
        assert pool.stats["upstream_cx_idle_timeout"] == 1
        old = await pool.connect(ep)
        old.born -= 601  # type: ignore[attr-defined]
        pool.put(old)
        assert old.closed and pool.stats["upstream_cx_max_duration_reached"] == 1
        pool.close()

    asyncio.run(run())


def test_connect_timeout_comes_from_the_policy() -> None:
    assert guarded(connect_timeout=0.25).connect_timeout == 0.25
    assert guarded(max_connections=5).connect_timeout == 10.0


def test_only_clusters_with_a_connection_pool_or_tls_get_their_own() -> None:
    shared = Pool()
    pools = UpstreamPools(shared)
    ep = Endpoint("127.0.0.1", 9)
    plain = make_balancer(None, (ep,), random.Random(1))
    assert pools.pool_for(Upstream("outbound|80||a", ep, plain)) is shared
    limited = make_balancer(None, (ep,), random.Random(1))
    limited.traffic = UpstreamPolicy(limits=ConnectionLimits(ConnectionPool(max_connections=1)))
    own = pools.pool_for(Upstream("outbound|80||b", ep, limited))
    assert isinstance(own, GuardedPool)
    assert pools.pool_for(Upstream("outbound|80||b", ep, limited)) is own
    assert list(pools.stats()) == ["outbound|80||b"]


def test_max_retries_bounds_the_retries_in_flight() -> None:
    pool = guarded(max_retries=2)
    assert pool.begin_retry() and pool.begin_retry()
    assert not pool.begin_retry()
    assert pool.stats["upstream_rq_retry_overflow"] == 1
    pool.end_retry()
    assert pool.begin_retry()
    unlimited = guarded(max_connections=3)
    assert all(unlimited.begin_retry() for _ in range(100))
