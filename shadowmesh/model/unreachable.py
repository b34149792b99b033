"""Istio's warnings for VirtualService rules and matches that can never be used.

The webhook's ``analyzeUnreachableHTTPRules`` (and its tcp and tls twins), Istio 1.31
``pkg/config/validation``: a rule after one without matches, a rule whose every match an
earlier rule already has, a match repeated from an earlier rule, and a prefix match an earlier
prefix match covers (``/api/v1/product`` before ``/api/v1/products``, same port, method,
authority, headers, query parameters). Warnings only, with Istio's wording; the first matching
rule still wins, as in Envoy. Pure: it reads the spec as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shadowmesh.model.fields import Issues, json_name

_EXACT, _PREFIX = "exact:", "prefix:"


def warn_unreachable(spec: Mapping[str, Any], issues: Issues) -> None:
    """Each of Istio's VirtualServiceUnreachableRule and IneffectiveMatch warnings for ``spec``."""
    for name in ("http", "tcp", "tls"):
        routes = spec.get(name)
        if isinstance(routes, list) and (len(routes) > 1 or _several_matches(routes)):
            _analyze([_canonical(r) for r in routes], name == "http", issues)


def _several_matches(routes: list[Any]) -> bool:
    """A lone route warns only when its matches repeat one another: of two or more."""
    if not routes or not isinstance(routes[0], Mapping):
        return False
    matches = routes[0].get("match")
    return isinstance(matches, list) and len(matches) > 1


def _analyze(routes: list[Any], http: bool, issues: Issues) -> None:
    def unused(rule: str, reason: str) -> None:
        issues.warn(f"{issues.label}: virtualService rule {rule} not used ({reason})")

    def ineffective(rule: str, match: str, duplicate: str) -> None:
        issues.warn(
            f"{issues.label}: virtualService rule {rule} match {match} is not used "
            f"(duplicate/overlapping match in rule {duplicate})"
        )

    seen: dict[str, int] = {}
    catch_all = -1
    prefixes: list[_PrefixMatch] = []
    for index, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        rule = _rule_name(route, index, http)
        matches = route.get("match") if isinstance(route.get("match"), list) else []
        if not matches:
            if catch_all >= 0:
                unused(rule, "only the last rule can have no matches")
            catch_all = index
            continue
        duplicates = 0
        for position, match in enumerate(matches):
            if catch_all >= 0:
                unused(rule, "route without matches defined before")
                continue
            key = _key(match)
            if key in seen:
                earlier = seen[key]
                ineffective(
                    rule, _match_name(match, position), _rule_name(routes[earlier], earlier, http)
                )
                duplicates += 1
                continue
            seen[key] = index
            if http and (prefix := _prefix_match(match, rule, position)) is not None:
                prefixes.append(prefix)
        if duplicates == len(matches):
            unused(rule, "all matches used by prior rules")
    for position, first in enumerate(prefixes):
        for later in prefixes[position + 1 :]:
            if later.prefix != first.prefix and first.covers(later):
                ineffective(
                    later.rule,
                    f"{later.match} of prefix {later.prefix}",
                    f"{first.match} of prefix {first.prefix} on {first.rule}",
                )


class _PrefixMatch:
    """Istio's ``OverlappingMatchValidationForHTTPRoute``: a uri prefix match and its other keys.

    A plain slotted class: one is made per prefix match of every VirtualService loaded.
    """

    __slots__ = (
        "rule",
        "match",
        "prefix",
        "port",
        "method",
        "authority",
        "headers",
        "query_params",
        "without_headers",
    )

    def __init__(
        self,
        rule: str,
        match: str,
        prefix: str,
        port: Any,
        method: str,
        authority: str,
        headers: dict[str, str],
        query_params: dict[str, str],
        without_headers: dict[str, str],
    ) -> None:
        self.rule = rule
        self.match = match
        self.prefix = prefix
        self.port = port
        self.method = method
        self.authority = authority
        self.headers = headers
        self.query_params = query_params
        self.without_headers = without_headers

    def covers(self, later: _PrefixMatch) -> bool:
        """Istio's ``coveredValidation``: this earlier match takes every request of ``later``."""
        if not later.prefix.startswith(self.prefix) or later.port != self.port:
            return False
        for mine, theirs in ((self.method, later.method), (self.authority, later.authority)):
            if mine != theirs and not mine.startswith(theirs):
                return False
        for mine_map, theirs_map in (
            (self.headers, later.headers),
            (self.query_params, later.query_params),
            (self.without_headers, later.without_headers),
        ):
            if len(mine_map) != len(theirs_map):
                return False
            for key, mine_value in mine_map.items():
                if key not in theirs_map:
                    return False
                theirs_value = theirs_map[key]
                if mine_value != theirs_value and not mine_value.startswith(theirs_value):
                    return False
        return True


def _prefix_match(match: Any, rule: str, position: int) -> _PrefixMatch | None:
    if not isinstance(match, dict) or not isinstance(match.get("uri"), dict):
        return None
    prefix = match["uri"].get("prefix")
    if not isinstance(prefix, str) or not prefix:
        return None
    return _PrefixMatch(
        rule=rule,
        match=_match_name(match, position),
        prefix=prefix,
        port=match.get("port") or 0,
        method=_exact_or_prefix(match.get("method")) or _EXACT + "GET",  # Istio's default
        authority=_exact_or_prefix(match.get("authority")),
        headers=_string_matches(match.get("headers")),
        query_params=_string_matches(match.get("queryParams")),
        without_headers=_string_matches(match.get("withoutHeaders")),
    )


def _exact_or_prefix(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    if value.get("exact"):
        return _EXACT + str(value["exact"])
    if value.get("prefix"):
        return _PREFIX + str(value["prefix"])
    return ""


def _string_matches(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): _exact_or_prefix(v) for k, v in value.items()}


def _rule_name(route: Any, index: int, http: bool) -> str:
    """Istio's ``routeName``: an http route's name quoted, else ``#index``."""
    name = route.get("name") if http and isinstance(route, dict) else None
    return json.dumps(name) if isinstance(name, str) and name else f"#{index}"


def _match_name(match: Any, position: int) -> str:
    name = match.get("name") if isinstance(match, dict) else None
    return json.dumps(name) if isinstance(name, str) and name else f"#{position}"


def _key(match: Any) -> str:
    """What makes two matches the same: everything but the name (Istio's ``asJSON``)."""
    if isinstance(match, dict):
        match = {k: v for k, v in match.items() if k != "name"}
    return json.dumps(match, sort_keys=True, default=str)


def _canonical(value: Any, *, keep_keys: bool = False) -> Any:
    """Keys in their JSON spelling (``query_params`` -> ``queryParams``), nulls dropped.

    The keys of the maps a match holds (header and parameter names) are kept as written. Of a
    route only its name and matches are read: the rest is left as it is. (The loader hands
    plain dicts and lists: exact type checks keep this cheap for a config of 10,000.)
    """
    kind = type(value)
    if kind is list:
        return [_canonical(v) for v in value]
    if kind is not dict:
        return value
    if not keep_keys and "route" in value:
        return {
            json_name(k): _canonical(v) if json_name(k) == "match" else v
            for k, v in value.items()
            if v is not None
        }
    out = {}
    for key, element in value.items():
        if element is None:
            continue
        name = key if keep_keys else json_name(key)
        if type(element) is dict or type(element) is list:
            element = _canonical(element, keep_keys=not keep_keys and name in _MAPS)
        out[name] = element
    return out


_MAPS = frozenset({"headers", "queryParams", "withoutHeaders", "sourceLabels"})
