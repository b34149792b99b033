"""``serve --access-log-format istio|istio-json``: Istio's default access log of real requests."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.certs import make_ca
from tests.support.serve import Served, free_port, mesh_yaml
from tests.support.upstreams import RecordingUpstream

MIRROR_V2 = "    mirror: {host: app, subset: v2}\n"
# Istio's EnvoyTextLogFormat as a pattern, one group per operator.
ISTIO_LINE = re.compile(
    r"^\[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" (?P<code>\d+) (?P<flags>\S+) '
    r'(?P<details>\S+) (?P<termination>\S+) "(?P<transport_failure>[^"]*)" '
    r"(?P<received>\d+) (?P<sent>\d+) (?P<duration>\d+) (?P<service_time>\S+) "
    r'"(?P<xff>[^"]*)" "(?P<agent>[^"]*)" "(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" '
    r'"(?P<upstream_host>[^"]*)" (?P<cluster>\S+) (?P<upstream_local>\S+) '
    r"(?P<downstream_local>\S+) (?P<downstream_remote>\S+) (?P<sni>\S+) (?P<route>\S+)$"
)


def lines(served: Served, count: int) -> list[str]:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        found = served.log.read_text().splitlines() if served.log.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} lines in {served.log}")


def request_on_one_connection(port: int) -> tuple[str, str]:
    """(local, remote) of the client's socket, after one GET answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: app\r\nUser-Agent: ua/1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        mine = s.getsockname()
        return f"{mine[0]}:{mine[1]}", f"127.0.0.1:{port}"


def test_istio_text_log_of_a_mirrored_request(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    served = serve(mesh_yaml(v1.port, v2.port, MIRROR_V2), "--access-log-format", "istio")
    client, listener = request_on_one_connection(served.port)
    assert len(v2.wait_for(1)) == 1  # mirrored...
    time.sleep(0.2)
    [line] = lines(served, 1)  # ...but a client sidecar logs no shadow
    fields = ISTIO_LINE.match(line)
    assert fields is not None, line
    assert fields["method"] == "GET" and fields["protocol"] == "HTTP/1.1"
    assert fields["code"] == "200" and fields["flags"] == "-"
    assert fields["details"] == "via_upstream"
    assert fields["termination"] == "-" and fields["transport_failure"] == "-"
    assert fields["service_time"].isdigit()
    assert fields["agent"] == "ua/1" and fields["authority"] == "app"
    assert fields["upstream_host"] == f"127.0.0.1:{v1.port}"
    assert fields["cluster"] == f"outbound|{served.port}|v1|app.default.svc.cluster.local"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", fields["upstream_local"])
    assert fields["upstream_local"] != fields["upstream_host"]
    assert fields["downstream_local"] == listener
    assert fields["downstream_remote"] == client
    assert fields["sni"] == "-"
    assert fields["route"] == "-"  # an unnamed VirtualService route, as Envoy has it


def test_istio_json_log(upstreams: list[RecordingUpstream], serve: Callable[..., Served]) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    # No VirtualService: the Service's own route, which Istio names "default".
    documents = mesh_yaml(v1.port, v2.port).split("---")
    config = "---".join(d for d in documents if "kind: VirtualService" not in d)
    served = serve(config, "--access-log-format", "istio-json")
    client, listener = request_on_one_connection(served.port)
    [line] = lines(served, 1)
    data = json.loads(line)
    assert data["route_name"] == "default"
    assert data["response_code"] == 200 and data["response_code_details"] == "via_upstream"
    assert data["downstream_local_address"] == listener
    assert data["downstream_remote_address"] == client
    assert data["upstream_cluster"] == f"outbound|{served.port}||app.default.svc.cluster.local"
    assert data["path"] == "/a" and data["method"] == "GET"
    assert isinstance(data["duration"], int) and isinstance(data["upstream_service_time"], str)


def test_istio_log_of_a_tls_ingress_request_names_its_server_name(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Path
) -> None:
    """%REQUESTED_SERVER_NAME% is the SNI name the client sent to the Gateway's TLS server."""
    host = "httpbin.example.com"
    ca = make_ca(tmp_path / "pki")
    server = ca.issue(tmp_path / "pki", "server", host)
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    https = free_port()
    ingress = f"""
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {https}, name: https, protocol: HTTPS}}
    tls: {{mode: SIMPLE, serverCertificate: {server.cert}, privateKey: {server.key}}}
    hosts: ["{host}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ingress}}
spec:
  hosts: ["{host}"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: app, subset: v1}}
"""
    served = serve(
        mesh_yaml(v1.port, v2.port) + ingress,
        "--access-log-format", "istio", "--gateway-bind", "127.0.0.1",
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(ca.cert))
    with socket.create_connection(("127.0.0.1", https), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET /a HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    [line] = lines(served, 1)
    fields = ISTIO_LINE.match(line)
    assert fields is not None, line
    assert fields["sni"] == host
    assert fields["downstream_local"] == f"127.0.0.1:{https}"
    assert fields["cluster"].startswith("outbound|") and "|v1|app.default" in fields["cluster"]
