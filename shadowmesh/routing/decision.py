"""What the route table answers for one request: the contract between routing and the data plane.

Everything here is pure: no sockets, no asyncio. The data plane asks
``RouteTable.route(listener_port, request)`` once per request and acts on the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from shadowmesh.routing.policy import NO_POLICY, RoutePolicy

if TYPE_CHECKING:  # upstreampolicy imports this module (through hashring)
    from shadowmesh.routing.upstreampolicy import UpstreamPolicy


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


# Endpoint, Upstream and Forward are made or hashed for every request: plain classes with
# __slots__ and a hand-written __init__, not frozen dataclasses, whose generated __init__ sets
# each field through object.__setattr__ and whose __hash__ builds a tuple on every call (and which
# mypyc leaves interpreted). ``Final`` keeps them immutable for the type checker. The hot path's
# rules, with their reasons, are in one place: the docstring of ``shadowmesh/_hotpath.py``.


def host_port(host: str, port: object) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000``: an address as Envoy's logs write it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def socket_address(name: object) -> str:
    """``host_port`` of a socket's address tuple (``getsockname()``); "" for anything else."""
    if isinstance(name, tuple) and len(name) >= 2:
        return host_port(str(name[0]), name[1])
    return ""


class Endpoint:
    """One upstream address: where a WorkloadEntry listens for the Service's port."""

    __slots__ = ("address", "port", "_hash", "_text")

    def __init__(self, address: str, port: int) -> None:
        self.address: Final = address
        self.port: Final = port
        self._hash: Final = hash((address, port))
        # As the access log writes it, once per request: formatted once.
        self._text: Final = host_port(address, port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self.port == other.port and self.address == other.address

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Endpoint(address={self.address!r}, port={self.port!r})"

    def __str__(self) -> str:
        return self._text


@dataclass(frozen=True, slots=True)
class Failure:
    """The proxy answers itself, as Envoy would, with its response flag for the access log."""

    status: int
    flag: str  # Envoy response flag: NR, NC, UH, ...
    body: bytes = b""
    cluster: str = ""  # the cluster name when one was chosen (NC, UH), else ""
    location: str = ""  # a redirect's Location (an ingress's httpsRedirect), else ""
    # More response headers, written as they are (a route's redirect or directResponse: its
    # Location and its response header ops); a content-type here replaces text/plain.
    headers: tuple[tuple[bytes, bytes], ...] = ()
    # The route that answered, for the access log ("" when none did); not part of the answer.
    route_name: str = field(default="", compare=False)
    # The route's policy when it has a fault or CORS policy, which act before the router's
    # answer as on a forward (Envoy's filter order); None: the answer is all there is.
    policy: RoutePolicy | None = field(default=None, compare=False)


class Upstream:
    """One chosen upstream: the cluster's name and the endpoint the balancer picked.

    ``release(outcome)`` must be called exactly once when the attempt to it ends, so
    LEAST_REQUEST sees the real number of requests in flight and outlier detection sees the
    attempt's outcome: the response status, or ``routing.outlier``'s CONNECT_FAILURE (refused,
    reset, TLS) or TIMEOUT; NO_OUTCOME (0) reports nothing (the client left, an overflow).
    """

    __slots__ = ("cluster", "endpoint", "balancer")

    def __init__(self, cluster: str, endpoint: Endpoint, balancer: Balancer) -> None:
        self.cluster: Final = cluster  # outbound|8000|v1|httpbin.default.svc.cluster.local
        self.endpoint: Final = endpoint
        self.balancer: Final = balancer

    def __repr__(self) -> str:
        return f"Upstream(cluster={self.cluster!r}, endpoint={self.endpoint!r})"

    def release(self, outcome: int = 0) -> None:
        self.balancer.release(self.endpoint, outcome)


class Balancer(Protocol):
    # The cluster's compiled DestinationRule policy (``routing.upstreampolicy``).
    traffic: UpstreamPolicy

    def pick(self) -> Endpoint | None: ...

    def release(self, endpoint: Endpoint, outcome: int = 0) -> None: ...


class Peer:
    """The downstream connection a request came on, as consistent hashing reads it: the
    client's IP (``useSourceIp``) and, looked up only when asked, ``remote:port`` +
    ``local:port`` (what Envoy hashes for a generated cookie). One per connection, made by the
    data plane; ``addresses`` gives (local, remote, ...) as the access log has them."""

    __slots__ = ("ip", "_addresses")

    def __init__(
        self, ip: str, addresses: Callable[[], tuple[str, str, str]] | None = None
    ) -> None:
        self.ip: Final = ip
        self._addresses: Final = addresses

    def connection(self) -> str:
        if self._addresses is None:
            return ""
        local, remote, _ = self._addresses()
        return remote + local


NO_PEER: Final = Peer("")


class Forward:
    """Send the request to ``primary``; copy it to each of ``shadows`` (already sampled).

    ``policy`` is the compiled policy of the route and of the destination chosen
    (``routing.policy``); ``timeout`` is its timeout too (None: none), kept while the data
    plane reads it there. ``set_cookie``: a ``Set-Cookie`` value the response must carry (a
    consistent-hash cookie made for this request), b"" for none.
    """

    __slots__ = ("primary", "shadows", "timeout", "route_name", "policy", "set_cookie")

    def __init__(
        self,
        primary: Upstream,
        shadows: tuple[Upstream, ...],
        timeout: float | None,  # route timeout in seconds; None: none
        route_name: str = "",
        policy: RoutePolicy = NO_POLICY,
        set_cookie: bytes = b"",
    ) -> None:
        self.primary: Final = primary
        self.shadows: Final = shadows
        self.timeout: Final = timeout
        self.route_name: Final = route_name
        self.policy: Final = policy
        self.set_cookie: Final = set_cookie

    def __repr__(self) -> str:
        return f"Forward(primary={self.primary!r}, shadows={self.shadows!r})"


Decision = Forward | Failure
