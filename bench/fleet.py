"""What counting a request costs, and what a worker's frame costs (``observe.fleet``).

    .venv/bin/python -m bench.fleet            # compiled, if the venv's build is
    SHADOWMESH_PURE=1 /tmp/venv/bin/python -m bench.fleet

Per request, in microseconds of the GIL: ``Stats.count_request`` (what the data plane calls)
against prometheus-client's multiprocess mode doing the same work (Istio's counter and three
histograms with their 25 labels, written to memory-mapped files). Per frame: encoding a
worker's counters at several numbers of cells, which a worker does once a second (off the
request path, on its loop) and the first process decodes.
"""

from __future__ import annotations

import os
import tempfile
import timeit

from shadowmesh import hot_path
from shadowmesh.observe import istio
from shadowmesh.observe.fleet import Report, decode, encode
from shadowmesh.observe.stats import ISTIO_BOUNDS, Stats
from shadowmesh.routing.decision import Endpoint

CLUSTER = "outbound|8000|v1|httpbin.default.svc.cluster.local"
ROUNDS = 100_000


def per_request_ours() -> float:
    stats = Stats()
    endpoint = Endpoint("127.0.0.1", 9000)
    count = stats.count_request
    seconds = timeit.timeit(
        lambda: count(CLUSTER, 200, "", endpoint, "", 3, 120, 400), number=ROUNDS
    )
    return seconds / ROUNDS * 1e6


def per_request_multiprocess() -> float:
    directory = tempfile.mkdtemp(prefix="prom-mp-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # read when the values are made
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    labels = istio.LABELS
    requests = Counter("istio_requests", "", labels, registry=registry)
    buckets = [*ISTIO_BOUNDS, float("inf")]
    duration, sizes_in, sizes_out = (
        Histogram(name, "", labels, registry=registry, buckets=buckets)
        for name in ("istio_request_duration_milliseconds", "istio_request_bytes", "ib")
    )
    # The labels as a request would have them, already built (building them is extra).
    values = tuple(f"v{i}" for i in range(len(labels)))

    def one() -> None:
        requests.labels(*values).inc()
        duration.labels(*values).observe(3)
        sizes_in.labels(*values).observe(120)
        sizes_out.labels(*values).observe(400)

    seconds = timeit.timeit(one, number=ROUNDS // 10)
    return seconds / (ROUNDS // 10) * 1e6


def per_frame(cells: int) -> tuple[float, float, int]:
    stats = Stats()
    for i in range(cells):
        endpoint = Endpoint(f"10.0.{i // 250}.{i % 250}", 9000)
        stats.count_request(f"{CLUSTER}-{i % 7}", 200 + i % 3, "", endpoint, "", 3, 120, 400)
    report = Report(1, stats, {"shadow_in_flight": 0})
    frame = encode(report)
    rounds = max(10, 20_000 // cells)
    out = timeit.timeit(lambda: encode(report), number=rounds) / rounds * 1e3
    back = timeit.timeit(lambda: decode(frame), number=rounds) / rounds * 1e3
    return out, back, len(frame)


def main() -> None:
    print(f"hot path: {hot_path()}")
    print(f"Stats.count_request: {per_request_ours():.2f} us per request")
    print(f"prometheus-client multiprocess, 4 metrics: {per_request_multiprocess():.2f} us")
    for cells in (10, 100, 1000):
        out, back, size = per_frame(cells)
        print(f"frame of {cells} cells: {size} bytes, encode {out:.2f} ms, decode {back:.2f} ms")


if __name__ == "__main__":
    main()
