"""The data plane of one process: its listeners, its route table, its pools.

A new route table is swapped in with one assignment; each request reads the table once when it
starts, so in-flight requests finish on the table they started with. Listeners follow the
table's Service ports: opened when a Service brings a port, closed when the last one goes.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from shadowmesh.dataplane.downstream import ClientConnection
from shadowmesh.dataplane.listener import Listener
from shadowmesh.dataplane.tls import CredentialError, server_context
from shadowmesh.errors import ShadowmeshError
from shadowmesh.mirror.dispatcher import Dispatcher
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.proxy.context import ProxyContext
from shadowmesh.routing.ingress import GATEWAY_KEY, IngressPlan
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.connection import Pool


@dataclass(frozen=True)
class DownstreamLimits:
    """Client-side limits (nginx: keepalive_timeout, client_header_timeout, worker_connections;
    Envoy: stream_idle_timeout, default 5 min, here nginx's 60 s client_body_timeout and
    proxy_read_timeout)."""

    idle_timeout: float = 60.0
    header_timeout: float = 10.0
    max_connections: int = 10_000
    # nginx's underscores_in_headers (off by default there too): a header name with "_" is
    # dropped, since some upstream stacks (CGI, WSGI, Rails) fold "_" and "-" together, and
    # "content_length" would reach them as a second Content-Length.
    allow_underscores: bool = False
    stream_idle_timeout: float = 60.0


# How often a drain looks for connections gone idle.
DRAIN_TICK = 0.02

# Connections the kernel completes and queues while the loop is busy (nginx: 511, Envoy: 1024).
# Past the backlog Linux drops a SYN, and that client waits a second for its retransmission.
BACKLOG = 1024


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket, bound now so "address in use" is known at once.

    ``reuse_port``: several worker processes listen on the same port and the kernel spreads
    connections over them (SO_REUSEPORT), as nginx's ``reuseport`` and Envoy's workers do.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DataPlane(ProxyContext):
    def __init__(
        self,
        table: RouteTable,
        bind: str,
        pool: Pool,
        dispatcher: Dispatcher,
        access_log: AccessLog,
        stats: Stats,
        limits: DownstreamLimits | None = None,
        reuse_port: bool = False,
        pseudonym: bytes = b"",
    ) -> None:
        # Our name in Via (see control/identity.py); a process of its own draws one.
        super().__init__(
            table,
            pool,
            dispatcher,
            access_log,
            stats,
            pseudonym or b"shadowmesh-" + secrets.token_hex(6).encode(),
        )
        self.reuse_port = reuse_port
        self.limits = limits or DownstreamLimits()
        self.bind = bind
        self.listeners: dict[int, Listener] = {}
        self.outbound: Listener | None = None
        # The ingress (Istio Gateways' servers): where its ports listen, where credentialName
        # folders are, and per port the plan its listener was opened for (serve sets both).
        self.gateway_bind = bind
        self.credentials_dir: str | None = None
        self.ingress: dict[int, tuple[IngressPlan, Listener]] = {}
        # At start, a stored Gateway whose certificate is gone leaves its port closed (named
        # in ``ingress_skipped``) rather than keeping the proxy from starting; an apply that
        # names a bad certificate is refused instead.
        self.skip_bad_credentials = False
        self.ingress_skipped: list[str] = []
        self._skipped_plans: dict[int, IngressPlan] = {}  # stays closed until its plan changes
        self.connections: set[ClientConnection] = set()
        self.draining = False  # shutting down: see ``shutdown``
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_time = time.monotonic

    # --- config ---------------------------------------------------------------------------

    def swap(self, table: RouteTable) -> None:
        """Install a new route table (called by the controller before it commits an apply).

        All or nothing: every new Service port is bound first, and if one cannot be (another
        process holds it), nothing changes and the error goes back to the apply. New sockets
        are listening before this returns, so a client that connects right after an apply is
        queued by the kernel, not refused.
        """
        # Once draining, no port opens again (the drain closed them all).
        wanted = set() if self.draining else set(table.ports)
        bound: dict[int, socket.socket] = {}
        try:
            for port in sorted(wanted - set(self.listeners)):
                bound[port] = bind_socket(self.bind, port, self.reuse_port)
        except OSError as exc:
            for sock in bound.values():
                sock.close()
            raise OSError(
                exc.errno, f"cannot listen on {self.bind}:{port} for a Service port: {exc.strerror}"
            ) from None
        try:
            ingress = self._bind_ingress(table)
        except (OSError, ShadowmeshError):
            for sock in bound.values():
                sock.close()
            raise
        self.table = table
        for port in sorted(set(self.listeners) - wanted):
            self.listeners.pop(port).close()
        for port, sock in bound.items():
            self.listeners[port] = self._listen(sock, port)
        for port in sorted(set(self.ingress) - set(table.ingress)):
            self.ingress.pop(port)[1].close()
        for port, (plan, sock, context) in ingress.items():
            old = self.ingress.pop(port, None)
            if old is not None:
                old[1].close()
            self.ingress[port] = (plan, self._listen(sock, GATEWAY_KEY + port, context))

    def _bind_ingress(
        self, table: RouteTable
    ) -> dict[int, tuple[IngressPlan, socket.socket, ssl.SSLContext | None]]:
        """Sockets and TLS contexts for the ingress ports whose plan changed; a port whose
        plan is the same keeps its listener (and its connections)."""
        out: dict[int, tuple[IngressPlan, socket.socket, ssl.SSLContext | None]] = {}
        try:
            for port, plan in sorted(table.ingress.items()):
                current = self.ingress.get(port)
                if current is not None and current[0] == plan:
                    continue
                if self._skipped_plans.get(port) == plan:
                    continue  # skipped at start; an apply that changes the Gateway retries it
                try:
                    context = server_context(plan, self.credentials_dir)
                except CredentialError as exc:
                    if not self.skip_bad_credentials:
                        raise
                    self._skipped_plans[port] = plan
                    self.ingress_skipped.append(f"Gateway port {port} not opened: {exc}")
                    continue
                if current is not None:
                    current[1].close()  # the port is taken again at once, with the new plan
                    del self.ingress[port]
                try:
                    sock = bind_socket(self.gateway_bind, port, self.reuse_port)
                except OSError as exc:
                    raise OSError(
                        exc.errno,
                        f"cannot listen on {self.gateway_bind}:{port} for a Gateway server: "
                        f"{exc.strerror}",
                    ) from None
                out[port] = (plan, sock, context)
        except BaseException:
            for _, sock, _ in out.values():
                sock.close()
            raise
        return out

    def _listen(
        self, sock: socket.socket, port: int | None, context: ssl.SSLContext | None = None
    ) -> Listener:
        scheme = "https" if context is not None else "http"

        def connection() -> ClientConnection:
            client = ClientConnection(self, port)
            client.scheme = scheme
            return client

        return Listener(sock, connection, self.spawn, self._accept_exhausted, context)

    def _accept_exhausted(self) -> None:
        self.stats.requests["downstream_cx_accept_exhausted"] += 1

    async def start_outbound(self, host: str, port: int) -> int:
        """The forward-proxy port a sidecar's outbound capture would be; returns its port."""
        self.outbound = self._listen(bind_socket(host, port, self.reuse_port), None)
        return self.outbound.port

    # --- bookkeeping ----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection_opened(self, conn: ClientConnection) -> bool:
        """Admit a new client connection, or refuse it (False) past the connection cap."""
        if len(self.connections) >= self.limits.max_connections:
            self.stats.requests["downstream_cx_overflow"] += 1
            return False
        self.connections.add(conn)
        self.stats.downstream_active = len(self.connections)
        return True

    def clock(self) -> float:
        return self._loop_time()

    async def sweep(self) -> None:
        """Close connections idle or stuck in a head past their timeouts, and end streams that
        went silent both ways, a few times a second.

        One pass over the connections beats a timer per request on the hot path.
        """
        limits = self.limits
        shortest = min(limits.idle_timeout, limits.header_timeout, limits.stream_idle_timeout)
        interval = max(0.05, shortest / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            for conn in list(self.connections):
                conn.expire(
                    now, limits.idle_timeout, limits.header_timeout, limits.stream_idle_timeout
                )

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.stats.downstream_active = len(self.connections)

    async def shutdown(self, deadline: float) -> None:
        """Drain, then close: return as soon as no client connection is left, or close what is
        left at ``deadline`` seconds.

        Stop accepting (the connections the kernel already queued are accepted first: closing
        the listening socket would reset them, requests and all). Every request in progress is
        answered, its response saying Connection: close; idle keep-alive connections are closed
        (``ClientConnection.drain``), so that clients move on at once.
        """
        self.draining = True
        listeners = list(self.listeners.values()) + [pair[1] for pair in self.ingress.values()]
        if self.outbound is not None:
            listeners.append(self.outbound)
        for listener in listeners:
            listener.close(accept_queued=BACKLOG)  # all the kernel may hold
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end:
            if not self.connections and not any(lst.attaching for lst in listeners):
                break
            now = self.clock()
            for conn in list(self.connections):
                conn.drain(now)
            await asyncio.sleep(DRAIN_TICK)
        for conn in list(self.connections):
            conn.keep_alive = False
            conn.close()
        await self.dispatcher.drain(max(0.0, end - loop.time()))
        self.dispatcher.close()
        self.pool.close()
        self.access_log.flush()
