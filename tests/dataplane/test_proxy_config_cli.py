"""``shadowmesh proxy-config`` and ``shadowmesh analyze``, through the CLI, against a real serve."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from shadowmesh.cli.proxyconfig import route_domains, tabwriter
from tests.support.serve import Served, mesh_yaml

ROOT = Path(__file__).resolve().parents[2]
MIRROR_V2 = "    mirror: {host: app, subset: v2}\n"


def shadowmesh(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadowmesh", *args],
        capture_output=True, text=True, timeout=60, check=False, input=stdin, cwd=ROOT,
    )  # fmt: skip


def table(text: str) -> list[list[str]]:
    """Rows of a tabwriter table, cells split on runs of 2+ spaces (istioctl pads by 5)."""
    import re

    return [re.split(r" {2,}", line.rstrip()) for line in text.splitlines()]


def test_tabwriter_lays_out_as_gos() -> None:
    # istioctl's own testdata (clustersummary.txt): padding 5, the last cell never padded.
    assert tabwriter([["SERVICE FQDN", "PORT"], ["xds-grpc", "-"]]) == (
        "SERVICE FQDN     PORT\nxds-grpc         -\n"
    )
    assert tabwriter([["A", "B", "C"], ["aa", "", ""]]) == "A      B     C\naa           \n"


def test_route_domains_as_istioctl_shortens_them() -> None:
    fqdn = "httpbin.default.svc.cluster.local"
    domains = [fqdn, f"{fqdn}:8000", "httpbin", "httpbin:8000", "httpbin.default.svc",
               "httpbin.default", "10.96.1.2", "10.96.1.2:8000"]  # fmt: skip
    assert route_domains(domains) == "httpbin, httpbin.default + 1 more..."
    assert route_domains(["*"]) == "*"
    assert route_domains([]) == ""


def test_proxy_config_tables(serve: Callable[..., Served]) -> None:
    served = serve(mesh_yaml(18091, 18092, MIRROR_V2))
    admin = ("--admin", f"127.0.0.1:{served.admin}")
    port = str(served.port)
    fqdn = "app.default.svc.cluster.local"

    routes = shadowmesh("proxy-config", "routes", *admin)
    assert routes.returncode == 0, routes.stderr
    assert table(routes.stdout) == [
        ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
        [port, f"{fqdn}:{port}", "app, app.default", "/*", "app.default"],
    ]
    clusters = shadowmesh("proxy-config", "clusters", *admin)
    assert clusters.returncode == 0, clusters.stderr
    assert table(clusters.stdout) == [
        ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"],
        [fqdn, port, "-", "outbound", "EDS", "app.default"],
        [fqdn, port, "v1", "outbound", "EDS", "app.default"],
        [fqdn, port, "v2", "outbound", "EDS", "app.default"],
    ]
    endpoints = shadowmesh("proxy-config", "endpoints", *admin)
    rows = table(endpoints.stdout)
    assert rows[0] == ["NAME", "STATUS", "LOCALITY", "CLUSTER"]
    assert ["127.0.0.1:18091", "HEALTHY", f"outbound|{port}|v1|{fqdn}"] in rows
    assert ["127.0.0.1:18092", "HEALTHY", f"outbound|{port}|v2|{fqdn}"] in rows
    assert len(rows) == 5  # v1, v2, and both in the subset-less cluster
    listeners = shadowmesh("proxy-config", "listeners", *admin)
    assert table(listeners.stdout) == [
        ["ADDRESSES", "PORT", "MATCH", "DESTINATION"],
        ["127.0.0.1", port, "ALL", f"Route: {port}"],
    ]
    as_json = shadowmesh("proxy-config", "clusters", "-o", "json", *admin)
    clusters_json = json.loads(as_json.stdout)
    assert {c["name"] for c in clusters_json} == {
        f"outbound|{port}|{subset}|{fqdn}" for subset in ("", "v1", "v2")
    }
    assert all(c["destinationRule"] == "app.default" for c in clusters_json)


def test_proxy_config_of_an_unknown_type_fails_cleanly(serve: Callable[..., Served]) -> None:
    served = serve(mesh_yaml(18091, 18092))
    bad = shadowmesh("proxy-config", "secrets", "--admin", f"127.0.0.1:{served.admin}")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


# --- analyze ------------------------------------------------------------------------------------

MIRRORED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - route:
    - destination: {host: app, subset: v1}
    mirror: {host: app, subset: SUBSET}
    mirror_percent: 50
"""


def test_analyze_offline_gives_applys_findings_and_istioctls_exit_codes(tmp_path: Path) -> None:
    examples = ROOT / "examples" / "httpbin"
    clean = shadowmesh("analyze", "--offline", "-f", str(examples / "00-workloads.yaml"),
                       "-f", str(examples / "01-service.yaml"))  # fmt: skip
    assert clean.returncode == 0, clean.stderr
    assert "\u2714 No validation issues found when analyzing:" in clean.stderr
    # A mirror to a host none of the files defines: Istio's IST0101, an Error: exit 79.
    alone = shadowmesh("analyze", "--offline", "-f", str(examples / "03-mirror.yaml"))
    assert alone.returncode == 79, alone.stderr
    assert alone.stdout.startswith("Error [IST0101] (VirtualService default/httpbin) Referenced")
    assert 'Warning: using deprecated setting "mirrorPercent"' in alone.stderr
    # With the workloads, Service and DestinationRule: only the deprecation warning, which
    # exits 0 unless Warning is the threshold.
    rule = tmp_path / "rule.yaml"
    rule.write_text((examples / "02-route-v1.yaml").read_text().split("---")[1])
    step = ["-f", str(examples / "00-workloads.yaml"), "-f", str(examples / "01-service.yaml")]
    step += ["-f", str(rule), "-f", str(examples / "03-mirror.yaml")]
    whole = shadowmesh("analyze", "--offline", *step)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert whole.stdout.strip() == ""
    assert 'Warning: using deprecated setting "mirrorPercent"' in whole.stderr
    strict = shadowmesh("analyze", "--offline", "--failure-threshold", "Warning", *step)
    assert strict.returncode == 79
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    assert shadowmesh("analyze", "--offline", "-f", str(broken)).returncode == 65
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(MIRRORED.replace("mirror_percent: 50", "mirror_percent: 500"))
    refused = shadowmesh("analyze", "--offline", "-f", str(invalid))
    assert refused.returncode == 79
    assert refused.stdout.startswith("Error [IST0106] Schema validation error: ")
    assert shadowmesh("analyze", "--offline").returncode == 64


def test_analyze_against_the_running_config_applies_nothing(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve(mesh_yaml(18091, 18092))
    admin = ("--admin", f"127.0.0.1:{served.admin}")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(MIRRORED.replace("SUBSET", "v2"))
    bad.write_text(MIRRORED.replace("SUBSET", "v3"))
    # The stored DestinationRule defines v2: only the deprecation warning, as apply gives it.
    ok = shadowmesh("analyze", "-f", str(good), *admin)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stderr.splitlines() == [
        'Warning: using deprecated setting "mirrorPercent", use "mirrorPercentage" instead'
    ]
    offline = shadowmesh("analyze", "--offline", "-f", str(good))
    assert offline.returncode == 79  # alone, the files define no host app
    unknown = shadowmesh("analyze", "-f", str(bad), *admin)
    assert unknown.returncode == 79
    assert "Error [IST0101] (VirtualService default/app)" in unknown.stdout
    assert "v3" in unknown.stdout
    as_json = shadowmesh("analyze", "-o", "json", "-f", str(bad), *admin)
    assert as_json.returncode == 0  # istioctl: only the log format sets the exit code
    [finding] = json.loads(as_json.stdout)
    assert finding["code"] == "IST0101" and finding["level"] == "Error"
    assert finding["origin"] == "VirtualService default/app"
    # Nothing was applied: the stored VirtualService still has no mirror.
    stored = shadowmesh("get", "vs", "app", "-o", "json", *admin)
    assert "mirror" not in json.loads(stored.stdout)["spec"]["http"][0]


# --- the rows for a Gateway and ServiceEntries, from a compiled table -------------------------

INGRESS = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http:
  - match: [{uri: {prefix: /status}}, {uri: {exact: /headers}}]
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms}
spec:
  hosts: [vms.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.7}]
"""


def test_gateway_routes_and_listeners_and_cluster_types() -> None:
    import random

    from shadowmesh.admin.proxyconfig import rows
    from shadowmesh.model.load import load_text
    from shadowmesh.routing.table import RouteTable
    from shadowmesh.routing.testing import seed_workloads

    resources = seed_workloads() + [d.resource for d in load_text(INGRESS, "in.yaml").documents]
    dump = RouteTable.compile(resources, rng=random.Random(1)).describe()
    gateway = [r for r in rows("routes", dump, "127.0.0.1", "0.0.0.0") if r["name"] == "http.8080"]
    assert [(r["vhostName"], r["match"], r["virtualService"]) for r in gateway] == [
        ("*:8080", "/status*", "httpbin.default"),
        ("*:8080", "/headers", "httpbin.default"),
    ]
    listeners = rows("listeners", dump, "127.0.0.1", "192.0.2.1")
    assert {"addresses": ["192.0.2.1"], "port": 8080, "match": "ALL",
            "destination": "Route: http.8080"} in listeners  # fmt: skip
    types = {r["serviceFqdn"]: r["type"] for r in rows("clusters", dump, "127.0.0.1")}
    assert types["api.example.com"] == "STRICT_DNS"
    assert types["vms.example.com"] == "EDS"
    assert types["httpbin.default.svc.cluster.local"] == "EDS"
