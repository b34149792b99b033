"""httpbin v2 as the comparison test wants it: really different on some endpoints.

A WSGI middleware around httpbin: ``/json`` renames ``slideshow.author`` to ``writer``, lists the
slides in reverse order and answers 30 ms later; ``/get`` answers 500. Everything else is
httpbin, unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from httpbin import app as httpbin

Start = Callable[..., Any]


def candidate(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/get":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"candidate broke /get\n"]
    if path != "/json":
        return httpbin(environ, start_response)  # type: ignore[no-any-return]
    captured: dict[str, Any] = {}

    def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        captured["status"], captured["headers"] = status, headers

    body = json.loads(b"".join(httpbin(environ, keep)))
    body["slideshow"]["writer"] = body["slideshow"].pop("author")
    body["slideshow"]["slides"].reverse()
    data = json.dumps(body).encode()
    time.sleep(0.03)
    headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
    start_response(captured["status"], [*headers, ("Content-Length", str(len(data)))])
    return [data]


app = candidate
