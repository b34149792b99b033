"""The CRDs' structural rules (model/schema.py), as a cluster applies them before Istio's webhook.

The cases are those Istio checks against a real API server (istio/istio
``pkg/config/validation/testdata/crds``: each invalid file with the error the server gave),
written here as our own documents, plus realistic mistakes in fields shadowmesh does not act
on, which a cluster refuses as well.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from shadowmesh.errors import ConfigErrors
from shadowmesh.model import schema
from shadowmesh.model.fields import Issues
from shadowmesh.model.load import load_text

PORT_RULE = 'Invalid value: "integer": port must be between 1-65535'


def document(kind: str, spec: str | None, name: str = "r") -> str:
    head = f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
    return head if spec is None else head + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


def errors(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "t.yaml")
    return [(e.field, e.message) for e in caught.value.errors]


def structural(kind: str, spec: Any) -> list[tuple[str, str]]:
    issues = Issues(kind=kind)
    schema.check_spec(kind, spec, issues)
    return issues.errors


# --- Istio's CRD test cases: what the API server answered ---------------------------------------

REFUSED = [
    ("ServiceEntry", None, "spec", "Required value"),
    ("ServiceEntry", "{}", "spec.hosts", "Required value"),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        workloadSelector: {labels: {val: "*"}}
        """,
        "spec.workloadSelector.labels.val",
        'Invalid value: "string": wildcard is not supported in selector',
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        resolution: STATIC
        workloadSelector: {}
        endpoints: [{address: 1.2.3.4}]
        """,
        "spec",
        'Invalid value: "object": only one of WorkloadSelector or Endpoints can be set',
    ),
    (
        "ServiceEntry",
        "hosts: ['*']",
        "spec.hosts[0]",
        'Invalid value: "string": hostname cannot be wildcard',
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        addresses: [1.2.3.4/16]
        resolution: DNS
        """,
        "spec",
        'Invalid value: "object": CIDR addresses are allowed only for NONE/STATIC resolution types',
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        ports: [{name: a, number: 1}, {name: a, number: 12}]
        """,
        "spec.ports[1]",
        'Duplicate value: map[string]interface {}{"name":"a"}',
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        ports: [{name: a, number: 1}, {name: b, number: 1}]
        """,
        "spec.ports",
        'Invalid value: "array": port number cannot be duplicated',
    ),
    (
        "ServiceEntry",
        "{hosts: [example.com], ports: [{name: a, number: 99999}]}",
        "spec.ports[0].number",
        PORT_RULE,
    ),
    (
        "ServiceEntry",
        "{hosts: [example.com], ports: [{name: a, number: 1, targetPort: 99999}]}",
        "spec.ports[0].targetPort",
        PORT_RULE,
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        endpoints: [{address: 1.2.3.4}]
        resolution: NONE
        """,
        "spec",
        'Invalid value: "object": NONE mode cannot set endpoints',
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        resolution: DNS_ROUND_ROBIN
        endpoints: [{address: sub1.example.com}, {address: sub2.example.com}]
        """,
        "spec",
        'Invalid value: "object": DNS_ROUND_ROBIN mode cannot have multiple endpoints',
    ),
    ("WorkloadEntry", None, "spec", "Required value"),
    ("WorkloadEntry", "{}", "spec", 'Invalid value: "object": Address is required'),
    (
        "WorkloadEntry",
        "address: unix:///dir/",
        "spec.address",
        'Invalid value: "string": UDS may not be a dir',
    ),
    (
        "WorkloadEntry",
        "address: unix://relative",
        "spec.address",
        'Invalid value: "string": UDS must be an absolute path or abstract socket',
    ),
    (
        "WorkloadEntry",
        "{address: 'unix://@foo', ports: {http: 80}}",
        "spec",
        'Invalid value: "object": UDS may not include ports',
    ),
    ("WorkloadEntry", "{address: 1.1.1.1, ports: {http: 99999}}", "spec.ports.http", PORT_RULE),
    (
        "WorkloadEntry",
        "{address: 1.1.1.1, ports: {'@': 80}}",
        "spec.ports",
        'Invalid value: "object": port name must be valid',
    ),
    (
        "DestinationRule",
        """
        host: ratings.prod.svc.cluster.local
        trafficPolicy: {loadBalancer: {warmup: {duration: 300s, minimumPercent: 150.0}}}
        """,
        "spec.trafficPolicy.loadBalancer.warmup.minimumPercent",
        "Invalid value: 150.0: should be less than or equal to 100",
    ),
    (
        "DestinationRule",
        """
        host: ratings.prod.svc.cluster.local
        trafficPolicy: {loadBalancer: {warmup: {minimumPercent: 5.0}}}
        """,
        "spec.trafficPolicy.loadBalancer.warmup.duration",
        "Required value",
    ),
    (
        "DestinationRule",
        """
        host: ratings.prod.svc.cluster.local
        trafficPolicy: {loadBalancer: {warmup: {duration: 300s, aggression: -0.1}}}
        """,
        "spec.trafficPolicy.loadBalancer.warmup.aggression",
        "Invalid value: -0.1: should be greater than or equal to 0",
    ),
]


@pytest.mark.parametrize(("kind", "spec", "field", "message"), REFUSED)
def test_istio_s_crd_cases_are_refused_with_the_api_server_s_words(
    kind: str, spec: str | None, field: str, message: str
) -> None:
    found = errors(document(kind, spec))
    # The structural errors come first, as the API server refuses before the webhook runs.
    assert found[0] == (field, message), found


ACCEPTED_BY_THE_CRD = [
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        workloadSelector: {labels: {foo: bar}}
        addresses: [1.2.3.4, '001:db8::']
        exportTo: [foo, .]
        location: MESH_EXTERNAL
        ports: [{name: foo, protocol: HTTP, number: 1234, targetPort: 2345}]
        subjectAltNames: [sa]
        resolution: DNS
        """,
    ),
    (
        "ServiceEntry",
        """
        hosts: [example.com]
        endpoints: [{address: sub.example.com}]
        ports: [{name: foo, protocol: HTTP, number: 1234, targetPort: 2345}]
        resolution: DNS
        """,
    ),
    ("ServiceEntry", "{workloadSelector: {}, hosts: [example.com]}"),
    ("ServiceEntry", "hosts: ['*x']"),
    ("ServiceEntry", "{hosts: [example.com], addresses: [1.1.1.1/32]}"),
    (
        "WorkloadEntry",
        """
        address: 1.2.3.4
        serviceAccount: sa
        network: net
        labels: {app: app}
        ports: {http: 1}
        weight: 2
        locality: foo/bar/baz
        """,
    ),
    ("WorkloadEntry", "network: net"),
    ("WorkloadEntry", "address: 'unix://@foo'"),
    ("WorkloadEntry", "address: unix:///foo/bar"),
    ("WorkloadEntry", "address: example.com"),
    (
        "DestinationRule",
        """
        host: ratings.prod.svc.cluster.local
        trafficPolicy:
          loadBalancer: {warmup: {duration: 300s, minimumPercent: 5.0, aggression: 5.0}}
        """,
    ),
    (
        "DestinationRule",
        """
        host: ratings.prod.svc.cluster.local
        trafficPolicy: {connectionPool: {http: {http2KeepAlive: {interval: 15s, timeout: 5s}}}}
        """,
    ),
]


@pytest.mark.parametrize(("kind", "spec"), ACCEPTED_BY_THE_CRD)
def test_istio_s_crd_valid_cases_pass_the_structural_rules(kind: str, spec: str) -> None:
    import yaml

    assert structural(kind, yaml.safe_load(textwrap.dedent(spec))) == []


# --- fields shadowmesh does not act on: a cluster refuses a bad value there too ----------------

NOT_ACTED_ON = [
    (
        "VirtualService",
        """
        hosts: [reviews]
        http: [{route: [{destination: {host: reviews}}]}]
        tcp: [{route: [{destination: {host: reviews, port: {number: -1}}}]}]
        """,
        "spec.tcp[0].route[0].destination.port.number",
        "Invalid value: -1: should be greater than or equal to 0",
    ),
    (
        "VirtualService",
        """
        hosts: [reviews]
        tls: [{route: [{destination: {host: reviews}}]}]
        """,
        "spec.tls[0].match",
        "Required value",
    ),
    (
        "VirtualService",
        """
        hosts: [reviews]
        tls: [{match: [{port: 443}], route: [{destination: {host: reviews}}]}]
        """,
        "spec.tls[0].match[0].sniHosts",
        "Required value",
    ),
    (
        "VirtualService",
        """
        hosts: [reviews]
        tcp: [{route: [{destination: {subset: v1}}]}]
        """,
        "spec.tcp[0].route[0].destination.host",
        "Required value",
    ),
    (
        "VirtualService",
        """
        hosts: [reviews]
        http:
        - match: [{uri: {prefix: /a}, statPrefix: api, withoutHeaders: {x: {exact: a, regex: b}}}]
          route: [{destination: {host: reviews}}]
        """,
        "spec.http[0].match[0].withoutHeaders.x",
        'Invalid value: "object": must validate one and only one schema (oneOf): only one of '
        "exact, prefix, regex may be set, got exact, regex",
    ),
    (
        "DestinationRule",
        """
        host: reviews
        trafficPolicy:
          loadBalancer:
            consistentHash: {httpHeaderName: x-user, useSourceIp: true}
        """,
        "spec.trafficPolicy.loadBalancer.consistentHash",
        'Invalid value: "object": must validate one and only one schema (oneOf): only one of '
        "httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set, got "
        "httpHeaderName, useSourceIp",
    ),
    (
        "DestinationRule",
        """
        host: reviews
        trafficPolicy:
          loadBalancer:
            consistentHash: {httpCookie: {name: user, ttl: 0s}, ringHash: {}, maglev: {}}
        """,
        "spec.trafficPolicy.loadBalancer.consistentHash",
        'Invalid value: "object": must validate one and only one schema (oneOf): only one of '
        "ringHash, maglev may be set, got ringHash, maglev",
    ),
    (
        "DestinationRule",
        """
        host: reviews
        trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 10s}}}}
        """,
        "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
        "Required value",
    ),
    (
        "DestinationRule",
        """
        host: reviews
        trafficPolicy: {tunnel: {protocol: CONNECT, targetHost: egress}}
        """,
        "spec.trafficPolicy.tunnel.targetPort",
        "Required value",
    ),
    (
        "DestinationRule",
        """
        host: reviews
        workloadSelector: {matchLabels: {app: "rev*"}}
        """,
        "spec.workloadSelector.matchLabels.app",
        'Invalid value: "string": wildcard not allowed in label value match',
    ),
    (
        "DestinationRule",
        """
        host: reviews
        workloadSelector: {matchLabels: {"*": reviews}}
        """,
        "spec.workloadSelector.matchLabels",
        'Invalid value: "object": wildcard not allowed in label key match',
    ),
    (
        "DestinationRule",
        """
        host: reviews
        subsets: [{labels: {version: v1}}]
        """,
        "spec.subsets[0].name",
        "Required value",
    ),
    (
        "Gateway",
        """
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [bookinfo.example.com]
          tls: {mode: SIMPLE, credentialName: a, credentialNames: [b]}
        """,
        "spec.servers[0].tls",
        'Invalid value: "object": only one of credentialName or credentialNames can be set',
    ),
    (
        "Gateway",
        """
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [bookinfo.example.com]
          tls: {mode: SIMPLE, credentialNames: [a, b, c]}
        """,
        "spec.servers[0].tls.credentialNames",
        "Too many: 3: must have at most 2 items",
    ),
    (
        "Gateway",
        """
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [bookinfo.example.com]
          tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_4}
        """,
        "spec.servers[0].tls.minProtocolVersion",
        'Unsupported value: "TLSV1_4": supported values: "TLS_AUTO", "TLSV1_0", "TLSV1_1", '
        '"TLSV1_2", "TLSV1_3"',
    ),
    (
        "Gateway",
        """
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [bookinfo.example.com]
          tls: {mode: SIMPLE, tlsCertificates: [{serverCertifcate: /c.pem}]}
        """,
        "spec.servers[0].tls.tlsCertificates[0].serverCertifcate",
        'unknown field "serverCertifcate" (did you mean "serverCertificate"?)',
    ),
    (
        "Gateway",
        "servers: [{port: {number: 80, name: http, protocol: HTTP}}]",
        "spec.servers[0].hosts",
        "Required value",
    ),
    (
        "ServiceEntry",
        """
        hosts: [api.example.com]
        ports: [{number: 443, name: https, protocol: TLS}]
        endpoints: [{address: 10.0.0.1, network: {name: n1}}]
        resolution: STATIC
        """,
        "spec.endpoints[0].network",
        "must be a string, got a mapping",
    ),
    (
        "ServiceEntry",
        """
        hosts: [api.example.com]
        ports: [{number: 443, name: https, protocol: TLS}]
        endpoints: [{address: 10.0.0.1, weight: -1}]
        resolution: STATIC
        """,
        "spec.endpoints[0].weight",
        "Invalid value: -1: should be greater than or equal to 0",
    ),
    (
        "WorkloadEntry",
        f"{{address: 10.0.0.1, serviceAccount: {'s' * 254}}}",
        "spec.serviceAccount",
        "Too long: may not be more than 253 bytes",
    ),
]


@pytest.mark.parametrize(("kind", "spec", "field", "message"), NOT_ACTED_ON)
def test_a_bad_value_in_a_field_not_acted_on_is_refused(
    kind: str, spec: str, field: str, message: str
) -> None:
    found = errors(document(kind, spec))
    assert found[0] == (field, message), found


def test_proto_spellings_are_read_as_the_readers_read_them() -> None:
    spec = {
        "host": "reviews",
        "traffic_policy": {"load_balancer": {"consistent_hash": {"http_header_name": "x"}}},
    }
    assert structural("DestinationRule", spec) == []
    spec["traffic_policy"]["load_balancer"]["consistent_hash"]["use_source_ip"] = True
    ((field, message),) = structural("DestinationRule", spec)
    assert field == "spec.traffic_policy.load_balancer.consistent_hash"
    assert "got httpHeaderName, useSourceIp" in message


def test_a_webhook_error_at_a_refused_path_is_not_said_twice() -> None:
    # The API server stops at the CRD's rule; Istio's webhook message never reaches the user.
    found = errors(
        document("ServiceEntry", "{hosts: [example.com], ports: [{name: a, number: 0}]}")
    )
    assert [f for f in found if f[0] == "spec.ports[0].number"] == [
        ("spec.ports[0].number", PORT_RULE)
    ]


def test_webhook_errors_elsewhere_are_still_reported_in_the_same_apply() -> None:
    spec = """
        hosts: [example.com]
        ports: [{name: a, number: 0, protocol: QUIC}]
    """
    found = errors(document("ServiceEntry", spec))
    assert found[0] == ("spec.ports[0].number", PORT_RULE)
    assert ("spec.ports[0].protocol", "unsupported protocol: QUIC") in found


def test_every_kind_read_has_a_schema() -> None:
    from shadowmesh.model.kinds import ISTIO_NETWORKING, KINDS

    istio = {info.kind for info in KINDS if info.group == ISTIO_NETWORKING}
    assert istio == set(schema.SPECS)


@pytest.mark.parametrize("kind", sorted(schema.SPECS))
def test_the_schema_and_the_reader_declare_the_same_spec_fields(kind: str) -> None:
    from shadowmesh.model.fields import json_name
    from shadowmesh.model.kinds import kind_info

    declared = {json_name(name) for name in kind_info(kind).spec_fields}
    assert declared == set(schema.SPECS[kind].fields)


def test_a_length_limit_counts_a_lone_surrogate_without_failing() -> None:
    # JSON may carry "\ud800"; the API server counts bytes, and so must never raise here.
    assert structural("WorkloadEntry", {"address": "1.2.3.4", "serviceAccount": "\ud800"}) == []
    ((field, message),) = structural("WorkloadEntry", {"network": "\ud800" * 683})
    assert (field, message) == ("spec.network", "Too long: may not be more than 2048 bytes")


@pytest.mark.parametrize(
    "policy",
    [
        "retryBudget: {percent: 20, budgetInterval: 0s}",  # a DoubleValue; no 1ms rule here
        "connectionPool: {tcp: {idleTimeout: 0s}}",  # no 1ms rule on this one either
        "loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}",
    ],
)
def test_what_the_crd_accepts_in_a_traffic_policy_applies(policy: str) -> None:
    load_text(document("DestinationRule", f"host: reviews\ntrafficPolicy: {{{policy}}}\n"), "t")


def test_a_retry_budget_percent_written_as_a_percent_message_is_refused() -> None:
    found = errors(
        document(
            "DestinationRule", "{host: r, trafficPolicy: {retryBudget: {percent: {value: 20}}}}"
        )
    )
    assert found == [
        ("spec.trafficPolicy.retryBudget.percent", "must be a finite number, got a mapping")
    ]


def _fast_and_full(kind: str, spec: Any) -> tuple[bool, list[tuple[str, str]]]:
    issues = Issues(kind=kind)
    schema._check(spec, schema.SPECS[kind], "spec", issues)  # the walk that names each problem
    return schema._valid(spec, schema.SPECS[kind]), issues.errors


def _istio_cases() -> list[tuple[str, Any]]:
    from pathlib import Path

    import yaml

    data = Path(__file__).parent / "data" / "istio_validation_cases.yaml"
    return [(c["kind"], c["spec"]) for c in yaml.safe_load(data.read_text())]


@pytest.mark.parametrize(("kind", "spec"), _istio_cases())
def test_the_quick_check_agrees_with_the_full_walk(kind: str, spec: Any) -> None:
    # The quick check may send a valid document to the full walk (a proto spelling), never
    # pass one the full walk refuses.
    quick, errors = _fast_and_full(kind, spec)
    assert quick == (not errors) or (not quick and not errors), errors
    assert not (quick and errors)


@pytest.mark.parametrize(
    ("kind", "spec", "field", "message"), [c for c in REFUSED + NOT_ACTED_ON if c[1] is not None]
)
def test_the_quick_check_refuses_every_refused_case(
    kind: str, spec: str, field: str, message: str
) -> None:
    import yaml

    value = yaml.safe_load(textwrap.dedent(spec))
    quick, errors = _fast_and_full(kind, value)
    if errors:
        assert not quick
