"""Atheris target: bytes into the data plane's request-head path, as a client would send them.

The bytes go, in slices, into ``ClientConnection.data_received``: httptools' parser with
shadowmesh's own callbacks and the checks it adds to llhttp (framing, limits, request line).
The connection runs over a fake transport in front of an empty route table, so every request
that passes the checks is answered locally (404, no route) and nothing leaves the process.

A finding is anything that escapes ``data_received`` (shadowmesh's own callbacks raising what
it does not handle), or an answer that is not an HTTP/1.1 status line.

    pip install atheris==3.0.0
    python fuzz/fuzz_request_head.py -max_total_time=60 fuzz/corpus/request_head

See fuzz/README.md.
"""

from __future__ import annotations

import sys
from typing import Any

from shadowmesh.dataplane.downstream import ClientConnection
from shadowmesh.dataplane.server import DataPlane
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.connection import Pool


class FakeTransport:
    """What ClientConnection uses of an asyncio transport; keeps what was written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def make_plane() -> DataPlane:
    stats = Stats()
    log = AccessLog(None)
    limits = ShadowLimits(timeout=1.0, max_in_flight=1, max_body_bytes=1)
    dispatcher = Dispatcher(limits, stats, log)
    return DataPlane(RouteTable.compile([]), "127.0.0.1", Pool(), dispatcher, log, stats)


PLANE = make_plane()


def one_input(data: bytes) -> None:
    """Feed data in slices whose sizes the first byte picks; check what was answered."""
    if not data:
        return
    step = 1 + data[0] % 64 if data[0] < 0xF0 else len(data)
    payload = data[1:]
    transport = FakeTransport()
    conn = ClientConnection(PLANE, 8000 if data[0] & 1 else None)
    conn.connection_made(transport)  # type: ignore[arg-type]
    for start in range(0, len(payload), step):
        if transport.closed:
            break
        conn.data_received(payload[start : start + step])
    conn.connection_lost(None)
    written = bytes(transport.written)
    if written and not written.startswith(b"HTTP/1.1 "):
        raise AssertionError(f"not a status line: {written[:80]!r}")


def main() -> None:
    import atheris  # type: ignore[import-untyped]  # no stubs; installed for fuzzing only

    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
