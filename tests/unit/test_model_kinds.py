"""Mixed manifests: kinds shadowmesh does not act on are skipped with one warning each, a
``v1 List`` applies its items, and the kinds it acts on stay all or nothing."""

from __future__ import annotations

import pytest

from shadowmesh.cli.format import format_table
from shadowmesh.control.kinds import resolve_kind
from shadowmesh.errors import ConfigErrors
from shadowmesh.model import kinds
from shadowmesh.model.load import load_text
from shadowmesh.model.resources import Service, VirtualService

# As Istio's security tasks and Bookinfo's manifests write them, beside the routing kinds.
MIXED = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
spec:
  {}
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata:
  name: jwt-example
spec:
  selector:
    matchLabels:
      app: httpbin
  jwtRules:
  - issuer: "testing@secure.istio.io"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - hosts:
    - "./*"
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
spec:
  configPatches: []
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
spec:
  accessLogging:
  - providers:
    - name: envoy
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin
spec:
  replicas: 1
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: prometheus
rules: []
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
spec:
  podSelector: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs: []
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: envoy-stats-monitor
spec: {}
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin
spec:
  ports:
  - name: http
    port: 8000
  selector:
    app: httpbin
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin}
"""


def test_a_mixed_manifest_applies_what_shadowmesh_acts_on_and_names_each_skipped_kind() -> None:
    result = load_text(MIXED, "mixed.yaml")
    assert [type(d.resource) for d in result.documents] == [Service, VirtualService]
    warnings = result.warnings
    assert len(warnings) == 11  # one per skipped document
    expected = [
        ('PeerAuthentication "default"', "mutual TLS is NOT ENFORCED"),
        ('AuthorizationPolicy "allow-nothing"', "this policy is NOT ENFORCED"),
        ('RequestAuthentication "jwt-example"', "NOT VALIDATED"),
        ('Sidecar "default"', "does not act on"),
        ('EnvoyFilter "filter-local-ratelimit-svc"', "runs no Envoy"),
        ('Telemetry "mesh-default"', "does not act on"),
        ('Deployment "httpbin"', "runs no workloads"),
        ('ClusterRole "prometheus" (rbac.authorization.k8s.io/v1)', "does not act on"),
        ('NetworkPolicy "deny-all" (networking.k8s.io/v1)', "NOT ENFORCED"),
        ('HTTPRoute "reviews" (gateway.networking.k8s.io/v1)', "use an Istio VirtualService"),
        (
            'PodMonitor "envoy-stats-monitor" (monitoring.coreos.com/v1)',
            "not a Kubernetes or Istio",
        ),
    ]
    for warning, (head, reason) in zip(warnings, expected, strict=True):
        assert warning.startswith(head + " skipped: "), warning
        assert reason in warning, warning


def test_a_mixed_manifest_stays_all_or_nothing_over_the_kinds_acted_on() -> None:
    bad = MIXED.replace("destination: {host: httpbin}", "destination: {host: httpbin, subset: -x}")
    with pytest.raises(ConfigErrors) as caught:
        load_text(bad, "mixed.yaml")
    (error,) = caught.value.errors
    assert (error.kind, error.field) == (
        "VirtualService",
        "spec.http[0].route[0].destination.subset",
    )


@pytest.mark.parametrize(
    ("api_version", "kind", "field", "message"),
    [
        # An unknown kind in a group shadowmesh knows in full is a typo, as on a cluster.
        ("networking.istio.io/v1", "VirtualServce", "kind", 'kind "VirtualServce" is not'),
        ("security.istio.io/v1", "AuthorisationPolicy", "kind", "is not supported"),
        ("apps/v1", "Deploymnt", "kind", "is not supported"),
        # A skipped Istio kind in a version Istio does not serve is refused as a cluster would.
        (
            "networking.istio.io/v1",
            "EnvoyFilter",
            "apiVersion",
            'no matches for kind "EnvoyFilter"',
        ),
        ("security.istio.io/v1alpha1", "PeerAuthentication", "apiVersion", "no matches for kind"),
    ],
)
def test_a_kind_no_one_has_is_still_an_error(
    api_version: str, kind: str, field: str, message: str
) -> None:
    text = f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x}}\nspec: {{}}\n"
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "f.yaml")
    (error,) = caught.value.errors
    assert error.field == field
    assert message in error.message


# What ``kubectl get vs,svc -o yaml`` prints: one List of the resources.
LISTED = """\
apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: v1
  kind: Service
  metadata: {name: httpbin, namespace: default, resourceVersion: "12", uid: abc}
  spec:
    clusterIP: 10.96.0.10
    ports: [{name: http, port: 8000, protocol: TCP, targetPort: 80}]
    selector: {app: httpbin}
    type: ClusterIP
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: httpbin, namespace: default, generation: 1}
  spec:
    hosts: [httpbin]
    http:
    - route:
      - destination: {host: httpbin}
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny}
  spec: {}
"""


def test_a_list_applies_its_items_and_skips_what_it_would_skip_alone() -> None:
    result = load_text(LISTED, "list.yaml")
    assert [type(d.resource) for d in result.documents] == [Service, VirtualService]
    assert [d.index for d in result.documents] == [0, 0]
    (warning,) = result.warnings
    assert warning.startswith('AuthorizationPolicy "deny" skipped')


def test_an_error_in_a_list_item_names_the_item() -> None:
    text = LISTED.replace("port: 8000", "port: 0")
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "list.yaml")
    (error,) = caught.value.errors
    assert (error.kind, error.field) == ("Service", "items[0].spec.ports[0].port")
    assert str(error).startswith("list.yaml: document 1: Service 'httpbin': field items[0].spec")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("apiVersion: v2\nkind: List\nitems: []\n", "apiVersion"),
        ("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "items"),
        ("apiVersion: v1\nkind: List\nitems: []\nspec: {}\n", "spec"),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n",
            "items[0]",
        ),
    ],
)
def test_a_malformed_list_is_an_error(text: str, field: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "list.yaml")
    assert [e.field for e in caught.value.errors] == [field]


def test_every_kind_acted_on_is_declared_once_for_every_layer() -> None:
    # The loader, kubectl's names and the get columns all come from the one table.
    for info in kinds.KINDS:
        assert resolve_kind(info.plural) is info
        assert resolve_kind(info.short_names[0]) is info
        item = {"kind": info.kind, "metadata": {"name": "n"}, "spec": {}}
        header = format_table(info.kind, [item], wide=True).splitlines()[0].split()
        assert header[0] == "NAME" and "AGE" in header
        assert len(header) == len(info.columns) + 2


def test_newer_destination_rule_fields_are_known() -> None:
    # Fields istio/api added lately: accepted (with the not-acted-on warning), typos refused.
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {http2KeepAlive: {interval: 10s, timeout: 3s}}
    outlierDetection: {outlierDetectionHttpErrorCodes: [503]}
    loadBalancer: {zoneAwareLbSetting: {enabled: true}}
    retryBudget: {budgetInterval: 1s}
"""
    (document,) = load_text(text, "dr.yaml").documents
    assert document.warnings
    with pytest.raises(ConfigErrors) as caught:
        load_text(text.replace("http2KeepAlive", "http2KeepAliv"), "dr.yaml")
    assert 'unknown field "http2KeepAliv"' in caught.value.errors[0].message


@pytest.mark.parametrize(
    ("policy", "field", "message"),
    [
        # The CRD's structural rules (istio/api 1.31), in fields shadowmesh does not act on.
        (
            "connectionPool: {http: {h2UpgradePolicy: UPGRAD}}",
            "connectionPool.http.h2UpgradePolicy",
            'Unsupported value: "UPGRAD": supported values: "DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"',
        ),
        (
            "outlierDetection: {interval: 0.5ms}",
            "outlierDetection.interval",
            'Invalid value: "string": must be a valid duration greater than 1ms',
        ),
        (
            "connectionPool: {tcp: {connectTimeout: soon}}",
            "connectionPool.tcp.connectTimeout",
            "must be a valid duration greater than 1ms",
        ),
        (
            "outlierDetection: {outlierDetectionHttpErrorCodes: [99]}",
            "outlierDetection.outlierDetectionHttpErrorCodes[0]",
            "should be greater than or equal to 100",
        ),
        (
            "outlierDetection: {consecutive5xxErrors: -1}",
            "outlierDetection.consecutive5xxErrors",
            "should be greater than or equal to 0",
        ),
        ("tls: {mode: STRICT}", "tls.mode", 'Unsupported value: "STRICT"'),
        (
            "loadBalancer: {warmup: {duration: 10s, minimumPercent: 150}}",
            "loadBalancer.warmup.minimumPercent",
            "should be less than or equal to 100",
        ),
    ],
)
def test_fields_not_acted_on_are_validated_as_a_cluster_validates_them(
    policy: str, field: str, message: str
) -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n"
        f"spec:\n  host: reviews\n  trafficPolicy:\n    {policy}\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "dr.yaml")
    (error,) = caught.value.errors
    assert error.field == f"spec.trafficPolicy.{field}"
    assert message in error.message


def test_valid_values_of_fields_not_acted_on_still_apply() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {h2UpgradePolicy: UPGRADE, idleTimeout: 1m30s}
    outlierDetection: {interval: 1s, baseEjectionTime: 3m, consecutive5xxErrors: 7}
    tls: {mode: ISTIO_MUTUAL}
"""
    (document,) = load_text(text, "dr.yaml").documents
    assert document.warnings
