"""A DestinationRule's ``trafficPolicy`` as read: the blocks shadowmesh acts on, fields as written.

None everywhere means "not set": Istio distinguishes an unset block (inherited from the level
above) from a set one (which replaces it whole), and an unset field from a zero one (Envoy's
default, or "disabled"). The parser (``model.destinationrule``) validates;
``routing.upstreampolicy`` resolves which block applies to a cluster and compiles it. Durations
are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LbPolicy = Literal["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"]
TlsMode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]


@dataclass(frozen=True)
class ConnectionPool:
    max_connections: int | None = None
    connect_timeout: float | None = None
    tcp_idle_timeout: float | None = None  # 0: disabled
    max_connection_duration: float | None = None
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    http_idle_timeout: float | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval: float | None = None
    base_ejection_time: float | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


@dataclass(frozen=True)
class HashCookie:
    name: str
    path: str = ""
    ttl: float | None = None  # None: no cookie is generated; 0: a session cookie
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConsistentHash:
    http_header_name: str = ""
    http_cookie: HashCookie | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str = ""
    maglev_table_size: int | None = None  # set: Maglev; else a ring hash
    minimum_ring_size: int | None = None  # ringHash.minimumRingSize or the deprecated field


@dataclass(frozen=True)
class LoadBalancer:
    simple: LbPolicy | None = None  # None: Istio's default, LEAST_REQUEST
    consistent_hash: ConsistentHash | None = None


@dataclass(frozen=True)
class ClientTls:
    mode: TlsMode = "DISABLE"
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    sni: str = ""
    subject_alt_names: tuple[str, ...] = ()
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PolicyBlocks:
    """The four blocks a port-level entry or a policy carries."""

    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTls | None = None


@dataclass(frozen=True)
class TrafficPolicy(PolicyBlocks):
    # portLevelSettings, by port number, in the order written (the first for a port wins).
    port_level: tuple[tuple[int, PolicyBlocks], ...] = field(default=())

    def for_port(self, port: int) -> PolicyBlocks | None:
        return next((blocks for number, blocks in self.port_level if number == port), None)
