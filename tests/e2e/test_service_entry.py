"""ServiceEntry end to end: hosts outside the Service registry, routed, split into subsets and
mirrored exactly as Services are, through the outbound port with curl."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest

from shadowmesh.demo import processes

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

# A staging copy at another address, as ServiceEntry describes one: two endpoints with labels.
STATIC = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api-example}}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports:
  - {{number: 8080, name: http, protocol: HTTP, targetPort: {v1}}}
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    labels: {{version: v1}}
  - address: 127.0.0.1
    ports: {{http: {v2}}}
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api-example}}
spec:
  host: api.example.com
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api-example}}
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {{host: api.example.com, subset: v1}}
    mirror: {{host: api.example.com, subset: v2}}
    mirrorPercentage: {{value: 100.0}}
"""


def test_a_static_service_entry_is_routed_and_mirrored_as_a_service(mesh: Mesh) -> None:
    mesh.apply(mesh.write("se.yaml", STATIC.format(v1=mesh.v1.port, v2=mesh.v2.port)))

    body = json.loads(mesh.curl_body("/headers", authority="api.example.com:8080"))

    assert body["headers"]["Host"] == "api.example.com:8080"
    (primary,) = mesh.v1.settled(at_least=1)
    (shadow,) = mesh.v2.settled(at_least=1)
    assert shadow.host == "api.example.com-shadow:8080"
    assert shadow.request_id == primary.request_id
    records = mesh.proxy.records_settled(2)
    clusters = sorted(r.upstream_cluster for r in records)
    assert clusters == [
        "outbound|8080|v1|api.example.com",
        "outbound|8080|v2|api.example.com",
    ]


DNS = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local-dns}}
spec:
  hosts: [local.example]
  ports:
  - {{number: {port}, name: http, protocol: HTTP}}
  resolution: DNS
  endpoints:
  - address: localhost
"""


def test_a_dns_service_entry_is_resolved_off_the_request_path(mesh: Mesh) -> None:
    mesh.apply(mesh.write("dns.yaml", DNS.format(port=mesh.v1.port)))

    authority = f"local.example:{mesh.v1.port}"
    # The first lookup runs in the resolver's thread right after the apply; until it lands
    # the host has no endpoint (503 UH), and no request ever waits for it.
    statuses = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        args = ["-o", "/dev/null", "-w", "%{http_code}"]
        statuses.append(mesh.curl_body("/status/200", args=args, authority=authority))
        if statuses[-1] == "200":
            break
        time.sleep(0.2)
    assert statuses[-1] == "200" and set(statuses[:-1]) <= {"503"}, statuses
    body = json.loads(mesh.curl_body("/get", authority=authority))
    assert body["headers"]["Host"] == authority
    cluster = f"outbound|{mesh.v1.port}||local.example"
    assert cluster in {r.upstream_cluster for r in mesh.proxy.records_settled(len(statuses) + 1)}


# resolution NONE (the default): Envoy's ORIGINAL_DST, to where the client was going. Here the
# client names the entry's address and a port no one listens on; targetPort sends it to v1.
PASSTHROUGH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: passthrough}}
spec:
  hosts: [nowhere.invalid]
  addresses: [127.0.0.1]
  ports:
  - {{number: {port}, name: http, protocol: HTTP, targetPort: {target}}}
"""


def test_resolution_none_goes_to_the_request_s_own_destination(mesh: Mesh) -> None:
    port = processes.free_port()
    mesh.apply(mesh.write("none.yaml", PASSTHROUGH.format(port=port, target=mesh.v1.port)))

    body = json.loads(mesh.curl_body("/get", authority=f"127.0.0.1:{port}"))

    assert body["headers"]["Host"] == f"127.0.0.1:{port}"
    (record,) = mesh.proxy.records_settled(1)
    # Not what nowhere.invalid resolves to (nothing): the address the request named.
    assert record.upstream_cluster == f"outbound|{port}||nowhere.invalid"
    assert record.upstream_host == f"127.0.0.1:{mesh.v1.port}"
