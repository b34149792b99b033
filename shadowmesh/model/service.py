"""Kubernetes ``v1 Service``: the ports shadowmesh listens on and the selector of its endpoints.

Validation follows Kubernetes' ``ValidateService`` for what shadowmesh reads. Spec fields that
only matter to a cluster are accepted: the ones ``kubectl get -o yaml`` always prints silently,
the ones that would change behaviour on a cluster with a warning.
"""

from __future__ import annotations

from typing import Any

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj, describe, is_int
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import Meta, Service, ServicePort

_SILENT = ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy")
_NOT_ACTED_ON = (
    "externalName",
    "externalIPs",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "healthCheckNodePort",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "loadBalancerClass",
    "allocateLoadBalancerNodePorts",
    "publishNotReadyAddresses",
    "sessionAffinityConfig",
    "trafficDistribution",
)
SPEC_FIELDS = ("ports", "selector", "type", "sessionAffinity", *_SILENT, *_NOT_ACTED_ON)
_PORT_FIELDS = ("name", "protocol", "appProtocol", "port", "targetPort", "nodePort")
_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def parse_service(spec: Obj, meta: Meta | None, issues: Issues) -> Service | None:
    issues.tail = "the service works without it"
    _check_type(spec, issues)
    _check_session_affinity(spec, issues)
    spec.text("clusterIP")
    for name in ("clusterIPs", "ipFamilies"):
        spec.texts(name)
    spec.text("ipFamilyPolicy")
    for name in _NOT_ACTED_ON:
        if spec.has(name):
            issues.not_acted_on(spec.path(name))
    ports = _ports(spec, issues)
    selector = spec.string_map("selector")
    check_labels(selector, spec.path("selector"), issues)
    if not selector and spec.get("type") != "ExternalName":
        issues.note(spec.path("selector"), "is empty; the Service selects no WorkloadEntry")
    if meta is None or ports is None:
        return None
    return Service(meta=meta, ports=ports, selector=selector)


def _check_type(spec: Obj, issues: Issues) -> None:
    kind = spec.text("type")
    if kind is not None and kind not in _TYPES:
        issues.error(spec.path("type"), _unsupported(kind, _TYPES))
    elif kind == "ExternalName":
        issues.not_acted_on(spec.path("type"), "shadowmesh routes to WorkloadEntries only")


def _check_session_affinity(spec: Obj, issues: Issues) -> None:
    affinity = spec.text("sessionAffinity")
    if affinity is not None and affinity not in ("None", "ClientIP"):
        issues.error(spec.path("sessionAffinity"), _unsupported(affinity, ("None", "ClientIP")))
    elif affinity == "ClientIP":
        issues.not_acted_on(spec.path("sessionAffinity"))


def _ports(spec: Obj, issues: Issues) -> tuple[ServicePort, ...] | None:
    entries = list(spec.items("ports"))
    if not entries:
        if not isinstance(spec.get("ports"), (list, type(None))):
            return None  # the type error is already recorded
        issues.error(spec.path("ports"), "at least one port is required")
        return None
    ports = [_port(path, value, issues, named=len(entries) > 1) for path, value in entries]
    _check_unique(entries, ports, issues)
    if any(port is None for port in ports):
        return None
    return tuple(port for port in ports if port is not None)


def _port(path: str, value: Any, issues: Issues, *, named: bool) -> ServicePort | None:
    obj = Obj.of(value, path, issues, _PORT_FIELDS, proto=False)
    if obj is None:
        return None
    name = obj.text("name") or ""
    if name:
        _report(issues, obj.path("name"), validate.k8s_label(name))
    elif named:
        issues.error(obj.path("name"), "name is required when a Service has more than one port")
    protocol = obj.text("protocol") or "TCP"
    if protocol not in _PROTOCOLS:
        issues.error(obj.path("protocol"), _unsupported(protocol, _PROTOCOLS))
    elif protocol != "TCP":
        issues.not_acted_on(obj.path("protocol"), "shadowmesh serves HTTP over TCP only")
    obj.text("appProtocol")
    if obj.has("nodePort"):
        issues.not_acted_on(obj.path("nodePort"))
    number = obj.integer("port")
    if number is None:
        if not obj.has("port"):
            issues.error(obj.path("port"), "port is required")
        return None
    if _report(issues, obj.path("port"), validate.port_number(number)):
        return None
    target = _target_port(obj, issues)
    if target is False:
        return None
    return ServicePort(port=number, name=name, target_port=target, protocol=protocol)


def _target_port(obj: Obj, issues: Issues) -> int | str | None | bool:
    """The target port, None for "same as port" (Kubernetes' default for 0 and ""), or False."""
    value = obj.get("targetPort")
    path = obj.path("targetPort")
    if value is None or value == 0 or value == "":
        return None
    if is_int(value):
        return False if _report(issues, path, validate.port_number(value)) else int(value)
    if isinstance(value, str):
        return False if _report(issues, path, validate.iana_svc_name(value)) else value
    issues.error(path, f"must be an integer or a port name, got {describe(value)}")
    return False


def _check_unique(
    entries: list[tuple[str, Any]], ports: list[ServicePort | None], issues: Issues
) -> None:
    names: set[str] = set()
    numbers: set[tuple[int, str]] = set()
    for (path, _), port in zip(entries, ports, strict=True):
        if port is None:
            continue
        if port.name and port.name in names:
            issues.error(f"{path}.name", f'duplicate value "{port.name}"')
        if (port.port, port.protocol) in numbers:
            issues.error(f"{path}.port", f"duplicate value {port.port}/{port.protocol}")
        names.add(port.name)
        numbers.add((port.port, port.protocol))


def _report(issues: Issues, path: str, problem: str | None) -> bool:
    if problem:
        issues.error(path, problem)
    return problem is not None


def _unsupported(value: str, allowed: tuple[str, ...]) -> str:
    choices = ", ".join(f'"{choice}"' for choice in allowed)
    return f'unsupported value "{value}": supported values: {choices}'
