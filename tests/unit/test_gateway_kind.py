"""Istio's Gateway kind: Istio's own gateway files load, validation speaks Istio's words, and
VirtualServices route on the ingress ports their Gateways open, the mesh on the Service ports."""

from __future__ import annotations

import random

import pytest

from shadowmesh.errors import ConfigErrors
from shadowmesh.model.load import load_text
from shadowmesh.model.resources import Gateway
from shadowmesh.routing.decision import Failure, Forward
from shadowmesh.routing.ingress import GATEWAY_KEY
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import SimpleRequest

# samples/bookinfo/networking/bookinfo-gateway.yaml, as Istio ships it.
BOOKINFO_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  # If you installed Istio using Helm following the standard documentation, this would be
  # "istio=ingress"
  selector:
    istio: ingressgateway # use istio default controller
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"""
PRODUCTPAGE = """\
apiVersion: v1
kind: Service
metadata: {name: productpage}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: productpage}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1}
spec: {address: 127.0.0.1, ports: {http: 19080}, labels: {app: productpage, version: v1}}
"""
PRODUCTPAGE_CLUSTER = "outbound|9080||productpage.default.svc.cluster.local"


def table_of(*texts: str) -> RouteTable:
    resources = [d.resource for t in texts for d in load_text(t, "t.yaml").documents]
    return RouteTable.compile(resources, rng=random.Random(3))


def answer(table: RouteTable, listener: int | None, path: str = "/", host: str = "x") -> str:
    decision = table.route(listener, SimpleRequest(authority=host, path=path))
    if isinstance(decision, Failure):
        return f"{decision.status} {decision.flag} {decision.location}".strip()
    assert isinstance(decision, Forward)
    return decision.primary.cluster


def test_bookinfo_s_gateway_file_applies_and_routes_on_its_port() -> None:
    table = table_of(PRODUCTPAGE, BOOKINFO_GATEWAY)
    assert set(table.ingress) == {8080} and table.ingress[8080].tls == ()
    ingress = GATEWAY_KEY + 8080
    assert answer(table, ingress, "/productpage", "bookinfo.example.com") == PRODUCTPAGE_CLUSTER
    assert answer(table, ingress, "/other", "anything") == "404 NR"
    # On the mesh (the Service's own port) the gateway-bound VirtualService does not apply.
    assert answer(table, 9080, "/other", "productpage:9080") == PRODUCTPAGE_CLUSTER


# samples/httpbin/httpbin-gateway.yaml, as Istio ships it.
HTTPBIN_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  # If you installed Istio using Helm following the standard documentation, this would be
  # "istio=ingress"
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "*"
  gateways:
  - httpbin-gateway
  http:
  - route:
    - destination:
        host: httpbin
        port:
          number: 8000
"""


def test_httpbin_s_gateway_file_applies() -> None:
    documents = load_text(HTTPBIN_GATEWAY, "httpbin-gateway.yaml").documents
    gateway = documents[0].resource
    assert isinstance(gateway, Gateway)
    assert [(s.port, s.protocol, s.hosts) for s in gateway.servers] == [(80, "HTTP", (("*", "*"),))]


def test_a_virtual_service_bound_to_mesh_and_gateway_routes_both_match_gateways_split() -> None:
    both = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage, bookinfo.example.com]
  gateways: [mesh, bookinfo-gateway]
  http:
  - match: [{gateways: [bookinfo-gateway], uri: {prefix: /public}}]
    route: [{destination: {host: productpage}}]
  - match: [{gateways: [mesh]}]
    route: [{destination: {host: productpage}}]
"""
    gateway = BOOKINFO_GATEWAY.split("---")[0]
    table = table_of(PRODUCTPAGE, gateway, both)
    ingress = GATEWAY_KEY + 8080
    assert answer(table, ingress, "/public/x", "bookinfo.example.com") == PRODUCTPAGE_CLUSTER
    assert answer(table, ingress, "/private", "bookinfo.example.com") == "404 NR"  # mesh match
    assert answer(table, ingress, "/public", "other.example.com") == "404 NR"  # not its host
    assert answer(table, 9080, "/private", "productpage:9080") == PRODUCTPAGE_CLUSTER
    assert answer(table, 9080, "/public", "productpage:9080") == PRODUCTPAGE_CLUSTER


def test_server_hosts_with_namespace_prefixes_admit_only_those_namespaces() -> None:
    gateway = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["team-a/*.example.com", "./admin.example.com"]
"""
    route = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: r, namespace: {ns}}}
spec:
  hosts: ["{host}"]
  gateways: [istio-system/edge]
  http: [{{route: [{{destination: {{host: productpage.default.svc.cluster.local}}}}]}}]
"""
    table = table_of(
        PRODUCTPAGE,
        gateway,
        route.format(ns="team-a", host="shop.example.com"),
        route.format(ns="team-b", host="blog.example.com").replace("name: r", "name: b"),
        route.format(ns="istio-system", host="admin.example.com").replace("name: r", "name: c"),
    )
    ingress = GATEWAY_KEY + 8080
    assert answer(table, ingress, host="shop.example.com") == PRODUCTPAGE_CLUSTER
    assert answer(table, ingress, host="blog.example.com") == "404 NR"  # team-b not admitted
    assert answer(table, ingress, host="admin.example.com") == PRODUCTPAGE_CLUSTER


def test_https_redirect_answers_301_to_https() -> None:
    gateway = BOOKINFO_GATEWAY.replace(
        '    hosts:\n    - "*"\n---',
        '    hosts:\n    - "*"\n    tls: {httpsRedirect: true}\n---',
        1,
    )
    table = table_of(PRODUCTPAGE, gateway)
    got = answer(table, GATEWAY_KEY + 8080, "/productpage?a=1", "bookinfo.example.com:8080")
    # As Envoy's createSslRedirectPath: the Host as sent, its port included.
    assert got == "301 - https://bookinfo.example.com:8080/productpage?a=1"


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (
            "{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com]}",
            "server must have TLS settings for HTTPS/TLS protocols",
        ),
        (
            "{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], "
            "tls: {mode: SIMPLE}}",
            "SIMPLE TLS requires a server certificate",
        ),
        (
            "{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], "
            "tls: {mode: MUTUAL, serverCertificate: a, privateKey: b}}",
            "MUTUAL TLS requires a client CA bundle",
        ),
        (
            "{port: {number: 80, name: http, protocol: HTTP}, hosts: [a.com], "
            "tls: {mode: SIMPLE, serverCertificate: a, privateKey: b}}",
            "server cannot have TLS settings for plain text HTTP ports",
        ),
        (
            "{port: {number: 80, name: http, protocol: HTTP}, hosts: []}",
            "server config must contain at least one host",
        ),
        (
            "{port: {number: 80, name: http, protocol: HTTQ}, hosts: [a.com]}",
            'invalid protocol "HTTQ"',
        ),
        # The CRD requires the name (Required value); the webhook refuses it empty.
        ("{port: {number: 80, protocol: HTTP, name: ''}, hosts: [a.com]}", "port name must be set"),
        ("{port: {number: 80, protocol: HTTP}, hosts: [a.com]}", "Required value"),
        (
            "{port: {number: 80, name: http, protocol: HTTP}, hosts: [bad_ns/a.com]}",
            'invalid namespace value "bad_ns" in gateway',
        ),
        (
            "{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], "
            "tls: {mode: SIMPLE, credentialName: c, serverCertificate: a, privateKey: b}}",
            "only one of credential_name, credential_names, server_certificate/private_key",
        ),
    ],
)
def test_gateway_validation_speaks_istio_s_words(server: str, message: str) -> None:
    head = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
    text = f"{head}spec:\n  servers:\n  - {server}\n"
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "g.yaml")
    found = [e.message for e in caught.value.errors]
    assert any(message in m for m in found), found


def test_passthrough_servers_are_warned_as_not_acted_on() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g}
spec:
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ["*.example.com"]
  - port: {number: 15443, name: tls-auto, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
"""
    (document,) = load_text(text, "g.yaml").documents
    notes = [w for w in document.warnings if "PASSTHROUGH is not acted on" in w]
    assert len(notes) == 2
    assert RouteTable.compile([document.resource]).ingress == {}


def test_analyze_names_a_missing_gateway_and_hosts_no_server_admits() -> None:
    from shadowmesh.routing.analyze import analyze

    vs = BOOKINFO_GATEWAY.split("---")[1]
    resources = [d.resource for t in (PRODUCTPAGE, vs) for d in load_text(t, "t").documents]
    messages = [m for _, m in analyze(resources)]
    assert 'Referenced gateway not found: "bookinfo-gateway"' in messages
    narrow = BOOKINFO_GATEWAY.replace(
        '    hosts:\n    - "*"\n---', '    hosts:\n    - "a.com"\n---'
    )
    narrow = narrow.replace('  hosts:\n  - "*"\n  gateways', '  hosts:\n  - "b.com"\n  gateways')
    resources = [d.resource for t in (PRODUCTPAGE, narrow) for d in load_text(t, "t").documents]
    assert [m for _, m in analyze(resources) if "IST" not in m] == [
        "one or more host [b.com] defined in VirtualService default/bookinfo not found in Gateway "
        "default/bookinfo-gateway."
    ]
    ok = [d.resource for t in (PRODUCTPAGE, BOOKINFO_GATEWAY) for d in load_text(t, "t").documents]
    assert analyze(ok) == []


def test_the_config_dump_shows_the_ingress_ports_and_their_hosts() -> None:
    dump = table_of(PRODUCTPAGE, BOOKINFO_GATEWAY).describe()
    (ingress,) = dump["ingress"]
    assert (ingress["port"], ingress["tls"], ingress["httpsRedirect"]) == (8080, [], False)
    assert [v["domains"] for v in ingress["virtualHosts"]] == [["*"]]
    assert ingress["virtualHosts"][0]["source"] == "VirtualService default/bookinfo"


def test_a_port_with_tls_and_plain_servers_is_reported() -> None:
    from shadowmesh.routing.analyze import analyze_messages

    text = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: secure}
spec:
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}
    hosts: ["a.example.com"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: plain}
spec:
  servers:
  - port: {number: 8443, name: http, protocol: HTTP}
    hosts: ["b.example.com"]
"""
    resources = [d.resource for d in load_text(text, "g.yaml").documents]
    found = [m for m in analyze_messages(resources) if m.code == "SM0002"]
    assert [m.key[2] for m in found] == ["secure", "plain"]
    assert "plain-text ones (of default/plain)" in found[0].text
    assert RouteTable.compile(resources).ingress[8443].tls[0].gateway == "default/secure"


def test_istio_mutual_and_non_http_servers_are_warned_and_not_opened() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g}
spec:
  servers:
  - port: {number: 15443, name: https-mtls, protocol: HTTPS}
    tls: {mode: ISTIO_MUTUAL}
    hosts: ["*.local"]
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
"""
    (document,) = load_text(text, "g.yaml").documents
    assert any("ISTIO_MUTUAL is not acted on" in w for w in document.warnings), document.warnings
    assert any("(TCP) is not served by shadowmesh" in w for w in document.warnings)
    assert RouteTable.compile([document.resource]).ingress == {}
