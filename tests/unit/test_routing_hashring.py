"""Consistent hashing: hash keys from requests, Envoy's ring hash and Maglev tables."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shadowmesh.routing.balance import MaglevBalancer, RingHashBalancer
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.hashring import (
    NO_HASH,
    HashPolicy,
    Maglev,
    RingHash,
    cookie_value,
    hash64,
    query_value,
)
from shadowmesh.routing.outlier import OutlierConfig, OutlierDetector
from shadowmesh.routing.testing import SimpleRequest, within_binomial

KEYS = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]


def _spread(table: RingHash | Maglev, keys: int = 6000) -> Counter[int]:
    return Counter(table.lookup(hash64(f"k{i}".encode())) for i in range(keys))


@pytest.mark.parametrize("kind", [RingHash, Maglev])
def test_tables_spread_keys_by_weight(kind: type[RingHash] | type[Maglev]) -> None:
    table = kind(KEYS, [1, 1, 2], [0, 1, 2])
    counts = _spread(table)
    # Tables are not random draws; a ring of ~4k points spreads within a few percent.
    assert abs(counts[2] / 6000 - 0.5) < 0.06
    assert abs(counts[0] / 6000 - 0.25) < 0.06


def test_ring_size_follows_envoys_scale() -> None:
    # scale = ceil(lightest share x minimumRingSize) / lightest share: the lightest endpoint
    # gets a whole number of points, the ring at least minimumRingSize.
    assert len(RingHash(KEYS, [1, 1, 2], [0, 1, 2], 1024)) == 1024  # 256, 256, 512
    assert len(RingHash(KEYS, [1, 1, 1], [0, 1, 2], 1024)) == 1026  # 342 each
    assert len(RingHash(KEYS, [1, 1, 1], [0, 1, 2], 64)) == 66


@pytest.mark.parametrize("kind", [RingHash, Maglev])
def test_removing_an_endpoint_moves_only_its_keys(kind: type[RingHash] | type[Maglev]) -> None:
    before = kind(KEYS, [1, 1, 1], [0, 1, 2])
    after = kind(KEYS, [1, 1, 1], [0, 2])
    moved = 0
    for i in range(3000):
        key = hash64(f"k{i}".encode())
        was, now = before.lookup(key), after.lookup(key)
        assert now != 1
        if was != 1 and was != now:
            moved += 1
    assert moved < 3000 * 0.1  # Maglev moves a few; the ring none


def test_hash_policies_read_istios_four_sources() -> None:
    request = SimpleRequest(
        path="/p?user=a%20b&user=c",
        headers={"x-user": "alice", "cookie": 'theme=dark; session="s-1"'},
    )
    assert HashPolicy(header="X-User").key(request) == hash64(b"alice")
    assert HashPolicy(cookie="session").key(request) == hash64(b"s-1")
    assert HashPolicy(query="user").key(request) == hash64(b"a b")
    assert HashPolicy(source_ip=True).key(request, "10.1.2.3") == hash64(b"10.1.2.3")
    bare = SimpleRequest(path="/p")
    for policy in (HashPolicy(header="x"), HashPolicy(cookie="c"), HashPolicy(query="q")):
        assert policy.key(bare) == NO_HASH


def test_cookie_and_query_parsing() -> None:
    assert cookie_value(None, "a") is None
    assert cookie_value("a=1; b=2", "b") == "2"
    assert cookie_value("ab=1", "a") is None
    assert query_value("/x", "a") is None
    assert query_value("/x?b=1&a=2&a=3", "a") == "2"


def test_a_generated_cookie_as_envoy_writes_it() -> None:
    policy = HashPolicy(
        cookie="sticky",
        cookie_path="/app",
        cookie_ttl=60.0,
        cookie_attributes=(("SameSite", "Lax"), ("Secure", "")),
    )
    assert policy.generates_cookie()
    key, header = policy.new_cookie("127.0.0.1:5000127.0.0.1:8000")
    value = f"{hash64(b'127.0.0.1:5000127.0.0.1:8000'):016x}"
    assert (
        header
        == f'sticky="{value}"; Max-Age=60; Path=/app; SameSite=Lax; Secure; HttpOnly'.encode()
    )
    # The next request carries it and hashes to the same key.
    again = SimpleRequest(headers={"cookie": header.split(b";")[0].decode()})
    assert policy.key(again) == key
    session = HashPolicy(cookie="s", cookie_ttl=0.0)
    assert session.new_cookie("ab")[1].endswith(b'"; HttpOnly')  # no Max-Age: a session cookie
    assert not HashPolicy(cookie="s").generates_cookie()  # no ttl: no cookie


@pytest.mark.parametrize("kind", [RingHashBalancer, MaglevBalancer])
def test_hash_balancers_skip_ejected_endpoints_and_keep_the_rest(
    kind: type[RingHashBalancer] | type[MaglevBalancer],
) -> None:
    endpoints = tuple(Endpoint("127.0.0.1", 9000 + i) for i in range(3))
    od = OutlierDetector(OutlierConfig(max_ejection_percent=100, consecutive_5xx=1), 3)
    balancer = kind(endpoints, random.Random(1), (), od)
    before = {k: balancer.pick_hashed(hash64(f"k{k}".encode())) for k in range(300)}
    balancer.release(endpoints[0], 503)
    assert balancer.ejected(endpoints[0])
    after = {k: balancer.pick_hashed(hash64(f"k{k}".encode())) for k in range(300)}
    assert endpoints[0] not in after.values()
    kept = [k for k in before if before[k] != endpoints[0]]
    assert sum(before[k] == after[k] for k in kept) > 0.85 * len(kept)
    # No key: a random endpoint among the usable ones.
    picks = Counter(balancer.pick() for _ in range(2000))
    assert set(picks) == {endpoints[1], endpoints[2]}
    assert within_binomial(picks[endpoints[1]], 2000, 0.5)
