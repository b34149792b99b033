"""A listening socket whose new connections are accepted in batches.

libuv, under uvloop's ``create_server``, accepts one connection per turn of the event loop. A
turn of a busy proxy handles hundreds of ready sockets and takes milliseconds, so a burst of
new clients waited in the kernel's accept queue, a few dozen admitted per 100 ms, while the
clients already connected were served: with 1,000 connections opened at once, wrk's p99 was
1 to 2 s while no request took over 50 ms inside the proxy (``ss`` showed 500 to 700
connections queued on the listening socket). nginx also accepts one connection per event, but
its turns take microseconds. Here a readable listening socket is drained, up to
``ACCEPT_BATCH`` connections per turn, and each is handed to the loop as a transport.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

ACCEPT_BATCH = 256
# Out of file descriptors: the queued connection stays readable, and accepting again at once
# would spin. Stop accepting a moment (libuv sheds such connections instead; nginx waits too).
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PAUSE_WHEN_EXHAUSTED = 0.1


class Listener:
    """Accepts connections on ``sock`` (bound and listening, non-blocking) for ``factory``."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        on_exhausted: Callable[[], None],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._sock = sock
        self._context = context  # TLS to terminate (an ingress port), or None
        self._fd = sock.fileno()
        self._factory = factory
        self._spawn = spawn
        self._on_exhausted = on_exhausted
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._keep_accepted = False
        self.attaching = 0  # accepted connections whose transports are being set up
        self._loop.add_reader(self._fd, self._accept)

    @property
    def port(self) -> int:
        bound: int = self._sock.getsockname()[1]
        return bound

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._accept_one():
                break

    def _accept_one(self) -> bool:
        """Accept one queued connection; False when there is none to accept now."""
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionAbortedError:
            return True  # the client gave up while queued: nothing to serve
        except OSError as exc:
            if exc.errno not in _EXHAUSTED:
                raise
            self._on_exhausted()
            self._loop.remove_reader(self._fd)
            self._loop.call_later(PAUSE_WHEN_EXHAUSTED, self._resume)
            return False
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One task each: setting a transport up takes a turn of the loop, and a batch set up
        # one after another would wait a turn per connection before it.
        self.attaching += 1
        self._spawn(self._attach(conn))
        return True

    async def _attach(self, sock: socket.socket) -> None:
        try:
            if self._closed and not self._keep_accepted:
                sock.close()
                return
            try:
                if self._context is None:
                    await self._loop.connect_accepted_socket(self._factory, sock)
                else:
                    await self._loop.connect_accepted_socket(
                        self._factory, sock, ssl=self._context, ssl_handshake_timeout=10.0
                    )
            except (OSError, ssl.SSLError):
                sock.close()  # reset before it could be set up: as if never accepted
        finally:
            self.attaching -= 1

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._accept)

    def close(self, accept_queued: int = 0) -> None:
        """Stop accepting and close the listening socket; accepted connections live on.

        ``accept_queued``: first accept up to that many connections the kernel has queued (a
        drain serves them); otherwise they are reset with the socket (a Service port removed
        by an apply).
        """
        if self._closed:
            return
        if accept_queued:
            self._keep_accepted = True
            for _ in range(accept_queued):
                if not self._accept_one():
                    break
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._sock.close()
