"""The ingress end to end: an Istio Gateway with TLS in front of httpbin, curl as the client.

A CA made in the test signs the server's certificate (and a client's, for MUTUAL); curl
resolves the Gateway's host to 127.0.0.1 with ``--resolve`` and trusts the CA with
``--cacert``, as Istio's secure-ingress task does against a cluster.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shadowmesh.demo import processes
from tests.support.certs import make_ca

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

HOST = "httpbin.example.com"


@pytest.fixture
def ports() -> dict[str, int]:
    return {
        "https": processes.free_port(),
        "http": processes.free_port(),
        "mtls": processes.free_port(),
    }


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """The CA, the server's credential as a Kubernetes TLS secret lays it out, a client's."""
    folder = tmp_path / "pki"
    ca = make_ca(folder)
    server = ca.issue(folder / "credentials" / "httpbin-credential", "tls", HOST)
    assert server.cert.name == "tls.crt" and server.key.name == "tls.key"
    ca.issue(folder, "client", "client.example.com", client=True)
    return folder


@pytest.fixture
def proxy_args(pki: Path) -> list[str]:
    return ["--gateway-bind", "127.0.0.1", "--credentials-dir", str(pki / "credentials")]


def gateway(ports: dict[str, int], pki: Path) -> str:
    # Istio's httpbin gateway and secure-ingress task, on free ports.
    credential = pki / "credentials" / "httpbin-credential"
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {{number: {ports["https"]}, name: https, protocol: HTTPS}}
    tls:
      mode: SIMPLE
      credentialName: httpbin-credential
    hosts: ["{HOST}"]
  - port: {{number: {ports["http"]}, name: http, protocol: HTTP}}
    tls: {{httpsRedirect: true}}
    hosts: ["{HOST}"]
  - port: {{number: {ports["mtls"]}, name: https-mutual, protocol: HTTPS}}
    tls:
      mode: MUTUAL
      serverCertificate: {credential / "tls.crt"}
      privateKey: {credential / "tls.key"}
      caCertificates: {pki / "ca.crt"}
    hosts: ["{HOST}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin-ingress
spec:
  hosts: ["{HOST}"]
  gateways: [httpbin-gateway]
  http:
  - route:
    - destination: {{host: httpbin, subset: v1}}
    mirror: {{host: httpbin, subset: v2}}
"""


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-s", "--max-time", "10", "--noproxy", "*", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_https_through_the_gateway_to_httpbin_mirrored_to_v2(
    mesh: Mesh, ports: dict[str, int], pki: Path
) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    mesh.apply(mesh.write("gateway.yaml", gateway(ports, pki)))
    port = ports["https"]
    resolve = f"{HOST}:{port}:127.0.0.1"

    out = curl("--resolve", resolve, "--cacert", str(pki / "ca.crt"), f"https://{HOST}:{port}/get")

    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["headers"]["Host"] == f"{HOST}:{port}"
    # httpbin builds the URL from X-Forwarded-Proto: the proxy said https.
    assert body["url"] == f"https://{HOST}:{port}/get"
    (primary,) = mesh.v1.settled(at_least=1)
    (shadow,) = mesh.v2.settled(at_least=1)
    assert shadow.host == f"{HOST}-shadow:{port}"
    assert shadow.request_id == primary.request_id
    clusters = {r.upstream_cluster for r in mesh.proxy.records_settled(2)}
    assert clusters == {mesh.cluster_v2.replace("|v2|", "|v1|"), mesh.cluster_v2}
    # The mesh's own route is untouched by the gateway-bound VirtualService.
    assert mesh.statuses("/status/200") == [200]


def test_tls_below_1_2_is_refused_and_plain_http_is_redirected(
    mesh: Mesh, ports: dict[str, int], pki: Path
) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    mesh.apply(mesh.write("gateway.yaml", gateway(ports, pki)))
    port = ports["https"]
    resolve = ["--resolve", f"{HOST}:{port}:127.0.0.1", "--cacert", str(pki / "ca.crt")]

    old = curl(*resolve, "--tlsv1.0", "--tls-max", "1.1", f"https://{HOST}:{port}/get")
    assert old.returncode != 0  # no handshake below TLS 1.2

    redirect = curl(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        f"Host: {HOST}",
        f"http://127.0.0.1:{ports['http']}/status/200",
    )
    assert redirect.stdout == f"301 https://{HOST}/status/200"


def test_mutual_tls_needs_a_client_certificate_the_ca_signed(
    mesh: Mesh, ports: dict[str, int], pki: Path
) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    mesh.apply(mesh.write("gateway.yaml", gateway(ports, pki)))
    port = ports["mtls"]
    base = ["--resolve", f"{HOST}:{port}:127.0.0.1", "--cacert", str(pki / "ca.crt")]
    url = f"https://{HOST}:{port}/status/200"

    assert curl(*base, "-o", "/dev/null", "-w", "%{http_code}", url).stdout in ("000", "")
    client = ["--cert", str(pki / "client.crt"), "--key", str(pki / "client.key")]
    answered = curl(*base, *client, "-o", "/dev/null", "-w", "%{http_code}", url)
    assert answered.stdout == "200", answered.stderr


def test_a_missing_credential_refuses_the_apply_and_changes_nothing(
    mesh: Mesh, ports: dict[str, int], pki: Path
) -> None:
    text = gateway(ports, pki).replace("credentialName: httpbin-credential", "credentialName: nope")
    run = mesh.cli("apply", "-f", str(mesh.write("gateway.yaml", text)))
    assert run.code == 1
    assert "nope" in run.stderr and "tls.crt" in run.stderr
    assert (
        "No resources found"
        in mesh.cli("get", "gateway").stdout + mesh.cli("get", "gateway").stderr
    )


def test_a_certificate_gone_at_restart_leaves_only_its_port_closed(
    mesh: Mesh, ports: dict[str, int], pki: Path
) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    mesh.apply(mesh.write("gateway.yaml", gateway(ports, pki)))
    mesh.proxy.stop()
    (pki / "credentials" / "httpbin-credential" / "tls.crt").unlink()
    mesh.proxy.start()

    assert "Gateway port" in mesh.proxy.stderr() and "not opened" in mesh.proxy.stderr()
    # Both TLS servers read the certificate that is gone; the plain one still answers.
    redirect = curl(
        "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {HOST}",
        f"http://127.0.0.1:{ports['http']}/",
    )  # fmt: skip
    assert redirect.stdout == "301"
    assert mesh.statuses("/status/200") == [200]
    # An unrelated apply is not refused for the Gateway stored before.
    mesh.apply(mesh.example("03-mirror.yaml"))
