"""A Gateway port's TLS servers: each client gets the certificate of the server whose hosts
its SNI name falls in, and the first server's without SNI, as Envoy's filter chains match."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from tests.support.certs import make_ca
from tests.support.serve import Served, free_port, mesh_yaml
from tests.support.upstreams import RecordingUpstream


def served_certificate(port: int, ca: Path, name: str | None) -> tuple[str, bytes]:
    """The common name of the certificate the port shows for SNI ``name``, and the answer."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = name is not None
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
            host = name or "a.example.com"
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert cert is not None
    subject = dict(pair[0] for pair in cert["subject"])
    return str(subject["commonName"]), answer


def test_each_tls_server_on_a_port_is_chosen_by_sni(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], tmp_path: Path
) -> None:
    ca = make_ca(tmp_path / "pki")
    a = ca.issue(tmp_path / "pki", "a", "a.example.com")
    b = ca.issue(tmp_path / "pki", "b", "*.b.example.com")
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
  - port: {{number: {https}, name: https-a, protocol: HTTPS}}
    tls: {{mode: SIMPLE, serverCertificate: {a.cert}, privateKey: {a.key}}}
    hosts: [a.example.com]
  - port: {{number: {https}, name: https-b, protocol: HTTPS}}
    tls: {{mode: SIMPLE, serverCertificate: {b.cert}, privateKey: {b.key}}}
    hosts: ["*.b.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ingress}}
spec:
  hosts: [a.example.com, "*.b.example.com"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: app, subset: v1}}
"""
    serve(mesh_yaml(v1.port, v2.port) + ingress, "--gateway-bind", "127.0.0.1")
    pki = tmp_path / "pki" / "ca.crt"
    for name, expected in (
        ("a.example.com", "a.example.com"),
        ("x.b.example.com", "*.b.example.com"),
        (None, "a.example.com"),  # no SNI: the first server's
    ):
        common_name, answer = served_certificate(https, pki, name)
        assert common_name == expected, name
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert len(v1.requests) == 3
