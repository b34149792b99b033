"""Without a baseline, noise measured on the primary itself: a field whose value differs
between two primary responses to the same request (same method, target and body) is volatile
for that endpoint from then on, as Diffy learns noise from two copies of the same code.

The primary is called with the same request more than once only when clients repeat
themselves, so this learns from traffic that happens to repeat: a request seen once teaches
nothing. Kept in memory, bounded, per Comparison and rules (new rules or a restarted worker
learn again). The field's verdict turns to noise back to its first request (the store keeps
the flag); the endpoint's differing count of the requests before stays as it was. A body is
its first maxBodyBytes, as the data plane keeps it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from shadowmesh.compare.analysis import Outcome, Rules
from shadowmesh.compare.diff import diff
from shadowmesh.compare.endpoints import endpoint_name
from shadowmesh.compare.paths import field_of

REQUESTS_KEPT = 256  # primary responses remembered per Comparison, least recently seen out
FIELDS_KEPT = 200  # varying fields remembered per endpoint


def varying_fields(previous: dict[str, Any], current: dict[str, Any], rules: Rules) -> set[str]:
    """The fields in which two primary responses to one request differ. Nothing when their
    status differs: then the request had another outcome (201 then 409), not a volatile value,
    and a status is never volatile."""
    differences = [
        d for d in diff(previous, current) if not rules.ignored(d) and not rules.tolerated(d)
    ]
    fields = {field_of(d.path) for d in differences}
    return set() if "status" in fields else fields


class PrimaryRepeats:
    """The primary responses last seen per request, and what was learned from repeats."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[str, str, bytes], dict[str, Any]] = OrderedDict()
        self._varying: dict[str, set[str]] = {}

    def varying(self, method: str, target: str) -> frozenset[str]:
        return frozenset(self._varying.get(endpoint_name(method, target), ()))

    def learn(self, method: str, target: str, body: bytes, outcome: Outcome, rules: Rules) -> bool:
        """Remembers this primary response; True when it taught a field this outcome has."""
        tree = outcome.trees[0] if outcome.trees else None
        if tree is None:
            return False
        key = (method, target, hashlib.sha256(body).digest())
        previous = self._seen.pop(key, None)
        self._seen[key] = tree
        while len(self._seen) > REQUESTS_KEPT:
            self._seen.popitem(last=False)
        if previous is None:
            return False
        known = self._varying.setdefault(endpoint_name(method, target), set())
        new = varying_fields(previous, tree, rules) - known
        new = set(sorted(new)[: max(0, FIELDS_KEPT - len(known))])
        known |= new
        return bool(new & outcome.fields.keys())
