"""Real upstream servers for data-plane tests: each records exactly the bytes it received.

They run in threads on 127.0.0.1 with free ports. ``mode`` picks the behaviour:
``ok`` answers 200 with a JSON body (keep-alive), ``frozen`` accepts and never answers,
``reset`` sends half a response and resets, ``slow`` answers after ``delay`` seconds,
``one-per-conn`` keeps the connection open after its answer but closes it when a second
request comes on it (the race of an upstream closing an idle keep-alive connection),
``early`` answers as soon as it has the head, then reads the body, ``upgrade`` answers a
request asking for an Upgrade with 101 and echoes the bytes that follow (others as ``ok``),
``count`` keeps only the size of a body (as its text).
``response`` is sent as is instead of the usual answer; ``responses`` are sent in turn, one per
request over all connections (the last one repeats), and ``close_after`` closes the connection
once sent (a response delimited by the close).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    head: bytes
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}

    @property
    def request_line(self) -> str:
        return self.head.decode("latin-1").split("\r\n", 1)[0]


@dataclass
class RecordingUpstream:
    mode: str = "ok"
    delay: float = 0.0
    body: bytes = b'{"ok": true}'
    response: bytes | None = None  # sent as is, instead of the usual answer
    responses: list[bytes] = field(default_factory=list)
    close_after: bool = False
    requests: list[Received] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    connections: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        try:
            # Wakes the thread blocked in accept(); close() alone leaves the port listening.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.close()
                except OSError:
                    pass

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        with self._lock:
            return list(self.requests)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        served = 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    self._record_raw(data)
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                if self.mode == "early":
                    # Answer before reading the body, as nginx's `return 200` does.
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly")
                body, buf = self._read_body(conn, head, buf)
                if self.mode == "early":
                    with self._lock:
                        self.requests.append(Received(head, body))
                    continue
                with self._lock:
                    self.requests.append(Received(head, body))
                if self.mode == "frozen":
                    while conn.recv(65536):
                        pass
                    return
                if self.mode == "slow":
                    time.sleep(self.delay)
                if self.mode == "reset":
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial")
                    # Linger on with a zero timeout: close() sends a RST, as a crash would.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    return
                if self.mode == "one-per-conn" and served:
                    return  # closes a kept-alive connection as a request arrives on it
                served += 1
                if self.mode == "upgrade" and b"\r\nupgrade:" in head.lower():
                    # A WebSocket-like upgrade: 101, then echo whatever comes, raw.
                    conn.sendall(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n" + buf
                    )
                    while data := conn.recv(65536):
                        self._record_raw(data)
                        conn.sendall(data)
                    return
                if self.responses:
                    with self._lock:
                        turn = min(len(self.requests), len(self.responses)) - 1
                    conn.sendall(self.responses[turn])
                    if self.close_after:
                        return
                    continue
                if self.response is not None:
                    conn.sendall(self.response)
                    if self.close_after:
                        return
                    continue
                method = head.split(b" ", 1)[0]
                response = (
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nx-upstream: recording\r\n\r\n" % len(self.body)
                )
                conn.sendall(response if method == b"HEAD" else response + self.body)
        except OSError:
            return
        finally:
            conn.close()

    def _record_raw(self, data: bytes) -> None:
        if self.mode == "count":
            return
        with self._lock:
            self.raw += data

    def _read_body(self, conn: socket.socket, head: bytes, buf: bytes) -> tuple[bytes, bytes]:
        lower = head.lower()
        if self.mode == "count":
            return self._count_body(conn, lower, buf)
        if b"\r\ntransfer-encoding: chunked" in lower:
            return self._read_chunked(conn, buf)
        length = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(buf) < length:
            data = conn.recv(65536)
            if not data:
                break
            self._record_raw(data)
            buf += data
        return buf[:length], buf[length:]

    def _count_body(self, conn: socket.socket, lower: bytes, buf: bytes) -> tuple[bytes, bytes]:
        """Read a Content-Length body without keeping it; record only its size."""
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        seen = len(buf)
        while seen < length:
            data = conn.recv(1 << 20)
            if not data:
                break
            seen += len(data)
        return str(seen).encode(), b""

    def _read_chunked(self, conn: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += self._more(conn)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += self._more(conn)
            if size == 0:
                # No trailers in these tests: the last chunk is followed by CRLF.
                return body, buf[2:]
            body += buf[:size]
            buf = buf[size + 2 :]

    def _more(self, conn: socket.socket) -> bytes:
        data = conn.recv(65536)
        if not data:
            raise OSError("closed mid-body")
        self._record_raw(data)
        return data
