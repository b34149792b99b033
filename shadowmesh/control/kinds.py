"""The kinds shadowmesh stores, with the names kubectl gives them (the table: model/kinds.py).

kubectl resolves ``vs``, ``virtualservices`` or ``VirtualService.networking.istio.io`` to one
resource type and prints results as ``virtualservice.networking.istio.io/httpbin created`` or
``virtualservices.networking.istio.io "x" not found``; users paste those lines, so they are kept
word for word.
"""

from __future__ import annotations

from shadowmesh.errors import ShadowmeshError
from shadowmesh.model.kinds import KINDS, KindInfo, by_name, kind_info

__all__ = ["KINDS", "KindInfo", "UnknownKind", "kind_info", "resolve_kind"]


class UnknownKind(ShadowmeshError):
    """A kind name that is none of the kinds shadowmesh stores."""

    def __init__(self, name: str) -> None:
        super().__init__(f'the server doesn\'t have a resource type "{name}"')
        self.name = name


def resolve_kind(name: str) -> KindInfo:
    """The kind a user typed (``vs``, ``Services``, ``dr.networking.istio.io``...).

    Raises UnknownKind with kubectl's wording when it names none.
    """
    info = by_name(name)
    if info is None:
        raise UnknownKind(name)
    return info


def applied_line(kind: str, name: str, outcome: str) -> str:
    """``virtualservice.networking.istio.io/httpbin created``, as kubectl apply prints it."""
    return f"{kind_info(kind).resource}/{name} {outcome}"


def deleted_line(kind: str, name: str) -> str:
    """``virtualservice.networking.istio.io "httpbin" deleted``, as kubectl delete prints it."""
    return f'{kind_info(kind).resource} "{name}" deleted'


def not_found_error(kind: str, name: str, source: str = "") -> str:
    """kubectl's NotFound error; with ``source``, the form ``delete -f FILE`` prints."""
    what = f'{kind_info(kind).resources} "{name}" not found'
    if source:
        return f'Error from server (NotFound): error when deleting "{source}": {what}'
    return f"Error from server (NotFound): {what}"
