"""Istio and Kubernetes resources as frozen dataclasses: the typed form of the YAML users apply.

These hold what shadowmesh acts on, already validated and normalised (camelCase and snake_case
spellings merged, deprecated mirror fields resolved to one percentage). The original document is
kept in ``raw`` so ``get -o yaml`` shows exactly what was applied.

Hosts are kept as written; ``fqdn()`` resolves a short name against a namespace, as Istio does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

from shadowmesh.model.trafficpolicy import LbPolicy, TrafficPolicy

if TYPE_CHECKING:  # comparison.py imports this module; the union only needs the name
    from shadowmesh.model.comparison import Comparison

CLUSTER_DOMAIN = "svc.cluster.local"

__all__ = ["LbPolicy"]  # re-exported: where the routing layer has always found it
MatchKind = Literal["exact", "prefix", "regex"]


def fqdn(host: str, namespace: str) -> str:
    """``httpbin`` in ``ns`` is ``httpbin.ns.svc.cluster.local``; a dotted name is kept as is.

    Istio's ``ResolveShortnameToFQDN``: only a name without a dot is resolved against the
    namespace of the resource that names it. ``httpbin.ns`` and ``httpbin.org`` stay as they
    are (a VirtualService host ``httpbin.ns`` therefore names no Service), and so do ``*`` and
    IP addresses.
    """
    host = host.lower().rstrip(".")
    if "." in host or host == "*" or ":" in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def gateway_key(name: str, namespace: str) -> str:
    """Istio's ``resolveGatewayName``: ``gw`` -> ``ns/gw``; ``gw.ns.svc.cluster.local`` and
    ``gw.ns`` (the legacy forms) -> ``ns/gw``; ``mesh`` and ``ns/gw`` as written."""
    if name == "mesh" or "/" in name:
        return name
    if "." not in name:
        return f"{namespace}/{name}"
    first, _, rest = name.partition(".")
    return f"{rest.partition('.')[0]}/{first}"


def exported_to(export_to: tuple[str, ...], own: str, namespace: str) -> bool:
    """Whether a resource of namespace ``own`` with this ``exportTo`` is visible in another."""
    return export_rank(export_to, own, namespace) is not None


def export_rank(export_to: tuple[str, ...], own: str, namespace: str) -> int | None:
    """How a resource of ``own`` is visible in ``namespace``: None when hidden; else the
    order Istio's ``servicesExportedToNamespace`` lists it in: 0 private to it (``.`` or its
    own name), 1 exported to it by name, 2 public (``*`` or unset, which overrides the rest).
    ``~`` exports to no one, its own namespace included."""
    if not export_to or "*" in export_to:
        return 2
    if "~" in export_to:
        return None
    if namespace == own and ("." in export_to or own in export_to):
        return 0
    return 1 if namespace in export_to else None


@dataclass(frozen=True)
class Meta:
    name: str
    namespace: str


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    # int, a port name (resolved against WorkloadEntry.ports), or None meaning "same as port".
    target_port: int | str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class Service:
    meta: Meta
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = "v1"
    kind: Literal["Service"] = "Service"

    @property
    def host(self) -> str:
        return fqdn(self.meta.name, self.meta.namespace)


@dataclass(frozen=True)
class WorkloadEntry:
    meta: Meta
    address: str
    ports: Mapping[str, int]
    labels: Mapping[str, str]
    weight: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = "networking.istio.io/v1"
    kind: Literal["WorkloadEntry"] = "WorkloadEntry"


@dataclass(frozen=True)
class StringMatch:
    kind: MatchKind
    value: str


@dataclass(frozen=True)
class HTTPMatchRequest:
    """One ``match`` block; every set condition must hold (AND). Blocks in a route are ORed."""

    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    # Keys lower-cased. A value of None means "present" (Istio's ``{}``).
    headers: Mapping[str, StringMatch | None] = field(default_factory=dict)
    without_headers: Mapping[str, StringMatch | None] = field(default_factory=dict)
    query_params: Mapping[str, StringMatch | None] = field(default_factory=dict)
    ignore_uri_case: bool = False
    port: int | None = None
    # ``gateways``: the match applies only to traffic through these (namespace/name or
    # ``mesh``), a config-time selector; empty means the VirtualService's own gateways.
    gateways: tuple[str, ...] = ()
    # ``sourceLabels``: the match applies only in a proxy whose workload labels hold all of
    # these (``serve --workload-labels``), a config-time selector too; empty: every proxy.
    source_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True)
class HeaderOperations:
    """``set`` / ``add`` (name, value pairs as written) and ``remove`` of one direction."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    """``headers`` of a route or of one destination."""

    request: HeaderOperations = HeaderOperations()
    response: HeaderOperations = HeaderOperations()


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int = 0
    headers: Headers | None = None


@dataclass(frozen=True)
class HTTPRetry:
    """``retries`` as written (durations in seconds; None: unset)."""

    attempts: int = 0
    per_try_timeout: float | None = None
    retry_on: str = ""
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: float | None = None


@dataclass(frozen=True)
class Percent:
    """A chance as Envoy's ``FractionalPercent``: ``numerator`` out of ``denominator``."""

    numerator: int
    denominator: int  # 100 or 1_000_000


@dataclass(frozen=True)
class HTTPFault:
    """``fault``, resolved as istiod's ``TranslateFault``: a delay or abort dropped there is
    None here; a missing percentage is a chance of 0."""

    delay: float | None = None  # fixedDelay in seconds
    delay_chance: Percent = Percent(0, 100)
    abort_status: int | None = None  # httpStatus
    abort_grpc: str | None = None  # grpcStatus, a name of Istio's list
    abort_chance: Percent = Percent(0, 100)


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str = ""
    uri_regex: tuple[str, str] | None = None  # (match, rewrite) in RE2 syntax
    authority: str = ""


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str = ""
    authority: str = ""
    port: int | None = None  # an explicit ``port``
    derive_port: str = ""  # FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT, or ""
    scheme: str = ""
    code: int = 301
    prefix_rewrite: str = ""


@dataclass(frozen=True)
class HTTPDirectResponse:
    status: int
    body: bytes | None = None  # ``body.string`` encoded, or ``body.bytes`` decoded


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()  # ``allowOrigin`` (deprecated) as exact matches
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None  # whole seconds
    allow_credentials: bool | None = None
    unmatched_preflights: str = "UNSPECIFIED"


@dataclass(frozen=True)
class MirrorPolicy:
    """One mirror target with its percentage already resolved by Istio's rules.

    ``percentage`` is in 0..100: absent in the YAML means 100; explicit 0 means never (the
    parser keeps the policy so ``get`` and warnings still see it; routing skips it).
    """

    destination: Destination
    percentage: float = 100.0


@dataclass(frozen=True)
class HTTPRoute:
    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[RouteDestination, ...] = ()
    mirrors: tuple[MirrorPolicy, ...] = ()
    # Route timeout in seconds; None means none (Istio's default of 0s).
    timeout: float | None = None
    # ``delegate``: (name, namespace or "" for the root's own); the route's matches and
    # unset fields are merged into the delegate VirtualService's routes at compile time.
    delegate: tuple[str, str] | None = None
    headers: Headers | None = None
    retries: HTTPRetry | None = None  # None: Istio's default policy
    fault: HTTPFault | None = None
    rewrite: HTTPRewrite | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    cors_policy: CorsPolicy | None = None


@dataclass(frozen=True)
class VirtualService:
    meta: Meta
    hosts: tuple[str, ...]
    http: tuple[HTTPRoute, ...]
    gateways: tuple[str, ...] = ()
    # exportTo as written: "." (own namespace), "*" (all), or namespace names; empty is "*".
    export_to: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = "networking.istio.io/v1"
    kind: Literal["VirtualService"] = "VirtualService"

    @property
    def is_delegate(self) -> bool:
        """No hosts: a VirtualService that only a root's ``delegate`` reaches."""
        return not self.hosts

    def bound_gateways(self) -> tuple[str, ...]:
        """Its gateways as Istio resolves them: ``mesh``, or ``namespace/name``."""
        if not self.gateways:
            return ("mesh",)
        return tuple(gateway_key(g, self.meta.namespace) for g in self.gateways)

    def visible_in(self, namespace: str) -> bool:
        return exported_to(self.export_to, self.meta.namespace, namespace)


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # The subset's own trafficPolicy; its blocks replace the rule's (routing.upstreampolicy).
    traffic_policy: TrafficPolicy | None = None

    @property
    def load_balancer(self) -> LbPolicy | None:
        """Its own ``trafficPolicy.loadBalancer.simple``; None inherits the rule's."""
        return _simple(self.traffic_policy)


@dataclass(frozen=True)
class DestinationRule:
    meta: Meta
    host: str
    subsets: tuple[Subset, ...] = ()
    traffic_policy: TrafficPolicy | None = None
    export_to: tuple[str, ...] = ()  # as written; empty is "*"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = "networking.istio.io/v1"
    kind: Literal["DestinationRule"] = "DestinationRule"

    def visible_in(self, namespace: str) -> bool:
        return exported_to(self.export_to, self.meta.namespace, namespace)

    @property
    def load_balancer(self) -> LbPolicy | None:
        """``trafficPolicy.loadBalancer.simple``; None means Istio's default, LEAST_REQUEST."""
        return _simple(self.traffic_policy)


def _simple(policy: TrafficPolicy | None) -> LbPolicy | None:
    lb = policy.load_balancer if policy is not None else None
    return lb.simple if lb is not None else None


Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]


@dataclass(frozen=True)
class ServiceEntryPort:
    number: int
    name: str
    protocol: str = ""  # as written; "" means sniffed
    target_port: int | None = None


@dataclass(frozen=True)
class ServiceEntryEndpoint:
    """One of ``endpoints``: a WorkloadEntry written inline."""

    address: str
    ports: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int | None = None


@dataclass(frozen=True)
class ServiceEntry:
    """Istio ``ServiceEntry``: hosts outside the Service registry, with their endpoints."""

    meta: Meta
    hosts: tuple[str, ...]
    ports: tuple[ServiceEntryPort, ...]
    addresses: tuple[str, ...] = ()
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Resolution = "NONE"
    endpoints: tuple[ServiceEntryEndpoint, ...] = ()
    # workloadSelector.labels; None when not set (then ``endpoints`` are the endpoints).
    workload_selector: Mapping[str, str] | None = None
    export_to: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = "networking.istio.io/v1"
    kind: Literal["ServiceEntry"] = "ServiceEntry"

    def visible_in(self, namespace: str) -> bool:
        return exported_to(self.export_to, self.meta.namespace, namespace)


TlsMode = Literal[
    "SIMPLE", "MUTUAL", "PASSTHROUGH", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
]


@dataclass(frozen=True)
class ServerTLS:
    """A Gateway server's ``tls``: what its listener terminates, and with which files."""

    mode: TlsMode = "PASSTHROUGH"  # protobuf's default, as Istio reads an unset mode
    https_redirect: bool = False
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    credential_name: str = ""
    min_protocol_version: str = ""  # "" is TLS_AUTO: 1.2 at least, as Envoy's default
    max_protocol_version: str = ""


@dataclass(frozen=True)
class GatewayServer:
    port: int
    port_name: str
    protocol: str  # as Istio parses it: HTTP, HTTPS, HTTP2, TLS, TCP, ...
    # (namespace, host): "*" any namespace, "." the Gateway's; a host may be "*" or "*.x".
    hosts: tuple[tuple[str, str], ...]
    tls: ServerTLS | None = None
    name: str = ""


@dataclass(frozen=True)
class Gateway:
    """Istio ``Gateway``: the ingress listeners and the hosts each server admits."""

    meta: Meta
    servers: tuple[GatewayServer, ...]
    selector: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = "networking.istio.io/v1"
    kind: Literal["Gateway"] = "Gateway"

    @property
    def key(self) -> str:
        """``namespace/name``: how VirtualServices bind to it once resolved."""
        return f"{self.meta.namespace}/{self.meta.name}"


Resource = Union[  # noqa: UP007
    Service, WorkloadEntry, VirtualService, DestinationRule, ServiceEntry, Gateway, "Comparison"
]


@dataclass(frozen=True)
class Document:
    """One parsed YAML document, with where it came from, for error messages and the store."""

    resource: Resource
    source: str
    index: int
    warnings: tuple[str, ...] = ()


def resource_key(r: Resource) -> tuple[str, str, str]:
    """(kind, namespace, name): what identifies a resource in the store, as in Kubernetes."""
    return (r.kind, r.meta.namespace, r.meta.name)
