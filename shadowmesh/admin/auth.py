"""Who may use the admin API: a bearer token, required whenever it listens beyond loopback.

On loopback the admin API is as open as Envoy's (anyone on the machine may change the config;
browsers are kept out by the Origin checks in ``server``). Bound to any other address, every
request but ``GET /ready`` must carry ``Authorization: Bearer <token>``, the token read from a
file so it never shows in ``ps`` or in the shell's history.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from pathlib import Path

from shadowmesh.errors import ShadowmeshError

ENV_TOKEN_FILE = "SHADOWMESH_ADMIN_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16
_TOKEN_CHARS = frozenset(map(chr, range(0x21, 0x7F)))  # visible ASCII: header-safe as is


class TokenError(ShadowmeshError):
    """The token file is missing, unreadable or holds no usable token."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; any other name or address is not."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: treat it as exposed


def load_token(path: str | Path) -> str:
    """The token in ``path``: its first line, stripped; visible ASCII, 16 characters or more."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except OSError as exc:
        reason = exc.strerror or exc
        raise TokenError(f"cannot read the admin token file {path}: {reason}") from None
    except UnicodeDecodeError:
        raise TokenError(f"the admin token file {path} is not ASCII text") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_LENGTH or not set(token) <= _TOKEN_CHARS:
        raise TokenError(
            f"the admin token file {path} must hold one token of at least {MIN_TOKEN_LENGTH} "
            "visible ASCII characters (e.g. the output of `openssl rand -hex 32`)"
        )
    return token


def loose_permissions(path: str | Path) -> bool:
    """Whether users other than the owner may read the token file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def serve_token(admin_host: str, token_file: str | None) -> tuple[str | None, list[str]]:
    """(token or None, warnings) for ``serve``; refuses a non-loopback address with no token."""
    if token_file is None:
        if not is_loopback(admin_host):
            raise TokenError(
                f"the admin API would listen on {admin_host}, which is not loopback: anyone who "
                "can reach it could change the proxy's config. Give --admin-token-file FILE "
                "(a file holding a secret token), or keep --admin on 127.0.0.1"
            )
        return None, []
    token = load_token(token_file)
    warnings = []
    if loose_permissions(token_file):
        warnings.append(
            f"the admin token file {token_file} is readable by other users; chmod 600 it"
        )
    return token, warnings


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header value carries ``token``, compared in constant time."""
    if header is None:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Bytes, not str: compare_digest refuses non-ASCII str, and the header may hold anything.
    given = credentials.strip().encode("latin-1", "replace")
    return hmac.compare_digest(given, token.encode("ascii"))
