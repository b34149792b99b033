"""Fault injection as Istio's fault-injection task shows it, and as Envoy's fault filter does
it (traffic-policy.md 1.4): Bookinfo's delay and abort files on httpbin, real curl, real
``shadowmesh serve``, flags DI and FI in the access log, counters in /stats and Prometheus."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.upstreams import RecordingUpstream

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

ROUTES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


def ratings_like(fault: str, mirror: bool = False, extra: str = "") -> str:
    """Bookinfo's virtual-service-ratings-test-{delay,abort}.yaml, on httpbin: the fault only
    for ``end-user: jason``, everyone else to v1 untouched."""
    mirrored = "    mirror:\n      host: httpbin\n      subset: v2\n" if mirror else ""
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
{fault}
    route:
    - destination:
        host: httpbin
        subset: v1
{mirrored}{extra}  - route:
    - destination:
        host: httpbin
        subset: v1
"""


DELAY = """\
      delay:
        percentage:
          value: 100.0
        fixedDelay: 2s
"""
ABORT = """\
      abort:
        percentage:
          value: 100.0
        httpStatus: 500
"""


def setup(mesh: Mesh, vs: str) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    mesh.apply(mesh.write("dr.yaml", ROUTES))
    run = mesh.apply(mesh.write("vs.yaml", vs))
    assert "fault is not acted on" not in run.stderr, run.stderr


def jason(mesh: Mesh, path: str = "/get", count: int = 1) -> list[Any]:
    return mesh.curl(path, count, args=["-H", "end-user: jason"])


def stats(mesh: Mesh) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{mesh.proxy.admin}/stats", timeout=5) as answer:
        data: dict[str, Any] = json.loads(answer.read())
        return data


def prometheus(mesh: Mesh) -> str:
    with urllib.request.urlopen(f"http://{mesh.proxy.admin}/stats/prometheus", timeout=5) as a:
        return str(a.read().decode())


def test_bookinfo_delay_holds_jason_s_requests_only(mesh: Mesh) -> None:
    setup(mesh, ratings_like(DELAY))
    (slow,) = jason(mesh)
    (fast,) = mesh.curl("/get")
    assert slow.status == 200 and slow.seconds >= 2.0
    assert fast.status == 200 and fast.seconds < 1.0
    flags = [r.response_flags for r in mesh.proxy.records_settled(2)]
    assert flags == ["DI", "-"]
    assert stats(mesh)["faults"] == {"delays_injected": 1, "aborts_injected": 0, "active": 0}


def test_the_route_timeout_does_not_count_the_delay(mesh: Mesh) -> None:
    # Envoy's fault filter runs before the router, whose timeout starts after it.
    setup(mesh, ratings_like(DELAY, extra="    timeout: 1s\n"))
    (slow,) = jason(mesh)
    assert slow.status == 200 and slow.seconds >= 2.0


def test_bookinfo_abort_answers_500_fault_filter_abort(mesh: Mesh) -> None:
    setup(mesh, ratings_like(ABORT))
    out = mesh.curl_body("/get", args=["-i", "-H", "end-user: jason"]).replace("\r\n", "\n")
    head, _, body = out.partition("\n\n")
    lines = head.splitlines()
    assert lines[0].split()[1] == "500"
    assert body == "fault filter abort"
    assert "content-type: text/plain" in [line.lower() for line in lines]
    assert "content-length: 18" in [line.lower() for line in lines]
    assert mesh.statuses("/get") == [200]
    records = mesh.proxy.records_settled(2)
    assert [(r.status, r.response_flags) for r in records] == [(500, "FI"), (200, "-")]
    assert mesh.v1.settled() and len(mesh.v1.settled()) == 1  # the aborted one never left
    assert stats(mesh)["faults"]["aborts_injected"] == 1
    assert "shadowmesh_fault_aborts_injected_total 1.0" in prometheus(mesh)


def test_an_aborted_request_is_not_mirrored_and_a_delayed_one_is_after_the_delay(
    mesh: Mesh,
) -> None:
    setup(mesh, ratings_like(ABORT, mirror=True))
    assert [c.status for c in jason(mesh, count=3)] == [500, 500, 500]
    assert mesh.v2.settled() == []

    mesh.apply(mesh.write("vs.yaml", ratings_like(DELAY, mirror=True)))
    (slow,) = jason(mesh)
    assert slow.status == 200
    (copy,) = mesh.v2.settled(at_least=1)
    assert copy.host == mesh.shadow_authority


def test_an_aborted_request_is_not_retried(mesh: Mesh) -> None:
    abort = ABORT.replace("500", "503")
    setup(mesh, ratings_like(abort, extra="    retries:\n      attempts: 3\n      retryOn: 5xx\n"))
    assert [c.status for c in jason(mesh, count=2)] == [503, 503]
    assert mesh.v1.settled() == []


def test_delay_and_abort_together_flag_both(mesh: Mesh) -> None:
    both = DELAY.replace("2s", "200ms") + ABORT
    setup(mesh, ratings_like(both))
    assert [c.status for c in jason(mesh)] == [500]
    (record,) = mesh.proxy.records_settled(1)
    assert record.response_flags == "DI,FI"


def test_abort_percentage_is_binomial(mesh: Mesh) -> None:
    n = 300
    setup(mesh, ratings_like(ABORT.replace("100.0", "30")))
    statuses = [c.status for c in jason(mesh, count=n)]
    aborted = statuses.count(500)
    assert aborted + statuses.count(200) == n
    sigma = math.sqrt(n * 0.3 * 0.7)
    assert abs(aborted - 0.3 * n) <= 4 * sigma, f"{aborted} of {n} aborted"


def test_no_percentage_never_aborts(mesh: Mesh) -> None:
    # Istio: "If not specified, no request will be aborted" (Envoy's percentage is 0/100).
    setup(mesh, ratings_like("      abort:\n        httpStatus: 500\n"))
    assert [c.status for c in jason(mesh, count=20)] == [200] * 20


def test_a_delayed_request_s_copy_leaves_after_the_delay(mesh: Mesh) -> None:
    # The mirror (v2) is a recording upstream: when its copy arrives is what is measured.
    shadow = RecordingUpstream()
    try:
        mesh.ports[18082] = shadow.port
        setup(mesh, ratings_like(DELAY, mirror=True))
        started = time.monotonic()
        arrived: list[float] = []

        def watch() -> None:
            while not shadow.requests and time.monotonic() - started < 10:
                time.sleep(0.01)
            arrived.append(time.monotonic() - started)

        watcher = threading.Thread(target=watch)
        watcher.start()
        (slow,) = jason(mesh)
        watcher.join()
        assert slow.status == 200
        assert len(shadow.requests) == 1 and 2.0 <= arrived[0] < 9.0
    finally:
        shadow.close()
