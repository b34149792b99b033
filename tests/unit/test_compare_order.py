"""The order of a compared request's shadow copies: drawn per request, so neither candidate nor
baseline is the one that always leaves last (closest to the primary) whatever ``mirrors:``
says."""

from __future__ import annotations

import io
import math
from collections import Counter
from itertools import permutations

from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.decision import Endpoint, Upstream


class OneEndpoint:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def pick(self) -> Endpoint | None:
        return self.endpoint

    def release(self, endpoint: Endpoint) -> None:
        pass


def upstream(subset: str) -> Upstream:
    endpoint = Endpoint("127.0.0.1", 8000)
    cluster = f"outbound|8000|{subset}|app.default.svc.cluster.local"
    return Upstream(cluster, endpoint, OneEndpoint(endpoint))


def dispatcher() -> Dispatcher:
    return Dispatcher(ShadowLimits(), Stats(), AccessLog(io.StringIO()))


def test_two_copies_go_out_in_either_order_half_the_time() -> None:
    d = dispatcher()
    candidate, baseline = upstream("v2"), upstream("v1b")
    draws = 2000
    first = Counter(d.order((candidate, baseline))[0].cluster for _ in range(draws))
    # Either order of mirrors: the same split, within four binomial deviations of a half.
    swapped = Counter(d.order((baseline, candidate))[0].cluster for _ in range(draws))
    for counts in (first, swapped):
        assert set(counts) == {candidate.cluster, baseline.cluster}
        assert abs(counts[candidate.cluster] - draws / 2) < 4 * math.sqrt(draws / 4), counts
    assert sorted(u.cluster for u in d.order((candidate, baseline))) == sorted(
        (candidate.cluster, baseline.cluster)
    )


def test_one_copy_stays_and_three_are_shuffled() -> None:
    d = dispatcher()
    alone = (upstream("v2"),)
    assert d.order(alone) is alone
    three = (upstream("a"), upstream("b"), upstream("c"))
    seen = Counter(tuple(u.cluster for u in d.order(three)) for _ in range(600))
    assert set(seen) == {tuple(u.cluster for u in p) for p in permutations(three)}
