"""A raw TLS upstream for origination tests: answers each request 200, records SNI and the
client certificate it was shown."""

from __future__ import annotations

import socket
import ssl
import threading


class TlsUpstream:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.sni: list[str | None] = []
        self.client_certs: list[object] = []
        self.requests = 0
        context.sni_callback = self._sni  # type: ignore[assignment]
        self._context = context
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _sni(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self.sni.append(name)

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                self.client_certs.append(conn.getpeercert())
                buf = b""
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    while b"\r\n\r\n" in buf:
                        _, _, buf = buf.partition(b"\r\n\r\n")
                        self.requests += 1
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntls")
        except (OSError, ssl.SSLError):
            raw.close()

    def close(self) -> None:
        self._sock.close()
