"""Istio ``DestinationRule``: subsets by labels and the load-balancing policy, by Istio's rules.

Only ``trafficPolicy.loadBalancer.simple`` is acted on; every other policy is checked for typos
and named in a warning. ``LEAST_CONN`` is Istio's deprecated spelling of ``LEAST_REQUEST``.
"""

from __future__ import annotations

from typing import Any

from shadowmesh.model import shapes, validate
from shadowmesh.model.fields import Issues, Obj
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import DestinationRule, LbPolicy, Meta, Subset
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
    "connectionPool": shapes.CONNECTION_POOL,
    "outlierDetection": shapes.OUTLIER_DETECTION,
    "tls": shapes.CLIENT_TLS,
    "portLevelSettings": shapes.PORT_LEVEL_SETTINGS,
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
    "consistentHash": shapes.CONSISTENT_HASH,
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
    load_balancer = traffic_policy(spec, issues)
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
    if meta is None or host is None:
        return None
    return DestinationRule(
        meta=meta, host=host, subsets=subsets, load_balancer=load_balancer, export_to=export_to
    )


def _host(spec: Obj, issues: Issues) -> str | None:
    return spec.required_text("host", validate.wildcard_domain, issues)


def traffic_policy(parent: Obj, issues: Issues) -> LbPolicy | None:
    """The policy's ``loadBalancer.simple``; every other setting is warned about."""
    policy = parent.sub("trafficPolicy", _POLICY_FIELDS)
    if policy is None:
        return None
    for name, shape in _POLICY_NOT_ACTED_ON.items():
        if policy.has(name):
            shapes.check(policy.get(name), shape, policy.path(name), issues)
            issues.not_acted_on(policy.path(name))
    balancer = policy.sub("loadBalancer", _LB_FIELDS)
    if balancer is None:
        return None
    for name, shape in _LB_NOT_ACTED_ON.items():
        if balancer.has(name):
            shapes.check(balancer.get(name), shape, balancer.path(name), issues)
            issues.not_acted_on(balancer.path(name))
    if balancer.has("simple") and balancer.has("consistentHash"):
        issues.error(balancer.at, "only one of simple or consistentHash may be set")
    return _simple(balancer, issues)


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
    return Subset(name=name or "", labels=labels, load_balancer=traffic_policy(subset, issues))
