"""What the route table answers for one request: the contract between routing and the data plane.

Everything here is pure: no sockets, no asyncio. The data plane asks
``RouteTable.route(listener_port, request)`` once per request and acts on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RequestView(Protocol):
    """What routing may read of a request. The data plane implements it lazily."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str:
        """The origin-form target as received: path plus ``?query``."""
        ...

    @property
    def authority(self) -> str:
        """Host header (or absolute-form authority), as sent, possibly with ``:port``."""
        ...

    @property
    def scheme(self) -> str: ...

    def header(self, name: str) -> str | None:
        """First value of a header; ``name`` is lower-case."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream address: where a WorkloadEntry listens for the Service's port."""

    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Failure:
    """The proxy answers itself, as Envoy would, with its response flag for the access log."""

    status: int
    flag: str  # Envoy response flag: NR, NC, UH, ...
    body: bytes = b""
    cluster: str = ""  # the cluster name when one was chosen (NC, UH), else ""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One chosen upstream: the cluster's name and the endpoint the balancer picked.

    ``release()`` must be called exactly once when the request to it ends, so
    LEAST_REQUEST sees the real number of requests in flight.
    """

    cluster: str  # outbound|8000|v1|httpbin.default.svc.cluster.local
    endpoint: Endpoint
    balancer: Balancer

    def release(self) -> None:
        self.balancer.release(self.endpoint)


class Balancer(Protocol):
    def pick(self) -> Endpoint | None: ...

    def release(self, endpoint: Endpoint) -> None: ...


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request to ``primary``; copy it to each of ``shadows`` (already sampled)."""

    primary: Upstream
    shadows: tuple[Upstream, ...]
    timeout: float | None  # route timeout in seconds; None: none
    route_name: str = ""


Decision = Forward | Failure
