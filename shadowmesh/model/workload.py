"""Istio ``WorkloadEntry``: a running process (address, ports by name, labels) a Service selects.

Validation follows Istio's ``validateWorkloadEntry``; ``unix://`` addresses are refused because
the data plane dials TCP only.
"""

from __future__ import annotations

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj, child, is_int, type_error
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import Meta, WorkloadEntry

SPEC_FIELDS = ("address", "ports", "labels", "network", "locality", "weight", "service_account")
_NOT_ACTED_ON = ("network", "locality", "serviceAccount")
_UINT32_MAX = 2**32 - 1


def parse_workload_entry(spec: Obj, meta: Meta | None, issues: Issues) -> WorkloadEntry | None:
    issues.tail = "the workload works without it"
    address = _address(spec, issues)
    ports = _ports(spec, issues)
    labels = spec.string_map("labels")
    check_labels(labels, spec.path("labels"), issues)
    weight = _weight(spec, issues)
    for name in _NOT_ACTED_ON:
        if spec.text(name) is not None:
            issues.not_acted_on(spec.path(name))
    if meta is None or address is None:
        return None
    return WorkloadEntry(meta=meta, address=address, ports=ports, labels=labels, weight=weight)


def _address(spec: Obj, issues: Issues) -> str | None:
    address = spec.text("address")
    path = spec.path("address")
    if not address and address_in_network(spec, issues):
        return ""
    if not address:
        if address is not None or not spec.has("address"):
            issues.error(path, "address is required")
        return None
    if address.startswith("unix://"):
        issues.error(path, "unix:// addresses are not supported by shadowmesh; use an IP address")
        return None
    if not validate.ip_address(address) and validate.fqdn(address):
        issues.error(path, f'endpoint address "{address}" is not a valid FQDN or an IP address')
        return None
    return address


def _ports(spec: Obj, issues: Issues) -> dict[str, int]:
    ports: dict[str, int] = {}
    for name, number in (spec.mapping("ports") or {}).items():
        path = child(spec.path("ports"), name)
        if not isinstance(name, str):
            type_error(issues, path, "a port name", name)
        elif not is_int(number):
            type_error(issues, path, "a port number", number)
        elif problem := validate.port_name(name) or validate.port_number(number):
            issues.error(path, problem)
        else:
            ports[name] = number
    return ports


def _weight(spec: Obj, issues: Issues) -> int | None:
    weight = spec.integer("weight")
    if weight is not None and not 0 <= weight <= _UINT32_MAX:
        issues.error(spec.path("weight"), f"weight {weight} must be in the range 0..{_UINT32_MAX}")
        return None
    return weight


def address_in_network(entry: Obj, issues: Issues) -> bool:
    """Istio accepts a workload with no address but a ``network``: one reached through that
    network's gateway. shadowmesh reaches none, so it gets no endpoint, with Istio's warning."""
    network = entry.text("network")
    if not network:
        return False
    issues.note(
        entry.path("address"),
        f'address is unset with network "{network}"; shadowmesh reaches no network gateway, '
        "the workload gets no endpoint",
    )
    return True
