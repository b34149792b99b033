"""``python -m bench.policy``: what each route policy costs per request, in microseconds.

The data plane's own per-request work is measured by ``python -m bench`` end to end; this
measures, in process, the one call the stream makes for each policy when it is set, against
the ``is not None`` test it makes when it is not (the cost of an unset policy). Run it with the
project's compiled venv (``.venv/bin/python -m bench.policy``): the policy module is on the hot
path and compiled by mypyc there.

Inputs are a typical request head: 12 headers, a path with a query, a browser's Origin.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import timeit
from collections.abc import Callable

import shadowmesh
from shadowmesh.routing.policy import (
    INLINE_RESPONSE,
    NO_POLICY,
    CorsPolicy,
    FaultPolicy,
    Header,
    HeaderOps,
    RetryPolicy,
    Rewrite,
    RoutePolicy,
)

HEADERS: list[Header] = [
    (b"host", b"httpbin:8000"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    (b"accept", b"text/html,application/xhtml+xml"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"cookie", b"session=0123456789abcdef; theme=dark"),
    (b"origin", b"https://app.example.com"),
    (b"referer", b"https://app.example.com/page"),
    (b"x-request-id", b"3c5f3b0e-7c4a-4f0e-9d4b-2f7c9a1e8b6d"),
    (b"x-b3-traceid", b"80f198ee56343ba864fe8b2a57d3eff7"),
    (b"x-b3-spanid", b"e457b5a2e4d86bd1"),
    (b"x-b3-sampled", b"1"),
]
RESPONSE: list[Header] = [
    (b"content-type", b"application/json"),
    (b"content-length", b"432"),
    (b"date", b"Wed, 02 Dec 2026 14:00:00 GMT"),
    (b"server", b"gunicorn"),
]
PATH = b"/ratings/0?user=jason&page=2"


def cases() -> dict[str, Callable[[], object]]:
    rng = random.Random(1)
    policy = NO_POLICY
    request_ops = HeaderOps(
        set=((b"x-env", b"canary"),), add=((b"x-added", b"1"),), remove=(b"cookie",)
    )
    response_ops = HeaderOps(
        set=((b"cache-control", b"no-store"),), remove=(b"server",), inline=INLINE_RESPONSE
    )
    prefix = Rewrite(prefix=b"/v1", matched=len(b"/ratings"))
    regex = Rewrite(pattern=re.compile(rb"^/ratings/([^/]+)$"), substitution=rb"/v1/\g<1>")
    fault_half = FaultPolicy(7.0, 500_000, abort_status=500, abort_numerator=100_000)
    fault_all = FaultPolicy(abort_status=500, abort_numerator=1_000_000)
    cors = CorsPolicy(
        (lambda o: o == b"https://app.example.com", lambda o: o.startswith(b"https://dev.")),
        methods=b"GET,POST",
        headers=b"content-type",
        expose=b"x-total",
        max_age=b"86400",
        credentials=True,
    )
    retry = RetryPolicy(3, frozenset({"gateway-error", "connect-failure"}))
    finalized = RoutePolicy(request_ops=request_ops, response_ops=response_ops, rewrite=prefix)

    def unset() -> object:
        # What the stream does per request for a route without policy: the None tests.
        p = policy
        return (
            p.fault is not None
            or p.cors is not None
            or p.request_ops is not None
            or p.rewrite is not None
            or p.response_ops is not None
        )

    return {
        "unset policy (5 None tests)": unset,
        "request headers: set+add+remove": lambda: request_ops.apply(list(HEADERS)),
        "response headers: set+remove": lambda: response_ops.apply(list(RESPONSE)),
        "rewrite: prefix": lambda: prefix.path(PATH),
        "rewrite: uriRegexRewrite": lambda: regex.path(PATH),
        "fault: delay 50% + abort 10% draws": lambda: (
            fault_half.delay(rng),
            fault_half.abort(rng),
        ),
        "fault: abort 100%": lambda: fault_all.abort(rng),
        "cors: decorate (allowed origin)": lambda: cors.decorate(b"https://app.example.com"),
        "cors: preflight answered": lambda: cors.preflight(
            b"https://app.example.com", b"POST", b"content-type"
        ),
        "retries: on_status(200)": lambda: retry.on_status(200),
        "router: finalize_request (ops + prefix rewrite)": lambda: finalized.finalize_request(
            PATH, b"httpbin:8000", list(HEADERS)
        ),
        "response: local_headers of a local reply": lambda: finalized.local_headers,
        "copy of the header list (baseline)": lambda: list(HEADERS),
    }


def measure(repeat: int, number: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, call in cases().items():
        best = min(timeit.repeat(call, number=number, repeat=repeat))
        out[name] = best / number * 1e6
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__)
    p.add_argument("--number", type=int, default=100_000, help="calls per timing")
    p.add_argument("--repeat", type=int, default=5, help="timings; the best is kept")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    figures = measure(args.repeat, args.number)
    if args.json:
        print(json.dumps({"compiled": shadowmesh.compiled(), "us": figures}, indent=2))
        return
    print(f"compiled hot path: {shadowmesh.compiled()}; best of {args.repeat} x {args.number}")
    for name, us in figures.items():
        print(f"  {name:<40} {us:7.3f} us")


if __name__ == "__main__":
    main()
