"""One flag, one word: a primary and its compared shadow that fail alike are recorded alike.

A data plane runs in this process on real sockets (so the test can hold the comparison's
sink), in front of raw upstreams that fail on purpose.
"""

from __future__ import annotations

import asyncio
import io

import pytest

from shadowmesh.compare.capture import CapturedExchange
from shadowmesh.dataplane.server import DataPlane
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.model.load import load_text
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.connection import Pool
from tests.support.serve import free_port, mesh_yaml
from tests.support.upstreams import RecordingUpstream

# A status line no parser accepts: the proxy's flag is UPE, for the primary and the shadow.
GARBAGE = b"HTTP/1.1 abc Broken\r\ncontent-length: 0\r\n\r\n"


COMPARISON = """
---
apiVersion: shadowmesh.io/v1alpha1
kind: Comparison
metadata: {name: app-v2}
spec:
  host: app
  primary: {subset: v1}
  candidate: {subset: v2}
"""


def config(port: int, v1: int, v2: int) -> str:
    mesh = mesh_yaml(v1, v2, "    mirror: {host: app, subset: v2}\n").rstrip("\n")
    return mesh.replace("SERVICE_PORT", str(port)) + COMPARISON


class Captured:
    def __init__(self) -> None:
        self.exchanges: list[CapturedExchange] = []

    def submit(self, exchange: CapturedExchange) -> bool:
        self.exchanges.append(exchange)
        return True


async def one_compared_request(v1: int, v2: int) -> tuple[CapturedExchange, str]:
    port = free_port()
    resources = [d.resource for d in load_text(config(port, v1, v2), "test.yaml").documents]
    stats = Stats()
    log = io.StringIO()
    access_log = AccessLog(log)
    dispatcher = Dispatcher(ShadowLimits(timeout=5.0), stats, access_log)
    plane = DataPlane(RouteTable.compile([]), "127.0.0.1", Pool(), dispatcher, access_log, stats)
    sink = Captured()
    plane.analyzer = sink
    plane.swap(RouteTable.compile(resources))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        for _ in range(250):  # the shadow's answer comes after the primary's
            if sink.exchanges:
                break
            await asyncio.sleep(0.02)
    finally:
        await plane.shutdown(1.0)
    assert len(sink.exchanges) == 1, (log.getvalue(), stats.snapshot())
    return sink.exchanges[0], log.getvalue()


@pytest.mark.parametrize(
    ("kind", "flag", "word"),
    [("garbage", "UPE", "protocol"), ("refused", "UF", "connect"), ("reset", "UC", "reset")],
)
def test_primary_and_shadow_map_a_flag_to_the_same_word(kind: str, flag: str, word: str) -> None:
    if kind == "refused":
        v1, v2 = free_port(), free_port()  # nothing listens there
        upstreams = []
    else:
        mode, response = ("ok", GARBAGE) if kind == "garbage" else ("reset", None)
        upstreams = [RecordingUpstream(mode=mode, response=response) for _ in range(2)]
        v1, v2 = upstreams[0].port, upstreams[1].port
    try:
        exchange, log = asyncio.run(one_compared_request(v1, v2))
    finally:
        for u in upstreams:
            u.close()
    assert exchange.candidate is not None
    assert (exchange.primary.error, exchange.candidate.error) == (word, word)
    # Both access log lines carry the flag the word stands for; a connect failure of the
    # primary was retried twice first (Istio's default retry policy), hence its URX.
    lines = log.splitlines()
    assert len(lines) == 2, lines
    if kind == "refused":
        assert sum(f" {flag},URX " in line for line in lines) == 1, lines
        assert sum(f" {flag} " in line for line in lines) == 1, lines
    else:
        assert all(f" {flag} " in line for line in lines), lines
