"""What a stream reads of the data plane it runs in: its route table, pools, dispatcher and
sinks. ``dataplane.server.DataPlane`` is one (a subclass); a test may build one alone."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from shadowmesh.mirror.dispatcher import Dispatcher
from shadowmesh.mirror.pairing import Sink
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.spans import Spans
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.clusterpool import UpstreamPools
from shadowmesh.upstream.connection import Pool


class ProxyContext:
    def __init__(
        self,
        table: RouteTable,
        pool: Pool,
        dispatcher: Dispatcher,
        access_log: AccessLog,
        stats: Stats,
        pseudonym: bytes,
    ) -> None:
        self.table = table  # swapped whole on a config change; a stream reads it once
        self.pool = pool
        # Per cluster: ``pool``, or one of its own for a DestinationRule's connectionPool/tls.
        self.pools = UpstreamPools(pool)
        self.dispatcher = dispatcher
        self.access_log = access_log
        self.stats = stats
        self.pseudonym = pseudonym  # our name in Via (control/identity.py)
        self.analyzer: Sink | None = None  # set by serve when comparisons are analysed
        self.spans: Spans | None = None  # set by serve when traces are exported (OTLP)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the context keeps until it ends."""
        raise NotImplementedError
