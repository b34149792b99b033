"""How a request's Host names a service: authority parsing and the host forms a client may use.

A sidecar in namespace ``ns`` answers ``httpbin``, ``httpbin.ns``, ``httpbin.ns.svc`` and the
FQDN for a service. shadowmesh serves every namespace from one place, so a short name resolves
to the service of that name in ``default`` if there is one, else to the only one of that name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from shadowmesh.model.resources import CLUSTER_DOMAIN

_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_authority(authority: str) -> tuple[str, int | None]:
    """``HTTPBin:8000`` -> (``httpbin``, 8000); ``[::1]:80`` -> (``[::1]``, 80); no port -> None.

    A port that is not a number is kept as part of the host, which then names nothing.
    """
    authority = authority.strip().lower()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return authority, None
        host, rest = authority[: end + 1], authority[end + 1 :]
        return host, _port(rest[1:]) if rest.startswith(":") else None
    if authority.count(":") == 1:
        host, _, port = authority.partition(":")
        number = _port(port)
        if number is not None:
            return host.rstrip("."), number
        return authority, None
    return authority.rstrip("."), None


def default_port(scheme: str) -> int:
    return _DEFAULT_PORTS.get(scheme.lower(), 80)


def _port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if 0 < number < 65536 else None


def host_forms(host: str) -> tuple[tuple[str, ...], str | None]:
    """The qualified forms of ``host``, and its short name if it has one.

    ``httpbin.ns.svc.cluster.local`` answers to itself, ``httpbin.ns`` and ``httpbin.ns.svc``,
    and to the short name ``httpbin`` (which may be ambiguous across namespaces).
    """
    suffix = "." + CLUSTER_DOMAIN
    if not host.endswith(suffix):
        return (host,), None
    base = host[: -len(suffix)]
    if base.count(".") != 1:
        return (host,), None
    return (host, base, f"{base}.svc"), base.partition(".")[0]


def build_aliases(hosts: Iterable[str]) -> dict[str, str]:
    """Every form a request may use -> the FQDN it means."""
    aliases: dict[str, str] = {}
    shorts: dict[str, list[str]] = {}
    for host in sorted(set(hosts)):
        forms, short = host_forms(host)
        for form in forms:
            aliases[form] = host
        if short is not None:
            shorts.setdefault(short, []).append(host)
    for short, candidates in shorts.items():
        chosen = _pick_short(short, candidates)
        if chosen is not None and short not in aliases:
            aliases[short] = chosen
    return aliases


def _pick_short(short: str, candidates: list[str]) -> str | None:
    preferred = f"{short}.default.{CLUSTER_DOMAIN}"
    if preferred in candidates:
        return preferred
    return candidates[0] if len(candidates) == 1 else None


def wildcard_keys(host: str) -> Iterator[str]:
    """``a.b.example.com`` -> ``*.b.example.com``, ``*.example.com``, ``*.com``, ``*``.

    Longest suffix first, so the most specific wildcard host wins, as in Envoy.
    """
    start = host.find(".")
    while start >= 0:
        yield "*" + host[start:]
        start = host.find(".", start + 1)
    yield "*"
