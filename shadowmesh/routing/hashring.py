"""Consistent hashing: the request's hash key (Istio's ``consistentHash``) and the two tables
Envoy looks it up in, the ring hash and Maglev.

The key, as Envoy's route ``hash_policy`` computes it (istio/istio
``pilot/pkg/networking/core/route/route.go`` consistentHashToHashPolicy; envoyproxy/envoy
``source/common/router/config_impl.cc`` HashPolicyImpl):

- ``httpHeaderName``: the header's value; absent, no hash.
- ``httpCookie``: the cookie's value. Absent and ``ttl`` set: Envoy makes one from the
  downstream connection's addresses and returns it in ``Set-Cookie`` (``name="<hex>";
  Max-Age=<ttl>; Path=<path>; <attributes>; HttpOnly``; ``ttl: 0s`` gives a session cookie);
  the request is hashed on that new value, so the next one, carrying it, lands on the same
  endpoint. No ``ttl``: no cookie, no hash.
- ``useSourceIp``: the downstream peer's address.
- ``httpQueryParameterName``: the first value of that query parameter; absent, no hash.
- No hash: the balancer picks at random (Envoy's ring hash with no key).

The tables (envoyproxy/envoy ``source/extensions/load_balancing_policies/ring_hash`` and
``maglev``): the ring puts ``ceil(scale x weight)`` points per endpoint, hashed from
``"<address>:<port>_<i>"``, with ``scale`` making the lightest endpoint get
``minimumRingSize`` (default 1024) points; a key goes to the first point at or after it.
Maglev fills a prime-sized table (default 65537) by each endpoint's permutation (offset and
skip from two hashes of its address), heavier endpoints taking slots more often; a key goes to
``table[key % size]``. Envoy hashes with xxHash64; shadowmesh uses BLAKE2b's first 8 bytes
(in C, in the standard library), so the same key may land on another endpoint than Envoy's
would, with the same spread and stickiness.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import unquote_plus

from shadowmesh.routing.decision import Peer, RequestView

NO_HASH: Final = -1
DEFAULT_RING_SIZE: Final = 1024
MAX_RING_SIZE: Final = 8 * 1024 * 1024  # Envoy's default maximum_ring_size
DEFAULT_MAGLEV_SIZE: Final = 65537


def hash64(data: bytes, seed: int = 0) -> int:
    """A 64-bit hash of ``data`` (``seed`` gives an independent one, as xxHash64's seed)."""
    digest = hashlib.blake2b(data, digest_size=8, salt=seed.to_bytes(16, "little")).digest()
    return int.from_bytes(digest, "little")


class HashPolicy:
    """How a request's hash key is found: one of Istio's four sources."""

    __slots__ = (
        "header",
        "cookie",
        "cookie_path",
        "cookie_ttl",
        "cookie_attributes",
        "source_ip",
        "query",
    )

    def __init__(
        self,
        *,
        header: str = "",
        cookie: str = "",
        cookie_path: str = "",
        cookie_ttl: float | None = None,
        cookie_attributes: tuple[tuple[str, str], ...] = (),
        source_ip: bool = False,
        query: str = "",
    ) -> None:
        self.header: Final = header.lower()
        self.cookie: Final = cookie
        self.cookie_path: Final = cookie_path
        self.cookie_ttl: Final = cookie_ttl
        self.cookie_attributes: Final = cookie_attributes
        self.source_ip: Final = source_ip
        self.query: Final = query

    def key(self, request: RequestView, peer: str = "") -> int:
        """The request's hash, or NO_HASH. ``peer``: the downstream address (useSourceIp)."""
        if self.header:
            value = request.header(self.header)
            return NO_HASH if value is None else hash64(value.encode("latin-1"))
        if self.cookie:
            found = cookie_value(request.header("cookie"), self.cookie)
            return NO_HASH if found is None else hash64(found.encode("latin-1"))
        if self.source_ip:
            return hash64(peer.encode("latin-1"))
        if self.query:
            found = query_value(request.path, self.query)
            return NO_HASH if found is None else hash64(found.encode("latin-1"))
        return NO_HASH

    def hash_of(self, request: RequestView, peer: Peer) -> tuple[int, bytes]:
        """(the request's hash or NO_HASH, a ``Set-Cookie`` value to answer with or b"")."""
        if self.cookie and self.cookie_ttl is not None:
            found = cookie_value(request.header("cookie"), self.cookie)
            if found is None:
                return self.new_cookie(peer.connection())
            return hash64(found.encode("latin-1")), b""
        return self.key(request, peer.ip), b""

    def generates_cookie(self) -> bool:
        return bool(self.cookie) and self.cookie_ttl is not None

    def new_cookie(self, connection: str) -> tuple[int, bytes]:
        """For a request without the cookie: (its hash, the ``Set-Cookie`` value to send).

        Envoy's addDownstreamSetCookie: the value is the hex hash of the downstream
        connection's remote then local address (``connection``), so requests racing on one
        connection get the same cookie.
        """
        value = f"{hash64(connection.encode('latin-1')):016x}"
        parts = [f'{self.cookie}="{value}"']
        ttl = self.cookie_ttl or 0.0
        if ttl:
            parts.append(f"Max-Age={int(ttl)}")
        if self.cookie_path:
            parts.append(f"Path={self.cookie_path}")
        parts.extend(f"{k}={v}" if v else k for k, v in self.cookie_attributes)
        parts.append("HttpOnly")
        return hash64(value.encode("latin-1")), "; ".join(parts).encode("latin-1")

    def describe(self) -> dict[str, Any]:
        if self.header:
            return {"header": {"headerName": self.header}}
        if self.cookie:
            cookie: dict[str, Any] = {"name": self.cookie}
            if self.cookie_path:
                cookie["path"] = self.cookie_path
            if self.cookie_ttl is not None:
                cookie["ttl"] = self.cookie_ttl
            if self.cookie_attributes:
                cookie["attributes"] = [list(a) for a in self.cookie_attributes]
            return {"cookie": cookie}
        if self.source_ip:
            return {"connectionProperties": {"sourceIp": True}}
        return {"queryParameter": {"name": self.query}}


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header (quotes dropped, as Envoy's
    parseCookieValue), or None."""
    if not header:
        return None
    for part in header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def query_value(target: str, name: str) -> str | None:
    """The first value of query parameter ``name`` in a request target, decoded, or None."""
    _, mark, query = target.partition("?")
    if not mark:
        return None
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if unquote_plus(key) == name:
            return unquote_plus(value)
    return None


class RingHash:
    """Envoy's ring hash over weighted endpoints (indices into the balancer's endpoints)."""

    __slots__ = ("_hashes", "_owners")

    def __init__(
        self,
        keys: Sequence[str],
        weights: Sequence[int],
        members: Sequence[int],
        minimum_ring_size: int = DEFAULT_RING_SIZE,
    ) -> None:
        points: list[tuple[int, int]] = []
        total = sum(weights[i] for i in members)
        if members and total:
            normalized = [(i, weights[i] / total) for i in members]
            smallest = min(w for _, w in normalized)
            scale = min(math.ceil(smallest * minimum_ring_size) / smallest, MAX_RING_SIZE)
            current = 0.0
            target = 0.0
            for i, weight in normalized:
                target += scale * weight
                n = 0
                while current < target:
                    points.append((hash64(f"{keys[i]}_{n}".encode("latin-1")), i))
                    n += 1
                    current += 1
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [i for _, i in points]

    def __len__(self) -> int:
        return len(self._hashes)

    def lookup(self, key: int) -> int:
        """The endpoint index for a hash (-1: an empty ring)."""
        hashes = self._hashes
        if not hashes:
            return -1
        at = bisect_left(hashes, key)
        return self._owners[at if at < len(hashes) else 0]


class Maglev:
    """Envoy's weighted Maglev table (indices into the balancer's endpoints)."""

    __slots__ = ("_table", "size")

    def __init__(
        self,
        keys: Sequence[str],
        weights: Sequence[int],
        members: Sequence[int],
        size: int = DEFAULT_MAGLEV_SIZE,
    ) -> None:
        self.size: Final = size
        table = [-1] * size
        if members:
            heaviest = max(weights[i] for i in members)
            # Per member: offset, skip, next, target weight.
            offsets = [hash64(keys[i].encode("latin-1"), 0) % size for i in members]
            skips = [hash64(keys[i].encode("latin-1"), 1) % (size - 1) + 1 for i in members]
            nexts = [0] * len(members)
            targets = [0.0] * len(members)
            filled = 0
            iteration = 1
            while filled < size:
                for k, i in enumerate(members):
                    # An endpoint of the heaviest weight takes a slot every round, one a third
                    # as heavy every third round.
                    if iteration * weights[i] < targets[k]:
                        continue
                    targets[k] += heaviest
                    slot = (offsets[k] + skips[k] * nexts[k]) % size
                    while table[slot] >= 0:
                        nexts[k] += 1
                        slot = (offsets[k] + skips[k] * nexts[k]) % size
                    table[slot] = i
                    nexts[k] += 1
                    filled += 1
                    if filled == size:
                        break
                iteration += 1
        self._table = table

    def lookup(self, key: int) -> int:
        return self._table[key % self.size]
