"""Per-cluster upstream pools for clusters with a DestinationRule ``connectionPool`` or ``tls``:
Envoy's circuit breakers, connection options and TLS origination around the HTTP/1 codec.

A cluster without either shares the plain ``Pool`` (``upstream.connection``), as before: such
a policy costs nothing. One with them gets a ``GuardedPool`` of its own, as Envoy keeps a
connection pool per cluster and host; it has the plain pool's interface (``take``, ``connect``,
``put``), so the stream drives both alike. Envoy's HTTP/1 pool (envoyproxy/envoy
``source/common/conn_pool/conn_pool_base.cc``; ``docs/root/intro/arch_overview/upstream/
circuit_breaking.rst``), with the limits per cluster, over all its endpoints:

- A request that finds no idle connection is *pending* until it has one. If
  ``http1MaxPendingRequests`` are pending already it fails at once: ``Overflow`` (503 ``UO``,
  ``x-envoy-overloaded: true``; ``upstream_rq_pending_overflow``), never retried and never
  reported to outlier detection.
- A pending request opens a connection if the cluster has fewer than ``maxConnections``;
  otherwise (``upstream_cx_overflow``) it waits for a connection of its endpoint put back
  idle, or for any of the cluster's connections to close.
- ``maxRequestsPerConnection``: a connection that served that many is closed when put back (1:
  no keep-alive). ``maxConnectionDuration``: one older is closed when put back or found idle.
  ``idleTimeout`` (http, else tcp; 1h by default, ``0s`` none): one idle longer is closed
  when next found, before it is used.
- ``maxRetries``: retries in flight on the cluster at once (``begin_retry``/``end_retry``);
  one more is not made: the current response is returned, flag ``UO``
  (``upstream_rq_retry_overflow``).
- ``connectTimeout`` bounds the TCP connect and TLS handshake (10s by default).
- ``tls`` SIMPLE / MUTUAL: the connection is TLS (``upstream.tls``), its SNI and certificate
  checks from the request's host; a failed handshake or SAN check is a connect failure (UF).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any, cast

from shadowmesh.routing.decision import Endpoint, Upstream
from shadowmesh.routing.hosts import split_authority
from shadowmesh.routing.upstreampolicy import NO_UPSTREAM_POLICY, UpstreamPolicy
from shadowmesh.upstream.connection import Pool, UpstreamConnection
from shadowmesh.upstream.tls import TlsContexts, san_problem, server_name

# Envoy's local reply on a circuit-breaker overflow (router.cc, reset reason "overflow").
OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
OVERFLOW_HEADER = (b"x-envoy-overloaded", b"true")


class Overflow(Exception):
    """A circuit breaker is open: answer 503 UO (never retried, never an outlier report)."""


class CountedConnection(UpstreamConnection):
    """A connection of a guarded pool: it tells the pool when it closes, and knows its age."""

    __slots__ = ("owner", "born", "idle_since")

    def __init__(self, endpoint: Endpoint, owner: GuardedPool) -> None:
        super().__init__(endpoint)
        self.owner = owner
        self.born = time.monotonic()
        self.idle_since = self.born

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.owner.closed_one(self)


class GuardedPool(Pool):
    """One cluster's connections with its circuit breakers (``module docstring``)."""

    def __init__(self, name: str, policy: UpstreamPolicy, contexts: TlsContexts) -> None:
        limits = policy.limits
        super().__init__(connect_timeout=limits.connect_timeout)
        self.name = name
        self.policy = policy
        self.limits = limits
        self._contexts = contexts
        self.connections = 0  # open (or opening) connections of the cluster
        self.pending = 0  # requests without a connection yet
        self.retries = 0  # retries in flight
        self._waiting: dict[Endpoint, deque[asyncio.Future[UpstreamConnection | None]]] = {}
        self._live: set[CountedConnection] = set()
        # Envoy's cluster stats of the same names.
        self.stats = {
            "upstream_cx_total": 0,
            "upstream_cx_overflow": 0,
            "upstream_rq_pending_overflow": 0,
            "upstream_rq_retry_overflow": 0,
            "upstream_cx_max_requests": 0,
            "upstream_cx_idle_timeout": 0,
            "upstream_cx_max_duration_reached": 0,
        }

    # --- the Pool interface --------------------------------------------------------------

    def take(self, endpoint: Endpoint) -> UpstreamConnection | None:
        while True:
            conn = super().take(endpoint)
            if conn is None or self._fresh(cast(CountedConnection, conn), True):
                return conn

    async def connect(self, endpoint: Endpoint, authority: bytes = b"") -> UpstreamConnection:
        """A connection for one request: new, or one put back while it waited. Raises
        Overflow, OSError (refused, TLS), or TimeoutError (connect timeout). ``authority``:
        the request's (its host is the SNI and the name checked, when the cluster has tls)."""
        limits = self.limits
        if self.pending >= limits.max_pending_requests:
            self.stats["upstream_rq_pending_overflow"] += 1
            raise Overflow(self.name)
        self.pending += 1
        try:
            while self.connections >= limits.max_connections:
                self.stats["upstream_cx_overflow"] += 1
                waiter: asyncio.Future[UpstreamConnection | None] = (
                    asyncio.get_running_loop().create_future()
                )
                self._waiting.setdefault(endpoint, deque()).append(waiter)
                try:
                    handed = await waiter
                finally:
                    self._forget_waiter(endpoint, waiter)
                if handed is not None:
                    return handed  # a connection put back while this request waited
            self.connections += 1
            try:
                return await self._open(endpoint, authority)
            except BaseException:
                self.connections -= 1
                self._wake_any()
                raise
        finally:
            self.pending -= 1

    def put(self, conn: UpstreamConnection) -> None:
        counted = cast(CountedConnection, conn)
        per_connection = self.limits.max_requests_per_connection
        if per_connection and conn.requests >= per_connection:
            self.stats["upstream_cx_max_requests"] += 1
            conn.close()
            return
        if not conn.at_boundary() or not self._fresh(counted, False):
            conn.close()
            return
        waiters = self._waiting.get(conn.endpoint)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # straight to a pending request of its endpoint
                return
        counted.idle_since = time.monotonic()
        super().put(conn)

    def begin_retry(self) -> bool:
        """Whether a retry may start now (``maxRetries``); if so it counts until ``end_retry``."""
        if self.retries >= self.limits.max_retries:
            self.stats["upstream_rq_retry_overflow"] += 1
            return False
        self.retries += 1
        return True

    def end_retry(self) -> None:
        if self.retries > 0:
            self.retries -= 1

    # --- connections ----------------------------------------------------------------------

    async def _open(self, endpoint: Endpoint, authority: bytes) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        tls = self.policy.tls
        host = split_authority(authority.decode("latin-1"))[0] if tls is not None else ""
        context = self._contexts.context(tls) if tls is not None else None
        # The codec is a plain class with asyncio.Protocol's methods (``upstream.connection``).
        factory: Any = lambda: cast(Any, CountedConnection(endpoint, self))  # noqa: E731
        made: tuple[Any, Any]
        async with asyncio.timeout(self.connect_timeout):
            if context is None or tls is None:
                made = await loop.create_connection(factory, endpoint.address, endpoint.port)
            else:
                made = await loop.create_connection(
                    factory,
                    endpoint.address,
                    endpoint.port,
                    ssl=context,
                    server_hostname=server_name(tls, host),
                    ssl_handshake_timeout=self.connect_timeout,
                )
        conn = cast(CountedConnection, made[1])
        self._live.add(conn)
        self.stats["upstream_cx_total"] += 1
        if tls is not None and conn.transport is not None:
            problem = san_problem(tls, conn.transport.get_extra_info("peercert"))
            if problem:
                self._live.discard(conn)  # connect() gives its slot back, once
                conn.close()
                # The certificate carries none of subjectAltNames: a failed verification.
                raise ssl.SSLCertVerificationError(problem)
        return conn

    def closed_one(self, conn: CountedConnection) -> None:
        if conn in self._live:
            self._live.discard(conn)
            self.connections -= 1
            self._wake_any()

    def _wake_any(self) -> None:
        """A connection slot is free: let one waiting request (of any endpoint) open one."""
        for waiters in self._waiting.values():
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return

    def _forget_waiter(
        self, endpoint: Endpoint, waiter: asyncio.Future[UpstreamConnection | None]
    ) -> None:
        waiters = self._waiting.get(endpoint)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)

    def _fresh(self, conn: CountedConnection, idle: bool) -> bool:
        """Whether ``conn`` may serve again; closes it (counted) if not."""
        now = time.monotonic()
        limits = self.limits
        if limits.max_connection_duration and now - conn.born >= limits.max_connection_duration:
            self.stats["upstream_cx_max_duration_reached"] += 1
            conn.close()
            return False
        if idle and limits.idle_timeout and now - conn.idle_since >= limits.idle_timeout:
            self.stats["upstream_cx_idle_timeout"] += 1
            conn.close()
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "cluster": self.name,
            "connections": self.connections,
            "pending": self.pending,
            "idle": self.idle_count(),
            **self.stats,
        }

    def close(self) -> None:
        super().close()
        for waiters in self._waiting.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiting.clear()


class UpstreamPools:
    """The plain pool for clusters without connectionPool or tls, a guarded one per cluster
    with them (kept across table swaps while the cluster's policy object stays the same)."""

    def __init__(self, shared: Pool) -> None:
        self.shared = shared
        self.contexts = TlsContexts()
        self._guarded: dict[str, GuardedPool] = {}

    def pool_for(self, upstream: Upstream) -> Pool:
        policy = upstream.balancer.traffic
        if policy is NO_UPSTREAM_POLICY or not policy.guarded:
            return self.shared
        found = self._guarded.get(upstream.cluster)
        if found is None or found.policy is not policy:
            if found is not None:
                found.close()  # its idle connections; the busy ones end with their requests
            found = self._guarded[upstream.cluster] = GuardedPool(
                upstream.cluster, policy, self.contexts
            )
        return found

    def begin_retry(self, upstream: Upstream) -> bool:
        """Whether the cluster's ``maxRetries`` breaker lets one more retry start (True for
        clusters without a pool of their own: Istio's default is unlimited)."""
        pool = self.pool_for(upstream)
        return pool.begin_retry() if isinstance(pool, GuardedPool) else True

    def end_retry(self, upstream: Upstream) -> None:
        pool = self.pool_for(upstream)
        if isinstance(pool, GuardedPool):
            pool.end_retry()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: pool.describe() for name, pool in sorted(self._guarded.items())}

    def close(self) -> None:
        self.shared.close()
        for pool in self._guarded.values():
            pool.close()
        self._guarded.clear()
