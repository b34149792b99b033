"""``python -m bench.stream``: the per-request stream's own cost, in process, in microseconds.

One GET through ``ProxyStream`` with the HTTP/1 codecs on transports that keep their bytes (no
socket, no event loop): routed, sent upstream on a pooled connection, answered, logged (access
log off). Once for a route with no policy of its own (Istio's default retry policy, armed but never
used: what an unset policy costs), once with each policy the stream acts on: a route timeout
(a timer per request), ``attempts: 0`` (no retry policy at all), and retries with a per-try
timeout (a second timer).
Run it with the project's compiled venv (``.venv/bin/python -m bench.stream``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time
from typing import Any

import uvloop

import shadowmesh
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

REQUEST = (
    b"GET /get?x=1 HTTP/1.1\r\nHost: httpbin:8000\r\nUser-Agent: bench\r\n"
    b"Accept: */*\r\nX-Request-Id: 0123456789abcdef\r\n\r\n"
)
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n"
RESPONSE += b'{"ok":true}'


class Wire(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def table(timeout: float | None, retries: HTTPRetry | None) -> RouteTable:
    chosen = dataclasses.replace(route(("v1", 100), timeout=timeout), retries=retries)
    resources: list[Resource] = [*seed_workloads(), virtual_service(chosen), destination_rule()]
    return RouteTable.compile(resources, rng=random.Random(1))


def per_request(timeout: float | None, retries: HTTPRetry | None, number: int) -> float:
    stats = Stats()
    log = AccessLog(None)
    dispatcher = Dispatcher(ShadowLimits(), stats, log)
    plane = DataPlane(table(timeout, retries), "127.0.0.1", Pool(), dispatcher, log, stats)
    client = ClientConnection(plane, 8000)
    client.connection_made(Wire())
    upstream = UpstreamConnection(Endpoint("127.0.0.1", V1_PORT))
    upstream.connection_made(Wire())
    plane.pool.put(upstream)

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    # A route timeout arms a timer on the running loop: uvloop's, as ``serve`` runs.
    loop = uvloop.new_event_loop()

    async def run() -> float:
        one()
        assert plane.pool.idle_count() == 1, "the connection went back to the pool"
        best = float("inf")
        for _ in range(3):
            start = time.thread_time()
            for i in range(number):
                one()
                if i % 8 == 0:
                    # The loop turns, as it does between reads when serving: cancelled timers
                    # are freed there (both variants pay for the turns alike).
                    await asyncio.sleep(0)
            best = min(best, time.thread_time() - start)
        return best / number * 1e6

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants: dict[str, tuple[float | None, HTTPRetry | None]] = {
        "no policy (default retries)": (None, None),
        "retries: {attempts: 0}": (None, HTTPRetry(attempts=0)),
        "route timeout 15s": (15.0, None),
        "retries with perTryTimeout": (None, HTTPRetry(2, 5.0, "5xx")),
    }
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):  # alternating: this machine's speed moves between runs
        for name, (timeout, retries) in variants.items():
            best[name] = min(best[name], per_request(timeout, retries, args.number))
    out: dict[str, object] = {"compiled": shadowmesh.compiled(), **best}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"hot path compiled: {out['compiled']}")
    for name, value in out.items():
        if isinstance(value, float):
            print(f"{name:28} {value:6.2f} us per request")


if __name__ == "__main__":
    main()
