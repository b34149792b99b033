"""Traffic keeps flowing while a large config is applied, dumped and re-applied.

Config work runs on a thread beside the serving loop (control.offload): requests sent while
an apply is being parsed, compiled and committed are answered before the apply is. Before,
the apply ran on the loop and nothing was answered until it was done. No timing thresholds:
the test counts requests answered in the middle of each window.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable

from tests.support.serve import Served, mesh_yaml
from tests.support.upstreams import RecordingUpstream

VIRTUAL_SERVICES = 1500  # about 400 KB of YAML: a second or two of config work


def many_virtual_services(count: int, subset: str = "v1") -> str:
    return "---\n".join(
        f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{i}}}
spec:
  hosts: [vs-{i}.example.com]
  http:
  - match:
    - uri: {{prefix: /tenant/{i}}}
    route:
    - destination: {{host: app, subset: v2}}
  - route:
    - destination: {{host: app, subset: {subset if i == 7 else "v1"}}}
"""
        for i in range(count)
    )


class Traffic:
    """One keep-alive client sending requests back to back; records when each was answered."""

    def __init__(self, port: int, host: str = "app") -> None:
        self.port, self.host = port, host
        self.answered: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.answered.append(time.monotonic())
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()

    def amid(self, start: float, end: float) -> int:
        """Requests answered in the middle half of [start, end]: a loop that is blocked by
        the config work still answers at the edges (while it reads the body, once it is
        done), never in the middle."""
        quarter = (end - start) / 4
        return sum(1 for t in list(self.answered) if start + quarter < t < end - quarter)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def admin_call(served: Served, method: str, path: str, payload: object = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", served.admin, timeout=120)
    body = json.dumps(payload).encode() if payload is not None else None
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 200, data[:500]
    return data


def timed(call: Callable[[], bytes]) -> tuple[float, float, bytes]:
    start = time.monotonic()
    data = call()
    return start, time.monotonic(), data


def test_requests_are_answered_while_a_large_config_is_applied(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    served = serve(mesh_yaml(v1.port, v2.port))
    traffic = Traffic(served.port)
    try:
        while not traffic.answered:
            time.sleep(0.01)
        files = [{"source": "many.yaml", "text": many_virtual_services(VIRTUAL_SERVICES)}]
        start, end, body = timed(lambda: admin_call(served, "POST", "/apply", {"files": files}))
        assert len(json.loads(body)["lines"]) == VIRTUAL_SERVICES
        during_apply = traffic.amid(start, end)

        start, end, body = timed(lambda: admin_call(served, "GET", "/config_dump"))
        assert len(json.loads(body)["virtualHosts"]) > VIRTUAL_SERVICES
        during_dump = traffic.amid(start, end)

        # The same file with one document changed: only that one is "configured".
        files = [{"source": "many.yaml", "text": many_virtual_services(VIRTUAL_SERVICES, "v2")}]
        start, end, body = timed(lambda: admin_call(served, "POST", "/apply", {"files": files}))
        lines = json.loads(body)["lines"]
        assert lines.count("virtualservice.networking.istio.io/vs-7 configured") == 1
        assert sum(line.endswith(" unchanged") for line in lines) == VIRTUAL_SERVICES - 1
        during_reapply = traffic.amid(start, end)
    finally:
        traffic.stop()
    assert traffic.failed == 0
    assert during_apply > 0 and during_dump > 0 and during_reapply > 0, (
        during_apply,
        during_dump,
        during_reapply,
    )
    # And the change is live: vs-7's default route now goes to v2.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.request("GET", "/x", headers={"Host": "vs-7.example.com"})
    assert conn.getresponse().status == 200
    conn.close()
    assert v2.requests and v2.requests[-1].request_line == "GET /x HTTP/1.1"
