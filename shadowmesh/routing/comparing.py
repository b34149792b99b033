"""The Comparisons, compiled for the data plane: per primary cluster, what to capture.

Resolved here, once per route-table compile, so the hot path neither reads ``model`` nor parses
a cluster name: the stream looks its primary's cluster up in ``RouteTable.compare_rules`` and
each shadow's cluster up in the rule's ``roles``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shadowmesh.model.comparison import Comparison, sampled
from shadowmesh.routing.clusters import ClusterSet


class CompareRule:
    """One Comparison as the stream uses it (read per compared request)."""

    __slots__ = ("key", "max_body_bytes", "roles", "_comparison")

    def __init__(self, comparison: Comparison, roles: dict[str, str]) -> None:
        self.key: Final = comparison.key  # (namespace, name)
        self.max_body_bytes: Final = comparison.max_body_bytes
        # Shadow cluster name -> "candidate" or "baseline".
        self.roles: Final = roles
        self._comparison: Final = comparison

    def sampled(self, request_id: bytes) -> bool:
        """Whether this request is compared (the same answer for the same id, always)."""
        return sampled(self._comparison, request_id.decode("latin-1"))

    def role(self, cluster: str) -> str:
        return self.roles.get(cluster, "")


def compare_rules(
    comparisons: Iterable[Comparison], clusters: ClusterSet
) -> dict[str, CompareRule]:
    """Primary cluster name -> its Comparison's rule, for every port of the primary subset."""
    out: dict[str, CompareRule] = {}
    for comparison in comparisons:
        host = comparison.fqdn
        candidates = clusters.clusters_of(host, comparison.candidate).values()
        roles = {c.name: "candidate" for c in candidates}
        if comparison.baseline is not None:
            for c in clusters.clusters_of(host, comparison.baseline).values():
                roles.setdefault(c.name, "baseline")
        rule = CompareRule(comparison, roles)
        for c in clusters.clusters_of(host, comparison.primary).values():
            out.setdefault(c.name, rule)
    return out
