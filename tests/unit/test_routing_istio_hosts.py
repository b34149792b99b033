"""Istio's host rules, from files as users write them: gateway-bound ``*``, delegates, wildcard
DestinationRules, dotted names kept as written, ports, ``match.gateways`` and ``exportTo``."""

from __future__ import annotations

import random

from shadowmesh.model.load import load_text
from shadowmesh.routing.analyze import analyze
from shadowmesh.routing.decision import Failure, Forward
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import SimpleRequest

WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: 19081}, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.0.0.1, ports: {http: 19082}, labels: {app: reviews, version: v2}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
ALL = "outbound|9080||reviews.default.svc.cluster.local"


def table_of(*texts: str) -> RouteTable:
    resources = [d.resource for t in texts for d in load_text(t, "t.yaml").documents]
    return RouteTable.compile(resources, rng=random.Random(1))


def cluster(table: RouteTable, path: str = "/", **kw: str) -> str:
    decision = table.route(None, SimpleRequest(path=path, **kw))
    if isinstance(decision, Failure):
        return f"{decision.status} {decision.flag} {decision.cluster}".strip()
    assert isinstance(decision, Forward)
    return decision.primary.cluster


def route_names(table: RouteTable, path: str, authority: str = "reviews:9080") -> str:
    decision = table.route(None, SimpleRequest(authority=authority, path=path))
    assert isinstance(decision, Forward), decision
    return decision.route_name


# Istio's delegate example (istio.io, "VirtualService delegate"): the root owns the host, the
# delegate, with no hosts, owns the routes under a prefix.
DELEGATE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: reviews-root
    match:
    - uri: {prefix: /reviews}
    timeout: 3s
    delegate: {name: reviews-delegate, namespace: team}
  - name: rest
    route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-delegate, namespace: team}
spec:
  http:
  - name: v2-for-jason
    match:
    - uri: {prefix: /reviews/jason}
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
  - name: outside
    match:
    - uri: {prefix: /ratings}
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
  - name: all
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
"""


def test_a_delegate_is_merged_into_its_root_as_istio_merges_it() -> None:
    table = table_of(WORKLOADS, DELEGATE)
    jason = table.route(None, SimpleRequest(authority="reviews:9080", path="/reviews/jason/1"))
    assert isinstance(jason, Forward)
    assert (jason.primary.cluster, jason.route_name) == (V2, "reviews-root-v2-for-jason")
    assert jason.timeout == 3.0  # unset in the delegate: the root's
    # A delegate route with no match takes the root's match; one outside it is dropped.
    assert route_names(table, "/reviews/other") == "reviews-root-all"
    assert route_names(table, "/ratings") == "rest"
    assert cluster(table, "/ratings", authority="reviews:9080") == V1


def test_a_delegate_not_found_or_not_exported_drops_only_that_route() -> None:
    missing = DELEGATE.replace(
        "namespace: team}\n  - name: rest", "namespace: nobody}\n  - name: rest"
    )
    assert route_names(table_of(WORKLOADS, missing), "/reviews/jason") == "rest"
    hidden = DELEGATE.replace(
        "metadata: {name: reviews-delegate, namespace: team}\nspec:\n",
        "metadata: {name: reviews-delegate, namespace: team}\nspec:\n  exportTo: [.]\n",
    )
    assert route_names(table_of(WORKLOADS, hidden), "/reviews/jason") == "rest"
    exported = hidden.replace("exportTo: [.]", "exportTo: [default]")
    assert (
        route_names(table_of(WORKLOADS, exported), "/reviews/jason") == "reviews-root-v2-for-jason"
    )


# Bookinfo's gateway file: the VirtualService binds the gateway only, with hosts "*".
GATEWAY_BOUND = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    route:
    - destination: {host: reviews, port: {number: 9080}, subset: v2}
"""


def test_a_gateway_bound_virtual_service_with_every_host_does_not_route_the_mesh() -> None:
    table = table_of(WORKLOADS, GATEWAY_BOUND)
    assert cluster(table, "/productpage", authority="reviews:9080") == ALL


def test_match_gateways_select_the_matches_of_the_mesh() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  gateways: [mesh, istio-system/ingress]
  http:
  - match:
    - {gateways: [istio-system/ingress]}
    route: [{destination: {host: reviews, subset: v2}}]
  - match:
    - {gateways: [mesh], uri: {prefix: /}}
    route: [{destination: {host: reviews, subset: v1}}]
"""
    assert cluster(table_of(WORKLOADS, text), authority="reviews:9080") == V1


WILDCARD_RULES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: everything, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: canary, labels: {version: v2}}
"""


def test_a_wildcard_destination_rule_applies_to_every_host_it_covers() -> None:
    route_to_canary = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: canary}}]
"""
    without_own = WORKLOADS.split("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule")[
        0
    ]
    table = table_of(without_own, WILDCARD_RULES, route_to_canary)
    assert cluster(table, authority="reviews:9080") == (
        "outbound|9080|canary|reviews.default.svc.cluster.local"
    )
    # No "matches no service" warning for a wildcard that covers one.
    resources = [
        d.resource for t in (without_own, WILDCARD_RULES) for d in load_text(t, "t").documents
    ]
    assert not [m for _, m in analyze(resources) if "does not match any services" in m]


def test_the_most_specific_destination_rule_wins() -> None:
    route_to_canary = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: canary}}]
"""
    # reviews' own rule (exact host) wins over *.local: it has no subset canary -> 503 NC.
    table = table_of(WORKLOADS, WILDCARD_RULES, route_to_canary)
    assert cluster(table, authority="reviews:9080") == (
        "503 NC outbound|9080|canary|reviews.default.svc.cluster.local"
    )
    namespace_wide = WILDCARD_RULES.replace('"*.local"', '"*.default.svc.cluster.local"').replace(
        "istio-system", "default"
    )
    table = table_of(
        WORKLOADS.split("---\napiVersion: networking.istio.io/v1\nkind: Dest")[0],
        WILDCARD_RULES,
        namespace_wide.replace("canary", "v1c"),
        route_to_canary,
    )
    # *.default.svc.cluster.local is longer than *.local: it is the rule, without canary.
    assert cluster(table, authority="reviews:9080").startswith("503 NC")


def test_dotted_names_are_taken_as_written() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /org}}]
    route: [{destination: {host: httpbin.org}}]
  - route: [{destination: {host: reviews.default, port: {number: 9080}}}]
"""
    table = table_of(WORKLOADS, text)
    # httpbin.org is not Service httpbin in namespace org; reviews.default is no Service name.
    assert cluster(table, "/org", authority="reviews:9080") == "503 NC outbound|9080||httpbin.org"
    assert cluster(table, authority="reviews:9080") == "503 NC outbound|9080||reviews.default"
    resources = [d.resource for t in (WORKLOADS, text) for d in load_text(t, "t").documents]
    messages = [m for _, m in analyze(resources)]
    assert 'Referenced host not found: "reviews.default"' in messages


def test_a_virtual_service_answers_only_on_its_service_s_ports() -> None:
    other = """\
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  ports: [{name: http, port: 9090}]
  selector: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
"""
    table = table_of(WORKLOADS, other)
    assert cluster(table, authority="reviews:9080") == V2
    assert cluster(table, authority="reviews:9090") == "404 NR"


def test_virtual_service_export_to_hides_it_from_other_namespaces() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: team}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: ["."]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
"""
    assert cluster(table_of(WORKLOADS, text), authority="reviews:9080") == ALL
    shown = text.replace('exportTo: ["."]', "exportTo: [default]")
    assert cluster(table_of(WORKLOADS, shown), authority="reviews:9080") == V2


def test_destination_rule_export_to_hides_it_from_other_namespaces() -> None:
    hidden = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: canary, namespace: team}
spec:
  host: reviews.default.svc.cluster.local
  exportTo: ["."]
  subsets:
  - {name: canary, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: canary}}]
"""
    without_own = WORKLOADS.split("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule")[
        0
    ]
    canary = "outbound|9080|canary|reviews.default.svc.cluster.local"
    assert cluster(table_of(without_own, hidden), authority="reviews:9080") == f"503 NC {canary}"
    shown = hidden.replace('exportTo: ["."]', 'exportTo: ["*"]')
    assert cluster(table_of(without_own, shown), authority="reviews:9080") == canary


def _entry(name: str, namespace: str, export_to: str, address: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [api.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {address}}}]
  exportTo: {export_to}
---
"""


def test_a_route_reaches_the_service_entry_exported_to_its_namespace_as_istio_orders_them() -> None:
    # One host, five entries. Istio's servicesExportedToNamespace lists, for a namespace, the
    # entries private to it, then those exported to it by name, then the public ones; the
    # first wins. ``~`` is seen by no one, its own namespace included.
    entries = (
        _entry("gone", "aa", "['~']", "127.0.0.5")
        + _entry("hidden", "aaa", "[zzz]", "127.0.0.4")
        + _entry("pub", "a", "['*']", "127.0.0.1")
        + _entry("mine", "b", "['.']", "127.0.0.2")
        + _entry("named", "c", "[b, d]", "127.0.0.3")
    )
    namespaces = ("a", "aa", "b", "c", "d", "zzz")
    routes = "---\n".join(
        f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: {ns}}}
spec:
  hosts: [api-{ns}.local]
  http:
  - route: [{{destination: {{host: api.example.com}}}}]
"""
        for ns in namespaces
    )
    table = table_of(entries + routes)

    def reached(ns: str) -> str:
        decision = table.route(None, SimpleRequest(authority=f"api-{ns}.local"))
        assert isinstance(decision, Forward), decision
        return f"{decision.primary.cluster} {decision.primary.endpoint}"

    cluster_name = "outbound|80||api.example.com"
    assert {ns: reached(ns) for ns in namespaces} == {
        "a": f"{cluster_name} 127.0.0.1:80",  # only the public one
        "aa": f"{cluster_name} 127.0.0.1:80",  # its own entry is exported to no one
        "b": f"{cluster_name} 127.0.0.2:80",  # private beats exported-by-name and public
        "c": f"{cluster_name} 127.0.0.1:80",  # its own entry is exported elsewhere only
        "d": f"{cluster_name} 127.0.0.3:80",  # exported to it by name beats public
        "zzz": f"{cluster_name} 127.0.0.4:80",
    }
