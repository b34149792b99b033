"""The scenarios: what each sends, where its shadow goes, and how that shadow behaves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What stands behind subset v2: nginx (fast), bench.shadow (ok: fast and counting; slow; frozen),
# or a port nothing listens on (dead).
Shadow = Literal["fast", "counting", "slow", "frozen", "dead"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    mirror_percent: float = 0.0
    shadow: Shadow = "fast"
    access_log: bool = True
    connections: int | None = None  # None: --connections
    body_bytes: int = 0  # > 0: wrk POSTs a body of this size
    direct: bool = False  # also measure wrk straight to the upstream, for latency added
    min_seconds: int = 0  # a floor on the run's length (a soak)
    compare: bool = False  # shadowmesh also compares every mirrored request (a Comparison at 100%)

    def clients(self, default: int) -> int:
        return self.connections if self.connections is not None else default


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("passthrough", "route 100% to v1, no mirror, access log on"),
    Scenario("passthrough-nolog", "as passthrough, access log off", access_log=False),
    Scenario("mirror100", "mirror every request to v2 (fast nginx)", mirror_percent=100),
    Scenario("mirror10", "mirror 10% of requests to v2 (fast nginx)", mirror_percent=10),
    Scenario(
        "mirror100-compare",
        "as mirror100, and a Comparison of v1 and v2 at 100% sample (nginx: plain mirror100)",
        mirror_percent=100,
        compare=True,
    ),
    Scenario(
        "slow-shadow",
        "mirror 100% to a v2 that answers after 200 ms",
        mirror_percent=100,
        shadow="slow",
    ),
    Scenario(
        "frozen-shadow",
        "mirror 100% to a v2 that accepts and never answers",
        mirror_percent=100,
        shadow="frozen",
    ),
    Scenario(
        "dead-shadow",
        "mirror 100% to a v2 port nothing listens on",
        mirror_percent=100,
        shadow="dead",
    ),
    Scenario(
        "post-1mib-mirrored",
        "POST 1 MiB bodies, mirrored 100% to a v2 that counts whole bodies",
        mirror_percent=100,
        shadow="counting",
        body_bytes=MIB,
    ),
    Scenario("c1000", "pass-through with 1,000 keep-alive connections", connections=1000),
    Scenario(
        "c1-latency",
        "one connection: latency added over a direct call to v1",
        connections=1,
        direct=True,
    ),
)

# Run only when named: a minute of load against a frozen shadow, for RSS growth.
EXTRA: tuple[Scenario, ...] = (
    Scenario(
        "frozen-soak",
        "60 s of full load mirrored to a frozen v2: RSS growth",
        mirror_percent=100,
        shadow="frozen",
        min_seconds=60,
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS + EXTRA}


def pick(names: str | None) -> list[Scenario]:
    """The scenarios named in a comma-separated list (all defaults when None), in that order."""
    if not names:
        return list(SCENARIOS)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in chosen]
