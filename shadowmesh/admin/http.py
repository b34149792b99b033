"""Just enough HTTP/1.1 for the admin API: one request per connection, Content-Length bodies.

The admin API serves a CLI and curl, a handful of requests per minute, so it needs no framework;
it does need to be strict, because it changes what the proxy does: a malformed head, a chunked
body or an oversized one is refused before any handler sees it. The head is read and judged
first (token, endpoint, length); the body only once the head is admitted, so an unauthorised
client cannot make the API hold its 16 MiB.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0
# Draining a refused request's body (``linger``): nginx's lingering_time is 30 s and its
# lingering_timeout 5 s; an admin client is a CLI or curl on a fast link, so less will do.
LINGER_TIME = 5.0
LINGER_IDLE = 1.0
LINGER_BYTES = 4 * MAX_BODY
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Used with fullmatch: ``$`` would also match before a trailing newline.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")  # origin-form, visible ASCII only
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # no CR, LF, NUL or other controls


class HttpError(Exception):
    """A request the server refuses; becomes a JSON ``{"error": ...}`` answer."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, f"the request body is not JSON: {exc}") from exc


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        reason = HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
        ]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = (json.dumps(payload, indent=2, default=str) + "\n").encode()
    return Response(status, body, headers=headers or {})


def text_response(status: int, text: str) -> Response:
    return Response(status, text.encode(), "text/plain; charset=utf-8")


async def read_head(reader: asyncio.StreamReader) -> Request | None:
    """The next request's head, as a Request without its body (``read_body`` reads it once the
    head is admitted), or None if the client closed the connection before sending one.

    The reader's ``limit`` must be MAX_HEAD: a longer head raises LimitOverrunError here, which
    becomes 431.
    """
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise HttpError(400, "the request head is incomplete") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, f"the request head is larger than {MAX_HEAD} bytes") from exc
    except TimeoutError as exc:
        raise HttpError(408, "the request head did not arrive in time") from exc
    method, target, headers = parse_head(head)
    url = urlsplit(target)
    return Request(method, url.path, parse_qs(url.query), headers)


def expects_continue(request: Request) -> bool:
    return request.headers.get("expect", "").strip().lower() == "100-continue"


async def read_body(reader: asyncio.StreamReader, length: int) -> bytes:
    """``length`` bytes of body (``body_length`` has bounded it)."""
    if not length:
        return b""
    try:
        return await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(400, "the request body is shorter than its Content-Length") from exc
    except TimeoutError as exc:
        raise HttpError(408, "the request body did not arrive in time") from exc


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After an answer given before the request was read whole (a 401 or 413 on its head):
    half-close, then read and discard what the client still sends, within bounds, before
    closing. Closing with unread bytes makes the kernel send a reset, which destroys the answer
    before the client reads it (nginx's ``lingering_close`` does the same)."""
    if writer.can_write_eof():
        writer.write_eof()
    loop = asyncio.get_running_loop()
    end = loop.time() + LINGER_TIME
    left = LINGER_BYTES
    while left > 0:
        remaining = end - loop.time()
        if remaining <= 0:
            return
        try:
            data = await asyncio.wait_for(reader.read(65536), min(LINGER_IDLE, remaining))
        except (TimeoutError, ConnectionError):
            return
        if not data:
            return
        left -= len(data)


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, target, headers) of a request head ending in CRLF CRLF."""
    request_line, *header_lines = head[:-4].split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise HttpError(400, "malformed request line")
    if parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise HttpError(400, "malformed header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return parts[0].decode("ascii"), parts[1].decode("latin-1"), headers


def body_length(headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise HttpError(411, "send the body with Content-Length, not Transfer-Encoding")
    raw = headers.get("content-length")
    if raw is None:
        return 0
    # Repeated Content-Length headers arrive joined; they are fine only if they all agree.
    values = {v.strip() for v in raw.split(",")}
    if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
        raise HttpError(400, f"invalid Content-Length: {raw!r}")
    length = int(values.pop())
    if length > MAX_BODY:
        raise HttpError(413, f"the request body is larger than {MAX_BODY} bytes")
    return length
