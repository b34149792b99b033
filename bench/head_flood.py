"""Hostile heads: clients each sending one huge header line, in pieces, while a probe client
measures how long ordinary requests wait. Reports the proxy's RSS growth and the time it took.

    .venv/bin/python -m bench.head_flood                 # one 60 MiB line, then four at once
    .venv/bin/python -m bench.head_flood --mib 60 --clients 1,4 --piece 65536
    .venv/bin/python -m bench.head_flood --shadow     # the shadow answers with the huge head

Each flood client sends ``GET / HTTP/1.1``, ``Host: app`` and ``x-big: aaaa...`` (``--mib``
MiB, in ``--piece``-byte sends) and never ends the head; it stops at the first answer or when
the proxy closes. "time" is from the first byte sent to the last flood client's end; a proxy
that holds its head limits answers 431 after 60 KiB and closes, so time is short and RSS flat.
With ``--shadow``, every request is mirrored to a shadow that answers it with such a head, and
each flood client sends one ordinary request: the proxy must drop the shadow's answer at 60 KiB.
"""

from __future__ import annotations

import argparse
import select
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench.mesh import Mesh, MeshConfig
from bench.procs import Procs, free_port, peak_rss_mib, rss_mib


def upstream(huge: int = 0, piece: int = 65536) -> tuple[socket.socket, int]:
    """A tiny keep-alive upstream answering every request 200, in a thread; with ``huge``, it
    answers with a header line of that many bytes instead, sent in pieces."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while data := conn.recv(65536):
                buf += data
                while b"\r\n\r\n" in buf:
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    if huge:
                        answer_huge(conn, huge, piece)
                        return
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return sock, sock.getsockname()[1]


def answer_huge(conn: socket.socket, size: int, piece: int) -> None:
    line = b"a" * piece
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nx-big: ")
        for _ in range(size // piece):
            conn.sendall(line)
        conn.sendall(b"\r\ncontent-length: 0\r\n\r\n")
    except OSError:
        pass  # the proxy gave up on it


def ordinary(port: int, size: int, piece: int, result: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        result.append(repr(s.recv(100)[:12].decode("latin-1")))


def flood(port: int, size: int, piece: int, result: list[str]) -> None:
    line = b"a" * piece
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nx-big: ")
        sent = 0
        answer = b""
        try:
            while sent < size and not answer:
                s.sendall(line)
                sent += piece
                if select.select([s], [], [], 0)[0]:
                    answer = s.recv(100) or b"(closed)"
            if not answer:
                s.sendall(b"\r\n\r\n")
                answer = s.recv(100)
        except OSError as exc:  # reset: the proxy closed with our bytes unread
            answer = b"(closed: %s)" % type(exc).__name__.encode()
        result.append(f"{answer[:12].decode('latin-1')!r} after {sent / 2**20:.2f} MiB")


def probe(port: int, stop: threading.Event, waits: list[float]) -> None:
    while not stop.is_set():
        start = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET /probe HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
                while s.recv(65536):
                    pass
        except OSError:
            pass
        waits.append(time.monotonic() - start)
        time.sleep(0.01)


def run(mesh: Mesh, port: int, clients: int, size: int, piece: int, shadow: bool) -> None:
    pid = mesh.proc.pid
    before = rss_mib([pid])
    results: list[str] = []
    waits: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(port, stop, waits))
    prober.start()
    threads = [
        threading.Thread(target=ordinary if shadow else flood, args=(port, size, piece, results))
        for _ in range(clients)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if shadow:
        time.sleep(3)  # the shadows' answers keep coming after the primaries' (and probing)
    elapsed = time.monotonic() - start
    stop.set()
    prober.join()
    after = rss_mib([pid])
    print(
        f"{'shadow answering ' if shadow else ''}"
        f"{clients} x {size / 2**20:g} MiB line in {piece}-byte pieces: {elapsed:.2f} s, "
        f"RSS {before:.0f} -> {after:.0f} MiB (peak {peak_rss_mib([pid]):.0f}), "
        f"probe max wait {max(waits, default=0) * 1000:.0f} ms over {len(waits)} requests; "
        f"clients: {'; '.join(results)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=float, default=60)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--piece", type=int, default=65536)
    parser.add_argument("--shadow", action="store_true")
    args = parser.parse_args()
    size = int(args.mib * 2**20)
    sock, up = upstream()
    shadow_sock, shadow = upstream(size, args.piece) if args.shadow else (sock, up)
    with tempfile.TemporaryDirectory() as tmp:
        procs = Procs(Path(tmp))
        try:
            listen = free_port()
            mirror = 100 if args.shadow else 0
            cfg = MeshConfig(listen, up, shadow, mirror, False, 1, 30.0)
            mesh = Mesh(procs, Path(tmp) / "mesh", cfg, [0, 1])
            for clients in (int(c) for c in args.clients.split(",")):
                run(mesh, listen, clients, size, args.piece, args.shadow)
        finally:
            procs.stop_all()
            sock.close()
            shadow_sock.close()


if __name__ == "__main__":
    main()
