"""HTTPMatchRequest compiled once into predicates, as Envoy's route matchers evaluate them.

Rules (Istio's, translated to Envoy by istiod):
- conditions inside one match block are ANDed; blocks are ORed; no block matches everything;
- ``regex`` must match the whole value (RE2 full match), so it is compiled once and used with
  ``fullmatch``; ``ignoreUriCase`` applies to ``exact`` and ``prefix`` on the uri only;
- the uri is matched on the path without its query string;
- ``headers: {name: {}}`` means "present"; ``withoutHeaders`` holds when the header is absent or
  does not match;
- query parameters are percent-decoded, and the first occurrence of a name is the one matched;
- ``gateways`` and ``sourceLabels`` are no runtime matches but selectors (Istio's API: "not a
  runtime match, but is a selector"): istiod leaves a match out of a proxy's config unless the
  proxy is one of its gateways and its labels hold all of ``sourceLabels``. ``selects`` decides
  that at compile time, so a match for other clients costs nothing per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from shadowmesh.model.resources import HTTPMatchRequest, StringMatch, gateway_key
from shadowmesh.routing.decision import RequestView

Predicate = Callable[[str], bool]


class RequestFacts:
    """What matches read of one request; the path split and query parse happen at most once."""

    __slots__ = ("request", "port", "_path", "_query")

    def __init__(self, request: RequestView, port: int) -> None:
        self.request = request
        self.port = port
        self._path: str | None = None
        self._query: dict[str, str] | None = None

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = self.request.path.partition("?")[0].partition("#")[0]
        return self._path

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = parse_query(self.request.path)
        return self._query


def parse_query(target: str) -> dict[str, str]:
    query = target.partition("?")[2].partition("#")[0]
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        params.setdefault(unquote(name), unquote(value))
    return params


def string_predicate(match: StringMatch, *, ignore_case: bool = False) -> Predicate:
    value = match.value
    if match.kind == "regex":
        pattern = re.compile(value)
        return lambda s: pattern.fullmatch(s) is not None
    if ignore_case:
        folded = value.lower()
        if match.kind == "exact":
            return lambda s: s.lower() == folded
        return lambda s: s.lower().startswith(folded)
    if match.kind == "exact":
        return lambda s: s == value
    return lambda s: s.startswith(value)


Check = Callable[[RequestFacts], bool]


def selects(m: HTTPMatchRequest, gateway: str, namespace: str, labels: Mapping[str, str]) -> bool:
    """Whether match ``m`` of a VirtualService in ``namespace`` applies in a proxy that is
    ``gateway`` (``mesh``, or a Gateway's ``namespace/name``) with workload ``labels``.

    Istio's ``sourceMatchHTTP`` (pilot/pkg/networking/core/route): the proxy's labels are a
    superset of ``sourceLabels`` (none: every proxy), and ``gateways``, when set, names it.
    """
    if m.gateways and gateway not in [gateway_key(g, namespace) for g in m.gateways]:
        return False
    for key, value in m.source_labels.items():
        if labels.get(key) != value:
            return False
    return True


class MatchBlock:
    """One ``match`` entry: every condition set in it must hold."""

    __slots__ = ("source", "_checks")

    def __init__(self, source: HTTPMatchRequest) -> None:
        self.source = source
        self._checks: tuple[Check, ...] = tuple(_checks(source))

    def fits(self, facts: RequestFacts) -> bool:
        for check in self._checks:
            if not check(facts):
                return False
        return True


class RouteMatch:
    """A route's ``match`` list: any block fits; an empty list fits every request."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: tuple[HTTPMatchRequest, ...]) -> None:
        self.blocks = tuple(MatchBlock(b) for b in blocks)

    def fits(self, facts: RequestFacts) -> bool:
        if not self.blocks:
            return True
        for block in self.blocks:
            if block.fits(facts):
                return True
        return False


def _checks(m: HTTPMatchRequest) -> list[Check]:
    checks: list[Check] = []
    if m.port is not None:
        checks.append(_port_check(m.port))
    if m.method is not None:
        checks.append(_view_check(string_predicate(m.method), lambda f: f.request.method))
    if m.scheme is not None:
        checks.append(_view_check(string_predicate(m.scheme), lambda f: f.request.scheme))
    if m.authority is not None:
        checks.append(_view_check(string_predicate(m.authority), lambda f: f.request.authority))
    if m.uri is not None:
        uri = string_predicate(m.uri, ignore_case=m.ignore_uri_case)
        checks.append(_view_check(uri, lambda f: f.path))
    checks.extend(_header_check(name, sm, want=True) for name, sm in m.headers.items())
    checks.extend(_header_check(name, sm, want=False) for name, sm in m.without_headers.items())
    checks.extend(_query_check(name, sm) for name, sm in m.query_params.items())
    return checks


def _port_check(port: int) -> Check:
    return lambda f: f.port == port


def _view_check(predicate: Predicate, read: Callable[[RequestFacts], str]) -> Check:
    return lambda f: predicate(read(f))


def _header_check(name: str, match: StringMatch | None, *, want: bool) -> Check:
    name = name.lower()
    predicate = string_predicate(match) if match is not None else None

    def check(f: RequestFacts) -> bool:
        value = f.request.header(name)
        found = value is not None and (predicate is None or predicate(value))
        return found is want

    return check


def _query_check(name: str, match: StringMatch | None) -> Check:
    predicate = string_predicate(match) if match is not None else None

    def check(f: RequestFacts) -> bool:
        value = f.query.get(name)
        return value is not None and (predicate is None or predicate(value))

    return check


def describe_match(m: HTTPMatchRequest) -> dict[str, Any]:
    """The block in Istio's own YAML shape, for the config dump."""
    out: dict[str, Any] = {}
    if m.name:
        out["name"] = m.name
    for key, sm in (("uri", m.uri), ("scheme", m.scheme), ("method", m.method)):
        if sm is not None:
            out[key] = {sm.kind: sm.value}
    if m.authority is not None:
        out["authority"] = {m.authority.kind: m.authority.value}
    for key, table in (
        ("headers", m.headers),
        ("withoutHeaders", m.without_headers),
        ("queryParams", m.query_params),
    ):
        if table:
            out[key] = _describe_table(table)
    if m.ignore_uri_case:
        out["ignoreUriCase"] = True
    if m.port is not None:
        out["port"] = m.port
    if m.source_labels:
        out["sourceLabels"] = dict(m.source_labels)
    if m.gateways:
        out["gateways"] = list(m.gateways)
    return out


def _describe_table(table: Mapping[str, StringMatch | None]) -> dict[str, dict[str, str]]:
    return {k: ({} if v is None else {v.kind: v.value}) for k, v in table.items()}
