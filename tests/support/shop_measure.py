"""Measurements of the Comparison gate on the shop app (not a test: figures for the README and
the issue). From the repository root, with the venv:

    .venv/bin/python -m tests.support.shop_measure aa 8        # A/A/A runs at three loads
    .venv/bin/python -m tests.support.shop_measure planted 1 2 3   # requests to find each change

``aa N``: N runs at each load (one client, 200 requests; 16 clients, 400; 16 clients, 2,000),
``mirrors:`` order alternating, the candidate running the primary's code: the regressions
found (each one a false flag) and how many endpoints' latency could be judged.
``planted SEED...``: the candidate with the planted changes, one client, checked every 25
requests: when each regression is first flagged (requests in all, requests to its endpoint).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import shop_live
from tests.support.serve import Served

LOADS = ((1, 40, 0.005), (16, 80, 0.02), (16, 400, 0.02))  # clients, rounds, pause


def reset(admin: int) -> None:
    url = f"http://127.0.0.1:{admin}/comparisons/default/{shop_live.COMPARISON}/reset"
    request = urllib.request.Request(url, data=b"{}", method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def warm(s: Served, clients: int) -> None:
    """Every process's first requests are its slowest: a few, then forget them."""
    sent = shop_live.drive(s.port, shop_live.paths(99, 8), clients)
    shop_live.report(s.admin, len(sent))
    reset(s.admin)


def aa(runs: int, tmp: Path) -> None:
    results: list[tuple[int, int, int, list[str], int]] = []
    with shop_live.start_shop(tmp / "logs", "v1") as ports:
        for i in range(runs):
            mirrors = ("v2", "v1b") if i % 2 == 0 else ("v1b", "v2")
            for clients, rounds, pause in LOADS:
                d = tmp / f"aa-{i}-{clients}-{rounds}"
                d.mkdir()
                s = Served(d, shop_live.mesh_yaml(ports, mirrors), "--shadow-timeout", "10")
                try:
                    warm(s, clients)
                    started = time.monotonic()
                    sent = shop_live.drive(s.port, shop_live.paths(i, rounds), clients, pause)
                    rps = round(len(sent) / (time.monotonic() - started))
                    r = shop_live.report(s.admin, len(sent))
                    judged = sum(
                        e["latency"]["verdict"] in ("ok", "regression") for e in r["endpoints"]
                    )
                    flags = shop_live.regressions(r)
                    results.append((clients, len(sent), rps, flags, judged))
                    print("A/A/A", i, mirrors, clients, len(sent), f"{rps} rps", flags, flush=True)
                finally:
                    s.stop()
    for clients, rounds, _ in LOADS:
        mine = [r for r in results if r[0] == clients and r[1] == rounds * 5]
        print(
            f"{clients} client(s), {rounds * 5} requests: {len(mine)} runs, "
            f"{sum(len(r[3]) for r in mine)} false flags, latency judged on "
            f"{sum(r[4] for r in mine)} of {5 * len(mine)} endpoints, "
            f"{min(r[2] for r in mine)}-{max(r[2] for r in mine)} rps"
        )


def planted(seed: int, tmp: Path) -> dict[str, Any]:
    first: dict[str, Any] = {}
    with shop_live.start_shop(tmp / f"logs-{seed}", "v2") as ports:
        d = tmp / f"planted-{seed}"
        d.mkdir()
        s = Served(d, shop_live.mesh_yaml(ports, ("v2", "v1b")), "--shadow-timeout", "10")
        try:
            warm(s, 1)
            targets = shop_live.paths(seed, 200)
            sent = 0
            for k in range(0, len(targets), 25):
                shop_live.drive(s.port, targets[k : k + 25], 1, 0.005)
                sent += 25
                r = shop_live.report(s.admin, sent)
                per = {e["endpoint"]: e["requests"] for e in r["endpoints"]}
                for flag in shop_live.regressions(r):
                    endpoint = " ".join(flag.split(" ")[:2])
                    first.setdefault(flag, {"requests": sent, "to_endpoint": per.get(endpoint)})
        finally:
            s.stop()
    return first


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if argv[0] == "aa":
            aa(int(argv[1]), tmp)
        else:
            for seed in map(int, argv[1:]):
                print("seed", seed, json.dumps(planted(seed, tmp)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
