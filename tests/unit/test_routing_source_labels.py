"""``sourceLabels`` and ``match.gateways``: selectors decided at compile time, as istiod does
(traffic-policy.md 1.1): a match for other workloads or other gateways is left out of the
table, and a route whose every match is left out is gone (it never becomes a catch-all)."""

from __future__ import annotations

import random

from shadowmesh.model.load import load_text
from shadowmesh.model.resources import Resource
from shadowmesh.routing.compiler import RouteCompiler
from shadowmesh.routing.decision import Failure, Forward
from shadowmesh.routing.ingress import GATEWAY_KEY
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import SimpleRequest
from tests.support.serve import mesh_yaml

PORT = 9080
V1 = f"outbound|{PORT}|v1|app.default.svc.cluster.local"
V2 = f"outbound|{PORT}|v2|app.default.svc.cluster.local"

# Istio's task "Request routing" in the shape its docs give for sourceLabels: the sleep v1
# client goes to v2, every other client to v1.
SLEEP_TO_V2 = """\
  - match:
    - sourceLabels: {app: sleep, version: v1}
    route: [{destination: {host: app, subset: v2}}]
"""


def with_routes(routes: str, vs_head: str = "", keep_default: bool = True) -> list[Resource]:
    """The seed mesh, its VirtualService's ``routes`` first (then its route to v1)."""
    text = mesh_yaml(18081, 18082).replace("SERVICE_PORT", str(PORT))
    default = "  - route:\n    - destination: {host: app, subset: v1}\n"
    assert default in text
    text = text.replace(default, default if keep_default else "")
    text = text.replace("  hosts: [app]\n  http:\n", f"  hosts: [app]\n{vs_head}  http:\n{routes}")
    return [d.resource for d in load_text(text, "t.yaml").documents]


def answer(table: RouteTable, path: str = "/", listener: int = PORT, host: str = "app") -> str:
    decision = table.route(listener, SimpleRequest(authority=host, path=path))
    if isinstance(decision, Failure):
        return f"{decision.status} {decision.flag}"
    assert isinstance(decision, Forward)
    return decision.primary.cluster


def table(resources: list[Resource], **labels: str) -> RouteTable:
    return RouteTable.compile(resources, rng=random.Random(1), labels=labels)


def test_a_source_labels_match_applies_only_in_the_workload_it_selects() -> None:
    resources = with_routes(SLEEP_TO_V2)
    assert answer(table(resources, app="sleep", version="v1")) == V2
    # More labels than asked for still select (the proxy's labels hold the match's).
    assert answer(table(resources, app="sleep", version="v1", team="a")) == V2
    # Fewer, other values, or none (serve's default): the match is not there.
    assert answer(table(resources, app="sleep")) == V1
    assert answer(table(resources, app="sleep", version="v2")) == V1
    assert answer(table(resources)) == V1


def test_a_route_whose_every_match_is_for_others_is_gone_not_a_catch_all() -> None:
    only = """\
  - match: [{sourceLabels: {app: sleep}}, {sourceLabels: {app: curl}}]
    route: [{destination: {host: app, subset: v2}}]
"""
    # The VirtualService's one route is for sleep and curl: for anyone else there is none.
    resources = with_routes(only, keep_default=False)
    assert answer(table(resources, app="curl")) == V2
    assert answer(table(resources, app="other")) == "404 NR"
    assert answer(table(resources)) == "404 NR"


def test_blocks_are_selected_one_by_one() -> None:
    either = """\
  - match:
    - sourceLabels: {app: sleep}
    - uri: {prefix: /v2}
    route: [{destination: {host: app, subset: v2}}]
"""
    resources = with_routes(either)
    assert answer(table(resources, app="sleep"), "/") == V2
    assert answer(table(resources), "/v2/x") == V2  # the other block still applies
    assert answer(table(resources), "/") == V1  # but not the one for sleep


def test_the_incremental_compiler_selects_the_same() -> None:
    resources = with_routes(SLEEP_TO_V2)
    sleep = RouteCompiler(random.Random(1), labels={"app": "sleep", "version": "v1"})
    other = RouteCompiler(random.Random(1))
    assert answer(sleep.compile(resources)) == V2
    assert answer(other.compile(resources)) == V1
    # A compile that reuses the units keeps the decision.
    assert answer(sleep.compile(resources)) == V2 and sleep.reused > 0


def test_a_delegate_s_match_takes_the_root_s_source_labels() -> None:
    root = """\
  - match: [{sourceLabels: {app: sleep}}]
    delegate: {name: app-delegate}
"""
    delegate = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app-delegate}
spec:
  http:
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: app, subset: v2}}]
"""
    resources = with_routes(root) + [d.resource for d in load_text(delegate, "d.yaml").documents]
    assert answer(table(resources, app="sleep")) == V2
    assert answer(table(resources)) == V1


def test_the_config_dump_shows_the_selectors_of_what_was_kept() -> None:
    dumped = table(with_routes(SLEEP_TO_V2), app="sleep", version="v1").describe()
    matches = [m for vh in dumped["virtualHosts"] for r in vh["routes"] for m in r["match"]]
    assert {"sourceLabels": {"app": "sleep", "version": "v1"}} in matches


GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""


def test_match_gateways_on_a_mesh_route_select_the_mesh_or_the_gateway() -> None:
    split = """\
  - match: [{gateways: [edge]}]
    route: [{destination: {host: app, subset: v2}}]
  - match: [{gateways: [mesh], uri: {prefix: /mesh}}]
    route: [{destination: {host: app, subset: v1}}]
"""
    resources = with_routes(split, "  gateways: [mesh, edge]\n")
    resources += [d.resource for d in load_text(GATEWAY, "g.yaml").documents]
    t = table(resources)
    # On the mesh (the Service's port) the edge-only match is left out...
    assert answer(t, "/mesh") == V1
    assert answer(t, "/") == V1  # the VirtualService's last route, for every gateway
    # ...and on the Gateway's port, the mesh-only one.
    ingress = GATEWAY_KEY + 8080
    assert answer(t, "/mesh", ingress) == V2
    assert answer(t, "/", ingress) == V2
