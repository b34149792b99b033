"""A request leaves no reference cycle behind: everything it made is freed by reference
counting when it ends. A cycle per request (the downstream message and its stream held each
other) left ten objects a request to the cycle collector, whose passes cost pass-through about
a fifth of its requests a second (issue 10's bench). Real codecs in memory, compiled or not."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from shadowmesh.dataplane.downstream import ClientConnection
from shadowmesh.dataplane.server import DataPlane
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.model.resources import HTTPRetry, Resource
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import (
    V1_PORT,
    destination_rule,
    route,
    seed_workloads,
    virtual_service,
)
from shadowmesh.upstream.connection import Pool, UpstreamConnection
from tests.unit.test_h1_codecs import Wire

GET = b"GET /get HTTP/1.1\r\nHost: httpbin:8000\r\nUser-Agent: t\r\n\r\n"
POST = b"POST /post HTTP/1.1\r\nHost: httpbin:8000\r\nContent-Length: 5\r\n\r\nhello"
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def serving(timeout: float | None, retries: HTTPRetry | None, log: AccessLog) -> DataPlane:
    chosen = dataclasses.replace(route(("v1", 100), timeout=timeout), retries=retries)
    resources: list[Resource] = [*seed_workloads(), virtual_service(chosen), destination_rule()]
    table = RouteTable.compile(resources, rng=random.Random(1))
    stats = Stats()
    return DataPlane(table, "127.0.0.1", Pool(), Dispatcher(ShadowLimits(), stats, log), log, stats)


@contextmanager
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def garbage() -> Counter[str]:
    """What the cycle collector finds, by type, without freeing it (for the message)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()


@pytest.mark.parametrize(
    ("timeout", "retries"),
    [(None, None), (15.0, None), (None, HTTPRetry(attempts=0)), (None, HTTPRetry(2, 5.0, "5xx"))],
    ids=["default-retries", "route-timeout", "no-retries", "per-try-timeout"],
)
@pytest.mark.parametrize("request_bytes", [GET, POST, GET + POST], ids=["get", "post", "pipelined"])
def test_a_finished_request_is_freed_without_the_cycle_collector(
    tmp_path: Any, timeout: float | None, retries: HTTPRetry | None, request_bytes: bytes
) -> None:
    stream = open(tmp_path / "access.log", "w")  # noqa: SIM115 (closed below)
    log = AccessLog(stream)
    plane = serving(timeout, retries, log)
    client = ClientConnection(plane, 8000)
    client.connection_made(Wire())
    upstream = UpstreamConnection(Endpoint("127.0.0.1", V1_PORT))
    upstream.connection_made(Wire())
    plane.pool.put(upstream)
    answers = request_bytes.count(b"httpbin")

    async def run() -> Counter[str]:
        with no_cycle_collector():
            for _ in range(50):
                client.data_received(request_bytes)
                for _ in range(answers):
                    upstream.data_received(OK)
                await asyncio.sleep(0)  # cancelled timers are let go on a turn of the loop
            assert plane.pool.idle_count() == 1  # the connection went back each time
            return garbage()

    found = asyncio.run(run())
    stream.close()
    assert (tmp_path / "access.log").read_text().count("\n") >= 50
    assert found == Counter(), f"left for the cycle collector by 50 requests: {dict(found)}"
