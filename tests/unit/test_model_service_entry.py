"""ServiceEntry: Istio's validation, its endpoints by resolution, and the DNS resolver."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from shadowmesh.control.controller import Controller
from shadowmesh.control.dns import DnsLookup, Resolver, system_lookup
from shadowmesh.control.store import Store
from shadowmesh.errors import ConfigErrors
from shadowmesh.model.load import load_text
from shadowmesh.model.resources import ServiceEntry
from shadowmesh.routing.decision import Failure, Forward
from shadowmesh.routing.ingress import GATEWAY_KEY
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import SimpleRequest

# Istio's egress task, as written there.
HTTPBIN_ORG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext}
spec:
  hosts: [httpbin.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
  location: MESH_EXTERNAL
"""


def entry(text: str) -> ServiceEntry:
    (document,) = load_text(text, "se.yaml").documents
    assert isinstance(document.resource, ServiceEntry)
    return document.resource


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "se.yaml")
    return [e.message for e in caught.value.errors]


def test_istio_s_egress_service_entry_loads() -> None:
    se = entry(HTTPBIN_ORG)
    assert (se.hosts, se.resolution, se.location) == (("httpbin.org",), "DNS", "MESH_EXTERNAL")
    assert [(p.number, p.name, p.protocol) for p in se.ports] == [(80, "http", "HTTP")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # The CRD's rules first, in Kubernetes' wording with Istio's CEL messages.
        (
            ("hosts: [httpbin.org]", "hosts: ['*']"),
            'Invalid value: "string": hostname cannot be wildcard',
        ),
        (("hosts: [httpbin.org]", "hosts: []"), "Invalid value: 0: should have at least 1 items"),
        (("hosts: [httpbin.org]", "hosts: null"), "Required value"),
        (("protocol: HTTP", "protocol: QUIC"), "unsupported protocol: QUIC"),
        (
            ("resolution: DNS", "resolution: DNZ"),
            'Unsupported value: "DNZ": supported values: "NONE"',
        ),
        (
            ("resolution: DNS", "resolution: NONE\n  endpoints: [{address: 1.2.3.4}]"),
            'Invalid value: "object": NONE mode cannot set endpoints',
        ),
        (
            ("resolution: DNS", "resolution: DNS\n  addresses: [10.0.0.0/8]"),
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        ),
        (
            ("resolution: DNS", "resolution: STATIC\n  endpoints: [{address: example.com}]"),
            'endpoint address "example.com" is not a valid IP address',
        ),
        (
            ("resolution: DNS", "resolution: DNS\n  endpoints: [{address: a, ports: {web: 1}}]"),
            "endpoint port 1 is not defined by the service entry",
        ),
        (
            (
                "resolution: DNS",
                "resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: a.b}, {address: c.d}]",
            ),
            'Invalid value: "object": DNS_ROUND_ROBIN mode cannot have multiple endpoints',
        ),
        (
            ("  - {number: 80, name: http, protocol: HTTP}", "  - {number: 80, name: http}\n" * 2),
            'Duplicate value: map[string]interface {}{"name":"http"}',
        ),
        (
            (
                "resolution: DNS",
                "resolution: STATIC\n  workloadSelector: {labels: {a: b}}\n"
                "  endpoints: [{address: 1.2.3.4}]",
            ),
            'Invalid value: "object": only one of WorkloadSelector or Endpoints can be set',
        ),
        (("resolution: DNS", "resolution: DNS\n  exportTo: ['*', '.']"), "cannot have both public"),
    ],
)
def test_istio_s_validation_rules_with_its_wording(change: tuple[str, str], message: str) -> None:
    found = errors(HTTPBIN_ORG.replace(*change))
    assert any(message in m for m in found), found


def route(table: RouteTable, authority: str) -> str:
    decision = table.route(None, SimpleRequest(authority=authority))
    if isinstance(decision, Failure):
        return f"{decision.status} {decision.flag}"
    assert isinstance(decision, Forward)
    return f"{decision.primary.cluster} {decision.primary.endpoint}"


def test_dns_endpoints_come_from_the_resolver_s_answers_never_a_lookup() -> None:
    resources = [d.resource for d in load_text(HTTPBIN_ORG, "se.yaml").documents]
    unresolved = RouteTable.compile(resources)
    assert unresolved.dns_names == frozenset({"httpbin.org"})
    assert route(unresolved, "httpbin.org") == "503 UH"
    table = RouteTable.compile(resources, dns={"httpbin.org": ("127.0.0.9", "127.0.0.10")})
    assert route(table, "httpbin.org").startswith("outbound|80||httpbin.org 127.0.0.")
    # ServiceEntry ports open no listener: they are reached through the outbound port.
    assert table.ports == frozenset()


def test_round_robin_takes_the_first_address_and_static_takes_endpoints() -> None:
    rr = HTTPBIN_ORG.replace("resolution: DNS", "resolution: DNS_ROUND_ROBIN")
    resources = [d.resource for d in load_text(rr, "se.yaml").documents]
    table = RouteTable.compile(resources, dns={"httpbin.org": ("127.0.0.9", "127.0.0.10")})
    assert {route(table, "httpbin.org") for _ in range(20)} == {
        "outbound|80||httpbin.org 127.0.0.9:80"
    }
    static = HTTPBIN_ORG.replace(
        "resolution: DNS",
        "resolution: STATIC\n  endpoints: [{address: 127.0.0.7, ports: {http: 8081}}]",
    ).replace("{number: 80, name: http, protocol: HTTP}", "{number: 80, name: http, targetPort: 9}")
    table = RouteTable.compile([d.resource for d in load_text(static, "s").documents])
    assert route(table, "httpbin.org") == "outbound|80||httpbin.org 127.0.0.7:8081"


# Istio's egress-gateway task's wildcard entry: resolution NONE, as most NONE entries are.
WIKIPEDIA = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wikipedia}
spec:
  hosts: ["*.wikipedia.org"]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8000, name: http-alt, protocol: HTTP, targetPort: 8080}
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8081, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-gateway}
spec:
  hosts: [en.wikipedia.org]
  gateways: [egress]
  http:
  - route:
    - destination: {host: "*.wikipedia.org", port: {number: 80}}
"""


def test_resolution_none_forwards_to_the_request_s_own_destination_never_a_lookup() -> None:
    table = RouteTable.compile([d.resource for d in load_text(WIKIPEDIA, "se.yaml").documents])
    # Nothing to resolve: Envoy's ORIGINAL_DST goes where the client was going.
    assert table.dns_names == frozenset()
    assert route(table, "de.wikipedia.org") == "outbound|80||*.wikipedia.org de.wikipedia.org:80"
    assert route(table, "EN.wikipedia.org:80") == "outbound|80||*.wikipedia.org en.wikipedia.org:80"
    # targetPort replaces the port (Envoy's upstream_port_override).
    assert route(table, "en.wikipedia.org:8000") == (
        "outbound|8000||*.wikipedia.org en.wikipedia.org:8080"
    )
    # A Gateway has no original destination: istiod falls back to EDS, which has none here.
    decision = table.route(GATEWAY_KEY + 8081, SimpleRequest(authority="en.wikipedia.org"))
    assert isinstance(decision, Failure) and (decision.status, decision.flag) == (503, "UH")


def test_a_workload_selector_selects_workload_entries_of_its_namespace() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec: {address: 127.0.0.5, labels: {app: legacy}, ports: {http: 7001}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: elsewhere}
spec: {address: 127.0.0.6, labels: {app: legacy}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy}
spec:
  hosts: [legacy.internal]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: legacy}}
"""
    table = RouteTable.compile([d.resource for d in load_text(text, "t").documents])
    assert route(table, "legacy.internal") == "outbound|80||legacy.internal 127.0.0.5:7001"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_resolver_refreshes_by_ttl_within_bounds_and_keeps_answers_on_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers: dict[str, object] = {
        "a.example": (("10.0.0.1",), 1.0),
        "b.example": (("10.0.0.2",), None),
    }
    calls: list[str] = []

    def lookup(name: str) -> tuple[tuple[str, ...], float | None]:
        calls.append(name)
        answer = answers[name]
        if isinstance(answer, OSError):
            raise answer
        return answer  # type: ignore[return-value]

    clock = Clock()
    resolver = Resolver(
        lambda: None, lookup=lookup, min_refresh=5, max_refresh=100, default_ttl=60, clock=clock
    )
    resolver.want({"a.example", "b.example"})
    assert resolver.resolve_due() is True
    assert resolver.snapshot() == {"a.example": ("10.0.0.1",), "b.example": ("10.0.0.2",)}
    # a's TTL of 1 s is raised to the 5 s minimum; b, with no TTL, waits the default 60 s.
    clock.now = 4.9
    assert resolver.resolve_due() is False and len(calls) == 2
    clock.now = 5.0
    answers["a.example"] = OSError("Name or service not known")
    caplog.set_level(logging.WARNING, "shadowmesh.dns")
    for step in range(3):  # three failures: counted each time, logged once
        clock.now = 5.0 + 5 * step
        assert resolver.resolve_due() is False
    assert resolver.failures["a.example"] == 3
    assert resolver.snapshot()["a.example"] == ("10.0.0.1",)  # the last good answer is kept
    assert len([r for r in caplog.records if "lookup of a.example failed" in r.message]) == 1
    answers["a.example"] = (("10.0.0.3",), 1000.0)
    clock.now = 20.0
    assert resolver.resolve_due() is True
    assert resolver.snapshot()["a.example"] == ("10.0.0.3",)
    assert any("a.example resolves again" in r.message for r in caplog.records)
    assert resolver.next_due() == 60.0  # b's default TTL comes before a's clamped 100 s
    resolver.want({"b.example"})
    assert "a.example" not in resolver.snapshot()


def test_the_system_lookup_resolves_localhost() -> None:
    addresses, ttl = system_lookup("localhost")
    assert "127.0.0.1" in addresses and ttl is None


def test_an_unresolved_table_then_a_resolved_one_through_the_controller(tmp_path: Path) -> None:
    # The controller compiles with the resolver's snapshot and tells it what to resolve.
    tables: list[RouteTable] = []
    store = Store(str(tmp_path / "state"))
    controller = Controller(store, tables.append)
    resolver = Resolver(controller.refresh, lookup=lambda n: (("127.0.0.1",), None))
    controller.dns = resolver
    controller.start()
    controller.apply_files([("se.yaml", HTTPBIN_ORG)])
    assert route(tables[-1], "httpbin.org") == "503 UH"
    assert resolver.resolve_due() is True
    controller.refresh()
    assert route(tables[-1], "httpbin.org") == "outbound|80||httpbin.org 127.0.0.1:80"
    store.close()


def test_a_service_entry_s_addresses_reach_its_host() -> None:
    text = HTTPBIN_ORG.replace(
        "resolution: DNS",
        "resolution: STATIC\n  addresses: [10.9.8.7, 'fd00::7', 10.0.0.0/8]\n"
        "  endpoints: [{address: 127.0.0.7}]",
    )
    table = RouteTable.compile([d.resource for d in load_text(text, "se.yaml").documents])
    assert route(table, "10.9.8.7") == "outbound|80||httpbin.org 127.0.0.7:80"
    assert route(table, "[fd00::7]:80") == "outbound|80||httpbin.org 127.0.0.7:80"
    assert route(table, "10.1.2.3") == "404 NR"  # a CIDR is no Host


def test_a_service_entry_exported_elsewhere_is_not_there_for_a_route() -> None:
    text = (
        HTTPBIN_ORG.replace(
            "resolution: DNS",
            "resolution: STATIC\n  endpoints: [{address: 127.0.0.7}]\n  exportTo: [other]",
        )
        + """\
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext}
spec:
  hosts: [api.local]
  http:
  - route: [{destination: {host: httpbin.org}}]
"""
    )
    table = RouteTable.compile([d.resource for d in load_text(text, "se.yaml").documents])
    assert route(table, "api.local:80") == "503 NC"
    shown = text.replace("exportTo: [other]", "exportTo: ['.']")
    table = RouteTable.compile([d.resource for d in load_text(shown, "se.yaml").documents])
    assert route(table, "api.local:80") == "outbound|80||httpbin.org 127.0.0.7:80"


class TinyDns:
    """A DNS server on 127.0.0.1 (UDP) answering A queries from a table, with a TTL each."""

    def __init__(self, records: dict[str, tuple[str, int]]) -> None:
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            if name not in self.records:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                address, ttl = self.records[name]
                reply.answer.append(dns.rrset.from_text(question.name, ttl, "IN", "A", address))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def test_dns_answers_carry_their_ttl_and_the_hosts_file_comes_first(tmp_path: Path) -> None:
    server = TinyDns({"api.test": ("127.0.0.9", 7), "slow.test": ("127.0.0.10", 86400)})
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n# 10.0.0.1 api.test\n")
    try:
        lookup = DnsLookup(str(hosts), nameservers=["127.0.0.1"], port=server.port)
        assert lookup("api.test") == (("127.0.0.9",), 7.0)
        assert lookup("localhost") == (("127.0.0.1", "::1"), None)
        with pytest.raises(OSError, match="NXDOMAIN"):
            lookup("missing.test")
        # The resolver keeps an answer for its TTL, within its bounds.
        clock = Clock()
        resolver = Resolver(
            lambda: None, lookup=lookup, min_refresh=1, max_refresh=3600, clock=clock
        )
        resolver.want({"api.test", "slow.test"})
        assert resolver.resolve_due() is True
        assert resolver.next_due() == 7.0
        clock.now = 7.0
        resolver.resolve_due()
        assert resolver.next_due() == 14.0  # api.test again after 7 s; slow.test capped at 3600
    finally:
        server.close()
