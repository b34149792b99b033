"""Gateway names, as VirtualServices and their matches bind to them (Istio's rules)."""

from __future__ import annotations

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues


def check_gateway_name(name: str, path: str, issues: Issues) -> None:
    """Istio's ``validateGatewayNames`` for one name (``mesh``, ``ns/name``, or legacy forms)."""
    if name == "mesh":
        return
    namespace, slash, short = name.partition("/")
    if not slash:
        if "." in name:
            parts = name.split(".")
            issues.warn(
                f'{issues.label}: {path}: using legacy gatewayName format "{name}"; prefer the '
                f'<namespace>/<name> format: "{parts[1]}/{parts[0]}"'
            )
        problem = validate.fqdn(name)
        if problem:
            issues.error(path, problem)
        return
    if not namespace or not short:
        issues.error(path, "config namespace and gateway name cannot be empty")
    if not validate.istio_label(namespace):
        issues.error(path, f'invalid value for namespace: "{namespace}"')
    if not validate.istio_label(short):
        issues.error(path, f'invalid value for gateway name: "{short}"')
