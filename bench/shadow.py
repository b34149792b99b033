"""A shadow upstream that can be slow or frozen, and counts what it received.

Run as ``python -m bench.shadow --mode ok|slow|frozen [--delay-ms N]``: it binds a free port on
127.0.0.1 and prints it on its first line. ``ok`` answers at once, ``slow`` after the delay,
``frozen`` reads everything and never answers. ``GET /__bench__/counts`` is answered at once in
every mode with what it has received so far: request heads, complete messages (the whole body,
as its Content-Length said), and messages cut off mid-body by a closed connection.

nginx cannot delay an answer without a third-party module, and its ``$request_length`` leaves
out a body it discards, so this one is Python (asyncio Protocol + httptools, uvloop if present).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import asdict, dataclass
from typing import cast

import httptools

COUNTS_PATH = b"/__bench__/counts"
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


@dataclass
class Counts:
    received: int = 0  # request heads
    complete: int = 0  # whole messages, body and all
    partial: int = 0  # cut off before the body's end
    body_bytes: int = 0


class ShadowProtocol(asyncio.Protocol):
    def __init__(self, mode: str, delay: float, counts: Counts) -> None:
        self.mode = mode
        self.delay = delay
        self.counts = counts
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.in_message = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_message:
            self.counts.partial += 1
        self.transport = None

    def on_message_begin(self) -> None:
        self.url = b""
        self.in_message = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        if self.url != COUNTS_PATH:
            self.counts.received += 1

    def on_body(self, body: bytes) -> None:
        self.counts.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.url == COUNTS_PATH:
            self._write(self._counts_response())
            return
        self.counts.complete += 1
        if self.mode == "ok":
            self._write(OK)
        elif self.mode == "slow":
            asyncio.get_running_loop().call_later(self.delay, self._write, OK)

    def _counts_response(self) -> bytes:
        body = json.dumps(asdict(self.counts)).encode()
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(mode: str, delay: float) -> None:
    loop = asyncio.get_running_loop()
    counts = Counts()
    server = await loop.create_server(
        lambda: ShadowProtocol(mode, delay, counts), "127.0.0.1", 0, backlog=4096
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done)
    await stop
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__)
    parser.add_argument("--mode", choices=["ok", "slow", "frozen"], default="ok")
    parser.add_argument("--delay-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.mode, args.delay_ms / 1000))
    except ImportError:
        asyncio.run(serve(args.mode, args.delay_ms / 1000))
    sys.exit(0)


if __name__ == "__main__":
    main()
