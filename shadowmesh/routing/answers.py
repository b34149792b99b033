"""A route's ``redirect`` and ``directResponse``: answered by routing itself, as Envoy's router
answers a redirect or direct-response route, with nothing sent upstream and no shadow.

Envoy (``source/common/router/router.cc``, ``config_impl.cc``, ``http/utility.cc``
``newUri`` and ``processRequestHost``; traffic-policy.md 1.7, 1.8 and section 6):
- a redirect answers its code with ``Location: <scheme>://<host><port><path>``, no body;
- a direct response answers its status and body, ``content-type: text/plain`` when there is a
  body and the route's response header ops set none; a 201 or 3xx one carries a ``Location``
  too, the request's own URL;
- both get the route's response header ops; neither has a response flag.
"""

from __future__ import annotations

from typing import Final

from shadowmesh.routing.decision import Failure, RequestView
from shadowmesh.routing.policy import Header, HeaderOps, RoutePolicy

LOCATION = b"location"


class Redirect:
    """A compiled ``redirect`` (istiod's ``ApplyRedirect`` already applied)."""

    __slots__ = (
        "code",
        "scheme",
        "host",
        "port",
        "port_selector",
        "from_request_port",
        "path",
        "prefix",
        "matched",
        "ops",
        "route_name",
        "before",
    )

    def __init__(
        self,
        code: int,
        *,
        scheme: str = "",
        host: str = "",
        port: int = 0,
        port_selector: bool = False,
        from_request_port: bool = False,
        path: str = "",
        prefix: str | None = None,
        matched: int = 1,
        ops: HeaderOps | None = None,
        route_name: str = "",
        before: RoutePolicy | None = None,
    ) -> None:
        self.code: Final = code
        self.scheme: Final = scheme  # scheme_redirect; "": the request's
        self.host: Final = host  # host_redirect; "": the request's Host, its port maybe stripped
        self.port: Final = port  # an explicit ``port``; 0: none
        # ``port`` or ``derivePort`` was set (istiod then drops :80 for http, :443 for https).
        self.port_selector: Final = port_selector
        # FROM_REQUEST_PORT: istiod writes the listener's port, the port the request came on.
        self.from_request_port: Final = from_request_port
        self.path: Final = path  # path_redirect; "": the request's path (or ``prefix``)
        self.prefix: Final = prefix  # prefix_rewrite of the matched portion
        self.matched: Final = matched  # as ``policy.Rewrite.matched``
        self.ops: Final = ops  # the route's response header ops
        self.route_name: Final = route_name
        self.before: Final = before  # the route's fault and CORS (compile_policy.before_router)

    def answer(self, request: RequestView, listener_port: int) -> Failure:
        location = self.location(request, listener_port).encode("latin-1")
        headers: list[Header] = [(LOCATION, location)]
        if self.ops is not None:
            headers = self.ops.apply(headers)
        return Failure(
            self.code, "-", headers=tuple(headers), route_name=self.route_name, policy=self.before
        )

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"redirect": {"code": self.code}}
        shown = out["redirect"]
        assert isinstance(shown, dict)
        for key, value in (
            ("scheme", self.scheme),
            ("authority", self.host),
            ("uri", self.path),
            ("prefixRewrite", self.prefix),
        ):
            if value:
                shown[key] = value
        if self.port_selector:
            shown["port"] = "FROM_REQUEST_PORT" if self.from_request_port else self.port
        if self.ops is not None:
            out["responseHeaders"] = self.ops.describe()
        _describe_before(self.before, out)
        return out

    def location(self, request: RequestView, listener_port: int) -> str:
        """Envoy's ``Utility::newUri`` over what istiod's ``ApplyRedirect`` configured."""
        scheme = self.scheme or request.scheme
        number = self.port
        if self.port_selector:
            if self.from_request_port:
                number = listener_port
            # The listener's TLS-ness stands for the scheme when none is given.
            if (number, scheme) in ((80, "http"), (443, "https")):
                number = 0
        port = f":{number}" if number else ""
        host = self.host or _request_host(request, scheme, port)
        return f"{scheme}://{host}{port}{self._path(request.path)}"

    def _path(self, target: str) -> str:
        if self.path:
            if "?" in self.path:  # path_redirect's own query wins over the request's
                path = self.path
            else:
                query = target.find("?")
                path = self.path if query < 0 else self.path + target[query:]
        elif self.prefix is not None:
            path = prefix_rewrite(target, self.prefix, self.matched)
        else:
            path = target
        return path if path.startswith("/") else "/" + path


def prefix_rewrite(target: str, prefix: str, matched: int) -> str:
    """The matched portion of ``target`` replaced (as ``policy.Rewrite.path``, on text)."""
    if matched < 0:
        query = target.find("?")
        return prefix if query < 0 else prefix + target[query:]
    return prefix + target[matched:]


def _request_host(request: RequestView, scheme: str, port: str) -> str:
    """Envoy's ``processRequestHost``: the Host's port goes when a port is given, or when the
    scheme changes from ``x-forwarded-proto``'s and the port was that protocol's default."""
    host = request.authority
    if not host:
        return host
    end = host.rfind("]:") + 1 if host.startswith("[") else host.rfind(":")
    if end <= 0:
        return host
    request_port = host[end:]
    forwarded = request.header("x-forwarded-proto") or request.scheme
    remove = bool(port)
    if scheme != forwarded:
        remove |= forwarded == "https" and request_port == ":443"
        remove |= forwarded == "http" and request_port == ":80"
    return host[:end] if remove else host


class DirectResponse:
    """A compiled ``directResponse``: its answer is the same for every request but for the
    ``Location`` of a 201 or 3xx."""

    __slots__ = (
        "status",
        "body",
        "ops",
        "headers",
        "with_location",
        "route_name",
        "before",
        "_failure",
    )

    def __init__(
        self,
        status: int,
        body: bytes,
        ops: HeaderOps | None = None,
        route_name: str = "",
        before: RoutePolicy | None = None,
    ) -> None:
        self.status: Final = status
        self.body: Final = body
        self.ops: Final = ops
        self.headers: Final = tuple(ops.apply([])) if ops is not None else ()
        # router.cc: a Location for 201 and 3xx, which for a direct response is the request's URL.
        self.with_location: Final = status == 201 or 300 <= status <= 399
        self.route_name: Final = route_name
        self.before: Final = before  # the route's fault and CORS (compile_policy.before_router)
        self._failure: Final = Failure(
            status, "-", body, headers=self.headers, route_name=route_name, policy=before
        )

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "directResponse": {"status": self.status, "bodyBytes": len(self.body)}
        }
        if self.ops is not None:
            out["responseHeaders"] = self.ops.describe()
        _describe_before(self.before, out)
        return out

    def answer(self, request: RequestView, listener_port: int) -> Failure:
        if not self.with_location:
            return self._failure
        url = f"{request.scheme}://{request.authority}{request.path}".encode("latin-1")
        headers: list[Header] = [(LOCATION, url)]
        if self.ops is not None:
            headers = self.ops.apply(headers)
        return Failure(
            self.status,
            "-",
            self.body,
            headers=tuple(headers),
            route_name=self.route_name,
            policy=self.before,
        )


class NoAction:
    """A redirect whose code Envoy has no enum for (300, 304, 305...): istiod leaves the route
    without an action (``Redirect Code %d is not yet supported``). Answered 404 NR here."""

    __slots__ = ("route_name",)

    def __init__(self, route_name: str = "") -> None:
        self.route_name: Final = route_name

    def describe(self) -> dict[str, object]:
        return {"noAction": "redirect code not supported: 404 NR"}

    def answer(self, request: RequestView, listener_port: int) -> Failure:
        return Failure(404, "NR", route_name=self.route_name)


Answer = Redirect | DirectResponse | NoAction


def _describe_before(before: RoutePolicy | None, out: dict[str, object]) -> None:
    """What acts before the answer, for ``/config_dump``: the route's CORS policy."""
    if before is not None and before.cors is not None:
        out["corsPolicy"] = before.cors.describe()
