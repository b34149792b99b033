"""A client of the admin API, on the standard library: what the CLI verbs (and scripts) call.

Proxies from the environment are ignored on purpose: the demo exports ``http_proxy`` pointing at
shadowmesh's own outbound port, and the admin API must never be reached through it.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from shadowmesh.admin.http import MAX_BODY
from shadowmesh.errors import ShadowmeshError

DEFAULT_ADMIN = "127.0.0.1:15000"


class AdminUnreachable(ShadowmeshError):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the shadowmesh admin API at {address} "
            f'(is "shadowmesh serve" running?): {reason}'
        )


class AdminAnswerError(ShadowmeshError):
    """The admin API answered something that is not the JSON it promises."""


def parse_address(address: str) -> tuple[str, int]:
    """``127.0.0.1:15000``, ``localhost:15000`` or ``[::1]:15000`` -> (host, port)."""
    text = address.strip().removeprefix("http://").rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ShadowmeshError(f"invalid admin address {address!r}: expected HOST:PORT")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


class AdminClient:
    def __init__(
        self, address: str = DEFAULT_ADMIN, timeout: float = 120.0, token: str | None = None
    ) -> None:
        host, port = parse_address(address)
        self.address = address
        self._base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        query = f"?{urlencode(params)}" if params else ""
        return self._send(urllib.request.Request(self._base + path + query, method="GET"))

    def post(self, path: str, payload: Any) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        if len(body) > MAX_BODY:
            # Checked here: the server refuses without reading, and a client still sending
            # would see a reset connection instead of the reason.
            raise ShadowmeshError(
                f"the request is {len(body)} bytes, more than the admin API accepts "
                f"({MAX_BODY // (1024 * 1024)} MiB)"
            )
        request = urllib.request.Request(
            self._base + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        return self._send(request)

    def get_text(self, path: str) -> tuple[int, str]:
        """(status, body as text): for the answers that are not JSON (``/stats/prometheus``)."""
        status, body = self._open(urllib.request.Request(self._base + path, method="GET"))
        return status, body.decode("utf-8", "replace")

    def _send(self, request: urllib.request.Request) -> tuple[int, Any]:
        """(status, decoded JSON body); 4xx and 5xx answers are returned, not raised."""
        status, body = self._open(request)
        return status, _decode(status, body)

    def _open(self, request: urllib.request.Request) -> tuple[int, bytes]:
        # Unredirected: a redirect must never carry the token to another address.
        for name, value in self._auth.items():
            request.add_unredirected_header(name, value)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()
        except urllib.error.URLError as exc:
            raise AdminUnreachable(self.address, _reason(exc.reason)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise AdminUnreachable(self.address, _reason(exc)) from exc


def _decode(status: int, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()[:200]
        raise AdminAnswerError(f"the admin API answered {status} with: {text!r}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, TimeoutError) or str(reason) == "timed out":
        return "no answer in time"
    return str(reason) or type(reason).__name__
