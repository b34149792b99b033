"""Istio ``DestinationRule``: subsets by labels and the ``trafficPolicy`` a cluster gets.

Acted on: ``loadBalancer`` (``simple``, ``consistentHash``), ``connectionPool``,
``outlierDetection``, ``tls`` (SIMPLE, MUTUAL; ISTIO_MUTUAL is warned about and left
plaintext), ``portLevelSettings`` and subset ``trafficPolicy``; which block applies to a cluster
is ``routing.upstreampolicy``'s. Validation and wording are Istio 1.31's webhook
(``pkg/config/validation/validation.go`` validateTrafficPolicy and its helpers,
``pkg/config/validation/agent/validation.go`` ValidateTLS). Every other policy is checked for
typos and named in a warning. ``LEAST_CONN`` is Istio's deprecated spelling of ``LEAST_REQUEST``.
"""

from __future__ import annotations

import math
from typing import Any

from shadowmesh.model import shapes, validate
from shadowmesh.model.fields import Issues, Obj
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import DestinationRule, LbPolicy, Meta, Subset
from shadowmesh.model.trafficpolicy import (
    ClientTls,
    ConnectionPool,
    ConsistentHash,
    HashCookie,
    LoadBalancer,
    OutlierDetection,
    PolicyBlocks,
    TlsMode,
    TrafficPolicy,
)
from shadowmesh.model.virtualservice import export_to_field

SPEC_FIELDS = ("host", "traffic_policy", "subsets", "export_to", "workload_selector")
_POLICY_FIELDS = (
    "load_balancer",
    "connection_pool",
    "outlier_detection",
    "tls",
    "port_level_settings",
    "tunnel",
    "proxy_protocol",
    "retry_budget",
)
_POLICY_NOT_ACTED_ON: dict[str, shapes.Shape] = {
    "tunnel": shapes.TUNNEL,
    "proxyProtocol": shapes.PROXY_PROTOCOL,
    "retryBudget": shapes.RETRY_BUDGET,
}
_LB_FIELDS = (
    "simple",
    "consistent_hash",
    "locality_lb_setting",
    "zone_aware_lb_setting",
    "warmup_duration_secs",
    "warmup",
)
_LB_NOT_ACTED_ON: dict[str, shapes.Shape] = {
    "localityLbSetting": shapes.LOCALITY_LB_SETTING,
    "zoneAwareLbSetting": shapes.ZONE_AWARE_LB_SETTING,
    "warmupDurationSecs": "str",
    "warmup": shapes.WARMUP,
}
_SIMPLE: dict[str, LbPolicy] = {
    "ROUND_ROBIN": "ROUND_ROBIN",
    "RANDOM": "RANDOM",
    "LEAST_REQUEST": "LEAST_REQUEST",
}
_SIMPLE_NAMES = (
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
)


def parse_destination_rule(spec: Obj, meta: Meta | None, issues: Issues) -> DestinationRule | None:
    issues.tail = "the rule works without it"
    host = _host(spec, issues)
    policy = traffic_policy(spec, issues)
    subsets = _subsets(spec, issues)
    export_to = export_to_field(spec, meta, issues)
    if spec.has("workloadSelector") and export_to and meta is not None:
        own = {meta.namespace if e == "." else e for e in export_to}
        if meta.namespace not in own:
            issues.error(
                spec.path("exportTo"),
                "destination rule with workload selector cannot have exportTo beyond current "
                "namespace",
            )
        elif len(own) > 1:
            issues.error(
                spec.path("exportTo"),
                "destination rule with workload selector cannot have multiple entries in exportTo",
            )
    if spec.has("workloadSelector"):
        path = spec.path("workloadSelector")
        shapes.check(spec.get("workloadSelector"), shapes.WORKLOAD_SELECTOR, path, issues)
        issues.not_acted_on(path, "the rule applies to every client")
        selector = spec.get("workloadSelector")
        if isinstance(selector, dict) and not (
            selector.get("matchLabels") or selector.get("match_labels")
        ):
            issues.note(path, "workload selector specified without labels")  # Istio's warning
    if meta is None or host is None:
        return None
    return DestinationRule(
        meta=meta, host=host, subsets=subsets, traffic_policy=policy, export_to=export_to
    )


def _host(spec: Obj, issues: Issues) -> str | None:
    return spec.required_text("host", validate.wildcard_domain, issues)


_BLOCK_FIELDS = ("load_balancer", "connection_pool", "outlier_detection", "tls")
_PORT_FIELDS = ("port", *_BLOCK_FIELDS)
_TCP_FIELDS = (
    "max_connections",
    "connect_timeout",
    "tcp_keepalive",
    "max_connection_duration",
    "idle_timeout",
)
_HTTP_FIELDS = (
    "http1_max_pending_requests",
    "http2_max_requests",
    "max_requests_per_connection",
    "max_retries",
    "idle_timeout",
    "h2_upgrade_policy",
    "use_client_protocol",
    "max_concurrent_streams",
    "http2_keep_alive",
)
_HTTP_NOT_ACTED_ON: dict[str, shapes.Shape] = {
    "h2UpgradePolicy": "enum:DEFAULT|DO_NOT_UPGRADE|UPGRADE",
    "useClientProtocol": "bool",
    "maxConcurrentStreams": "int",
    "http2KeepAlive": {"interval": "dur", "timeout": "dur"},
}


def _names(shape: shapes.Shape) -> tuple[str, ...]:
    """The fields of a message shape (one list of them: the shapes'; ``model.shapes``)."""
    assert isinstance(shape, dict)
    return tuple(shape)


_OUTLIER_FIELDS = _names(shapes.OUTLIER_DETECTION)
_HASH_FIELDS = _names(shapes.CONSISTENT_HASH)
_COOKIE_FIELDS = ("name", "path", "ttl", "attributes")
_TLS_FIELDS = _names(shapes.CLIENT_TLS)
_TLS_MODES: tuple[TlsMode, ...] = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
_MAGLEV_LIMIT = 5000011


def traffic_policy(parent: Obj, issues: Issues) -> TrafficPolicy | None:
    """The ``trafficPolicy`` of a rule or a subset, validated as Istio's webhook does."""
    policy = parent.sub("trafficPolicy", _POLICY_FIELDS)
    if policy is None:
        return None
    if not policy.present():
        issues.error(policy.at, "traffic policy must have at least one field")
    for name, shape in _POLICY_NOT_ACTED_ON.items():
        if policy.has(name):
            shapes.check(policy.get(name), shape, policy.path(name), issues)
            issues.not_acted_on(policy.path(name))
    blocks = _blocks(policy, issues)
    port_level: list[tuple[int, PolicyBlocks]] = []
    for path, value in policy.items("portLevelSettings"):
        entry = _port_policy(path, value, issues)
        if entry is not None:
            port_level.append(entry)
    return TrafficPolicy(
        load_balancer=blocks.load_balancer,
        connection_pool=blocks.connection_pool,
        outlier_detection=blocks.outlier_detection,
        tls=blocks.tls,
        port_level=tuple(port_level),
    )


def _port_policy(path: str, value: Any, issues: Issues) -> tuple[int, PolicyBlocks] | None:
    if value is None:
        issues.error(path, "traffic policy may not be null")
        return None
    entry = Obj.of(value, path, issues, _PORT_FIELDS, proto=True)
    if entry is None:
        return None
    number = None
    port = entry.sub("port", ("number",))
    if port is not None:
        number = port.integer("number")
        if number is not None and (problem := validate.port_number(number)):
            issues.error(port.path("number"), problem)
            number = None
    elif not entry.has("port"):
        issues.error(entry.path("port"), "portTrafficPolicy must have valid port")
    if not any(
        entry.has(name) for name in ("loadBalancer", "connectionPool", "outlierDetection", "tls")
    ):
        issues.error(path, "port traffic policy must have at least one field")
        return None
    blocks = _blocks(entry, issues)
    return (number, blocks) if number is not None else None


def _blocks(obj: Obj, issues: Issues) -> PolicyBlocks:
    return PolicyBlocks(
        load_balancer=_load_balancer(obj, issues),
        connection_pool=_connection_pool(obj, issues),
        outlier_detection=_outlier_detection(obj, issues),
        tls=_tls(obj, issues),
    )


def _duration(obj: Obj, name: str, issues: Issues, zero_ok: bool = False) -> float | None:
    """A Duration field by Istio's ValidateDuration (at least 1ms, ms precision)."""
    text = obj.text(name)
    if text is None:
        return None
    if zero_ok:
        try:
            if validate.parse_duration(text) == 0:
                return 0.0
        except ValueError:
            pass
    seconds, problem = validate.duration(text)
    if problem:
        issues.error(obj.path(name), problem)
    return seconds


def _non_negative(obj: Obj, name: str, what: str, issues: Issues) -> int | None:
    value = obj.integer(name)
    if value is not None and value < 0:
        issues.error(obj.path(name), f"{what} must be non-negative")
        return None
    return value


def _connection_pool(obj: Obj, issues: Issues) -> ConnectionPool | None:
    pool = obj.sub("connectionPool", ("tcp", "http"))
    if pool is None:
        return None
    if not pool.has("tcp") and not pool.has("http"):
        issues.error(pool.at, "connection pool must have at least one field")
    values: dict[str, Any] = {}
    tcp = pool.sub("tcp", _TCP_FIELDS)
    if tcp is not None:
        values["max_connections"] = _non_negative(tcp, "maxConnections", "max connections", issues)
        values["connect_timeout"] = _duration(tcp, "connectTimeout", issues)
        values["max_connection_duration"] = _duration(tcp, "maxConnectionDuration", issues)
        # Istio skips the check for 0s: it turns the idle timeout off.
        values["tcp_idle_timeout"] = _duration(tcp, "idleTimeout", issues, zero_ok=True)
        if tcp.has("tcpKeepalive"):
            path = tcp.path("tcpKeepalive")
            shapes.check(
                tcp.get("tcpKeepalive"),
                {"probes": "u32", "time": "dur", "interval": "dur"},
                path,
                issues,
            )
            issues.not_acted_on(path, "the operating system's keepalive settings apply")
    http = pool.sub("http", _HTTP_FIELDS)
    if http is not None:
        values["http1_max_pending_requests"] = _non_negative(
            http, "http1MaxPendingRequests", "http1 max pending requests", issues
        )
        values["http2_max_requests"] = _non_negative(
            http, "http2MaxRequests", "http2 max requests", issues
        )
        if http.has("http2MaxRequests"):
            issues.not_acted_on(http.path("http2MaxRequests"), "requests in flight are not capped")
        values["max_requests_per_connection"] = _non_negative(
            http, "maxRequestsPerConnection", "max requests per connection", issues
        )
        values["max_retries"] = _non_negative(http, "maxRetries", "max retries", issues)
        values["http_idle_timeout"] = _duration(http, "idleTimeout", issues)
        if http.text("h2UpgradePolicy") == "UPGRADE" and http.flag("useClientProtocol"):
            issues.error(
                http.path("useClientProtocol"),
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            )
        concurrent = http.integer("maxConcurrentStreams")
        if concurrent is not None and concurrent < 0:
            issues.error(
                http.path("maxConcurrentStreams"), "max concurrent streams must be non-negative"
            )
        for name, shape in _HTTP_NOT_ACTED_ON.items():
            if http.has(name):
                shapes.check(http.get(name), shape, http.path(name), issues)
                issues.not_acted_on(http.path(name), "upstream connections are HTTP/1.1")
    return ConnectionPool(**values)


def _outlier_detection(obj: Obj, issues: Issues) -> OutlierDetection | None:
    outlier = obj.sub("outlierDetection", _OUTLIER_FIELDS)
    if outlier is None:
        return None
    base = _duration(outlier, "baseEjectionTime", issues)
    if outlier.integer("consecutiveErrors"):
        issues.note(
            outlier.path("consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors "
            "or consecutive5xxErrors instead",
        )
    split = bool(outlier.flag("splitExternalLocalOriginErrors"))
    local = _counter(outlier, "consecutiveLocalOriginFailures")
    if not split and local:
        issues.error(
            outlier.path("consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split "
            "external local origin errors is set to false",
        )
    interval = _duration(outlier, "interval", issues)
    max_percent = _percent(outlier, "maxEjectionPercent", issues)
    min_health = _percent(outlier, "minHealthPercent", issues)
    if outlier.has("outlierDetectionHttpErrorCodes"):
        path = outlier.path("outlierDetectionHttpErrorCodes")
        shapes.check(outlier.get("outlierDetectionHttpErrorCodes"), ["code"], path, issues)
        issues.not_acted_on(path, "every 5xx counts as an error")
    return OutlierDetection(
        consecutive_5xx_errors=_counter(outlier, "consecutive5xxErrors"),
        consecutive_gateway_errors=_counter(outlier, "consecutiveGatewayErrors"),
        consecutive_local_origin_failures=local,
        split_external_local_origin_errors=split,
        interval=interval,
        base_ejection_time=base,
        max_ejection_percent=max_percent,
        min_health_percent=min_health,
    )


def _counter(obj: Obj, name: str) -> int | None:
    """A UInt32Value: the CRD refuses what is out of range; None when unset."""
    value = obj.integer(name)
    return value if value is not None and value >= 0 else None


def _percent(obj: Obj, name: str, issues: Issues) -> int | None:
    value = obj.integer(name)
    if value is not None and not 0 <= value <= 100:
        issues.error(obj.path(name), f"percentage {value} is not in range 0..100")
        return None
    return value


def _load_balancer(obj: Obj, issues: Issues) -> LoadBalancer | None:
    balancer = obj.sub("loadBalancer", _LB_FIELDS)
    if balancer is None:
        return None
    for name, shape in _LB_NOT_ACTED_ON.items():
        if balancer.has(name):
            shapes.check(balancer.get(name), shape, balancer.path(name), issues)
            issues.not_acted_on(balancer.path(name))
    if balancer.has("simple") and balancer.has("consistentHash"):
        issues.error(balancer.at, "only one of simple or consistentHash may be set")
    return LoadBalancer(
        simple=_simple(balancer, issues), consistent_hash=_consistent_hash(balancer, issues)
    )


def _consistent_hash(balancer: Obj, issues: Issues) -> ConsistentHash | None:
    spec = balancer.sub("consistentHash", _HASH_FIELDS)
    if spec is None:
        return None
    cookie = _cookie(spec, issues)
    minimum = spec.integer("minimumRingSize")
    if minimum:
        issues.note(
            spec.path("minimumRingSize"),
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash "
            "configuration instead",
        )
        if spec.has("ringHash") or spec.has("maglev"):
            issues.error(spec.at, "only one of MinimumRingSize or Maglev/Ringhash can be specified")
    ring = spec.sub("ringHash", ("minimum_ring_size",))
    if ring is not None:
        minimum = ring.integer("minimumRingSize") or minimum
    table: int | None = None
    maglev = spec.sub("maglev", ("table_size",))
    if maglev is not None:
        table = maglev.integer("tableSize") or 0
        path = maglev.path("tableSize")
        if table == 0:
            issues.error(path, "tableSize must be set for maglev")
        if table >= _MAGLEV_LIMIT:
            issues.error(path, "tableSize must be less than 5000011 for maglev")
        if not _is_prime(table):
            issues.error(path, "tableSize must be a prime number for maglev")
    return ConsistentHash(
        http_header_name=(spec.text("httpHeaderName") or "").lower(),
        http_cookie=cookie,
        use_source_ip=bool(spec.flag("useSourceIp")),
        http_query_parameter_name=spec.text("httpQueryParameterName") or "",
        maglev_table_size=table,
        minimum_ring_size=minimum if minimum and minimum > 0 else None,
    )


def _cookie(spec: Obj, issues: Issues) -> HashCookie | None:
    cookie = spec.sub("httpCookie", _COOKIE_FIELDS)
    if cookie is None:
        return None
    name = cookie.text("name") or ""
    if not name:
        issues.error(cookie.path("name"), "name required for HttpCookie")
    ttl: float | None = None
    text = cookie.text("ttl")
    if text is not None:
        try:
            ttl = float(validate.parse_duration(text))
        except ValueError as exc:
            issues.error(cookie.path("ttl"), str(exc))
    attributes: list[tuple[str, str]] = []
    for path, value in cookie.items("attributes"):
        attribute = Obj.of(value, path, issues, ("name", "value"), proto=True)
        if attribute is None:
            continue
        key = attribute.text("name") or ""
        if not key:
            issues.error(attribute.path("name"), "cookie attribute name cannot be empty")
        elif any(key == seen for seen, _ in attributes):
            issues.error(attribute.path("name"), f"duplicate cookie attribute name: {key}")
        else:
            attributes.append((key, attribute.text("value") or ""))
    return HashCookie(name, cookie.text("path") or "", ttl, tuple(attributes))


def _is_prime(x: int) -> bool:
    """Envoy's ``Primes::isPrime`` (source/common/common/utility.cc), as Istio copies it."""
    if 0 < x < 4:
        return True
    if x & 1 == 0:
        return False
    return all(x % factor for factor in range(3, math.isqrt(x) + 1, 2))


def _tls(obj: Obj, issues: Issues) -> ClientTls | None:
    tls = obj.sub("tls", _TLS_FIELDS)
    if tls is None:
        return None
    mode = tls.text("mode") or "DISABLE"
    if mode not in _TLS_MODES:
        mode = "DISABLE"  # the CRD's enum refuses it, with its wording
    insecure = bool(tls.flag("insecureSkipVerify"))
    ca = tls.text("caCertificates") or ""
    credential = tls.text("credentialName") or ""
    sans = tls.texts("subjectAltNames")
    cert = tls.text("clientCertificate") or ""
    key = tls.text("privateKey") or ""
    if insecure and mode == "SIMPLE" and (ca or credential or tls.has("subjectAltNames")):
        issues.error(
            tls.at,
            "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
            "InsecureSkipVerify is set true",
        )
    if insecure and mode == "MUTUAL" and (ca or tls.has("subjectAltNames")):
        issues.error(
            tls.at,
            "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
        )
    if mode in ("SIMPLE", "MUTUAL") and credential:
        if cert or ca or key or tls.text("caCrl"):
            issues.error(
                tls.at,
                "cannot specify client certificates or CA certificate or CA CRL If "
                "credentialName is set",
            )
    elif mode == "MUTUAL":
        if not cert:
            issues.error(
                tls.path("clientCertificate"), "client certificate required for mutual tls"
            )
        if not key:
            issues.error(tls.path("privateKey"), "private key required for mutual tls")
    if credential:
        issues.not_acted_on(
            tls.path("credentialName"), "certificates are read from the files named here"
        )
    if tls.has("caCrl"):
        issues.not_acted_on(tls.path("caCrl"), "no revocation list is checked")
    if mode == "ISTIO_MUTUAL":
        issues.note(
            tls.path("mode"),
            "ISTIO_MUTUAL is not acted on by shadowmesh (no Istio certificates): the upstream "
            "is reached in plaintext",
        )
    return ClientTls(
        mode=mode,  # type: ignore[arg-type]
        client_certificate=cert,
        private_key=key,
        ca_certificates=ca,
        sni=tls.text("sni") or "",
        subject_alt_names=sans,
        insecure_skip_verify=insecure,
    )


def _simple(balancer: Obj, issues: Issues) -> LbPolicy | None:
    simple = balancer.text("simple")
    path = balancer.path("simple")
    if simple is None or simple == "UNSPECIFIED":
        return None
    if simple == "LEAST_CONN":
        issues.note(path, "LEAST_CONN is deprecated; use LEAST_REQUEST (shadowmesh treats it so)")
        return "LEAST_REQUEST"
    if simple == "PASSTHROUGH":
        issues.note(path, "PASSTHROUGH is not acted on by shadowmesh; LEAST_REQUEST is used")
        return None
    if simple not in _SIMPLE:
        choices = ", ".join(_SIMPLE_NAMES)
        issues.error(path, f'unsupported value "{simple}": supported values: {choices}')
        return None
    return _SIMPLE[simple]


def _subsets(spec: Obj, issues: Issues) -> tuple[Subset, ...]:
    out: list[Subset] = []
    for path, value in spec.items("subsets"):
        subset = _subset(path, value, issues)
        if subset is None:
            continue
        if any(subset.name == seen.name for seen in out):
            issues.error(f"{path}.name", f"duplicate subset names: {subset.name}")
        out.append(subset)
    return tuple(out)


def _subset(path: str, value: Any, issues: Issues) -> Subset | None:
    if value is None:
        issues.error(path, "subset may not be null")
        return None
    subset = Obj.of(value, path, issues, ("name", "labels", "traffic_policy"), proto=True)
    if subset is None:
        return None
    name = subset.text("name")
    problem = validate.subset_name(name or "")
    if problem and (name is not None or not subset.has("name")):
        issues.error(subset.path("name"), problem)
    labels = subset.string_map("labels")
    check_labels(labels, subset.path("labels"), issues)
    return Subset(name=name or "", labels=labels, traffic_policy=traffic_policy(subset, issues))
