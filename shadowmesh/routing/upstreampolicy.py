"""A cluster's traffic policy: which DestinationRule blocks apply to it, compiled.

Which policy applies (istio/istio ``pilot/pkg/networking/util/util.go`` MergeTrafficPolicy;
traffic-policy.md section 2.1), with no merging below the block:

1. The rule's ``trafficPolicy``; a ``portLevelSettings`` entry for the cluster's port (the
   first for it) replaces all four blocks (loadBalancer, connectionPool, outlierDetection,
   tls), even those it leaves unset.
2. A subset's ``trafficPolicy``: each block it sets replaces that block whole; a subset
   port-level entry for the port then replaces all four blocks again.

The result is compiled once per cluster into plain slotted objects the upstream side reads:
``ConnectionLimits`` (Envoy's circuit breakers and connection options), the
``OutlierConfig``, the ``TlsOrigination`` settings and the ``HashPolicy``.
"""

from __future__ import annotations

from typing import Any, Final

from shadowmesh.model.resources import DestinationRule, LbPolicy
from shadowmesh.model.trafficpolicy import (
    ClientTls,
    ConnectionPool,
    LoadBalancer,
    OutlierDetection,
    PolicyBlocks,
    TrafficPolicy,
)
from shadowmesh.routing.hashring import DEFAULT_MAGLEV_SIZE, DEFAULT_RING_SIZE, HashPolicy
from shadowmesh.routing.outlier import OutlierConfig

UNLIMITED: Final = 2**32 - 1  # Istio's default for every circuit-breaker threshold
DEFAULT_CONNECT_TIMEOUT: Final = 10.0  # MeshConfig connectTimeout
DEFAULT_IDLE_TIMEOUT: Final = 3600.0  # Envoy's HTTP idle_timeout as Istio leaves it: 1h


class ConnectionLimits:
    """Envoy's circuit-breaker thresholds (per cluster, over all its endpoints) and connection
    options, from ``connectionPool`` (istio/istio ``cluster_traffic_policy.go``
    applyConnectionPool). A field set to 0 means Istio's default, as istiod reads it."""

    __slots__ = (
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
        "connect_timeout",
        "idle_timeout",
        "max_connection_duration",
        "max_requests_per_connection",
    )

    def __init__(self, pool: ConnectionPool | None = None) -> None:
        p = pool if pool is not None else ConnectionPool()
        self.max_connections: Final = p.max_connections or UNLIMITED
        self.max_pending_requests: Final = p.http1_max_pending_requests or UNLIMITED
        self.max_requests: Final = p.http2_max_requests or UNLIMITED
        self.max_retries: Final = p.max_retries or UNLIMITED
        self.connect_timeout: Final = p.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        # http.idleTimeout, else tcp.idleTimeout (0s: none), else 1h. 0.0 here: no timeout.
        idle = p.http_idle_timeout if p.http_idle_timeout is not None else p.tcp_idle_timeout
        self.idle_timeout: Final = DEFAULT_IDLE_TIMEOUT if idle is None else idle
        self.max_connection_duration: Final = p.max_connection_duration or 0.0  # 0: none
        self.max_requests_per_connection: Final = p.max_requests_per_connection or 0  # 0: any

    def describe(self) -> dict[str, Any]:
        return {
            "circuitBreakers": {
                "maxConnections": self.max_connections,
                "maxPendingRequests": self.max_pending_requests,
                "maxRequests": self.max_requests,
                "maxRetries": self.max_retries,
            },
            "connectTimeout": self.connect_timeout,
            "idleTimeout": self.idle_timeout,
            "maxConnectionDuration": self.max_connection_duration,
            "maxRequestsPerConnection": self.max_requests_per_connection,
        }


DEFAULT_LIMITS: Final = ConnectionLimits()


class TlsOrigination:
    """``tls`` SIMPLE or MUTUAL: what the upstream's TLS client context is made of. The
    context itself is built from the files by ``upstream.tls``, on first use."""

    __slots__ = (
        "mode",
        "ca_certificates",
        "client_certificate",
        "private_key",
        "sni",
        "subject_alt_names",
        "insecure_skip_verify",
    )

    def __init__(self, tls: ClientTls) -> None:
        self.mode: Final = tls.mode
        self.ca_certificates: Final = tls.ca_certificates  # "": the system's trust store
        self.client_certificate: Final = tls.client_certificate if tls.mode == "MUTUAL" else ""
        self.private_key: Final = tls.private_key if tls.mode == "MUTUAL" else ""
        self.sni: Final = tls.sni  # "": the request's authority (Envoy's auto_sni)
        self.subject_alt_names: Final = tls.subject_alt_names
        self.insecure_skip_verify: Final = tls.insecure_skip_verify

    def key(self) -> tuple[object, ...]:
        """What the TLS context depends on: equal keys share one context."""
        return (
            self.ca_certificates,
            self.client_certificate,
            self.private_key,
            self.insecure_skip_verify,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "caCertificates": self.ca_certificates or "system",
            "clientCertificate": self.client_certificate,
            "privateKey": self.private_key,
            "sni": self.sni,
            "subjectAltNames": list(self.subject_alt_names),
            "insecureSkipVerify": self.insecure_skip_verify,
        }


class UpstreamPolicy:
    """One cluster's compiled traffic policy."""

    __slots__ = ("lb", "maglev", "table_size", "limits", "outlier", "tls", "hashing", "guarded")

    def __init__(
        self,
        lb: LbPolicy | None = None,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        outlier: OutlierConfig | None = None,
        tls: TlsOrigination | None = None,
        hashing: HashPolicy | None = None,
        maglev: bool = False,
        table_size: int = 0,
    ) -> None:
        self.lb: Final = lb  # None: LEAST_REQUEST; ignored when ``hashing`` is set
        self.limits: Final = limits
        self.outlier: Final = outlier
        self.tls: Final = tls
        self.hashing: Final = hashing  # consistentHash's key; None: no consistent hashing
        self.maglev: Final = maglev
        self.table_size: Final = table_size  # Maglev's table or the ring's minimum size
        # Whether its cluster needs a pool of its own (``upstream.clusterpool``).
        self.guarded: Final = limits is not DEFAULT_LIMITS or tls is not None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connectionPool": self.limits.describe()}
        if self.hashing is not None:
            out["consistentHash"] = {
                **self.hashing.describe(),
                "algorithm": "MAGLEV" if self.maglev else "RING_HASH",
                "tableSize" if self.maglev else "minimumRingSize": self.table_size
                or (DEFAULT_MAGLEV_SIZE if self.maglev else DEFAULT_RING_SIZE),
            }
        if self.outlier is not None:
            out["outlierDetection"] = self.outlier.describe()
        if self.tls is not None:
            out["tls"] = self.tls.describe()
        return out


NO_UPSTREAM_POLICY: Final = UpstreamPolicy()


def resolve_blocks(rule: DestinationRule | None, subset: str, port: int) -> PolicyBlocks:
    """The four blocks that apply to the cluster of ``subset`` ("" for none) on ``port``."""
    if rule is None:
        return PolicyBlocks()
    merged = _at_port(rule.traffic_policy, port)
    own = (
        next((s.traffic_policy for s in rule.subsets if s.name == subset), None) if subset else None
    )
    if own is None:
        return merged
    merged = PolicyBlocks(
        load_balancer=own.load_balancer or merged.load_balancer,
        connection_pool=own.connection_pool or merged.connection_pool,
        outlier_detection=own.outlier_detection or merged.outlier_detection,
        tls=own.tls or merged.tls,
    )
    return own.for_port(port) or merged


def _at_port(policy: TrafficPolicy | None, port: int) -> PolicyBlocks:
    if policy is None:
        return PolicyBlocks()
    return policy.for_port(port) or policy


def compile_blocks(blocks: PolicyBlocks) -> UpstreamPolicy:
    if blocks == PolicyBlocks():
        return NO_UPSTREAM_POLICY
    lb = blocks.load_balancer or LoadBalancer()
    limits = ConnectionLimits(blocks.connection_pool) if blocks.connection_pool else DEFAULT_LIMITS
    tls = blocks.tls
    origination = (
        TlsOrigination(tls) if tls is not None and tls.mode in ("SIMPLE", "MUTUAL") else None
    )
    hashing: HashPolicy | None = None
    maglev = False
    size = 0
    spec = lb.consistent_hash
    if spec is not None:
        cookie = spec.http_cookie
        hashing = HashPolicy(
            header=spec.http_header_name,
            cookie=cookie.name if cookie is not None else "",
            cookie_path=cookie.path if cookie is not None else "",
            cookie_ttl=cookie.ttl if cookie is not None else None,
            cookie_attributes=cookie.attributes if cookie is not None else (),
            source_ip=spec.use_source_ip,
            query=spec.http_query_parameter_name,
        )
        maglev = spec.maglev_table_size is not None
        size = (spec.maglev_table_size if maglev else spec.minimum_ring_size) or 0
    return UpstreamPolicy(
        lb=lb.simple,
        limits=limits,
        outlier=_outlier(blocks.outlier_detection),
        tls=origination,
        hashing=hashing,
        maglev=maglev,
        table_size=size,
    )


def _outlier(spec: OutlierDetection | None) -> OutlierConfig | None:
    if spec is None:
        return None
    return OutlierConfig(
        consecutive_5xx=spec.consecutive_5xx_errors,
        consecutive_gateway=spec.consecutive_gateway_errors,
        consecutive_local=spec.consecutive_local_origin_failures,
        split=spec.split_external_local_origin_errors,
        interval=spec.interval,
        base_ejection=spec.base_ejection_time,
        max_ejection_percent=spec.max_ejection_percent,
        min_health_percent=spec.min_health_percent,
    )


def upstream_policy(rule: DestinationRule | None, subset: str, port: int) -> UpstreamPolicy:
    return compile_blocks(resolve_blocks(rule, subset, port))
