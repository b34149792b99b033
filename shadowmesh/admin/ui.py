"""The web page at ``/ui``: the live route table and the Comparisons, drawn by the browser.

The page is a static shell (``static/ui.html``, ``ui.js``, ``ui.css``, shipped in the package):
its script polls the admin API's own JSON (``/config_dump``, ``/stats``, ``/comparisons``) and
draws from that. So this module serves three files and holds no data.

The token. The shell carries no data, only code that is public anyway, so ``GET /ui`` and its
assets are served without a token (a browser cannot put a header on a navigation). Everything
the page shows comes from the JSON endpoints, which keep requiring ``Authorization: Bearer``
whenever the server has a token: the page asks for the token in a form, or takes it from the
URL's fragment (``/ui#token=...``, which a browser never sends to a server, so it reaches no
log), keeps it in the tab's sessionStorage and sends it as that header. A token in a query
(``?token=``) is not accepted: it would land in logs and in the browser's history.

The admin server's browser checks run before this module (a foreign Origin, a cross-site
``Sec-Fetch-Site``, a DNS-name Host without a token are refused), and every answer here forbids
inline script, third-party assets, framing and the Referer header.
"""

from __future__ import annotations

import functools
from importlib import resources

from shadowmesh.admin.http import HttpError, Request, Response

PREFIX = "/ui"
_PAGE = "ui.html"
_TYPES = {
    _PAGE: "text/html; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
}
# 'self' only: the script and the style come from this server, the drawing is SVG made by the
# script. No 'unsafe-inline': data from upstream responses (the comparison's example values)
# is shown on this page, and must never run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def owns(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def handle(request: Request) -> Response:
    """``/ui`` and ``/ui/`` are the page; ``/ui/ui.js`` and ``/ui/ui.css`` its assets."""
    if request.method != "GET":
        raise HttpError(405, f"{request.path} takes GET only", {"Allow": "GET"})
    rest = request.path[len(PREFIX) :]
    name = _PAGE if rest in ("", "/") else rest.removeprefix("/")
    if name not in _TYPES or rest == "/" + _PAGE:
        raise HttpError(404, f"no such endpoint: {request.path}")
    return Response(200, asset(name), _TYPES[name], dict(HEADERS))


@functools.cache
def asset(name: str) -> bytes:
    """One of the static files, read once: they change only with the package."""
    return resources.files("shadowmesh.admin").joinpath("static", name).read_bytes()
