"""``HTTPMatchRequest`` and ``StringMatch`` of a VirtualService route, by Istio's rules.

A StringMatch holds exactly one of exact, prefix or regex. In the header, withoutHeaders and
queryParams maps an empty ``{}`` means "present", kept as None. Header names are lower-cased,
as Envoy compares them.
"""

from __future__ import annotations

from typing import Any

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj, child, item, type_error
from shadowmesh.model.gateway import check_gateway_name
from shadowmesh.model.meta import check_labels
from shadowmesh.model.resources import HTTPMatchRequest, MatchKind, StringMatch

MATCH_FIELDS = (
    "name",
    "uri",
    "scheme",
    "method",
    "authority",
    "headers",
    "port",
    "source_labels",
    "gateways",
    "query_params",
    "ignore_uri_case",
    "without_headers",
    "source_namespace",
    "stat_prefix",
)
_MATCH_KINDS: dict[str, MatchKind] = {"exact": "exact", "prefix": "prefix", "regex": "regex"}
# A route matching on these is narrower on a mesh than here: say so on the match itself.
_SELECTORS_TAIL = "the match ignores it"


def parse_matches(route: Obj, issues: Issues) -> tuple[HTTPMatchRequest, ...]:
    out = []
    for path, value in route.items("match"):
        if value is None:
            issues.error(path, "match may not be null")
            continue
        match = _match(path, value, issues)
        if match is not None:
            out.append(match)
    return tuple(out)


def _match(path: str, value: Any, issues: Issues) -> HTTPMatchRequest | None:
    obj = Obj.of(value, path, issues, MATCH_FIELDS, proto=True)
    if obj is None:
        return None
    _not_acted_on(obj, issues)
    source_labels = obj.string_map("sourceLabels")
    check_labels(source_labels, obj.path("sourceLabels"), issues)
    gateways = obj.texts("gateways")
    for index, gateway in enumerate(gateways):
        check_gateway_name(gateway, item(obj.path("gateways"), index), issues)
    return HTTPMatchRequest(
        name=obj.text("name") or "",
        uri=_single(obj, "uri", issues),
        scheme=_single(obj, "scheme", issues),
        method=_single(obj, "method", issues),
        authority=_single(obj, "authority", issues),
        headers=_match_map(obj, "headers", issues, headers=True),
        without_headers=_match_map(obj, "withoutHeaders", issues, headers=True),
        query_params=_match_map(obj, "queryParams", issues, headers=False),
        ignore_uri_case=bool(obj.flag("ignoreUriCase")),
        port=_port(obj, issues),
        gateways=gateways,
        source_labels=source_labels,
    )


def _not_acted_on(obj: Obj, issues: Issues) -> None:
    obj.text("sourceNamespace")
    obj.text("statPrefix")
    for name in ("sourceNamespace", "statPrefix"):
        if obj.has(name):
            issues.not_acted_on(obj.path(name), _SELECTORS_TAIL)


def _port(obj: Obj, issues: Issues) -> int | None:
    port = obj.integer("port")
    if not port:  # 0 is protobuf's "unset"
        return None
    problem = validate.port_number(port)
    if problem:
        issues.error(obj.path("port"), problem)
    return port


def _single(obj: Obj, name: str, issues: Issues) -> StringMatch | None:
    value = obj.get(name)
    if value is None:
        return None
    return string_match(value, obj.path(name), name, issues, presence=False)


def _match_map(
    obj: Obj, name: str, issues: Issues, *, headers: bool
) -> dict[str, StringMatch | None]:
    out: dict[str, StringMatch | None] = {}
    for key, value in (obj.mapping(name) or {}).items():
        path = child(obj.path(name), key)
        if not isinstance(key, str):
            type_error(issues, path, "a string key", key)
            continue
        if headers:
            problem = validate.match_header_name(key)
            if problem:
                issues.error(path, problem)
            key = key.lower()
        if key in out:
            issues.error(path, f'duplicate {name} match "{key}"')
        elif value is None:
            issues.error(path, f"{name} match {key} cannot be null")
        else:
            out[key] = string_match(value, path, name, issues, presence=True)
    return out


def string_match(
    value: Any, path: str, where: str, issues: Issues, *, presence: bool
) -> StringMatch | None:
    """A StringMatch; None for ``{}`` where that means "present", or after an error."""
    obj = Obj.of(value, path, issues, _MATCH_KINDS, proto=True)
    if obj is None:
        return None
    kinds = obj.present()
    if len(kinds) > 1:
        issues.error(path, f"only one of exact, prefix or regex may be set, got {', '.join(kinds)}")
        return None
    if not kinds:
        if not presence:
            issues.error(path, "one of exact, prefix or regex is required")
        return None
    text = obj.text(kinds[0])
    if text is None:
        return None
    if kinds[0] == "regex":
        problem = validate.regex(text, where)
        if problem:
            issues.error(obj.path("regex"), problem)
    return StringMatch(kind=_MATCH_KINDS[kinds[0]], value=text)
