"""The admin API: apply, delete and get config, see the route table and the counters.

Like Envoy's admin port it listens on loopback by default, unauthenticated there; bound
elsewhere it requires a bearer token (``admin.auth``) on every request but ``GET /ready`` and
the web page's static files (``admin.ui``: code, no data; its data comes from the rest). It
refuses what a web page could make a browser send it, token or not: a request with a foreign
``Origin`` or a cross-site ``Sec-Fetch-Site`` (a ``fetch`` or a form post from any other page,
one on localhost included), and, without a token, a request whose ``Host`` is a DNS name other
than localhost (DNS rebinding, where evil.example resolves to 127.0.0.1). Config changes only
through POST.

Config endpoints (apply, delete, get, config dump) run on the config thread
(``control.offload``), one at a time, so the serving loop keeps serving while a large config is
parsed, compiled, committed or serialised; the rest are quick and answered on the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from shadowmesh.admin import comparisons, proxyconfig, ui
from shadowmesh.admin.auth import authorized
from shadowmesh.admin.http import (
    CONTINUE,
    MAX_HEAD,
    HttpError,
    Request,
    Response,
    body_length,
    expects_continue,
    json_response,
    linger,
    read_body,
    read_head,
    text_response,
)
from shadowmesh.compare.analyzer import Analyzer
from shadowmesh.control.controller import Controller, NotFound, SourceFile
from shadowmesh.control.kinds import UnknownKind
from shadowmesh.control.offload import ConfigThread
from shadowmesh.errors import ConfigError, ConfigErrors, ParseError, ShadowmeshError
from shadowmesh.observe import metrics
from shadowmesh.observe.accesslog import escape
from shadowmesh.observe.stats import CellKey, RequestCell
from shadowmesh.routing.table import RouteTable

log = logging.getLogger("shadowmesh.error")

Handler = Callable[["AdminServer", Request], Response]

# Kubernetes namespace names are RFC 1123 labels.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class AdminServer:
    def __init__(
        self,
        controller: Controller,
        host: str = "127.0.0.1",
        port: int = 15000,
        extra: Callable[[], dict[str, Any]] | None = None,
        token: str | None = None,
        analyzer: Analyzer | None = None,
        requests: Callable[[], Mapping[CellKey, RequestCell]] | None = None,
        config: ConfigThread | None = None,
        fresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._controller = controller
        # Awaited before /stats and /stats/prometheus: serve --workers' fresh counts.
        self._fresh = fresh
        self._config = config
        self._own_config = config is None
        # The table /config_dump last encoded, with the JSON of its describe_routes(): that
        # part never changes for a table, and it is most of the answer (12 MB at 10,000
        # VirtualServices). Holds at most one table that is no longer running.
        self._dump: tuple[RouteTable, bytes] | None = None
        self._analyzer = analyzer
        self._host = host
        self._port = port
        self._extra = extra
        self._token = token
        self._requests = requests
        self._metrics = metrics.registry(
            self._snapshot, self._request_cells if requests is not None else None
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def bound_port(self) -> int:
        if self._server is None:
            raise RuntimeError("the admin server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        if self._config is None:
            self._config = ConfigThread(asyncio.get_running_loop())
        self._server = await asyncio.start_server(
            self._connection, self._host, self._port, limit=MAX_HEAD
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Python 3.11's wait_closed() does not wait for open connections; close them here.
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None
        if self._own_config and self._config is not None:
            await self._config.close()
            self._config = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            response, unread = await self._respond(reader, writer)
            if response is not None:
                writer.write(response.encode())
                await writer.drain()
                if unread:
                    await linger(reader, writer)
        except ConnectionError:
            pass  # the client went away; nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Response | None, bool]:
        """The answer, and whether the client may still be sending a request it refused."""
        try:
            head = await read_head(reader)
            if head is None:
                return None, False
            # All that the head decides is decided before a byte of the body is read.
            self.admit(head)
            length = body_length(head.headers)
        except HttpError as exc:
            return json_response(exc.status, {"error": exc.message}, exc.headers), True
        if length and expects_continue(head):
            writer.write(CONTINUE)
        try:
            body = await read_body(reader, length)
        except HttpError as exc:
            return json_response(exc.status, {"error": exc.message}, exc.headers), True
        request = replace(head, body=body)
        if self._fresh is not None and (request.path.rstrip("/") or "/") in _STATS_PATHS:
            await self._fresh()
        if self._config is not None and _off_loop(request.path):
            if _changes_config(request.path):
                return await self._config.run(self.dispatch, request), False
            return await self._config.read(self.dispatch, request), False
        return self.dispatch(request), False

    def handle(self, request: Request) -> Response:
        """Admit and answer one whole request; every failure becomes a JSON answer."""
        try:
            self.admit(request)
        except HttpError as exc:
            return json_response(exc.status, {"error": exc.message}, exc.headers)
        return self.dispatch(request)

    def admit(self, request: Request) -> None:
        """Refuse (HttpError) what the head alone condemns: a browser's request, a missing
        token, an unknown endpoint or method. ``request`` may not have its body yet."""
        _check_browser_safety(request, dns_names=self._token is not None)
        if ui.owns(request.path):
            return  # code, not data: no token (see admin.ui)
        self._check_token(request)
        if comparisons.owns(request.path):
            return
        method, _ = _route(request.path)
        if request.method != method:
            raise HttpError(405, f"{request.path} takes {method} only", {"Allow": method})

    def dispatch(self, request: Request) -> Response:
        """Answer an admitted request; every failure becomes a JSON answer, never a dropped
        line."""
        try:
            if ui.owns(request.path):
                return ui.handle(request)
            if comparisons.owns(request.path):
                return comparisons.handle(self._analyzer, request)
            _, handler = _route(request.path)
            return handler(self, request)
        except HttpError as exc:
            return json_response(exc.status, {"error": exc.message}, exc.headers)
        except ShadowmeshError as exc:
            log.error("admin %s %s: %s", request.method, escape(request.path), escape(str(exc)))
            return json_response(500, {"error": str(exc)})
        except Exception as exc:
            log.exception("admin %s %s failed", request.method, escape(request.path))
            return json_response(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

    def _check_token(self, request: Request) -> None:
        if self._token is None:
            return
        if request.method == "GET" and (request.path.rstrip("/") or "/") == "/ready":
            return  # probes carry no secrets
        if not authorized(request.headers.get("authorization"), self._token):
            raise HttpError(
                401,
                "this admin API requires a token: give the client --admin-token-file FILE "
                "(or set SHADOWMESH_ADMIN_TOKEN_FILE)",
                {"WWW-Authenticate": 'Bearer realm="shadowmesh-admin"'},
            )

    def _snapshot(self) -> dict[str, Any]:
        return self._extra() if self._extra is not None else {}

    def _request_cells(self) -> tuple[Mapping[CellKey, RequestCell], RouteTable | None]:
        cells = self._requests() if self._requests is not None else {}
        return cells, self._controller.table

    # -- endpoints -------------------------------------------------------------------------

    def ready(self, request: Request) -> Response:
        if self._controller.table is None:
            return text_response(503, "PRE_INITIALIZING\n")
        return text_response(200, "LIVE\n")

    def apply(self, request: Request) -> Response:
        body = _object(request.json())
        files, namespace = _files(body), _namespace(body.get("namespace"))
        try:
            outcome = self._controller.apply_files(files, namespace)
        except (ConfigErrors, ConfigError) as exc:
            return json_response(422, {"errors": _config_errors(exc)})
        return json_response(200, {"lines": outcome.lines, "warnings": outcome.warnings})

    def delete(self, request: Request) -> Response:
        body = _object(request.json())
        namespace = _namespace(body.get("namespace"))
        try:
            if "kind" in body:
                kind, names = _string(body, "kind"), _names(body.get("names"))
                outcome = self._controller.delete(kind, names, namespace)
            else:
                outcome = self._controller.delete_files(_files(body), namespace)
        except UnknownKind as exc:
            return json_response(404, {"error": str(exc)})
        except (ConfigErrors, ConfigError) as exc:
            return json_response(422, {"errors": _config_errors(exc)})
        payload = {"lines": outcome.lines, "errors": outcome.errors, "warnings": outcome.warnings}
        return json_response(404 if outcome.errors else 200, payload)

    def resources(self, request: Request) -> Response:
        kind = request.param("kind")
        if not kind:
            raise HttpError(400, "the kind parameter is required")
        every = (request.param("allNamespaces") or "").lower() in ("1", "true", "yes")
        namespace = None if every else _namespace(request.param("namespace"))
        try:
            outcome = self._controller.get(kind, request.param("name") or None, namespace)
        except UnknownKind as exc:
            return json_response(404, {"error": str(exc)})
        except NotFound as exc:
            return json_response(404, {"errors": [str(exc)]})
        return json_response(200, {"kind": outcome.kind.kind, "items": outcome.items})

    def config_dump(self, request: Request) -> Response:
        table = self._controller.table
        if table is None:
            raise HttpError(503, "the route table is not compiled yet")
        dump = self._dump
        if dump is None or dump[0] is not table:
            dump = self._dump = (table, _json_members(table.describe_routes()).encode())
        state = _json_members(table.describe_state()).encode()
        return Response(200, b"".join((b"{\n", dump[1], b",\n", state, b"\n}\n")))

    def proxy_config(self, request: Request) -> Response:
        return proxyconfig.handle(self._controller.table, self._controller.own_listeners, request)

    def analyze(self, request: Request) -> Response:
        """``apply``'s checks and warnings, nothing applied (``shadowmesh analyze``)."""
        body = _object(request.json())
        files, namespace = _files(body), _namespace(body.get("namespace"))
        try:
            analysis = self._controller.analyze_files(files, namespace)
        except (ConfigErrors, ConfigError) as exc:
            errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
            parse = [str(e) for e in errors if isinstance(e, ParseError)]
            invalid = [str(e) for e in errors if not isinstance(e, ParseError)]
            return json_response(422, {"errors": invalid, "parseErrors": parse})
        messages = [m.as_json() for m in analysis.messages]
        return json_response(200, {"messages": messages, "warnings": analysis.warnings})

    def stats(self, request: Request) -> Response:
        return json_response(200, self._snapshot())

    def prometheus(self, request: Request) -> Response:
        return Response(200, metrics.render(self._metrics), metrics.CONTENT_TYPE)


_ROUTES: dict[str, tuple[str, Handler]] = {
    "/ready": ("GET", AdminServer.ready),
    "/apply": ("POST", AdminServer.apply),
    "/delete": ("POST", AdminServer.delete),
    "/resources": ("GET", AdminServer.resources),
    "/config_dump": ("GET", AdminServer.config_dump),
    "/analyze": ("POST", AdminServer.analyze),
    "/proxy_config": ("GET", AdminServer.proxy_config),
    "/stats": ("GET", AdminServer.stats),
    "/stats/prometheus": ("GET", AdminServer.prometheus),
}


_STATS_PATHS = frozenset({"/stats", "/stats/prometheus"})

# Endpoints whose work grows with the config: answered on the config thread.
_CONFIG_PATHS = frozenset(
    {"/apply", "/delete", "/resources", "/config_dump", "/analyze", "/proxy_config"}
)


def _off_loop(path: str) -> bool:
    return (path.rstrip("/") or "/") in _CONFIG_PATHS


def _changes_config(path: str) -> bool:
    return (path.rstrip("/") or "/") in ("/apply", "/delete")


def _json_members(payload: dict[str, Any]) -> str:
    """The members of a top-level object as ``json_response`` writes them (indent 2), so that
    parts encoded at different times join into the same text."""
    return ",\n".join(
        f"  {json.dumps(key)}: " + json.dumps(value, indent=2, default=str).replace("\n", "\n  ")
        for key, value in payload.items()
    )


def _route(path: str) -> tuple[str, Handler]:
    route = _ROUTES.get(path.rstrip("/") or "/")
    if route is None:
        raise HttpError(404, f"no such endpoint: {path}")
    return route


def _check_browser_safety(request: Request, dns_names: bool = False) -> None:
    """Refuse what only a browser sends: no CLI, curl or script sets these headers.

    Any Origin but the admin API's own is refused, loopback ones too: a page served by another
    local program (a dev server on localhost:3000) is as foreign as evil.example, and a form
    post needs no preflight. ``dns_names``: with a token, a Host that is a DNS name is fine
    (DNS rebinding gets a page no token).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        raise HttpError(403, f"cross-site browser requests are refused (Sec-Fetch-Site: {site})")
    host_header = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None and origin.strip().lower() != f"http://{host_header}".lower():
        raise HttpError(403, f"requests from origin {origin!r} are refused")
    host = _host_name(host_header)
    if host and not dns_names and not _is_local(host) and not _is_ip(host):
        raise HttpError(403, f"requests for host {host!r} are refused: use an IP address")


def _host_name(host: str) -> str:
    """The name part of a Host header value: ``[::1]:15000`` -> ``::1``."""
    try:
        return urlsplit(f"//{host}").hostname or ""
    except ValueError:
        raise HttpError(400, f"invalid Host header {host!r}") from None


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise HttpError(400, f"{name} must be a non-empty string")
    return value


def _files(body: dict[str, Any]) -> list[SourceFile]:
    files = body.get("files")
    if not isinstance(files, list) or not files:
        raise HttpError(400, 'files must be a non-empty list of {"source": ..., "text": ...}')
    return [(_string(_object(f), "source"), _text(f)) for f in files]


def _text(file: dict[str, Any]) -> str:
    text = file.get("text")
    if not isinstance(text, str):
        raise HttpError(400, "each file's text must be a string")
    return text


def _names(names: Any) -> list[str]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise HttpError(400, "names must be a non-empty list of strings")
    return names


def _namespace(value: Any) -> str:
    if value is None or value == "":
        return "default"
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise HttpError(400, f"invalid namespace {value!r}: must be an RFC 1123 label")
    return value


def _config_errors(exc: ConfigErrors | ConfigError) -> list[str]:
    errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    return [str(e) for e in errors]
