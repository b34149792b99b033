"""Istio's webhook rules in the fields shadowmesh does not act on, with Istio's wording.

The cases follow Istio's own (istio/istio ``pkg/config/validation/validation_test.go``:
TestValidateServer, TestValidateServerPort, TestValidateTlsOptions, TestValidateVirtualService,
TestValidateServiceEntries), written as the YAML a user applies: each is refused with the
message Istio gives, at the field it names, or accepted (with Istio's warning where it has one).
"""

from __future__ import annotations

import textwrap

import pytest

from shadowmesh.errors import ConfigErrors
from shadowmesh.model.load import load_text


def document(kind: str, spec: str) -> str:
    head = f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: r}}\n"
    return head + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


def refusals(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "t.yaml")
    return [(e.field, e.message) for e in caught.value.errors]


def warnings(text: str) -> tuple[str, ...]:
    (loaded,) = load_text(text, "t.yaml").documents
    return loaded.warnings


def server(entry: str) -> str:
    return document("Gateway", f"servers:\n- {entry}\n")


HTTP7 = "port: {number: 7, name: http, protocol: http}"

# --- Gateway servers (TestValidateServer, TestValidateServerPort) ------------------------------

SERVER_ACCEPTED = [
    f"{{hosts: [foo.bar.com], {HTTP7}}}",
    f"{{hosts: [1.1.1.1], {HTTP7}}}",
    f"{{hosts: [ns1/foo.bar.com], {HTTP7}}}",
    f"{{hosts: ['*/foo.bar.com'], {HTTP7}}}",
    f"{{hosts: [./foo.bar.com], {HTTP7}}}",
    "{hosts: [foo.bar.com], port: {number: 10000, name: http, protocol: http}, "
    "tls: {httpsRedirect: true}}",
    f"{{hosts: [foo.bar.com], {HTTP7}, bind: 127.0.0.1}}",
    "{hosts: [foo.bar.com], port: {number: 0, name: http, protocol: http}, bind: 'unix://@foobar'}",
]


@pytest.mark.parametrize("entry", SERVER_ACCEPTED)
def test_gateway_servers_istio_accepts_apply(entry: str) -> None:
    load_text(server(entry), "t.yaml")


SERVER_REFUSED = [
    (f"{{hosts: ['~/foo.bar.com'], {HTTP7}}}", "hosts[0]", 'invalid namespace value "~"'),
    (
        f"{{hosts: [ns1/foo.*.bar.com], {HTTP7}}}",
        "hosts[0]",
        'domain name "foo.*.bar.com" invalid (label "*" invalid)',
    ),
    (f"{{hosts: [foo], {HTTP7}}}", "hosts[0]", "short names (non FQDN) are not allowed"),
    (
        "{hosts: [foo.bar.com], port: {number: 66000, name: http, protocol: http}}",
        "port.number",
        "port number 66000 must be in the range 1..65535",
    ),
    (
        "{hosts: [foo.bar.com], port: {number: 0, name: http, protocol: http}}",
        "port.number",
        "port number 0 must be in the range 1..65535",
    ),
    (
        "{hosts: [foo.bar.com], port: {number: 1, name: Henry, protocol: kafka}}",
        "port.protocol",
        'invalid protocol "kafka", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, '
        "REDIS, MYSQL, TCP",
    ),
    (
        f"{{hosts: [foo.bar.com], {HTTP7}, bind: 'unix://@foobar'}}",
        "bind",
        "port number must be 0 for unix domain socket",
    ),
    (
        "{hosts: [foo.bar.com], port: {number: 0, name: http, protocol: http}, bind: foo.bar}",
        "bind",
        "foo.bar is not a valid IP",
    ),
    (
        "{hosts: [foo.bar.com], port: {number: 0, name: http, protocol: http}, "
        "bind: 'unix://tmp/x'}",
        "bind",
        "tmp/x is not an absolute path to a file",
    ),
    (
        "{hosts: [foo.bar.com], port: {number: 10000, name: https, protocol: https}}",
        "",
        "server must have TLS settings for HTTPS/TLS protocols",
    ),
    (
        "{hosts: [foo.bar.com], port: {number: 10000, name: http, protocol: http}, "
        "tls: {mode: SIMPLE}}",
        "tls",
        "server cannot have TLS settings for plain text HTTP ports",
    ),
    (f"{{hosts: ['*.foo*.com'], {HTTP7}}}", "hosts[0]", "invalid"),
]


@pytest.mark.parametrize(("entry", "field", "message"), SERVER_REFUSED)
def test_gateway_servers_istio_refuses_are_refused(entry: str, field: str, message: str) -> None:
    found = refusals(server(entry))
    at = "spec.servers[0]" + (f".{field}" if field else "")
    assert any(f == at and message in m for f, m in found), found


# --- Gateway TLS options (TestValidateTlsOptions) ----------------------------------------------

HTTPS = "hosts: [foo.bar.com], port: {number: 443, name: https, protocol: HTTPS}"

TLS_ACCEPTED = [
    "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}",
    "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}",
    "{mode: SIMPLE, credentialName: sds-name}",
    "{mode: SIMPLE, privateKey: /k.pem, credentialName: sds-name}",
    "{mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}",
    "{mode: MUTUAL, caCertificates: /ca.pem, credentialName: sds-name}",
    "{mode: MUTUAL, caCertificates: /ca.pem, tlsCertificates: [{serverCertificate: /c.pem, "
    "privateKey: /k.pem}]}",
    "{mode: ISTIO_MUTUAL}",
    "{mode: PASSTHROUGH}",
]


@pytest.mark.parametrize("tls", TLS_ACCEPTED)
def test_tls_options_istio_accepts_apply(tls: str) -> None:
    load_text(server(f"{{{HTTPS}, tls: {tls}}}"), "t.yaml")


_ONE_SOURCE = "only one of credential_name, credential_names, server_certificate/private_key"
TLS_REFUSED = [
    (
        "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, credentialName: sds-name}",
        _ONE_SOURCE,
    ),
    ("{mode: SIMPLE, privateKey: /k.pem}", "SIMPLE TLS requires a server certificate"),
    ("{mode: SIMPLE, serverCertificate: /c.pem}", "SIMPLE TLS requires a private key"),
    (
        "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, tlsCertificates: "
        "[{serverCertificate: /a.pem, privateKey: /a.key}]}",
        _ONE_SOURCE,
    ),
    (
        "{mode: SIMPLE, tlsCertificates: [{privateKey: /a.key}, "
        "{serverCertificate: /b.pem, privateKey: /b.key}]}",
        "SIMPLE TLS requires a server certificate",
    ),
    (
        "{mode: MUTUAL, caCertificates: /ca.pem, tlsCertificates: [{serverCertificate: /a.pem}]}",
        "MUTUAL TLS requires a private key",
    ),
    (
        "{mode: MUTUAL, tlsCertificates: [{serverCertificate: /a.pem, privateKey: /a.key}]}",
        "MUTUAL TLS requires a client CA bundle",
    ),
    (
        "{mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, credentialNames: [a]}",
        _ONE_SOURCE,
    ),
    ("{mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}", "client CA bundle"),
    ("{mode: ISTIO_MUTUAL, credentialNames: [a]}", "ISTIO_MUTUAL TLS cannot have associated "),
    (
        "{mode: ISTIO_MUTUAL, tlsCertificates: [{serverCertificate: /a.pem}]}",
        "ISTIO_MUTUAL TLS cannot have associated tlsCertificates",
    ),
    (
        "{mode: PASSTHROUGH, credentialName: c, caCrl: /crl.pem}",
        "CRL is not supported with credentialName. CRL has to be specified in the credential",
    ),
    (
        "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCrl: /crl.pem}",
        "CRL is not supported with SIMPLE TLS",
    ),
    # Istio warns about a third certificate; the CRD (maxItems: 2) refuses it first.
    (
        "{mode: SIMPLE, tlsCertificates: [{serverCertificate: a, privateKey: a}, "
        "{serverCertificate: b, privateKey: b}, {serverCertificate: c, privateKey: c}]}",
        "Too many: 3: must have at most 2 items",
    ),
]


@pytest.mark.parametrize(("tls", "message"), TLS_REFUSED)
def test_tls_options_istio_refuses_are_refused(tls: str, message: str) -> None:
    found = refusals(server(f"{{{HTTPS}, tls: {tls}}}"))
    assert any(f.startswith("spec.servers[0].tls") and message in m for f, m in found), found


def test_tls_cipher_suites_warn_as_istio_does() -> None:
    tls = (
        "{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_2, "
        "cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, NOT-A-CIPHER, AES128-SHA, AES128-SHA, "
        "'-AES256-SHA']}"
    )
    found = warnings(server(f"{{{HTTPS}, tls: {tls}}}"))
    assert any("ignoring invalid cipher suites: [NOT-A-CIPHER]" in w for w in found), found
    assert any("ignoring duplicate cipher suites: [AES128-SHA]" in w for w in found), found
    old_tls = "{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_1}"
    old = warnings(server(f"{{{HTTPS}, tls: {old_tls}}}"))
    assert any("TLS version below TLSV1_2 require setting compatible ciphers" in w for w in old)


def test_passthrough_with_certificates_warns_that_they_are_ignored() -> None:
    found = warnings(server(f"{{{HTTPS}, tls: {{mode: PASSTHROUGH, caCrl: /crl.pem}}}}"))
    assert any(
        "PASSTHROUGH mode does not use certificates, they will be ignored" in w for w in found
    )


# --- VirtualService tcp and tls routes (TestValidateVirtualService and friends) ----------------


def virtual_service(spec: str) -> str:
    return document("VirtualService", spec)


L4_REFUSED = [
    (  # missing tcp route
        "{hosts: [foo.bar], tcp: [{match: [{port: 999}]}]}",
        "spec.tcp[0].route",
        "TCP route is required",
    ),
    (  # missing tls route
        "{hosts: [foo.bar], tls: [{match: [{port: 999, sniHosts: [foo.bar]}]}]}",
        "spec.tls[0].route",
        "TLS route is required",
    ),
    (
        "{hosts: [foo.bar], tls: [{match: [], route: [{destination: {host: foo.baz}}]}]}",
        "spec.tls[0].match",
        "TLS route must have at least one match condition",
    ),
    (
        "{hosts: [foo.bar], tls: [{match: [{port: 999, sniHosts: [foo.*.com]}], "
        "route: [{destination: {host: foo.baz}}]}]}",
        "spec.tls[0].match[0].sniHosts[0]",
        'domain name "foo.*.com" invalid (label "*" invalid)',
    ),
    (
        "{hosts: [foo.bar], tls: [{match: [{sniHosts: [other.com]}], "
        "route: [{destination: {host: foo.baz}}]}]}",
        "spec.tls[0].match[0].sniHosts[0]",
        'SNI host "other.com" is not a compatible subset of any of the virtual service hosts: '
        "[foo.bar]",
    ),
    (
        "{hosts: ['*.bar.com'], tls: [{match: [{sniHosts: ['*.com']}], "
        "route: [{destination: {host: foo.baz}}]}]}",
        "spec.tls[0].match[0].sniHosts[0]",
        'SNI host "*.com" is not a compatible subset',
    ),
    (
        "{hosts: [foo.bar], tcp: [{match: [{destinationSubnets: [1.2.3.4/99]}], "
        "route: [{destination: {host: foo.baz}}]}]}",
        "spec.tcp[0].match[0].destinationSubnets[0]",
        "1.2.3.4/99 is not a valid CIDR block",
    ),
    (
        "{hosts: [foo.bar], tcp: [{match: [{destinationSubnets: [example.com]}], "
        "route: [{destination: {host: foo.baz}}]}]}",
        "spec.tcp[0].match[0].destinationSubnets[0]",
        "example.com is not a valid IP",
    ),
    (
        "{hosts: [foo.bar], tcp: [{match: [{port: 70000}], route: [{destination: {host: a}}]}]}",
        "spec.tcp[0].match[0].port",
        "port number 70000 must be in the range 1..65535",
    ),
    (
        "{hosts: [foo.bar], tcp: [{match: [{gateways: [ns/]}], route: [{destination: {host: a}}]}]"
        "}",
        "spec.tcp[0].match[0].gateways[0]",
        "config namespace and gateway name cannot be empty",
    ),
    (
        "{hosts: [foo.bar], tcp: [{match: [{sourceLabels: {'a b': c}}], "
        "route: [{destination: {host: a}}]}]}",
        "spec.tcp[0].match[0].sourceLabels.a b",
        'invalid label key "a b"',
    ),
    (
        "{hosts: [foo.bar], tcp: [{route: [{destination: {host: '*'}}]}]}",
        "spec.tcp[0].route[0].destination.host",
        "invalid destination host *",
    ),
    (
        "{hosts: [foo.bar], tcp: [{route: [{destination: {host: a, subset: v_1}}]}]}",
        "spec.tcp[0].route[0].destination.subset",
        "subset name is invalid: v_1",
    ),
    (
        "{hosts: [foo.bar], tcp: [{route: [{destination: {host: a, port: {number: 70000}}}]}]}",
        "spec.tcp[0].route[0].destination.port.number",
        "port number 70000 must be in the range 1..65535",
    ),
    (
        "{hosts: [foo.bar], tcp: [{route: [{destination: {host: a}, weight: -1}]}]}",
        "spec.tcp[0].route[0].weight",
        "weight -1 < 0",
    ),
    (
        "{hosts: [foo.bar], tcp: [{route: [{destination: {host: a}, weight: 0}, "
        "{destination: {host: b}, weight: 0}]}]}",
        "spec.tcp[0].route",
        "total destination weight = 0",
    ),
    (
        "{hosts: [foo.bar], tcp: [{match: [null], route: [{destination: {host: a}}]}]}",
        "spec.tcp[0].match[0]",
        "must be a mapping, got null",  # the CRD refuses a null element before the webhook
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), L4_REFUSED)
def test_tcp_and_tls_routes_istio_refuses_are_refused(spec: str, field: str, message: str) -> None:
    found = refusals(virtual_service(spec))
    assert any(f == field and message in m for f, m in found), found


def test_istio_s_auto_generated_sni_names_are_accepted_on_a_gateway() -> None:
    name = "outbound_.15010_._.istiod.istio-system.svc.cluster.local"
    spec = (
        f"{{hosts: ['{name}'], gateways: [ns1/gateway], tls: [{{match: [{{sniHosts: ['{name}']}}], "
        "route: [{destination: {host: istio.istio-system.svc.cluster.local}}]}]}"
    )
    load_text(virtual_service(spec), "t.yaml")


def test_an_ip_as_sni_host_is_accepted_with_istio_s_warning() -> None:
    spec = (
        "{hosts: [foo.bar], tls: [{match: [{port: 999, sniHosts: [1.1.1.1]}], "
        "route: [{destination: {host: foo.baz}}]}]}"
    )
    found = warnings(virtual_service(spec))
    assert any(
        'using an IP address ("1.1.1.1") goes against SNI spec and most clients do not support '
        "this" in w
        for w in found
    ), found


JWT_ROUTE = (
    "http:\n- match: [{uri: {prefix: /}, headers: {'@request.auth.claims.foo': {exact: bar}}}]\n"
    "  route: [{destination: {host: foo.baz}}]\n"
)


def test_jwt_claim_routes_are_refused_on_the_mesh() -> None:
    found = refusals(virtual_service(f"hosts: [foo.bar]\ngateways: [mesh]\n{JWT_ROUTE}"))
    assert (
        "spec.http[0].match[0].headers.@request.auth.claims.foo",
        "JWT claim based routing (key: @request.auth.claims.foo) is only supported for gateway, "
        "found no gateways: [mesh]",
    ) in found


def test_jwt_claim_routes_on_a_gateway_apply_with_a_warning() -> None:
    found = warnings(virtual_service(f"hosts: [foo.bar]\ngateways: [ns/gw]\n{JWT_ROUTE}"))
    assert any("it validates no JWT, the match never holds" in w for w in found), found


# --- ServiceEntry DYNAMIC_DNS and the rest of ValidateServiceEntry ------------------------------

SE_REFUSED = [
    (
        "{hosts: ['*.example.com'], resolution: DYNAMIC_DNS, addresses: [1.2.3.4], "
        "ports: [{number: 80, name: http, protocol: HTTP}]}",
        "spec.addresses",
        "addresses cannot be set for resolution type DYNAMIC_DNS",
    ),
    (
        "{hosts: ['*.example.com'], resolution: DYNAMIC_DNS, endpoints: [{address: a.b}], "
        "ports: [{number: 80, name: http, protocol: HTTP}]}",
        "spec.endpoints",
        "endpoints cannot be set for resolution type DYNAMIC_DNS",
    ),
    (
        "{hosts: ['*.example.com'], resolution: DYNAMIC_DNS, "
        "ports: [{number: 5432, name: pg, protocol: TCP}]}",
        "spec.ports[0].protocol",
        "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
    ),
    (
        "{hosts: [example.com], resolution: DYNAMIC_DNS, "
        "ports: [{number: 80, name: http, protocol: HTTP}]}",
        "spec.hosts",
        "host must be wildcarded for resolution mode DYNAMIC_DNS",
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), SE_REFUSED)
def test_service_entry_rules_istio_refuses_are_refused(spec: str, field: str, message: str) -> None:
    found = refusals(document("ServiceEntry", spec))
    assert any(f == field and message in m for f, m in found), found


def test_several_hosts_with_addresses_and_a_tcp_port_warn_as_istio_does() -> None:
    spec = (
        "{hosts: [a.example.com, b.example.com], addresses: [10.0.0.1], resolution: DNS, "
        "ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: tcp, protocol: TCP}]}"
    )
    with pytest.raises(ConfigErrors) as caught:  # several hosts with a TCP port: refused as well
        load_text(document("ServiceEntry", spec), "t.yaml")
    assert "multiple hosts provided with non-HTTP, non-TLS ports" in str(caught.value)


def test_destination_rule_selector_without_labels_warns_as_istio_does() -> None:
    found = warnings(document("DestinationRule", "{host: reviews, workloadSelector: {}}"))
    assert any("workload selector specified without labels" in w for w in found), found


# --- rules and matches that can never be used (analyzeUnreachableHTTPRules) ----------------------

UNREACHABLE = [
    (
        "http:\n- route: [{destination: {host: a}}]\n- route: [{destination: {host: b}}]\n",
        "virtualService rule #1 not used (only the last rule can have no matches)",
    ),
    (
        "http:\n- route: [{destination: {host: a}}]\n"
        "- name: late\n  match: [{uri: {prefix: /x}}]\n  route: [{destination: {host: b}}]\n",
        'virtualService rule "late" not used (route without matches defined before)',
    ),
    (
        "http:\n- match: [{uri: {exact: /a}}]\n  route: [{destination: {host: a}}]\n"
        "- match: [{name: again, uri: {exact: /a}}]\n  route: [{destination: {host: b}}]\n",
        'virtualService rule #1 match "again" is not used (duplicate/overlapping match in rule #0)',
    ),
    (
        "http:\n- match: [{uri: {exact: /a}}]\n  route: [{destination: {host: a}}]\n"
        "- match: [{uri: {exact: /a}}]\n  route: [{destination: {host: b}}]\n",
        "virtualService rule #1 not used (all matches used by prior rules)",
    ),
    (
        "http:\n- match: [{uri: {prefix: /api/v1/product}}]\n  route: [{destination: {host: a}}]\n"
        "- match: [{uri: {prefix: /api/v1/products}, method: {exact: GET}}]\n"
        "  route: [{destination: {host: b}}]\n",
        "virtualService rule #1 match #0 of prefix /api/v1/products is not used "
        "(duplicate/overlapping match in rule #0 of prefix /api/v1/product on #0)",
    ),
    (
        "tcp:\n- route: [{destination: {host: a}}]\n- route: [{destination: {host: b}}]\n",
        "virtualService rule #1 not used (only the last rule can have no matches)",
    ),
]


@pytest.mark.parametrize(("routes", "message"), UNREACHABLE)
def test_rules_that_can_never_be_used_are_warned_about_as_istio_does(
    routes: str, message: str
) -> None:
    found = warnings(virtual_service(f"hosts: [foo.bar]\n{routes}"))
    assert f"VirtualService default/r: {message}" in found, found


def test_a_narrower_method_after_a_prefix_is_still_reachable() -> None:
    routes = (
        "http:\n- match: [{uri: {prefix: /api}, method: {exact: POST}}]\n"
        "  route: [{destination: {host: a}}]\n"
        "- match: [{uri: {prefix: /api/v1}}]\n  route: [{destination: {host: b}}]\n"
    )
    assert not [
        w for w in warnings(virtual_service(f"hosts: [foo.bar]\n{routes}")) if "not used" in w
    ]


# --- a workload behind another network's gateway: no address, a network -------------------------

MULTI_NETWORK = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: here}
spec: {address: 127.0.0.1, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: there}
spec: {network: network-2, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}, {network: network-2}]
"""


def test_a_workload_with_a_network_and_no_address_applies_and_gets_no_endpoint() -> None:
    from shadowmesh.routing.inventory import build_inventory

    loaded = load_text(MULTI_NETWORK, "t.yaml")
    notes = [w for d in loaded.documents for w in d.warnings if "address is unset" in w]
    assert len(notes) == 2 and 'address is unset with network "network-2"' in notes[0]
    inventory = build_inventory([d.resource for d in loaded.documents])
    reviews = inventory.services["reviews.default.svc.cluster.local"].members[9080]
    assert [m.endpoint.address for m in reviews] == ["127.0.0.1"]
    api = inventory.services["api.example.com"].members[80]
    assert [m.endpoint.address for m in api] == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (
            "istio.io/dry-run",
            "default/r has unsupported annotation istio.io/dry-run, please remove the annotation",
        ),
        (
            "internal.istio.io/webhook-always-reject",
            '"internal.istio.io/webhook-always-reject" annotation found, rejecting',
        ),
        (
            "internal.istio.io/parents",
            '"internal.istio.io/parents" annotation found, this may not be set by users',
        ),
    ],
)
def test_annotations_istio_s_webhook_refuses_are_refused(annotation: str, message: str) -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: r, annotations: {{'{annotation}': 'true'}}}}\nspec: {{host: reviews}}\n"
    )
    assert refusals(text) == [(f"metadata.annotations.{annotation}", message)]


def test_a_unix_socket_server_is_accepted_and_not_opened() -> None:
    from shadowmesh.routing.table import RouteTable

    text = server(
        "{hosts: [foo.bar.com], port: {number: 0, name: http, protocol: http}, "
        "bind: 'unix://@foobar'}"
    )
    (loaded,) = load_text(text, "t.yaml").documents
    assert any("unix domain socket, which shadowmesh does not serve" in w for w in loaded.warnings)
    assert RouteTable.compile([loaded.resource]).ingress == {}  # no listener on port 0
