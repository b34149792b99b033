"""The listening socket drains its accept queue in batches (libuv accepts one per loop turn)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import uvloop

from shadowmesh.dataplane.listener import ACCEPT_BATCH, Listener
from shadowmesh.dataplane.server import bind_socket


class Echo(asyncio.Protocol):
    """Answers each read with what it read, so a client can tell it was served."""

    made: list[Echo] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        Echo.made.append(self)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def test_one_readable_event_accepts_a_batch_and_queued_requests_are_read() -> None:
    """300 clients connect and send before the proxy accepts any (a burst while it is busy).
    One readiness callback takes ACCEPT_BATCH of them off the queue; one per callback, as
    libuv's own accept does, left a busy proxy admitting a few dozen per 100 ms."""

    async def main() -> None:
        Echo.made = []
        tasks: set[asyncio.Task[Any]] = set()

        def spawn(coro: Coroutine[Any, Any, Any]) -> None:
            task = asyncio.get_running_loop().create_task(coro)
            tasks.add(task)

        sock = bind_socket("127.0.0.1", 0)
        clients = [socket.create_connection(sock.getsockname()[:2]) for _ in range(300)]
        for i, client in enumerate(clients):
            client.sendall(b"hello %d" % i)
        listener = Listener(sock, Echo, spawn, lambda: None)
        try:
            listener._accept()  # what one turn of the loop does when the socket is readable
            assert len(tasks) == ACCEPT_BATCH
            await asyncio.gather(*tasks)
            # The rest on the next turns (the socket is still readable), without any client
            # sending more.
            for _ in range(100):
                if len(Echo.made) == 300:
                    break
                await asyncio.sleep(0.01)
            assert len(Echo.made) == 300
            # A request sent before its connection was accepted is read and answered.
            for i, client in enumerate(clients):
                client.settimeout(5)
                assert client.recv(100) == b"hello %d" % i
        finally:
            listener.close()
            for client in clients:
                client.close()
            for protocol in Echo.made:
                protocol.transport.close()

    uvloop.run(main())


def test_a_closed_listener_refuses_new_connections() -> None:
    async def main() -> None:
        sock = bind_socket("127.0.0.1", 0)
        address = sock.getsockname()[:2]
        listener = Listener(sock, Echo, lambda coro: coro.close(), lambda: None)
        listener.close()
        listener.close()  # twice is harmless
        try:
            socket.create_connection(address, timeout=2).close()
        except ConnectionRefusedError:
            return
        raise AssertionError("a closed listener still accepted a connection")

    uvloop.run(main())
