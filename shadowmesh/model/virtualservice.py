"""Istio ``VirtualService``: hosts, and HTTP routes with weighted destinations and mirrors.

Validation and wording follow Istio's webhook (``pkg/config/validation``:
``ValidateVirtualService``, ``validateHTTPRoute``, ``validateHTTPRouteConflict``,
``validateHTTPMirrors``). Mirror percentages are resolved here once, by ``route.go``'s
``MirrorPercent``: ``mirrorPercentage`` wins over the deprecated ``mirrorPercent``; neither
means 100; an explicit 0 is kept as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from shadowmesh.model import httppolicy, shapes, validate
from shadowmesh.model.fields import Issues, Obj, type_error
from shadowmesh.model.gateway import check_gateway_name
from shadowmesh.model.matches import parse_matches
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import (
    Destination,
    HTTPRoute,
    Meta,
    MirrorPolicy,
    RouteDestination,
    VirtualService,
)
from shadowmesh.model.unreachable import warn_unreachable

SPEC_FIELDS = ("hosts", "gateways", "http", "tls", "tcp", "export_to")
HTTP_ROUTE_FIELDS = (
    "name",
    "match",
    "route",
    "redirect",
    "direct_response",
    "delegate",
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrors",
    "mirror_percent",
    "mirror_percentage",
    "cors_policy",
    "headers",
)
# Policy fields read, validated and compiled, that the data plane does not act on yet: each
# draws one warning until its wiring lands (the others are acted on).
ROUTE_NOT_ACTED_ON: tuple[str, ...] = ()  # retries: acted on too (proxy.stream)
DEPRECATED_MIRROR_PERCENT = (
    'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead'
)
_INT32_MAX = 2**31 - 1


def parse_virtual_service(spec: Obj, meta: Meta | None, issues: Issues) -> VirtualService | None:
    issues.tail = "the route works without it"
    gateways = _gateways(spec, issues)
    delegate = not spec.get("hosts")
    if delegate:
        # No hosts: a delegate, reached only through a root's ``delegate``.
        for name, what in (("gateways", "gateways"), ("tls", "tls route"), ("tcp", "tcp route")):
            if spec.get(name):
                issues.error(
                    spec.path(name), f"delegate virtual service must have no {what} specified"
                )
    to_gateway = bool(gateways) and "mesh" not in gateways
    hosts = _hosts(spec, issues, to_gateway)
    for name, shape in (("tcp", shapes.TCP_ROUTE), ("tls", shapes.TLS_ROUTE)):
        if spec.has(name):
            shapes.check(spec.get(name), [shape], spec.path(name), issues)
            issues.not_acted_on(spec.path(name), "only http routes are served")
    check_l4_routes(spec, hosts, gateways, issues)
    check_jwt_claim_routes(spec, to_gateway, gateways, issues)
    export_to = export_to_field(spec, meta, issues)
    if not (spec.get("http") or spec.get("tcp") or spec.get("tls")):
        issues.error(spec.path("http"), "http, tcp or tls must be provided in virtual service")
    routes = [_http_route(path, value, issues, delegate) for path, value in spec.items("http")]
    warn_unreachable(spec.data, issues)
    if meta is None or any(route is None for route in routes):
        return None
    return VirtualService(
        meta=meta,
        hosts=hosts,
        http=tuple(route for route in routes if route is not None),
        gateways=gateways,
        export_to=export_to,
    )


def export_to_field(
    spec: Obj, meta: Meta | None, issues: Issues, *, service_entry: bool = False
) -> tuple[str, ...]:
    """Istio's ``validateExportTo``: ".", "*", namespaces (and "~" for a ServiceEntry)."""
    entries = spec.texts("exportTo")
    path = spec.path("exportTo")
    namespace = meta.namespace if meta is not None else ""
    seen: set[str] = set()
    for entry in entries:
        key = namespace if entry == "." else entry
        if key in seen:
            if key != entry:
                issues.error(
                    path, f"duplicate entries in exportTo: . and current namespace {namespace}"
                )
            else:
                issues.error(path, f"duplicate entries in exportTo for entry {entry}")
            continue
        if entry == "~" and not service_entry:
            issues.error(path, "exportTo ~ (none) is not allowed for Istio configuration objects")
        elif entry not in (".", "*", "~") and not validate.istio_label(entry):
            issues.error(path, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
        seen.add(key)
    if "*" in seen and len(entries) > 1:
        issues.error(
            path, "cannot have both public (*) and non-public exportTo values for a resource"
        )
    if "~" in seen and len(entries) > 1:
        issues.error(path, "cannot export service entry to no one (~) and someone")
    return entries


def _hosts(spec: Obj, issues: Issues, to_gateway: bool) -> tuple[str, ...]:
    """Istio's host rules: ``*`` is refused only for a VirtualService bound to the mesh."""
    hosts = spec.texts("hosts")
    valid = True
    for index, host in enumerate(hosts):
        path = f"{spec.path('hosts')}[{index}]"
        problem = validate.wildcard_domain(host)
        if problem and to_gateway and host.startswith("outbound_") and _sni_routes(spec):
            problem = _auto_sni(host)  # Istio's rule for a gateway VirtualService with SNI routes
        if problem and not validate.ip_address(host):
            issues.error(path, problem)
            valid = False
        elif host == "*" and not to_gateway:
            issues.error(
                path,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            )
            valid = False
    if valid:
        _check_duplicate_hosts(hosts, spec.path("hosts"), issues)
    return hosts


def _check_duplicate_hosts(hosts: tuple[str, ...], path: str, issues: Issues) -> None:
    for i, first in enumerate(hosts):
        for second in hosts[i + 1 :]:
            if _overlap(first.lower(), second.lower()):
                issues.error(path, f"duplicate hosts in virtual service: {first} & {second}")


def _overlap(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: equal, or one wildcard covers the other."""
    if a.startswith("*") and b.startswith("*"):
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def _gateways(spec: Obj, issues: Issues) -> tuple[str, ...]:
    gateways = spec.texts("gateways")
    for index, gateway in enumerate(gateways):
        check_gateway_name(gateway, f"{spec.path('gateways')}[{index}]", issues)
    return gateways


def _http_route(path: str, value: Any, issues: Issues, in_delegate: bool) -> HTTPRoute | None:
    if value is None:
        issues.error(path, "http route may not be null")
        return None
    route = Obj.of(value, path, issues, HTTP_ROUTE_FIELDS, proto=True)
    if route is None:
        return None
    if in_delegate and route.has("delegate"):
        issues.error(route.at, "delegate HTTP route cannot contain delegate")
    _check_conflicts(route, issues)
    matches = parse_matches(route, issues)
    headers = _part(route, "headers", httppolicy.parse_headers, issues)
    rewrite = _part(route, "rewrite", httppolicy.parse_rewrite, issues)
    httppolicy.check_authority_rewrite(rewrite, headers, route.at, issues)
    redirect = None
    if route.has("redirect"):
        redirect = httppolicy.parse_redirect(
            route.get("redirect"), route.path("redirect"), matches, issues
        )
    for name in ROUTE_NOT_ACTED_ON:
        if route.has(name):
            issues.not_acted_on(route.path(name))
    return HTTPRoute(
        name=route.text("name") or "",
        match=matches,
        route=_destinations(route, issues),
        mirrors=_mirrors(route, issues),
        timeout=_timeout(route, issues),
        delegate=_delegate(route, issues),
        headers=headers,
        retries=_part(route, "retries", httppolicy.parse_retries, issues),
        fault=_part(route, "fault", httppolicy.parse_fault, issues),
        rewrite=rewrite,
        redirect=redirect,
        direct_response=_part(route, "directResponse", httppolicy.parse_direct_response, issues),
        cors_policy=_part(route, "corsPolicy", httppolicy.parse_cors, issues),
    )


_T = TypeVar("_T")


def _part(
    route: Obj, name: str, parse: Callable[[Any, str, Issues], _T], issues: Issues
) -> _T | None:
    """A policy field read by its parser (``model.httppolicy``); None when absent."""
    if not route.has(name):
        return None
    return parse(route.get(name), route.path(name), issues)


def _delegate(route: Obj, issues: Issues) -> tuple[str, str] | None:
    delegate = route.sub("delegate", ("name", "namespace"))
    if delegate is None:
        return None
    # Istio's webhook checks neither: a name that names nothing is dropped at compile time.
    return (delegate.text("name") or "", delegate.text("namespace") or "")


def _check_conflicts(route: Obj, issues: Issues) -> None:
    """Istio's ``validateHTTPRouteConflict``, for routes of a VirtualService with hosts."""
    has_route = bool(route.get("route"))
    if route.has("delegate"):
        name = route.text("name") or ""
        for other in ("redirect", "route"):
            if other == "route" and has_route or other == "redirect" and route.has(other):
                issues.error(route.at, f"root HTTP route {name} must not specify {other}")
        return
    for action, wording in (("redirect", "redirect"), ("directResponse", "direct_response")):
        if not route.has(action):
            continue
        if has_route:
            issues.error(route.at, f"HTTP route cannot contain both route and {wording}")
        if route.has("fault"):
            issues.error(route.at, f"HTTP route cannot contain both fault and {wording}")
        if route.has("rewrite"):
            issues.error(route.at, f"HTTP route rule cannot contain both rewrite and {wording}")
        if action == "redirect" and route.has("directResponse"):
            issues.error(
                route.at, "HTTP route rule cannot contain both direct_response and redirect"
            )
        return
    if not has_route:
        issues.error(route.path("route"), "HTTP route, redirect or direct_response is required")


def _destinations(route: Obj, issues: Issues) -> tuple[RouteDestination, ...]:
    entries = list(route.items("route"))
    out, total = [], 0
    for path, value in entries:
        if value is None:
            issues.error(path, "weight may not be nil")
            continue
        entry = Obj.of(value, path, issues, ("destination", "weight", "headers"), proto=True)
        if entry is None:
            continue
        headers = _part(entry, "headers", httppolicy.parse_headers, issues)
        weight = _weight(entry, issues)
        total += weight
        if not entry.has("destination"):
            issues.error(entry.path("destination"), "destination is required")
            continue
        destination = parse_destination(entry.get("destination"), entry.path("destination"), issues)
        if destination is not None:
            out.append(RouteDestination(destination=destination, weight=weight, headers=headers))
    if len(entries) > 1 and total == 0:
        issues.error(route.path("route"), "total destination weight = 0")
    return tuple(out)


def _weight(entry: Obj, issues: Issues) -> int:
    weight = entry.integer("weight") or 0
    if weight < 0:
        issues.error(entry.path("weight"), f"weight {weight} < 0")
    elif weight > _INT32_MAX:
        issues.error(entry.path("weight"), f"weight {weight} > {_INT32_MAX}")
    return weight


def parse_destination(value: Any, path: str, issues: Issues) -> Destination | None:
    """Istio's ``validateDestination``; the host is kept as written (``fqdn()`` resolves it)."""
    obj = Obj.of(value, path, issues, ("host", "subset", "port"), proto=True)
    if obj is None:
        return None
    host = obj.text("host")
    if host is None:
        if not obj.has("host"):
            issues.error(obj.path("host"), "host is required")
        return None
    problem = f"invalid destination host {host}" if host == "*" else validate.wildcard_domain(host)
    if problem:
        issues.error(obj.path("host"), problem)
    subset = obj.text("subset") or ""
    problem = validate.subset_name(subset) if subset else None
    if problem:
        issues.error(obj.path("subset"), problem)
    return Destination(host=host, subset=subset, port=_port_selector(obj, issues))


def _port_selector(destination: Obj, issues: Issues) -> int | None:
    selector = destination.sub("port", ("number",))
    if selector is None:
        return None
    number = selector.integer("number")
    if number is None and selector.has("number"):
        return None
    problem = validate.port_number(number or 0)
    if problem:
        issues.error(selector.path("number"), problem)
    return number


def _mirrors(route: Obj, issues: Issues) -> tuple[MirrorPolicy, ...]:
    entries = list(route.items("mirrors"))
    if route.has("mirror") and entries:
        issues.error(route.at, "HTTP route cannot contain both mirror and mirrors")
    percentage = _mirror_percentage(route, issues)
    policies = []
    if route.has("mirror"):
        destination = parse_destination(route.get("mirror"), route.path("mirror"), issues)
        if destination is not None:
            resolved = 100.0 if percentage is None else percentage
            policies.append(MirrorPolicy(destination=destination, percentage=resolved))
    else:
        for name in ("mirrorPercentage", "mirrorPercent"):
            if route.has(name):
                issues.note(
                    route.path(name), 'has no effect without "mirror"; shadowmesh ignores it'
                )
    for path, value in entries:
        policy = _mirror_policy(path, value, issues)
        if policy is not None:
            policies.append(policy)
    return tuple(policies)


def _mirror_percentage(route: Obj, issues: Issues) -> float | None:
    legacy = None
    if route.has("mirrorPercent"):
        issues.warn(DEPRECATED_MIRROR_PERCENT)
        value = route.integer("mirrorPercent")
        if value is not None and value < 0:
            issues.error(
                route.path("mirrorPercent"), f"must be a non-negative integer (it has {value})"
            )
        elif value is not None and value > 100:
            message = f"mirror_percent must have a max value of 100 (it has {value})"
            issues.error(route.path("mirrorPercent"), message)
        elif value is not None:
            legacy = float(value)
    if route.has("mirrorPercentage"):
        return _percent(route, "mirrorPercentage", "mirror_percentage", issues)
    return legacy


def _percent(parent: Obj, name: str, wording: str, issues: Issues) -> float | None:
    """An Istio ``Percent`` message, ``{value: 0..100}``; ``{}`` is 0, as in protobuf."""
    percent = parent.sub(name, ("value",))
    if percent is None:
        return None
    value = percent.number("value")
    if value is None:
        return None if percent.has("value") else 0.0
    if value > 100:
        issues.error(
            percent.path("value"), f"{wording} must have a max value of 100 (it has {value:f})"
        )
    elif value < 0:
        issues.error(
            percent.path("value"), f"{wording} must have a min value of 0 (it has {value:f})"
        )
    return value


def _mirror_policy(path: str, value: Any, issues: Issues) -> MirrorPolicy | None:
    if value is None:
        issues.error(path, "mirror cannot be null")
        return None
    policy = Obj.of(value, path, issues, ("destination", "percentage"), proto=True)
    if policy is None:
        return None
    if not policy.has("destination"):
        issues.error(policy.path("destination"), "destination is required for mirrors")
        return None
    destination = parse_destination(policy.get("destination"), policy.path("destination"), issues)
    percentage = 100.0
    if policy.has("percentage"):
        percentage = _percent(policy, "percentage", "mirror percentage", issues) or 0.0
    if destination is None:
        return None
    return MirrorPolicy(destination=destination, percentage=percentage)


def _timeout(route: Obj, issues: Issues) -> float | None:
    value = route.get("timeout")
    if value is None:
        return None
    if not isinstance(value, str):
        type_error(issues, route.path("timeout"), 'a duration string like "5s"', value)
        return None
    seconds, problem = validate.duration(value)
    if problem:
        issues.error(route.path("timeout"), problem)
    return seconds


# --- tcp and tls routes: not acted on, validated as Istio's webhook does ---------------------


def check_l4_routes(
    spec: Obj, hosts: tuple[str, ...], gateways: tuple[str, ...], issues: Issues
) -> None:
    """Istio 1.31's ``validateTLSRoute`` and ``validateTCPRoute``, with their wording.

    Their types and field names are the CRD's (``schema.py``); these are the webhook's rules.
    """
    to_gateway = "mesh" not in gateways  # Istio's isGateway: no gateways counts as a gateway
    for path, value in spec.items("tls"):
        route = Obj.of(value, path, issues, ("match", "route"), proto=True) if value else None
        if route is None:
            continue
        matches = list(route.items("match"))
        if not matches:
            issues.error(route.path("match"), "TLS route must have at least one match condition")
        for match_path, match in matches:
            _l4_match(match_path, match, "TLS match may not be null", issues, hosts, to_gateway)
        _l4_destinations(route, "TLS route is required", issues)
    for path, value in spec.items("tcp"):
        route = Obj.of(value, path, issues, ("match", "route"), proto=True) if value else None
        if route is None:
            continue
        for match_path, match in route.items("match"):
            _l4_match(match_path, match, "tcp match may not be nil", issues)
        _l4_destinations(route, "TCP route is required", issues)


_L4_MATCH_FIELDS = (
    "destination_subnets",
    "port",
    "source_labels",
    "gateways",
    "source_namespace",
    "source_subnet",
    "sni_hosts",
)


def _l4_match(
    path: str,
    value: Any,
    if_null: str,
    issues: Issues,
    hosts: tuple[str, ...] | None = None,
    to_gateway: bool = False,
) -> None:
    """``validateTLSMatch`` (``hosts`` given: SNI hosts required) or ``validateTCPMatch``."""
    if value is None:
        issues.error(path, if_null)
        return
    match = Obj.of(value, path, issues, _L4_MATCH_FIELDS, proto=True)
    if match is None:
        return
    if hosts is not None:
        sni_hosts = list(match.items("sniHosts"))
        if not sni_hosts:
            issues.error(match.path("sniHosts"), "TLS match must have at least one SNI host")
        for sni_path, sni in sni_hosts:
            if isinstance(sni, str):
                _sni_host(sni_path, sni, hosts, to_gateway, issues)
    for subnet_path, subnet in match.items("destinationSubnets"):
        if isinstance(subnet, str) and (problem := validate.ip_subnet(subnet)):
            issues.error(subnet_path, problem)
    port = match.integer("port")
    if port and (problem := validate.port_number(port)):
        issues.error(match.path("port"), problem)
    check_labels(match.string_map("sourceLabels"), match.path("sourceLabels"), issues)
    for index, gateway in enumerate(match.texts("gateways")):
        check_gateway_name(gateway, f"{match.path('gateways')}[{index}]", issues)


def _sni_host(
    path: str, sni: str, hosts: tuple[str, ...], to_gateway: bool, issues: Issues
) -> None:
    """Istio's ``validateSniHost``: a valid name, covered by one of the VirtualService's hosts."""
    if to_gateway and sni.startswith("outbound_"):
        problem = _auto_sni(sni)
    else:
        problem = validate.wildcard_domain(sni)
    if problem:
        if validate.ip_address(sni):
            issues.note(
                path,
                f'using an IP address ("{sni}") goes against SNI spec and most clients do not '
                "support this",
            )
        else:
            issues.error(path, problem)
        return
    if not any(_subset_of(sni, host) for host in hosts):
        issues.error(
            path,
            f'SNI host "{sni}" is not a compatible subset of any of the virtual service hosts: '
            f"[{', '.join(hosts)}]",
        )


_AUTO_SNI_FORMAT = "outbound_.<PORT>_._.<HOSTNAME>"


def _sni_routes(spec: Obj) -> bool:
    """Istio's ``isSniHost``: some tls route matches on SNI hosts."""
    routes = spec.get("tls")
    return isinstance(routes, list) and any(
        isinstance(r, dict) and isinstance(m, dict) and (m.get("sniHosts") or m.get("sni_hosts"))
        for r in routes
        for m in (r.get("match") if isinstance(r.get("match"), list) else ())
    )


def check_jwt_claim_routes(
    spec: Obj, to_gateway: bool, gateways: tuple[str, ...], issues: Issues
) -> None:
    """Istio's JWT claim routes (``@request.auth.claims.x`` headers): for gateways only.

    shadowmesh validates no JWT, so on a gateway such a match is warned about: the header it
    names is never in a request, the match never holds.
    """
    for route_path, route in spec.items("http"):
        matches = route.get("match") if isinstance(route, dict) else None
        for index, match in enumerate(matches if isinstance(matches, list) else ()):
            if not isinstance(match, dict):
                continue
            for field in ("headers", "withoutHeaders", "without_headers"):
                names = match.get(field)
                for name in names if isinstance(names, dict) else ():
                    if not isinstance(name, str) or not validate.jwt_claim_route(name):
                        continue
                    path = f"{route_path}.match[{index}].{field}.{name}"
                    if to_gateway:
                        issues.note(
                            path,
                            "is not acted on by shadowmesh: it validates no JWT, the match never "
                            "holds",
                        )
                    else:
                        issues.error(
                            path,
                            f"JWT claim based routing (key: {name}) is only supported for "
                            f"gateway, found no gateways: [{' '.join(gateways)}]",
                        )


def _auto_sni(sni: str) -> str | None:
    """An SNI name Istio generates for AUTO_PASSTHROUGH (``outbound_.80_._.httpbin.mesh``)."""
    parts = sni.split("_")
    if len(parts) < 4:
        return f"domain name {sni} invalid, should follow '{_AUTO_SNI_FORMAT}' format"
    port, hostname = parts[1].strip("."), parts[3].strip(".")
    if parts[0] != "outbound":
        return f'domain name "{sni}" invalid (label "{parts[0]}" invalid)'
    for label, needs in ((port, str.isdigit), (hostname, str.isalpha)):
        if not any(needs(c) for c in label):
            return (
                f'domain name "{sni}" invalid (label "{label}" invalid). should follow '
                f"{_AUTO_SNI_FORMAT} format"
            )
    return None


def _subset_of(name: str, other: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every name ``name`` covers, ``other`` covers too."""
    if name.startswith("*"):
        return other.startswith("*") and len(name) >= len(other) and name[1:].endswith(other[1:])
    if other.startswith("*"):
        return name.endswith(other[1:])
    return name == other


def _l4_destinations(route: Obj, if_none: str, issues: Issues) -> None:
    """Istio's ``validateRouteDestinations`` for a tcp or tls route."""
    entries = list(route.items("route"))
    if not entries:
        issues.error(route.path("route"), if_none)
    total = 0
    for path, value in entries:
        if value is None:
            issues.error(path, "weight may not be nil")
            continue
        entry = Obj.of(value, path, issues, ("destination", "weight"), proto=True)
        if entry is None:
            continue
        if not entry.has("destination"):
            issues.error(entry.path("destination"), "destination is required")
        else:
            parse_destination(entry.get("destination"), entry.path("destination"), issues)
        total += _weight(entry, issues)
    if len(entries) > 1 and total == 0:
        issues.error(route.path("route"), "total destination weight = 0")
