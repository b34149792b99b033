"""The kinds shadowmesh stores, with the names kubectl gives them.

kubectl resolves ``vs``, ``virtualservices`` or ``VirtualService.networking.istio.io`` to one
resource type and prints results as ``virtualservice.networking.istio.io/httpbin created`` or
``virtualservices.networking.istio.io "x" not found``; users paste those lines, so they are kept
word for word.
"""

from __future__ import annotations

from dataclasses import dataclass

from shadowmesh.errors import ShadowmeshError


class UnknownKind(ShadowmeshError):
    """A kind name that is none of the kinds shadowmesh stores."""

    def __init__(self, name: str) -> None:
        super().__init__(f'the server doesn\'t have a resource type "{name}"')
        self.name = name


@dataclass(frozen=True)
class KindInfo:
    kind: str  # "VirtualService", as in the documents and the store
    singular: str  # "virtualservice"
    plural: str  # "virtualservices"
    group: str  # "networking.istio.io"; "" for the core group
    short_names: tuple[str, ...]

    @property
    def resource(self) -> str:
        """``virtualservice.networking.istio.io``: the prefix of kubectl's apply lines."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def resources(self) -> str:
        """``virtualservices.networking.istio.io``: the name in kubectl's NotFound errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def names(self) -> tuple[str, ...]:
        """Every spelling kubectl accepts for this kind, lower-cased."""
        base = (self.singular, self.plural, *self.short_names)
        if not self.group:
            return base
        return base + tuple(f"{n}.{self.group}" for n in (self.singular, self.plural))


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Service", "service", "services", "", ("svc",)),
    KindInfo("VirtualService", "virtualservice", "virtualservices", "networking.istio.io", ("vs",)),
    KindInfo(
        "DestinationRule", "destinationrule", "destinationrules", "networking.istio.io", ("dr",)
    ),
    KindInfo("WorkloadEntry", "workloadentry", "workloadentries", "networking.istio.io", ("we",)),
    KindInfo("Comparison", "comparison", "comparisons", "shadowmesh.io", ("cmp",)),
)

_BY_NAME: dict[str, KindInfo] = {name: info for info in KINDS for name in info.names()}
_BY_KIND: dict[str, KindInfo] = {info.kind: info for info in KINDS}


def resolve_kind(name: str) -> KindInfo:
    """The kind a user typed (``vs``, ``Services``, ``dr.networking.istio.io``...).

    Raises UnknownKind with kubectl's wording when it names none.
    """
    info = _BY_NAME.get(name.strip().lower())
    if info is None:
        raise UnknownKind(name)
    return info


def kind_info(kind: str) -> KindInfo:
    """The KindInfo of a stored kind name (``VirtualService``)."""
    return _BY_KIND[kind]


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
