"""Istio ``ServiceEntry``: hosts, ports and endpoints of services outside the Service registry.

Validation and wording follow Istio 1.31's ``ValidateServiceEntry`` (``pkg/config/validation``).
``resolution`` is read as Istio's cluster types are: STATIC takes ``endpoints`` (or the
WorkloadEntries ``workloadSelector`` selects), DNS and DNS_ROUND_ROBIN resolve each endpoint
address (or each host when there are none) off the request path, NONE forwards to the
request's own destination, as Envoy's ORIGINAL_DST (``routing.table``), and DYNAMIC_DNS is
accepted and warned about.
"""

from __future__ import annotations

from typing import Any, cast

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj, child, is_int, type_error
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import (
    Meta,
    Resolution,
    ServiceEntry,
    ServiceEntryEndpoint,
    ServiceEntryPort,
)
from shadowmesh.model.virtualservice import export_to_field
from shadowmesh.model.workload import address_in_network

SPEC_FIELDS = (
    "hosts",
    "addresses",
    "ports",
    "location",
    "resolution",
    "endpoints",
    "workload_selector",
    "export_to",
    "subject_alt_names",
)
_PORT_FIELDS = ("number", "protocol", "name", "target_port")
_ENDPOINT_FIELDS = (
    "address",
    "ports",
    "labels",
    "network",
    "locality",
    "weight",
    "service_account",
)
_LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")
_RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")
# Istio's protocol.Parse, case-insensitive; the classes decide which routes apply.
_PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
}
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
_UINT32_MAX = 2**32 - 1


def protocol_class(protocol: str) -> str:
    """Istio's protocol name for what a port says (``http`` -> ``HTTP``), "" if unsupported."""
    return _PROTOCOLS.get(protocol.lower(), "")


def parse_service_entry(spec: Obj, meta: Meta | None, issues: Issues) -> ServiceEntry | None:
    issues.tail = "the service entry works without it"
    resolution = cast(Resolution, _enum(spec, "resolution", _RESOLUTIONS, issues) or "NONE")
    location = _enum(spec, "location", _LOCATIONS, issues) or "MESH_EXTERNAL"
    hosts = _hosts(spec, resolution, issues)
    addresses = _addresses(spec, resolution, issues)
    ports = _ports(spec, addresses, issues)
    names = {p.name for p in ports}
    selector = _selector(spec, issues)
    endpoints = _endpoints(spec, resolution, names, issues)
    if selector is not None and spec.get("endpoints") is not None:
        issues.error(
            spec.at, "only one of WorkloadSelector or Endpoints is allowed in Service Entry"
        )
    _resolution_rules(spec, resolution, hosts, endpoints, selector, issues)
    _more_resolution_rules(spec, resolution, location, hosts, addresses, ports, issues)
    if resolution != "NONE" and len(hosts) > 1:
        if any(protocol_class(p.protocol) not in (*HTTP_PROTOCOLS, "HTTPS", "TLS") for p in ports):
            issues.error(spec.path("hosts"), "multiple hosts provided with non-HTTP, non-TLS ports")
    export_to = export_to_field(spec, meta, issues, service_entry=True)
    if spec.has("subjectAltNames"):
        spec.texts("subjectAltNames")
        issues.not_acted_on(spec.path("subjectAltNames"), "shadowmesh originates no mutual TLS")
    for port in ports:
        if protocol_class(port.protocol) not in HTTP_PROTOCOLS and port.protocol:
            issues.note(
                f"{spec.path('ports')} {port.name}",
                f"({port.protocol}) is not served by shadowmesh; only HTTP ports are routed",
            )
    if meta is None:
        return None
    return ServiceEntry(
        meta=meta,
        hosts=tuple(h.lower() for h in hosts),
        ports=ports,
        addresses=addresses,
        location=cast(Any, location),
        resolution=resolution,
        endpoints=endpoints,
        workload_selector=selector,
        export_to=export_to,
    )


def _enum(spec: Obj, name: str, allowed: tuple[str, ...], issues: Issues) -> str | None:
    value = spec.text(name)
    if value is None:
        return None
    if value not in allowed:
        choices = ", ".join(allowed)
        issues.error(spec.path(name), f'unsupported value "{value}": supported values: {choices}')
        return None
    return value


def _hosts(spec: Obj, resolution: str, issues: Issues) -> tuple[str, ...]:
    hosts = spec.texts("hosts")
    if not hosts:
        issues.error(spec.path("hosts"), "service entry must have at least one host")
    for index, host in enumerate(hosts):
        path = f"{spec.path('hosts')}[{index}]"
        if host == "*":
            issues.error(path, f"invalid host {host}")
            continue
        problem = validate.wildcard_domain(host)
        if problem:
            issues.error(path, problem)
        elif resolution != "DYNAMIC_DNS" and "*" in host and not host.startswith("*."):
            issues.note(path, f'partial wildcard "{host}" not allowed')
    return hosts


def _addresses(spec: Obj, resolution: str, issues: Issues) -> tuple[str, ...]:
    addresses = spec.texts("addresses")
    for index, address in enumerate(addresses):
        if problem := validate.ip_subnet(address):
            issues.error(f"{spec.path('addresses')}[{index}]", problem)
    if any("/" in a for a in addresses) and resolution not in ("NONE", "STATIC"):
        issues.error(
            spec.path("addresses"),
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        )
    return addresses


def _ports(spec: Obj, addresses: tuple[str, ...], issues: Issues) -> tuple[ServiceEntryPort, ...]:
    out: list[ServiceEntryPort] = []
    names: set[str] = set()
    numbers: set[int] = set()
    for path, value in spec.items("ports"):
        if value is None:
            issues.error(path, "service entry port may not be null")
            continue
        obj = Obj.of(value, path, issues, _PORT_FIELDS, proto=True)
        if obj is None:
            continue
        number = obj.integer("number") or 0
        name = obj.text("name") or ""
        protocol = obj.text("protocol") or ""
        target = obj.integer("targetPort") or 0
        if name in names:
            issues.error(obj.path("name"), f'service entry port name "{name}" already defined')
        if number in numbers:
            issues.error(obj.path("number"), f"service entry port {number} already defined")
        names.add(name)
        numbers.add(number)
        if target and (problem := validate.port_number(target)):
            issues.error(obj.path("targetPort"), problem)
        if not addresses and protocol in ("", "TCP"):
            issues.note(
                path,
                "addresses are required for ports serving TCP (or unset) protocol when IP "
                "Autoallocation is not enabled",
            )
        if problem := validate.port_name(name):
            issues.error(obj.path("name"), problem)
        if protocol and not protocol_class(protocol):
            issues.error(obj.path("protocol"), f"unsupported protocol: {protocol}")
        if problem := validate.port_number(number):
            issues.error(obj.path("number"), problem)
        out.append(ServiceEntryPort(number, name, protocol, target or None))
    return tuple(out)


def _selector(spec: Obj, issues: Issues) -> dict[str, str] | None:
    selector = spec.sub("workloadSelector", ("labels",))
    if selector is None:
        return None
    labels = selector.string_map("labels")
    check_labels(labels, selector.path("labels"), issues)
    if not labels:
        issues.note(
            spec.path("workloadSelector"),
            "service entry: workload selector specified without labels, will be applied to all "
            "services in namespace",
        )
    return labels


def _endpoints(
    spec: Obj, resolution: str, port_names: set[str], issues: Issues
) -> tuple[ServiceEntryEndpoint, ...]:
    out: list[ServiceEntryEndpoint] = []
    for path, value in spec.items("endpoints"):
        if value is None:
            issues.error(path, "endpoint cannot be nil")
            continue
        obj = Obj.of(value, path, issues, _ENDPOINT_FIELDS, proto=True)
        if obj is None:
            continue
        address = obj.text("address") or ""
        apath = obj.path("address")
        if not address and address_in_network(obj, issues):
            pass
        elif not address:
            issues.error(apath, "address is required")
        elif address.startswith("unix://"):
            issues.error(apath, "unix:// addresses are not supported by shadowmesh; use an IP")
        elif not validate.ip_address(address):
            if resolution == "STATIC":
                issues.error(apath, f'endpoint address "{address}" is not a valid IP address')
            elif validate.fqdn(address):
                issues.error(
                    apath, f'endpoint address "{address}" is not a valid FQDN or an IP address'
                )
        ports: dict[str, int] = {}
        for name, number in (obj.mapping("ports") or {}).items():
            ppath = child(obj.path("ports"), name)
            if not isinstance(name, str) or not is_int(number):
                type_error(issues, ppath, "a port number by port name", number)
                continue
            if name not in port_names:
                issues.error(ppath, f"endpoint port {number} is not defined by the service entry")
            if problem := validate.port_name(name) or validate.port_number(number):
                issues.error(ppath, problem)
            ports[name] = number
        labels = obj.string_map("labels")
        check_labels(labels, obj.path("labels"), issues)
        weight = obj.integer("weight")
        if weight is not None and not 0 <= weight <= _UINT32_MAX:
            issues.error(
                obj.path("weight"), f"weight {weight} must be in the range 0..{_UINT32_MAX}"
            )
        for name in ("network", "locality", "serviceAccount"):
            if obj.text(name) is not None:
                issues.not_acted_on(obj.path(name))
        out.append(ServiceEntryEndpoint(address, ports, labels, weight))
    return tuple(out)


def _resolution_rules(
    spec: Obj,
    resolution: str,
    hosts: tuple[str, ...],
    endpoints: tuple[ServiceEntryEndpoint, ...],
    selector: dict[str, str] | None,
    issues: Issues,
) -> None:
    path = spec.path("resolution")
    if resolution == "NONE":
        if endpoints:
            issues.error(
                spec.path("endpoints"), "no endpoints should be provided for resolution type none"
            )
        if selector is not None:
            issues.note(path, "workloadSelector should not be set when resolution mode is NONE")
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not endpoints:
            for host in hosts:
                problem = validate.fqdn(host)
                if problem:
                    issues.error(
                        spec.path("hosts"),
                        "hosts must be FQDN or contain only prefix wildcards if no endpoints are "
                        f"provided for resolution mode {resolution}, {problem}",
                    )
                    break
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            issues.error(
                spec.path("endpoints"),
                f"there must only be 0 or 1 endpoint for resolution mode {resolution}",
            )
    elif resolution == "DYNAMIC_DNS":
        for host in hosts:
            if not host.startswith("*"):
                issues.error(
                    spec.path("hosts"), f"host must be wildcarded for resolution mode {resolution}"
                )
        issues.not_acted_on(path, "its hosts get no endpoints")


_DYNAMIC_DNS_PROTOCOLS = frozenset({"HTTP", "TLS", "GRPC", "HTTP2"})
_TCP_PROTOCOLS = frozenset({"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"})


def _more_resolution_rules(
    spec: Obj,
    resolution: str,
    location: str,
    hosts: tuple[str, ...],
    addresses: tuple[str, ...],
    ports: tuple[ServiceEntryPort, ...],
    issues: Issues,
) -> None:
    """The rest of Istio 1.31's ``ValidateServiceEntry`` by resolution, with its wording."""
    # Istio's protocol.IsTCP: the protocols proxied as TCP (an unset one is not among them).
    tcp = [p for p in ports if protocol_class(p.protocol) in _TCP_PROTOCOLS]
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and addresses and tcp and len(hosts) > 1:
        issues.note(
            spec.path("hosts"),
            "service entry can not have more than one host specified simultaneously with "
            "address and tcp port",
        )
    if resolution != "DYNAMIC_DNS":
        return
    if addresses:
        issues.error(
            spec.path("addresses"),
            f"addresses cannot be set for resolution type {resolution}. HTTP route domains will "
            "only be generatedfrom the hosts field values",  # sic: Istio's message
        )
    if spec.get("endpoints") is not None:
        issues.error(
            spec.path("endpoints"),
            f"endpoints cannot be set for resolution type {resolution}. Destination IP address "
            "determined from hostsfield values",  # sic
        )
    for index, port in enumerate(ports):
        if protocol_class(port.protocol) not in _DYNAMIC_DNS_PROTOCOLS:
            issues.error(
                f"{spec.path('ports')}[{index}].protocol",
                "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type "
                f"{resolution}",
            )
    if location not in _LOCATIONS:
        issues.error(
            spec.path("location"),
            f"location must be MESH_EXTERNAL or MESH_INTERNAL for resolution type {resolution}",
        )
