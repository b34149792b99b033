"""The config loader: YAML text -> validated resources, with Istio's rules and wording."""

from __future__ import annotations

import copy
import textwrap
from typing import Any

import pytest
import yaml

from shadowmesh.errors import ConfigError, ConfigErrors
from shadowmesh.model.kinds import WORKLOAD_KINDS
from shadowmesh.model.load import LoadResult, load_raw, load_text
from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    Document,
    HTTPMatchRequest,
    MirrorPolicy,
    RouteDestination,
    Service,
    ServicePort,
    StringMatch,
    VirtualService,
    WorkloadEntry,
)

# The CRD's CEL messages, as the API server reports them (Istio 1.31's istio/api).
_DURATION_RULE = 'Invalid value: "string": must be a valid duration greater than 1ms'
_PORT_RULE = "port must be between 1-65535"

DEPRECATED = 'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead'

# The scenario's files, as a user writes them (workloads as WorkloadEntry).
SEED_WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: httpbin-v1
spec:
  address: 127.0.0.1
  ports:
    http: 8081
  labels:
    app: httpbin
    version: v1
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: httpbin-v2
spec:
  address: 127.0.0.1
  ports:
    http: 8082
  labels:
    app: httpbin
    version: v2
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin
  labels:
    app: httpbin
spec:
  ports:
  - name: http
    port: 8000
    targetPort: 80
  selector:
    app: httpbin
"""
SEED_ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
---
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
SEED_MIRROR = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
    mirror_percent: 100
"""
SEED_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin-v1
spec:
  replicas: 1
  template:
    spec:
      containers:
      - image: docker.io/kennethreitz/httpbin
"""


# --- helpers -------------------------------------------------------------------------------


def load(text: str, namespace: str = "default") -> LoadResult:
    return load_text(textwrap.dedent(text), "test.yaml", namespace)


def errors_of(doc: Any) -> list[ConfigError]:
    """Every error loading one document (a dict, dumped to YAML) gives."""
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "test.yaml")
    return caught.value.errors


def only_error(doc: Any) -> ConfigError:
    errors = errors_of(doc)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def one(doc: dict[str, Any]) -> Document:
    return load_raw(doc, "test.yaml", 0)


def vs(http: Any = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hosts": ["httpbin"]}
    if http is not None:
        body["http"] = http
    body.update(spec)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "httpbin", "namespace": "ns"},
        "spec": body,
    }


def route(**fields: Any) -> dict[str, Any]:
    """One HTTP route to subset v1, with extra fields."""
    base: dict[str, Any] = {"route": [{"destination": {"host": "httpbin", "subset": "v1"}}]}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def dr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "httpbin"},
        "spec": {"host": "httpbin", **spec},
    }


def svc(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": [{"name": "http", "port": 8000}], "selector": {"app": "x"}}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpbin"}, "spec": body}


def we(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"address": "127.0.0.1", "ports": {"http": 8081}}
    body.update(spec)
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "WorkloadEntry",
        "metadata": {"name": "w"},
        "spec": body,
    }


def http0(doc: dict[str, Any]) -> Any:
    resource = one(doc).resource
    assert isinstance(resource, VirtualService)
    return resource.http[0]


def warnings_of(doc: dict[str, Any]) -> tuple[str, ...]:
    return one(doc).warnings


# --- the seed scenario ---------------------------------------------------------------------


def test_seed_workloads_and_service() -> None:
    result = load(SEED_WORKLOADS + "---\n" + SEED_DEPLOYMENT)
    v1, v2, service = (doc.resource for doc in result.documents)
    assert isinstance(v1, WorkloadEntry) and isinstance(v2, WorkloadEntry)
    assert (v1.meta.name, v1.meta.namespace) == ("httpbin-v1", "default")
    assert v1.address == "127.0.0.1"
    assert v1.ports == {"http": 8081}
    assert v1.labels == {"app": "httpbin", "version": "v1"}
    assert v2.labels == {"app": "httpbin", "version": "v2"}
    assert isinstance(service, Service)
    assert service.ports == (ServicePort(port=8000, name="http", target_port=80),)
    assert service.selector == {"app": "httpbin"}
    assert service.host == "httpbin.default.svc.cluster.local"
    assert [doc.index for doc in result.documents] == [0, 1, 2]
    assert all(doc.warnings == () for doc in result.documents)
    assert result.warnings == [
        'Deployment "httpbin-v1" skipped: shadowmesh runs no workloads; declare the running '
        "process as a WorkloadEntry (networking.istio.io/v1)"
    ]


def test_seed_route_to_v1_and_subsets() -> None:
    result = load(SEED_ROUTE, namespace="istio")
    virtual_service, rule = (doc.resource for doc in result.documents)
    assert isinstance(virtual_service, VirtualService)
    assert virtual_service.meta.namespace == "istio"
    assert virtual_service.hosts == ("httpbin",)
    (http,) = virtual_service.http
    assert http.match == ()
    assert http.route == (RouteDestination(Destination("httpbin", "v1"), weight=100),)
    assert http.mirrors == ()
    assert isinstance(rule, DestinationRule)
    assert [(s.name, dict(s.labels)) for s in rule.subsets] == [
        ("v1", {"version": "v1"}),
        ("v2", {"version": "v2"}),
    ]
    assert rule.load_balancer is None
    assert result.warnings == []


def test_seed_mirror_with_mirror_percent_warns_as_istio() -> None:
    (document,) = load(SEED_MIRROR).documents
    http = document.resource.http[0]  # type: ignore[union-attr]
    assert http.mirrors == (MirrorPolicy(Destination("httpbin", "v2"), percentage=100.0),)
    assert document.warnings == (DEPRECATED,)


def test_seed_mirror_percentage_50() -> None:
    text = SEED_MIRROR.replace("mirror_percent: 100", "mirrorPercentage:\n      value: 50")
    (document,) = load(text).documents
    assert document.resource.http[0].mirrors[0].percentage == 50.0  # type: ignore[union-attr]
    assert document.warnings == ()


def test_document_keeps_source_index_and_api_version() -> None:
    result = load_text("---\n---\n" + SEED_ROUTE, "route.yaml")
    assert [(d.source, d.index) for d in result.documents] == [("route.yaml", 1), ("route.yaml", 2)]
    assert result.documents[0].resource.api_version == "networking.istio.io/v1"


# --- kinds, versions and documents ---------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_istio_api_versions(version: str) -> None:
    doc = vs([route()])
    doc["apiVersion"] = f"networking.istio.io/{version}"
    assert one(doc).resource.api_version == f"networking.istio.io/{version}"


def test_kind_with_wrong_api_version_is_an_error() -> None:
    doc = vs([route()])
    doc["apiVersion"] = "v1"
    error = only_error(doc)
    assert error.field == "apiVersion"
    assert 'no matches for kind "VirtualService"' in error.message
    service = svc()
    service["apiVersion"] = "networking.istio.io/v1"
    assert only_error(service).field == "apiVersion"


def test_missing_kind_and_api_version() -> None:
    doc = vs([route()])
    del doc["kind"]
    assert only_error(doc).message == "kind is required"
    doc = vs([route()])
    del doc["apiVersion"]
    assert only_error(doc).field == "apiVersion"


def test_unknown_kind_is_an_error() -> None:
    error = only_error({"apiVersion": "networking.istio.io/v1", "kind": "VirtualServce"})
    assert 'kind "VirtualServce" is not supported' in error.message
    assert error.kind == "VirtualServce"


@pytest.mark.parametrize("kind", sorted(WORKLOAD_KINDS))
def test_workload_kinds_are_skipped_with_a_warning(kind: str) -> None:
    text = f"apiVersion: v1\nkind: {kind}\nmetadata: {{name: thing}}\nspec: {{whatever: 1}}\n"
    result = load_text(text + "---\n" + SEED_ROUTE, "f.yaml")
    assert len(result.documents) == 2
    assert result.warnings == [
        f'{kind} "thing" skipped: shadowmesh runs no workloads; declare the running process '
        "as a WorkloadEntry (networking.istio.io/v1)"
    ]


def test_empty_documents_are_skipped() -> None:
    result = load_text("---\n---\n# only a comment\n---\n" + SEED_MIRROR + "---\n", "f.yaml")
    assert [d.index for d in result.documents] == [2]
    assert load_text("", "f.yaml") == LoadResult([], [])


@pytest.mark.parametrize("text", ["- a\n- b\n", "hello\n", "42\n", "[]\n"])
def test_a_document_that_is_not_a_mapping_is_an_error(text: str) -> None:
    error = only_error(text)
    assert error.document == 0
    assert "must be a mapping" in error.message


def test_all_errors_of_all_documents_are_collected() -> None:
    bad_vs = vs([route(mirrorPercentage={"value": 150}, mirror={"host": "httpbin"})])
    bad_svc = svc(ports=[{"port": 0}])
    text = "\n---\n".join(yaml.safe_dump(d) for d in (bad_vs, vs([route()]), bad_svc))
    errors = errors_of(text)
    assert [(e.document, e.kind) for e in errors] == [(0, "VirtualService"), (2, "Service")]


def test_config_error_names_file_document_resource_and_field() -> None:
    text = (
        yaml.safe_dump(vs([route()]))
        + "---\n"
        + yaml.safe_dump(vs([route(mirror={"host": "httpbin"}, mirrorPercentage={"value": 150})]))
    )
    error = only_error(text)
    assert (error.source, error.document, error.kind, error.name) == (
        "test.yaml",
        1,
        "VirtualService",
        "httpbin",
    )
    assert error.field == "spec.http[0].mirrorPercentage.value"
    assert str(error) == (
        "test.yaml: document 2: VirtualService 'httpbin': field spec.http[0].mirrorPercentage"
        ".value: mirror_percentage must have a max value of 100 (it has 150.000000)"
    )


# --- YAML ----------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = SEED_ROUTE + "---\nkind: VirtualService\nspec:\n  hosts: [a\n"
    error = only_error(text)
    assert error.document == 2
    assert error.message.startswith("invalid YAML at line ")
    assert "column" in error.message


def test_errors_before_a_yaml_syntax_error_are_kept() -> None:
    text = yaml.safe_dump(vs()) + "---\nfoo: : :\n"
    errors = errors_of(text)
    assert [e.document for e in errors] == [0, 1]
    assert "invalid YAML" in errors[1].message


def test_duplicate_keys_are_an_error() -> None:
    text = SEED_MIRROR + "    mirror_percent: 50\n"
    error = only_error(text)
    assert 'duplicate key "mirror_percent"' in error.message
    assert "line 18" in error.message


def test_yaml_merge_keys_still_work() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: httpbin}
        spec:
          selector: {app: httpbin}
          ports:
          - &p {name: http, port: 8000}
          - <<: *p
            name: admin
            port: 9000
        """
    )
    service = load_text(text, "f").documents[0].resource
    assert [(p.name, p.port) for p in service.ports] == [("http", 8000), ("admin", 9000)]  # type: ignore[union-attr]


def test_raw_is_a_plain_deep_copy_of_the_document() -> None:
    doc = vs([route()])
    doc["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    document = one(doc)
    assert document.resource.raw == doc
    doc["spec"]["hosts"].append("other")
    assert document.resource.raw["spec"]["hosts"] == ["httpbin"]
    text = "creationTimestamp: 2024-01-01T00:00:00Z"
    loaded = load(
        SEED_ROUTE.replace(
            "name: httpbin\nspec:\n  hosts", f"name: httpbin\n  {text}\nspec:\n  hosts", 1
        )
    )
    assert (
        loaded.documents[0].resource.raw["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    )


def test_yaml_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  annotations:\n"
    text += "".join(f"    {line}\n" for line in lines)
    error = only_error(text)
    assert "too large" in error.message


def test_explicit_binary_values_are_refused() -> None:
    doc = "apiVersion: v1\nkind: Service\nmetadata: {name: x, uid: !!binary aGVsbG8=}\n"
    assert "unsupported YAML value" in only_error(doc).message


# --- metadata ------------------------------------------------------------------------------


def test_namespace_from_metadata_else_default() -> None:
    assert one(vs([route()])).resource.meta.namespace == "ns"
    doc = dr()
    assert load_raw(doc, "f", 0, "team-a").resource.meta.namespace == "team-a"


def test_kubectl_metadata_is_accepted_and_ignored() -> None:
    doc = vs([route()])
    doc["metadata"].update(
        uid="0b1c",
        resourceVersion="12",
        creationTimestamp="2024-01-01T00:00:00Z",
        generation=3,
        managedFields=[{"manager": "kubectl", "operation": "Update"}],
        labels={"app": "httpbin"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    )
    doc["status"] = {}
    assert one(doc).warnings == ()


def test_metadata_errors() -> None:
    doc = vs([route()])
    doc["metadata"] = {"namespace": "ns"}
    assert (only_error(doc).field, only_error(doc).message) == ("metadata.name", "name is required")
    doc["metadata"] = {"name": "Bad_Name"}
    assert "RFC 1123 subdomain" in only_error(doc).message
    doc["metadata"] = {"name": "ok", "namespace": "a.b"}
    assert only_error(doc).field == "metadata.namespace"
    doc["metadata"] = {"name": "ok", "nmespace": "a"}
    assert only_error(doc).message.startswith('unknown field "nmespace"')
    doc["metadata"] = {"name": "ok", "labels": {"app": 1}}
    assert only_error(doc).field == "metadata.labels.app"
    with pytest.raises(ConfigError) as caught:
        load_raw(dr(), "f", 0, "Not Valid")
    assert caught.value.field == "metadata.namespace"


def test_service_name_must_be_a_dns1035_label() -> None:
    doc = svc()
    doc["metadata"]["name"] = "httpbin.v1"
    assert "DNS-1035" in only_error(doc).message


def test_top_level_unknown_field_and_missing_spec() -> None:
    doc = vs([route()])
    doc["specs"] = {}
    error = only_error(doc)
    assert (error.field, error.message) == ("specs", 'unknown field "specs" (did you mean "spec"?)')
    doc = vs()
    del doc["spec"]
    assert only_error(doc).message == "spec is required"


# --- VirtualService ------------------------------------------------------------------------


def test_hosts_rules() -> None:
    # No hosts: a delegate, which may not bind gateways (Istio's ValidateVirtualService).
    assert one(vs([route()], hosts=[])).resource.is_delegate  # type: ignore[union-attr]
    error = only_error(vs([route()], hosts=[], gateways=["mesh"]))
    assert (error.field, error.message) == (
        "spec.gateways",
        "delegate virtual service must have no gateways specified",
    )
    assert "wildcard host * is not allowed" in only_error(vs([route()], hosts=["*"])).message
    error = only_error(vs([route()], hosts=["*"], gateways=["mesh", "ingress"]))
    assert "wildcard host * is not allowed" in error.message
    # Bound to gateways only, "*" is every host the gateway serves.
    bound = one(vs([route()], hosts=["*"], gateways=["istio-system/ingress"])).resource
    assert bound.hosts == ("*",)  # type: ignore[union-attr]
    error = only_error(vs([route()], hosts=["httpbin", "httpbin"]))
    assert error.message == "duplicate hosts in virtual service: httpbin & httpbin"
    error = only_error(vs([route()], hosts=["*.example.com", "a.example.com"]))
    assert error.message.startswith("duplicate hosts")
    error = only_error(vs([route()], hosts=["bad_host!"]))
    assert (error.field, error.message) == (
        "spec.hosts[0]",
        'domain name "bad_host!" invalid (label "bad_host!" invalid)',
    )
    ok = one(vs([route()], hosts=["httpbin.ns.svc.cluster.local", "*.example.com", "10.0.0.1"]))
    assert ok.resource.hosts == ("httpbin.ns.svc.cluster.local", "*.example.com", "10.0.0.1")  # type: ignore[union-attr]


def test_gateways() -> None:
    assert warnings_of(vs([route()], gateways=["mesh"])) == ()
    assert warnings_of(vs([route()], gateways=["istio-system/ingress", "gw"])) == ()
    (warning,) = warnings_of(vs([route()], gateways=["ingress.istio-system.svc.cluster.local"]))
    assert 'using legacy gatewayName format "ingress.istio-system.svc.cluster.local"' in warning
    assert '"istio-system/ingress"' in warning
    error = only_error(vs([route()], gateways=["bad_ns/gw"]))
    assert (error.field, error.message) == (
        "spec.gateways[0]",
        'invalid value for namespace: "bad_ns"',
    )
    messages = [e.message for e in errors_of(vs([route()], gateways=["/gw"]))]
    assert messages[0] == "config namespace and gateway name cannot be empty"


def test_http_tcp_or_tls_must_be_provided() -> None:
    error = only_error(vs())
    assert (error.field, error.message) == (
        "spec.http",
        "http, tcp or tls must be provided in virtual service",
    )
    assert only_error(vs([])).message == "http, tcp or tls must be provided in virtual service"
    tcp = [{"route": [{"destination": {"host": "db", "port": {"number": 5432}}}]}]
    document = one(vs(tcp=tcp))
    assert document.resource.http == ()  # type: ignore[union-attr]
    assert document.warnings == (
        "VirtualService ns/httpbin: spec.tcp is not acted on by shadowmesh yet; only http routes "
        "are served",
    )
    tls = [{"match": [{"sniHosts": ["httpbin"]}], "route": tcp[0]["route"]}]
    assert "spec.tls is not acted on" in one(vs([route()], tls=tls)).warnings[0]
    # The CRD refuses the typo; the webhook, which reads no route, says so too.
    assert [e.field for e in errors_of(vs(tcp=[{"rute": []}]))] == [
        "spec.tcp[0].rute",
        "spec.tcp[0].route",
    ]


ROUTE_POLICY = [
    ("retries", {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"}),
    ("fault", {"delay": {"fixedDelay": "5s", "percentage": {"value": 10}}}),
    ("headers", {"request": {"set": {"x-a": "1"}, "remove": ["x-b"]}}),
    ("rewrite", {"uri": "/v2"}),
    ("corsPolicy", {"allowOrigins": [{"exact": "https://a"}], "allowMethods": ["GET"]}),
]


# Every route policy field is acted on now (retries since the stream's retries landed): none warns.
@pytest.mark.parametrize(("field", "value"), ROUTE_POLICY)
def test_acted_on_route_fields_do_not_warn(field: str, value: Any) -> None:
    assert warnings_of(vs([route(**{field: value})])) == ()


@pytest.mark.parametrize(("field", "value"), ROUTE_POLICY)
def test_typos_inside_not_acted_on_fields_are_errors(field: str, value: Any) -> None:
    bad = {**value, "tpyo": 1}
    error = only_error(vs([route(**{field: bad})]))
    assert (error.field, error.message) == (f"spec.http[0].{field}.tpyo", 'unknown field "tpyo"')


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("redirect", {"uri": "/new", "redirectCode": 302}),
        ("directResponse", {"status": 503, "body": {"string": "down"}}),
    ],
)
def test_redirect_direct_response_and_delegate_need_no_route(field: str, value: Any) -> None:
    http = http0(vs([{field: value}]))
    assert http.route == ()
    assert http.redirect is not None or http.direct_response is not None
    # Answered by routing: no "not acted on" warning any more.
    assert warnings_of(vs([{field: value}])) == ()


def test_destination_headers_are_acted_on() -> None:
    http = [
        {"route": [{"destination": {"host": "a"}, "headers": {"response": {"add": {"x": "1"}}}}]}
    ]
    assert warnings_of(vs(http)) == ()


def test_route_is_required_and_conflicts_follow_istio() -> None:
    error = only_error(vs([{"name": "empty"}]))
    assert (error.field, error.message) == (
        "spec.http[0].route",
        "HTTP route, redirect or direct_response is required",
    )
    error = only_error(vs([route(redirect={"uri": "/x"})]))
    assert (error.field, error.message) == (
        "spec.http[0]",
        "HTTP route cannot contain both route and redirect",
    )
    error = only_error(
        vs([{"directResponse": {"status": 200}, "fault": {"abort": {"httpStatus": 500}}}])
    )
    assert error.message == "HTTP route cannot contain both fault and direct_response"


def test_weights() -> None:
    two = [
        {"destination": {"host": "httpbin", "subset": "v1"}, "weight": 90},
        {"destination": {"host": "httpbin", "subset": "v2"}, "weight": 10},
    ]
    assert [d.weight for d in http0(vs([{"route": two}])).route] == [90, 10]
    # Relative weights, as Istio >= 1.15: no need to sum to 100.
    assert [d.weight for d in http0(vs([{"route": [{**two[0], "weight": 3}, two[1]]}])).route] == [
        3,
        10,
    ]
    lone = [{"destination": {"host": "httpbin"}, "weight": 0}]
    assert http0(vs([{"route": lone}])).route == (RouteDestination(Destination("httpbin"), 0),)
    assert http0(vs([route()])).route[0].weight == 0
    error = only_error(vs([{"route": [{**two[0], "weight": -1}, two[1]]}]))
    assert (error.field, error.message) == ("spec.http[0].route[0].weight", "weight -1 < 0")
    zeros = [{**two[0], "weight": 0}, {**two[1], "weight": 0}]
    error = only_error(vs([{"route": zeros}]))
    assert (error.field, error.message) == ("spec.http[0].route", "total destination weight = 0")
    # The CRD requires it: the API server refuses before the webhook would.
    error = only_error(vs([{"route": [{"weight": 100}]}]))
    assert (error.field, error.message) == ("spec.http[0].route[0].destination", "Required value")


def test_destination_rules() -> None:
    def dest_error(destination: Any) -> ConfigError:
        return only_error(vs([{"route": [{"destination": destination}]}]))

    assert dest_error({"subset": "v1"}).message == "Required value"
    assert dest_error({"host": "*"}).message == "invalid destination host *"
    assert dest_error({"host": "a..b"}).message == 'domain name "a..b" invalid (label "" invalid)'
    assert dest_error({"host": "a", "subset": "v_1"}).message == "subset name is invalid: v_1"
    error = dest_error({"host": "a", "port": {"number": 70000}})
    assert (error.field, error.message) == (
        "spec.http[0].route[0].destination.port.number",
        "port number 70000 must be in the range 1..65535",
    )
    assert dest_error({"host": "a", "port": {}}).message.startswith("port number 0")
    assert dest_error({"host": "a", "subsett": "v1"}).field == (
        "spec.http[0].route[0].destination.subsett"
    )
    destination = http0(
        vs([{"route": [{"destination": {"host": "*.x.com", "port": {"number": 8000}}}]}])
    )
    assert destination.route[0].destination == Destination("*.x.com", "", 8000)


# --- mirroring -----------------------------------------------------------------------------

MIRROR = {"host": "httpbin", "subset": "v2"}


@pytest.mark.parametrize(
    ("fields", "percentage", "deprecated"),
    [
        ({}, 100.0, False),
        ({"mirrorPercentage": {"value": 50}}, 50.0, False),
        ({"mirror_percentage": {"value": 12.5}}, 12.5, False),
        ({"mirrorPercentage": {"value": 0}}, 0.0, False),
        ({"mirrorPercentage": {}}, 0.0, False),
        ({"mirrorPercent": 30}, 30.0, True),
        ({"mirror_percent": 0}, 0.0, True),
        ({"mirrorPercent": 30, "mirrorPercentage": {"value": 70}}, 70.0, True),
        ({"mirror_percent": 100, "mirrorPercentage": {"value": 0.5}}, 0.5, True),
    ],
)
def test_mirror_percentage_resolution(fields: Any, percentage: float, deprecated: bool) -> None:
    doc = vs([route(mirror=MIRROR, **fields)])
    http = http0(doc)
    assert http.mirrors == (MirrorPolicy(Destination("httpbin", "v2"), percentage),)
    assert (DEPRECATED in one(doc).warnings) is deprecated


def test_deprecation_warning_is_given_once_per_document() -> None:
    first = route(match=[{"uri": {"prefix": "/a"}}], mirror=MIRROR, mirrorPercent=10)
    doc = vs([first, route(mirror=MIRROR, mirror_percent=20)])
    assert one(doc).warnings == (DEPRECATED,)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"mirrorPercentage": {"value": 150}},
            "spec.http[0].mirrorPercentage.value",
            "mirror_percentage must have a max value of 100 (it has 150.000000)",
        ),
        (
            {"mirror_percentage": {"value": -0.5}},
            "spec.http[0].mirror_percentage.value",
            "mirror_percentage must have a min value of 0 (it has -0.500000)",
        ),
        (
            {"mirrorPercent": 101},
            "spec.http[0].mirrorPercent",
            "mirror_percent must have a max value of 100 (it has 101)",
        ),
        (
            {"mirrorPercentage": {"value": "50"}},
            "spec.http[0].mirrorPercentage.value",
            'must be a finite number, got a string ("50")',
        ),
        (
            {"mirrorPercentage": 50},
            "spec.http[0].mirrorPercentage",
            "must be a mapping, got an integer (50)",
        ),
        (
            {"mirrorPercentage": {"value": float("nan")}},
            "spec.http[0].mirrorPercentage.value",
            "must be a finite number, got a number (nan)",
        ),
        (
            {"mirrorPercent": 50.5},
            "spec.http[0].mirrorPercent",
            "must be an integer, got a number (50.5)",
        ),
    ],
)
def test_mirror_percentage_errors(fields: Any, field: str, message: str) -> None:
    error = only_error(vs([route(mirror=MIRROR, **fields)]))
    assert (error.field, error.message) == (field, message)


def test_mirror_and_mirrors_together_is_an_error() -> None:
    doc = vs([route(mirror=MIRROR, mirrors=[{"destination": MIRROR}])])
    error = only_error(doc)
    assert (error.field, error.message) == (
        "spec.http[0]",
        "HTTP route cannot contain both mirror and mirrors",
    )


def test_mirrors_list() -> None:
    mirrors = [
        {"destination": MIRROR},
        {"destination": {"host": "other"}, "percentage": {"value": 5}},
        {"destination": {"host": "third"}, "percentage": {"value": 0}},
    ]
    http = http0(vs([route(mirrors=mirrors)]))
    assert http.mirrors == (
        MirrorPolicy(Destination("httpbin", "v2"), 100.0),
        MirrorPolicy(Destination("other"), 5.0),
        MirrorPolicy(Destination("third"), 0.0),
    )


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (
            {"percentage": {"value": 5}},
            "spec.http[0].mirrors[0].destination",
            "Required value",
        ),
        (
            {"destination": MIRROR, "percentage": {"value": 101}},
            "spec.http[0].mirrors[0].percentage.value",
            "mirror percentage must have a max value of 100 (it has 101.000000)",
        ),
        (
            {"destination": MIRROR, "percentage": {"value": -1}},
            "spec.http[0].mirrors[0].percentage.value",
            "mirror percentage must have a min value of 0 (it has -1.000000)",
        ),
        (None, "spec.http[0].mirrors[0]", "must be a mapping, got null"),
        (
            {"destination": {"subset": "v2"}},
            "spec.http[0].mirrors[0].destination.host",
            "Required value",
        ),
    ],
)
def test_mirrors_errors(entry: Any, field: str, message: str) -> None:
    error = only_error(vs([route(mirrors=[entry])]))
    assert (error.field, error.message) == (field, message)


def test_mirror_percentage_without_mirror_warns() -> None:
    (warning,) = warnings_of(vs([route(mirrorPercentage={"value": 10})]))
    assert warning == (
        'VirtualService ns/httpbin: spec.http[0].mirrorPercentage has no effect without "mirror"; '
        "shadowmesh ignores it"
    )
    assert http0(vs([route(mirrorPercentage={"value": 10})])).mirrors == ()


def test_mirror_destination_is_validated() -> None:
    error = only_error(vs([route(mirror={"host": "httpbin", "subset": "V2!"})]))
    assert (error.field, error.message) == (
        "spec.http[0].mirror.subset",
        "subset name is invalid: V2!",
    )


# --- spellings and unknown fields ----------------------------------------------------------


@pytest.mark.parametrize(
    ("camel", "snake", "value"),
    [
        ("queryParams", "query_params", {"q": {"exact": "1"}}),
        ("ignoreUriCase", "ignore_uri_case", True),
        ("withoutHeaders", "without_headers", {"x-a": {}}),
    ],
)
def test_match_fields_accept_both_spellings(camel: str, snake: str, value: Any) -> None:
    by_camel = http0(vs([route(match=[{camel: value}])])).match
    by_snake = http0(vs([route(match=[{snake: value}])])).match
    assert by_camel == by_snake
    assert by_camel != (HTTPMatchRequest(),)


def test_a_field_set_with_both_spellings_is_an_error() -> None:
    error = only_error(vs([route(mirror=MIRROR, mirrorPercent=1, mirror_percent=2)]))
    assert (
        error.message
        == 'field "mirrorPercent" is set twice (as "mirrorPercent" and "mirror_percent")'
    )


def test_unknown_fields_anywhere_are_errors_with_their_path() -> None:
    error = only_error(vs([route(mirror=MIRROR, mirrorPercentge={"value": 5})]))
    assert error.field == "spec.http[0].mirrorPercentge"
    assert error.message == 'unknown field "mirrorPercentge" (did you mean "mirrorPercentage"?)'
    assert only_error(vs([route()], hostz=[])).field == "spec.hostz"
    assert only_error(vs([route(match=[{"uri": {"exact": "/", "glob": "*"}}])])).field == (
        "spec.http[0].match[0].uri.glob"
    )
    assert (
        only_error(vs([route(mirror={**MIRROR, "weight": 1})])).field
        == "spec.http[0].mirror.weight"
    )


def test_type_errors_name_the_field_and_the_expected_type() -> None:
    cases: list[tuple[Any, str, str]] = [
        (vs("not a list"), "spec.http", 'must be a list, got a string ("not a list")'),
        (vs([route()], hosts="httpbin"), "spec.hosts", 'must be a list, got a string ("httpbin")'),
        (vs([{"route": "v1"}]), "spec.http[0].route", 'must be a list, got a string ("v1")'),
        (
            vs([{"route": [{"destination": {"host": "a"}, "weight": "100"}]}]),
            "spec.http[0].route[0].weight",
            'must be an integer, got a string ("100")',
        ),
        (
            vs([{"route": [{"destination": {"host": "a"}, "weight": True}]}]),
            "spec.http[0].route[0].weight",
            "must be an integer, got a boolean (true)",
        ),
        (
            vs([{"route": [{"destination": {"host": "a"}, "weight": 1.5}]}]),
            "spec.http[0].route[0].weight",
            "must be an integer, got a number (1.5)",
        ),
        (vs(["route"]), "spec.http[0]", 'must be a mapping, got a string ("route")'),
        (
            vs([route(match=[{"ignoreUriCase": "yes"}])]),
            "spec.http[0].match[0].ignoreUriCase",
            'must be true or false, got a string ("yes")',
        ),
        (
            vs([{"route": [{"destination": {"host": 5}}]}]),
            "spec.http[0].route[0].destination.host",
            "must be a string, got an integer (5)",
        ),
    ]
    for doc, field, message in cases:
        errors = errors_of(doc)
        assert (errors[0].field, errors[0].message) == (field, message), doc


# --- timeout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("0.001s", 0.001),
    ],
)
def test_timeout_is_parsed_to_seconds(text: str, seconds: float) -> None:
    assert http0(vs([route(timeout=text)])).timeout == pytest.approx(seconds)
    assert warnings_of(vs([route(timeout=text)])) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # The CRD's CEL rule, duration(self) >= duration('1ms'), before Istio's webhook.
        ("5", _DURATION_RULE),
        ("five seconds", _DURATION_RULE),
        ("0s", _DURATION_RULE),
        ("-1s", _DURATION_RULE),
        ("1.0005s", "only durations to ms precision are supported"),
        (5, 'must be a duration string like "5s", got an integer (5)'),
    ],
)
def test_timeout_errors(value: Any, message: str) -> None:
    error = only_error(vs([route(timeout=value)]))
    assert (error.field, error.message) == ("spec.http[0].timeout", message)


def test_no_timeout_is_none() -> None:
    assert http0(vs([route()])).timeout is None


# --- match ---------------------------------------------------------------------------------


def test_match_blocks() -> None:
    match = [
        {
            "name": "api",
            "uri": {"prefix": "/api"},
            "method": {"exact": "GET"},
            "authority": {"regex": "httpbin(:8000)?"},
            "scheme": {"exact": "http"},
            "headers": {"X-User": {"exact": "jason"}, "x-debug": {}},
            "queryParams": {"Debug": {"prefix": "1"}},
            "withoutHeaders": {"X-Canary": {}},
            "port": 8000,
            "ignoreUriCase": True,
        },
        {"uri": {"exact": "/status"}},
    ]
    first, second = http0(vs([route(match=match)])).match
    assert first == HTTPMatchRequest(
        name="api",
        uri=StringMatch("prefix", "/api"),
        scheme=StringMatch("exact", "http"),
        method=StringMatch("exact", "GET"),
        authority=StringMatch("regex", "httpbin(:8000)?"),
        headers={"x-user": StringMatch("exact", "jason"), "x-debug": None},
        without_headers={"x-canary": None},
        query_params={"Debug": StringMatch("prefix", "1")},
        ignore_uri_case=True,
        port=8000,
    )
    assert second == HTTPMatchRequest(uri=StringMatch("exact", "/status"))


@pytest.mark.parametrize(
    ("match", "field", "message"),
    [
        (
            {"uri": {"exact": "/", "prefix": "/"}},
            "spec.http[0].match[0].uri",
            'Invalid value: "object": must validate one and only one schema (oneOf): only one '
            "of exact, prefix, regex may be set, got exact, prefix",
        ),
        ({"uri": {}}, "spec.http[0].match[0].uri", "one of exact, prefix or regex is required"),
        ({"uri": {"regex": "("}}, "spec.http[0].match[0].uri.regex", None),
        (
            {"uri": {"regex": ""}},
            "spec.http[0].match[0].uri.regex",
            '"uri": regex string match should not be empty',
        ),
        (
            {"headers": {"x-a": None}},
            "spec.http[0].match[0].headers.x-a",
            "headers match x-a cannot be null",
        ),
        (
            {"headers": {"bad header": {"exact": "1"}}},
            "spec.http[0].match[0].headers.bad header",
            "header name bad header is not a valid header name",
        ),
        (
            {"headers": {"x-a": {"exact": 1}}},
            "spec.http[0].match[0].headers.x-a.exact",
            "must be a string, got an integer (1)",
        ),
        ({"port": 0.5}, "spec.http[0].match[0].port", "must be an integer, got a number (0.5)"),
        (
            {"port": 65536},
            "spec.http[0].match[0].port",
            "port number 65536 must be in the range 1..65535",
        ),
        ({"uri": "/api"}, "spec.http[0].match[0].uri", 'must be a mapping, got a string ("/api")'),
    ],
)
def test_match_errors(match: Any, field: str, message: str | None) -> None:
    error = only_error(vs([route(match=[match])]))
    assert error.field == field
    if message is None:
        assert error.message.startswith('"uri": regex is invalid: ')
    else:
        assert error.message == message


def test_regex_that_only_python_accepts_is_refused() -> None:
    error = only_error(vs([route(match=[{"uri": {"regex": "/(?!admin).*"}}])]))
    assert "lookahead is not supported by RE2" in error.message


def test_a_delegate_route_needs_no_destination_and_is_kept() -> None:
    http = http0(vs([{"delegate": {"name": "reviews", "namespace": "ns"}}]))
    assert (http.route, http.delegate) == ((), ("reviews", "ns"))
    assert warnings_of(vs([{"delegate": {"name": "reviews"}}])) == ()
    error = only_error(vs([{"delegate": {"name": "r"}, "route": [{"destination": {"host": "a"}}]}]))
    assert error.message == "root HTTP route  must not specify route"
    nested = vs([{"delegate": {"name": "r"}}], hosts=[])
    assert only_error(nested).message == "delegate HTTP route cannot contain delegate"


def test_match_gateways_are_kept_for_routing() -> None:
    http = http0(vs([route(match=[{"gateways": ["mesh", "istio-system/ingress"]}])]))
    assert http.match[0].gateways == ("mesh", "istio-system/ingress")
    assert warnings_of(vs([route(match=[{"gateways": ["mesh"]}])])) == ()


def test_match_source_labels_are_kept_for_routing() -> None:
    labels = {"app": "sleep", "version": "v1"}
    http = http0(vs([route(match=[{"sourceLabels": labels}])]))
    assert http.match[0].source_labels == labels
    assert warnings_of(vs([route(match=[{"sourceLabels": labels}])])) == ()
    error = only_error(vs([route(match=[{"sourceLabels": {"app": "a b"}}])]))
    assert error.field == "spec.http[0].match[0].sourceLabels.app"


@pytest.mark.parametrize("field", ["sourceNamespace", "statPrefix"])
def test_match_selectors_warn(field: str) -> None:
    (warning,) = warnings_of(vs([route(match=[{field: "x"}])]))
    assert warning == (
        f"VirtualService ns/httpbin: spec.http[0].match[0].{field} is not acted on by shadowmesh "
        "yet; the match ignores it"
    )


def test_match_header_keys_differing_in_case_are_duplicates() -> None:
    error = only_error(vs([route(match=[{"headers": {"X-A": {}, "x-a": {}}}])]))
    assert error.message == 'duplicate headers match "x-a"'


# --- DestinationRule -----------------------------------------------------------------------


def lb(simple: str) -> dict[str, Any]:
    return {"loadBalancer": {"simple": simple}}


@pytest.mark.parametrize("simple", ["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"])
def test_load_balancer_simple(simple: str) -> None:
    document = one(dr(trafficPolicy=lb(simple)))
    assert document.resource.load_balancer == simple  # type: ignore[union-attr]
    assert document.warnings == ()


def test_load_balancer_special_values() -> None:
    assert one(dr(trafficPolicy=lb("UNSPECIFIED"))).resource.load_balancer is None  # type: ignore[union-attr]
    document = one(dr(trafficPolicy=lb("LEAST_CONN")))
    assert document.resource.load_balancer == "LEAST_REQUEST"  # type: ignore[union-attr]
    assert "LEAST_CONN is deprecated" in document.warnings[0]
    document = one(dr(trafficPolicy=lb("PASSTHROUGH")))
    assert document.resource.load_balancer is None  # type: ignore[union-attr]
    assert (
        "spec.trafficPolicy.loadBalancer.simple PASSTHROUGH is not acted on" in document.warnings[0]
    )
    error = only_error(dr(trafficPolicy=lb("FASTEST")))
    assert error.field == "spec.trafficPolicy.loadBalancer.simple"
    assert error.message.startswith('Unsupported value: "FASTEST": supported values: "UNSPECIFIED"')


def test_snake_case_traffic_policy() -> None:
    rule = one(dr(traffic_policy={"load_balancer": {"simple": "RANDOM"}})).resource
    assert rule.load_balancer == "RANDOM"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tunnel", {"protocol": "CONNECT", "targetHost": "a", "targetPort": 80}),
        ("proxyProtocol", {"version": "V1"}),
    ],
)
def test_not_acted_on_traffic_policy_fields_warn(field: str, value: Any) -> None:
    (warning,) = one(dr(trafficPolicy={field: value})).warnings
    assert warning == (
        f"DestinationRule default/httpbin: spec.trafficPolicy.{field} is not acted on by "
        "shadowmesh yet; the rule works without it"
    )


def test_not_acted_on_load_balancer_fields() -> None:
    (warning,) = one(dr(trafficPolicy={"loadBalancer": {"warmup": {"duration": "10s"}}})).warnings
    assert "spec.trafficPolicy.loadBalancer.warmup is not acted on" in warning
    error = only_error(
        dr(trafficPolicy={"loadBalancer": {"simple": "RANDOM", "consistentHash": {}}})
    )
    assert error.message == (
        'Invalid value: "object": must validate one and only one schema (oneOf): only one of '
        "simple, consistentHash may be set, got simple, consistentHash"
    )
    error = only_error(dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnectons": 1}}}))
    assert error.field == "spec.trafficPolicy.connectionPool.tcp.maxConnectons"


def test_export_to_is_kept_and_workload_selector_warns() -> None:
    document = one(dr(exportTo=["."], workloadSelector={"matchLabels": {"app": "a"}}))
    assert document.resource.export_to == (".",)  # type: ignore[union-attr]
    assert [w.split(" is not acted on")[0] for w in document.warnings] == [
        "DestinationRule default/httpbin: spec.workloadSelector",
    ]
    error = only_error(dr(exportTo=["other"], workloadSelector={"matchLabels": {"app": "a"}}))
    assert error.message == (
        "destination rule with workload selector cannot have exportTo beyond current namespace"
    )
    assert only_error(dr(exportTo=["*", "."])).message.startswith("cannot have both public")


def test_subsets() -> None:
    subsets = [
        {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": lb("ROUND_ROBIN")},
        {"name": "v2", "labels": {"version": "v2"}},
    ]
    rule = one(dr(subsets=subsets, trafficPolicy=lb("RANDOM"))).resource
    assert isinstance(rule, DestinationRule)
    assert rule.load_balancer == "RANDOM"
    assert [(s.name, s.load_balancer) for s in rule.subsets] == [
        ("v1", "ROUND_ROBIN"),
        ("v2", None),
    ]


@pytest.mark.parametrize(
    ("subsets", "field", "message"),
    [
        ([{"labels": {"version": "v1"}}], "spec.subsets[0].name", "Required value"),
        ([{"name": ""}], "spec.subsets[0].name", "subset name cannot be empty"),
        ([{"name": "v 1"}], "spec.subsets[0].name", "subset name is invalid: v 1"),
        ([{"name": "v1"}, {"name": "v1"}], "spec.subsets[1].name", "duplicate subset names: v1"),
        ([None], "spec.subsets[0]", "must be a mapping, got null"),
        (
            [{"name": "v1", "labels": {"version": 1}}],
            "spec.subsets[0].labels.version",
            "must be a string, got an integer (1)",
        ),
        ([{"name": "v1", "labels": {"version": "a b"}}], "spec.subsets[0].labels.version", None),
    ],
)
def test_subset_errors(subsets: Any, field: str, message: str | None) -> None:
    error = only_error(dr(subsets=subsets))
    assert error.field == field
    assert message is None or error.message == message


def test_destination_rule_host_required() -> None:
    doc = dr()
    del doc["spec"]["host"]
    assert (only_error(doc).field, only_error(doc).message) == ("spec.host", "Required value")


# --- Service -------------------------------------------------------------------------------


def test_service_ports() -> None:
    ports = [
        {"name": "http", "port": 8000, "targetPort": "http-alt", "protocol": "TCP"},
        {"name": "admin", "port": 9000, "targetPort": 0, "appProtocol": "http"},
    ]
    service = one(
        svc(ports=ports, type="ClusterIP", clusterIP="10.0.0.1", sessionAffinity="None")
    ).resource
    assert isinstance(service, Service)
    assert service.ports == (
        ServicePort(8000, "http", "http-alt", "TCP"),
        ServicePort(9000, "admin", None, "TCP"),
    )
    assert one(svc(ports=[{"port": 80}])).resource.ports == (ServicePort(80),)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("ports", "field", "message"),
    [
        ([], "spec.ports", "at least one port is required"),
        (
            [{"name": "http", "port": 0}],
            "spec.ports[0].port",
            "port number 0 must be in the range 1..65535",
        ),
        ([{"name": "http"}], "spec.ports[0].port", "port is required"),
        (
            [{"name": "a", "port": 80}, {"port": 81}],
            "spec.ports[1].name",
            "name is required when a Service has more than one port",
        ),
        (
            [{"name": "a", "port": 80}, {"name": "a", "port": 81}],
            "spec.ports[1].name",
            'duplicate value "a"',
        ),
        (
            [{"name": "a", "port": 80}, {"name": "b", "port": 80}],
            "spec.ports[1].port",
            "duplicate value 80/TCP",
        ),
        (
            [{"name": "a", "port": 80, "targetPort": 70000}],
            "spec.ports[0].targetPort",
            "port number 70000 must be in the range 1..65535",
        ),
        ([{"name": "a", "port": 80, "targetPort": "Not_A_Name"}], "spec.ports[0].targetPort", None),
        (
            [{"name": "a", "port": 80, "targetPort": 1.5}],
            "spec.ports[0].targetPort",
            "must be an integer or a port name, got a number (1.5)",
        ),
        ([{"name": "a", "port": 80, "target_port": 81}], "spec.ports[0].target_port", None),
        ([{"name": "a", "port": 80, "protocol": "HTTP"}], "spec.ports[0].protocol", None),
        ([{"name": "HTTP", "port": 80}], "spec.ports[0].name", None),
        ("http", "spec.ports", 'must be a list, got a string ("http")'),
    ],
)
def test_service_port_errors(ports: Any, field: str, message: str | None) -> None:
    error = only_error(svc(ports=ports))
    assert error.field == field
    assert message is None or error.message == message


def test_service_fields() -> None:
    assert (
        one(
            svc(ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack", clusterIPs=["10.0.0.1"])
        ).warnings
        == ()
    )
    (warning,) = one(svc(externalTrafficPolicy="Local")).warnings
    assert warning == (
        "Service default/httpbin: spec.externalTrafficPolicy is not acted on by shadowmesh yet; "
        "the service works without it"
    )
    assert (
        "spec.type is not acted on"
        in one(svc(type="ExternalName", externalName="a.com")).warnings[0]
    )
    assert (
        "spec.ports[0].protocol is not acted on"
        in one(svc(ports=[{"port": 53, "protocol": "UDP"}])).warnings[0]
    )
    assert only_error(svc(type="Headless")).field == "spec.type"
    assert only_error(svc(loadBalancer={})).field == "spec.loadBalancer"
    (warning,) = one(svc(selector={})).warnings
    assert "spec.selector is empty" in warning


# --- WorkloadEntry -------------------------------------------------------------------------


def test_workload_entry() -> None:
    entry = one(we(address="httpbin.local", labels={"app": "a"}, weight=3)).resource
    assert isinstance(entry, WorkloadEntry)
    assert (entry.address, dict(entry.ports), entry.weight) == ("httpbin.local", {"http": 8081}, 3)
    assert entry.api_version == "networking.istio.io/v1beta1"


@pytest.mark.parametrize("field", ["network", "locality", "serviceAccount", "service_account"])
def test_workload_entry_fields_not_acted_on(field: str) -> None:
    (warning,) = one(we(**{field: "x"})).warnings
    assert warning == (
        f"WorkloadEntry default/w: spec.{field} is not acted on by shadowmesh yet; "
        "the workload works without it"
    )


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"address": ""}, "spec.address", "address is required"),
        (
            {"address": "not an address"},
            "spec.address",
            'endpoint address "not an address" is not a valid FQDN or an IP address',
        ),
        ({"address": "unix:///tmp/s", "ports": None}, "spec.address", None),
        # The CRD's rules (Kubernetes' wording, Istio's CEL messages) before the webhook's.
        ({"ports": {"http": 0}}, "spec.ports.http", 'Invalid value: "integer": ' + _PORT_RULE),
        ({"ports": {"http": "80"}}, "spec.ports.http", 'must be an integer, got a string ("80")'),
        ({"weight": -1}, "spec.weight", None),
        ({"labels": ["app"]}, "spec.labels", "must be a mapping, got a list"),
    ],
)
def test_workload_entry_errors(spec: Any, field: str, message: str | None) -> None:
    error = only_error(we(**spec))
    assert error.field == field
    assert message is None or error.message == message


# --- load_raw ------------------------------------------------------------------------------


def test_load_raw_reads_one_parsed_document() -> None:
    document = load_raw(vs([route()]), "store", 7, "ignored")
    assert (document.source, document.index, document.resource.meta.namespace) == ("store", 7, "ns")


@pytest.mark.parametrize(
    "raw",
    [
        vs([route(mirror=MIRROR, mirrors=[{"destination": MIRROR}])]),
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
        ["not", "a", "mapping"],
        {"kind": "Nope"},
    ],
)
def test_load_raw_raises_config_error(raw: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_raw(raw, "store", 3)
    assert caught.value.document == 3


# --- never another exception ---------------------------------------------------------------

SVC = "kind: Service\napiVersion: v1\nmetadata: {name: a}\nspec: "
_ISTIO = "apiVersion: networking.istio.io/v1\nmetadata: {name: a}\n"
WE = "kind: WorkloadEntry\n" + _ISTIO + "spec: "
VS = "kind: VirtualService\n" + _ISTIO + "spec: "
ROUTE_A = ", route: [{destination: {host: a}}]}"
DR = "kind: DestinationRule\n" + _ISTIO + "spec: "


def http_doc(route: str) -> str:
    return VS + "{hosts: [a], http: [" + route + "]}\n"


MALFORMED: list[Any] = [
    "apiVersion: [v1]\nkind: Service\n",
    "kind: [VirtualService]\n",
    "kind: {a: 1}\napiVersion: v1\n",
    "kind: Service\napiVersion: v1\nmetadata: []\n",
    "kind: Service\napiVersion: v1\nmetadata: {name: [a]}\n",
    "kind: Service\napiVersion: v1\nmetadata: {name: a, namespace: 5}\n",
    SVC + "[]\n",
    SVC + "{ports: [[]]}\n",
    SVC + "{ports: [{port: true}]}\n",
    SVC + "{ports: [{port: 1}], selector: [a]}\n",
    SVC + "{ports: [{port: 1, name: 5}]}\n",
    WE + "{address: 1}\n",
    WE + "{address: a, ports: [1]}\n",
    WE + "{address: a, ports: {1: 2}}\n",
    VS + "3\n",
    VS + "{hosts: [1], http: [{}]}\n",
    http_doc("[]"),
    http_doc("{route: [5]}"),
    http_doc("{route: [{destination: 5}]}"),
    http_doc("{route: [{destination: {host: a, port: 5}}]}"),
    http_doc("{match: 5" + ROUTE_A),
    http_doc("{match: [{headers: [a]}]" + ROUTE_A),
    http_doc("{match: [{headers: {a: 5}}]" + ROUTE_A),
    http_doc("{mirrors: 5" + ROUTE_A),
    http_doc("{mirrors: [5]" + ROUTE_A),
    http_doc("{mirror: a" + ROUTE_A),
    http_doc("{retries: []" + ROUTE_A),
    http_doc("{fault: {delay: 5}" + ROUTE_A),
    VS + "{hosts: [a], tcp: 5}\n",
    DR + "{host: [a]}\n",
    DR + "{host: a, subsets: {v1: {}}}\n",
    DR + "{host: a, subsets: [{name: [v1]}]}\n",
    DR + "{host: a, trafficPolicy: []}\n",
    DR + "{host: a, trafficPolicy: {loadBalancer: {simple: 1}}}\n",
    DR + "{host: a, trafficPolicy: {portLevelSettings: {a: 1}}}\n",
    "a: !!int x\n",
    "a: !!float x\n",
    "a: !!timestamp x\n",
    "a: !!python/object:os.system x\n",
    "a: &x [*x]\n",
    "[" * 5000,
    "{" * 200 + "}" * 200,
    "a:\n\tb: 1\n",
    "? [a, b]\n: c\n",
    "\x00\x01",
    "kind: Service\napiVersion: v1\nmetadata: {name: a, labels: &l {a: *l}}\n",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_documents_give_config_errors(text: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "bad.yaml")
    assert caught.value.errors
    assert all(isinstance(e, ConfigError) for e in caught.value.errors)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, val in value.items():
            out += _paths(val, (*path, key))
    elif isinstance(value, list):
        for index, val in enumerate(value):
            out += _paths(val, (*path, index))
    return out


def _replaced(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return new
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return doc


SEEDS = [
    yaml.safe_load(SEED_MIRROR),
    vs(
        [
            route(
                match=[{"uri": {"prefix": "/"}, "headers": {"a": {}}}],
                mirrors=[{"destination": MIRROR, "percentage": {"value": 1}}],
                timeout="1s",
                retries={"attempts": 1},
            )
        ]
    ),
    yaml.safe_load_all(SEED_ROUTE).__next__(),
    dr(
        subsets=[{"name": "v1", "labels": {"a": "b"}, "trafficPolicy": lb("RANDOM")}],
        trafficPolicy={"connectionPool": {"tcp": {"maxConnections": 1}}},
    ),
    svc(ports=[{"name": "a", "port": 1, "targetPort": "x"}]),
    we(labels={"a": "b"}, weight=1),
]
REPLACEMENTS: list[Any] = [None, "x", "", 0, -1, 1.5, True, [], {}, [None], {"q": 1}, float("inf")]


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_field_replaced_by_a_wrong_type_gives_config_errors_or_loads(seed: int) -> None:
    doc = SEEDS[seed]
    one(doc)  # the seed itself is valid
    tried = 0
    for path in _paths(doc):
        for new in REPLACEMENTS:
            mutated = _replaced(doc, path, new)
            try:
                load_raw(mutated, "fuzz", 0)
                load_text(yaml.safe_dump(mutated), "fuzz")
            except (ConfigError, ConfigErrors):
                pass
            tried += 1
    assert tried > 50


def test_every_truncation_of_a_file_gives_config_errors_or_loads() -> None:
    text = SEED_WORKLOADS + "---\n" + SEED_MIRROR
    loaded = 0
    for end in range(len(text)):
        try:
            load_text(text[:end], "cut.yaml")
            loaded += 1
        except ConfigErrors:
            pass
    assert loaded > 0
