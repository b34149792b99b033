"""A small shop API to compare, realistic where comparisons go wrong: nested JSON, pagination,
server-generated ids and millisecond timestamps, a search whose ties come back in any order,
ETag and Date headers. ``SHOP_VERSION=v2`` plants the changes a comparison must find (and v1,
the default, has none, so v1 against v1 is an A/A run):

- ``/api/skus/{sku}``: ``price`` becomes a string ("12.50" for 12.5): a type change;
- ``/api/skus?page=N``: ``stock.warehouse`` is gone from every item: a removed nested field;
- ``/api/orders/{n}``: answers 500 for one order in ten: an error-rate regression;
- ``/api/slow``: takes 25 ms instead of 20: a +25 % latency regression.

Plain WSGI, no dependency: run it under gunicorn with ``--pythonpath tests/e2e shop_app:app``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

Start = Callable[..., Any]
V2 = os.environ.get("SHOP_VERSION", "v1") == "v2"
SKUS = [f"SKU-{i:04d}" for i in range(1, 400)]


def now_ms() -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sku(code: str) -> dict[str, Any]:
    n = int(code.split("-")[1])
    price = round(5 + (n % 40) * 0.25, 2)
    return {
        "sku": code,
        "name": f"Widget {n}",
        "price": f"{price:.2f}" if V2 else price,
        "tags": ["widget", "blue" if n % 2 else "red"],
        "stock": {"available": n % 7, "warehouse": f"WH-{n % 3}"},
        "updated_at": now_ms(),
    }


def page(number: int) -> dict[str, Any]:
    codes = SKUS[(number - 1) * 5 : number * 5]
    items = [sku(c) for c in codes]
    for item in items:
        if V2:
            del item["stock"]["warehouse"]
    return {
        "items": items,
        "page": number,
        "next": f"/api/skus?page={number + 1}" if number * 5 < len(SKUS) else None,
        "generated_at": now_ms(),
    }


def search(query: str) -> dict[str, Any]:
    # Three hits share a score: their order is whatever the index gives, on every version.
    hits = [{"sku": c, "score": 1.0 if i < 3 else 0.5} for i, c in enumerate(SKUS[:6])]
    tied = hits[:3]
    random.shuffle(tied)
    return {"query": query, "hits": tied + hits[3:], "took_ms": random.randint(1, 4)}


def order(n: int) -> tuple[str, dict[str, Any]]:
    if V2 and n % 10 == 0:
        return "500 Internal Server Error", {"error": "order service unavailable"}
    return "200 OK", {
        "order": n,
        "id": str(uuid.uuid4()),
        "lines": [{"sku": SKUS[(n + k) % len(SKUS)], "qty": 1 + k} for k in range(2)],
        "placed_at": now_ms(),
        "total": {"amount": 10 + n % 9, "currency": "EUR"},
    }


def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    status, body = "200 OK", None
    if path.startswith("/api/skus/"):
        code = path.rsplit("/", 1)[1]
        body = sku(code) if code in SKUS else None
        status = "200 OK" if body is not None else "404 Not Found"
        body = body or {"error": "no such sku"}
    elif path == "/api/skus":
        body = page(int(query.get("page", ["1"])[0]))
    elif path == "/api/search":
        body = search(query.get("q", [""])[0])
    elif path.startswith("/api/orders/"):
        status, body = order(int(path.rsplit("/", 1)[1]))
    elif path == "/api/slow":
        time.sleep(0.025 if V2 else 0.020)
        body = {"slow": True}
    elif path == "/health":
        body = {"ok": True}
    else:
        status, body = "404 Not Found", {"error": "not found"}
    data = json.dumps(body).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("ETag", '"' + hashlib.sha1(data).hexdigest()[:16] + '"'),
        ("X-Request-Served", str(uuid.uuid4())),
    ]
    start_response(status, headers)
    return [data]
