"""``Comparison`` (shadowmesh.io/v1alpha1): which mirrored traffic to compare, and how.

Our own API group, so Istio's kinds stay exactly as Istio has them::

    apiVersion: shadowmesh.io/v1alpha1
    kind: Comparison
    metadata: {name: httpbin-v2}
    spec:
      host: httpbin
      primary: {subset: v1}
      candidate: {subset: v2}       # a mirror target of the host's routes
      baseline: {subset: v1b}       # optional: the primary's version again, mirrored too
      sample: {percentage: 100}
      maxBodyBytes: 1048576
      maxExampleChars: 8000         # each drill-down response is cut at this many characters
      ignore: [header.date, {path: body.origin, pattern: "[0-9.]+"}]
      redact: [x-session, body.user.ssn]
      thresholds:                   # the verdicts' knobs; these are the defaults
        alpha: 0.01                 # false discovery rate, over fields and over endpoints
        minPairs: 30                # compared requests before an endpoint is judged
        minFieldEffect: {relative: 0, absolute: 0.03}   # percent, as Diffy's thresholds
        latencyMinEffect: {relative: 10, absoluteMs: 1}  # percent, and milliseconds
        latencyMinSeconds: 2                           # the latency pairs' span, at least
        timestampToleranceSeconds: 60                  # volatile timestamps, compared by shape
      endpoints: ["/skus/{sku}", "/static/*"]   # endpoint names, before the automatic ones
      tolerance: [{path: body.items[*].price, absolute: 0.01}]  # numbers: near is equal
      unordered: [body.hits]        # arrays compared as multisets: their order is no difference

Field paths have one dialect everywhere (ignore rules, redaction, the report): ``status``,
``header.<lower-case name>``, ``body.a.b[3].c``; a key that is not a plain word is quoted,
``body["a.b"]``. Patterns add ``[*]`` (any index), ``*`` (any one key) and ``**`` (any depth).
Redaction also reads ``query.<name>`` and a bare header name. The default redaction rules always
apply, so credentials never reach the comparison's storage.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj, type_error
from shadowmesh.model.resources import (
    Meta,
    Resource,
    VirtualService,
    fqdn,
)

API_VERSION = "shadowmesh.io/v1alpha1"
SPEC_FIELDS = (
    "host",
    "primary",
    "candidate",
    "baseline",
    "sample",
    "maxBodyBytes",
    "maxExampleChars",
    "ignore",
    "redact",
    "thresholds",
    "endpoints",
    "tolerance",
    "unordered",
)
THRESHOLD_FIELDS = (
    "alpha",
    "minPairs",
    "minFieldEffect",
    "latencyMinEffect",
    "latencyMinSeconds",
    "timestampToleranceSeconds",
)
DEFAULT_MAX_BODY_BYTES = 1_048_576
# Bodies are held in memory twice or three times per compared request.
MAX_BODY_BYTES_LIMIT = 64 * 1_048_576
# A drill-down example keeps each (redacted) response cut at this many characters; stored with
# every kept example (five per field), so bounded.
DEFAULT_MAX_EXAMPLE_CHARS = 8_000
MAX_EXAMPLE_CHARS_RANGE = (200, 1_000_000)
SENSITIVE_HEADERS = ("authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key")
_SENSITIVE_BODY_KEYS = (
    *SENSITIVE_HEADERS,
    "password",
    "secret",
    "client_secret",
    "access_token",
    "refresh_token",
    "api_key",
)
_SENSITIVE_QUERY = ("access_token", "api_key", "apikey", "token", "password")
ROOTS = ("status", "header", "body")


# --- the path dialect --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wild:
    """A pattern segment: ``[*]`` any index, ``*`` any one key, ``**`` any number of segments."""

    kind: Literal["index", "key", "deep"]


Segment = str | int  # a key, or an array index
PatternSegment = str | int | Wild
Path = tuple[Segment, ...]
Pattern = tuple[PatternSegment, ...]

ANY_INDEX = Wild("index")
ANY_KEY = Wild("key")
ANY_DEPTH = Wild("deep")

_PLAIN_KEY = re.compile(r"[^.\[\]\"\s*]+")
_TOKEN = re.compile(
    r"""\.(?P<key>[^.\[\]"\s]+)        # .key  (also .* and .**)
      | \[(?P<index>[0-9]+|\*)\]       # [3] or [*]
      | \[(?P<quoted>"(?:[^"\\]|\\.)*")\]  # ["a.b"]
    """,
    re.VERBOSE,
)


def parse_path(text: str, *, wildcards: bool = True) -> Pattern:
    """``body.items[*].id`` -> ("body", "items", ANY_INDEX, "id"). Raises ValueError."""
    if not text or not text.strip():
        raise ValueError("a field path cannot be empty")
    match = _PLAIN_KEY.match(text)
    if match is None:
        raise ValueError(f'invalid field path "{text}": it must start with a name')
    segments: list[PatternSegment] = [match.group()]
    position = match.end()
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None:
            raise ValueError(f'invalid field path "{text}" at character {position + 1}')
        segments.append(_segment(token, text, wildcards))
        position = token.end()
    return tuple(segments)


def _segment(token: re.Match[str], text: str, wildcards: bool) -> PatternSegment:
    key, index, quoted = token.group("key"), token.group("index"), token.group("quoted")
    segment: PatternSegment
    if quoted is not None:
        segment = str(json.loads(quoted))
    elif index is not None:
        segment = ANY_INDEX if index == "*" else int(index)
    elif key == "*":
        segment = ANY_KEY
    elif key == "**":
        segment = ANY_DEPTH
    elif "*" in key:
        raise ValueError(f'invalid field path "{text}": quote a key holding "*" as ["{key}"]')
    else:
        segment = key
    if isinstance(segment, Wild) and not wildcards:
        raise ValueError(f'invalid field path "{text}": wildcards are not allowed here')
    return segment


def format_path(path: Iterable[PatternSegment]) -> str:
    """The inverse of ``parse_path``."""
    out: list[str] = []
    for segment in path:
        if isinstance(segment, Wild):
            out.append({"index": "[*]", "key": ".*", "deep": ".**"}[segment.kind])
        elif isinstance(segment, int):
            out.append(f"[{segment}]")
        elif _PLAIN_KEY.fullmatch(segment):
            out.append(f".{segment}" if out else segment)
        else:
            out.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return "".join(out)


# --- the resource --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    """Differences at ``path`` (and below it) are not counted; with ``pattern``, only when both
    sides' values match it (a full match against the value as text)."""

    path: Pattern
    pattern: str | None = None

    @property
    def text(self) -> str:
        return format_path(self.path)


@dataclass(frozen=True)
class ToleranceRule:
    """Two numbers at ``path`` (and below) are equal when they differ by at most ``absolute``
    or by at most ``relative`` of the larger one."""

    path: Pattern
    absolute: float = 0.0
    relative: float = 0.0

    @property
    def text(self) -> str:
        return format_path(self.path)


@dataclass(frozen=True)
class RedactRule:
    """A value to hide before anything is stored: ``header.x``, ``query.x`` or ``body.<path>``."""

    path: Pattern

    @property
    def text(self) -> str:
        return format_path(self.path)


def _default_redactions() -> tuple[RedactRule, ...]:
    rules = [RedactRule(("header", name)) for name in SENSITIVE_HEADERS]
    rules += [RedactRule(("body", ANY_DEPTH, name)) for name in _SENSITIVE_BODY_KEYS]
    rules += [RedactRule(("query", name)) for name in _SENSITIVE_QUERY]
    return tuple(rules)


DEFAULT_REDACTIONS = _default_redactions()


@dataclass(frozen=True)
class Thresholds:
    """The knobs of the verdicts (the report's ``Thresholds`` reads these, as fractions).

    One table of defaults: the report, the CLI's help and the README take them from here."""

    alpha: float = 0.01
    min_pairs: int = 30
    min_excess: float = 0.0003  # the smallest field effect: excess share of requests
    min_relative: float = 0.0  # and Diffy's relative figure, off by default
    latency_min_relative: float = 0.10
    latency_min_absolute_ms: float = 1.0
    latency_min_seconds: float = 2.0  # the latency pairs must span this long
    timestamp_tolerance_s: float = 60.0


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Comparison:
    meta: Meta
    host: str  # as written; ``fqdn`` resolves it
    primary: str  # subset names
    candidate: str
    baseline: str | None = None
    sample_percentage: float = 100.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_example_chars: int = DEFAULT_MAX_EXAMPLE_CHARS
    ignore: tuple[IgnoreRule, ...] = ()
    # The defaults first, then the user's: what the analysis applies.
    redact: tuple[RedactRule, ...] = DEFAULT_REDACTIONS
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    endpoints: tuple[str, ...] = ()  # the user's endpoint patterns, first match wins
    tolerance: tuple[ToleranceRule, ...] = ()
    unordered: tuple[Pattern, ...] = ()  # arrays whose order means nothing
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    api_version: str = API_VERSION
    kind: Literal["Comparison"] = "Comparison"

    @property
    def fqdn(self) -> str:
        return fqdn(self.host, self.meta.namespace)

    @property
    def key(self) -> tuple[str, str]:
        return (self.meta.namespace, self.meta.name)


def comparisons_for(resources: Iterable[Resource]) -> list[Comparison]:
    """The Comparisons among ``resources``, by namespace and name: what the data plane captures
    for, on each config change."""
    found = [r for r in resources if isinstance(r, Comparison)]
    return sorted(found, key=lambda c: c.key)


def sampled(comparison: Comparison, request_id: str) -> bool:
    """Whether the request with this id is compared: the same answer for the same id, always.

    FNV-1a of the id, mod 10,000, against the percentage in hundredths: 30 % compares the ids
    whose hash falls in [0, 3000).
    """
    if comparison.sample_percentage >= 100.0:
        return True
    if comparison.sample_percentage <= 0.0:
        return False
    return fnv1a_32(request_id.encode()) % 10_000 < round(comparison.sample_percentage * 100)


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


# --- parsing -------------------------------------------------------------------------------------


def parse_comparison(spec: Obj, meta: Meta | None, issues: Issues) -> Comparison | None:
    host = _host(spec, issues)
    primary = _subset(spec, "primary", issues, required=True)
    candidate = _subset(spec, "candidate", issues, required=True)
    baseline = _subset(spec, "baseline", issues, required=False)
    _distinct_subsets(spec, {"primary": primary, "candidate": candidate, "baseline": baseline})
    percentage = _percentage(spec, issues)
    max_body = _max_body(spec, issues)
    max_example = _max_example_chars(spec, issues)
    ignore = _ignore_rules(spec, issues)
    redact = _redact_rules(spec, issues)
    thresholds = _thresholds(spec, issues)
    endpoints = _endpoint_patterns(spec, issues)
    tolerance = _tolerance_rules(spec, issues)
    unordered = _unordered(spec, issues)
    if meta is None or host is None or primary is None or candidate is None or issues.errors:
        return None
    return Comparison(
        meta=meta,
        host=host,
        primary=primary,
        candidate=candidate,
        baseline=baseline,
        sample_percentage=percentage,
        max_body_bytes=max_body,
        max_example_chars=max_example,
        ignore=ignore,
        redact=DEFAULT_REDACTIONS + redact,
        thresholds=thresholds,
        endpoints=endpoints,
        tolerance=tolerance,
        unordered=unordered,
    )


def _tolerance_rules(spec: Obj, issues: Issues) -> tuple[ToleranceRule, ...]:
    rules = []
    for path, value in spec.items("tolerance"):
        obj = Obj.of(value, path, issues, ("path", "absolute", "relative"), proto=False)
        if obj is None:
            continue
        text = obj.text("path")
        if text is None:
            if not obj.has("path"):
                issues.error(obj.path("path"), "path is required")
            continue
        pattern = _field_path(text, obj.path("path"), issues, ("body",))
        absolute = _non_negative(obj, "absolute", 0.0)
        relative = _non_negative(obj, "relative", 0.0)
        if pattern is not None:
            rules.append(ToleranceRule(pattern, absolute, relative))
    return tuple(rules)


def _unordered(spec: Obj, issues: Issues) -> tuple[Pattern, ...]:
    out = []
    for path, value in spec.items("unordered"):
        if not isinstance(value, str):
            type_error(issues, path, "a field path", value)
            continue
        pattern = _field_path(value, path, issues, ("body",))
        if pattern is not None:
            out.append(pattern)
    return tuple(out)


_ENDPOINT_PATTERN = re.compile(r"/(?:[^\s{}*?#]|\{[A-Za-z_][A-Za-z0-9_]*\})*\*?")


def _endpoint_patterns(spec: Obj, issues: Issues) -> tuple[str, ...]:
    out = []
    for path, value in spec.items("endpoints"):
        if not isinstance(value, str):
            type_error(issues, path, "a path pattern", value)
        elif not _ENDPOINT_PATTERN.fullmatch(value):
            issues.error(
                path,
                f'invalid endpoint pattern "{value}": a path starting with "/", {{name}} for '
                'one segment, "*" at the end for any rest',
            )
        else:
            out.append(value)
    return tuple(out)


def _thresholds(spec: Obj, issues: Issues) -> Thresholds:
    obj = spec.sub("thresholds", THRESHOLD_FIELDS, proto=False)
    if obj is None:
        return DEFAULT_THRESHOLDS
    d = DEFAULT_THRESHOLDS
    values: dict[str, Any] = {}
    alpha = obj.number("alpha")
    if alpha is not None:
        if not 0.0 < alpha < 0.5:
            issues.error(obj.path("alpha"), f"must be above 0 and below 0.5, got {alpha:g}")
        values["alpha"] = alpha
    pairs = obj.integer("minPairs")
    if pairs is not None:
        if not 1 <= pairs <= 1_000_000:
            issues.error(obj.path("minPairs"), f"must be between 1 and 1000000, got {pairs}")
        values["min_pairs"] = pairs
    field_effect = obj.sub("minFieldEffect", ("relative", "absolute"), proto=False)
    if field_effect is not None:
        values["min_relative"] = _percent(field_effect, "relative", d.min_relative)
        values["min_excess"] = _percent(field_effect, "absolute", d.min_excess)
    latency = obj.sub("latencyMinEffect", ("relative", "absoluteMs"), proto=False)
    if latency is not None:
        values["latency_min_relative"] = _percent(latency, "relative", d.latency_min_relative)
        values["latency_min_absolute_ms"] = _non_negative(
            latency, "absoluteMs", d.latency_min_absolute_ms
        )
    values["latency_min_seconds"] = _non_negative(obj, "latencyMinSeconds", d.latency_min_seconds)
    values["timestamp_tolerance_s"] = _non_negative(
        obj, "timestampToleranceSeconds", d.timestamp_tolerance_s
    )
    return Thresholds(**{**dataclasses.asdict(d), **values})


def _percent(obj: Obj, name: str, default: float) -> float:
    """A percentage in the spec (Diffy's way), a fraction in the model."""
    value = obj.number(name)
    if value is None:
        return default
    if not 0.0 <= value <= 100.0:
        obj.issues.error(obj.path(name), f"must be a percentage between 0 and 100, got {value:g}")
    return value / 100


def _non_negative(obj: Obj, name: str, default: float) -> float:
    value = obj.number(name)
    if value is None:
        return default
    if value < 0:
        obj.issues.error(obj.path(name), f"must be 0 or more, got {value:g}")
    return value


def _host(spec: Obj, issues: Issues) -> str | None:
    return spec.required_text("host", validate.fqdn, issues)


def _subset(spec: Obj, name: str, issues: Issues, *, required: bool) -> str | None:
    ref = spec.sub(name, ("subset",), proto=False)
    if ref is None:
        if required and not spec.has(name):
            issues.error(spec.path(name), f"{name} is required")
        return None
    return ref.required_text("subset", validate.subset_name, issues)


def _distinct_subsets(spec: Obj, subsets: dict[str, str | None]) -> None:
    seen: dict[str, str] = {}
    for role, subset in subsets.items():
        if subset is None:
            continue
        if subset in seen:
            spec.issues.error(
                spec.path(role),
                f'subset "{subset}" is already the {seen[subset]}; each role needs its own subset',
            )
        else:
            seen[subset] = role


def _percentage(spec: Obj, issues: Issues) -> float:
    sample = spec.sub("sample", ("percentage",), proto=False)
    if sample is None:
        return 100.0
    value = sample.number("percentage")
    if value is None:
        return 100.0
    if not 0.0 <= value <= 100.0:
        issues.error(sample.path("percentage"), f"must be between 0 and 100, got {value:g}")
    return value


def _max_body(spec: Obj, issues: Issues) -> int:
    value = spec.integer("maxBodyBytes")
    if value is None:
        return DEFAULT_MAX_BODY_BYTES
    if not 0 < value <= MAX_BODY_BYTES_LIMIT:
        issues.error(
            spec.path("maxBodyBytes"),
            f"must be between 1 and {MAX_BODY_BYTES_LIMIT} (64 MiB), got {value}",
        )
    return value


def _max_example_chars(spec: Obj, issues: Issues) -> int:
    value = spec.integer("maxExampleChars")
    if value is None:
        return DEFAULT_MAX_EXAMPLE_CHARS
    low, high = MAX_EXAMPLE_CHARS_RANGE
    if not low <= value <= high:
        issues.error(spec.path("maxExampleChars"), f"must be between {low} and {high}, got {value}")
    return value


def _ignore_rules(spec: Obj, issues: Issues) -> tuple[IgnoreRule, ...]:
    rules: list[IgnoreRule] = []
    for path, value in spec.items("ignore"):
        rule = _ignore_rule(path, value, issues)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _ignore_rule(path: str, value: Any, issues: Issues) -> IgnoreRule | None:
    if isinstance(value, str):
        pattern = _field_path(value, path, issues, ROOTS)
        return None if pattern is None else IgnoreRule(pattern)
    if not isinstance(value, dict):
        type_error(issues, path, "a field path or a mapping with path and pattern", value)
        return None
    obj = Obj.of(value, path, issues, ("path", "pattern"), proto=False)
    if obj is None:
        return None
    text = obj.text("path")
    if text is None:
        if not obj.has("path"):
            issues.error(obj.path("path"), "path is required")
        return None
    pattern = _field_path(text, obj.path("path"), issues, ROOTS)
    regex = obj.text("pattern")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            issues.error(obj.path("pattern"), f"invalid regular expression: {exc}")
            return None
    return None if pattern is None else IgnoreRule(pattern, regex)


def _redact_rules(spec: Obj, issues: Issues) -> tuple[RedactRule, ...]:
    rules: list[RedactRule] = []
    for path, value in spec.items("redact"):
        if not isinstance(value, str):
            type_error(issues, path, "a header name or a field path", value)
            continue
        if validate.header_name(value) is None and "." not in value:
            rules.append(RedactRule(("header", value.lower())))
            continue
        pattern = _field_path(value, path, issues, ("header", "body", "query"))
        if pattern is not None:
            rules.append(RedactRule(pattern))
    return tuple(rules)


def _field_path(text: str, path: str, issues: Issues, roots: tuple[str, ...]) -> Pattern | None:
    try:
        pattern = parse_path(text)
    except ValueError as exc:
        issues.error(path, str(exc))
        return None
    root = pattern[0]
    if root not in roots:
        issues.error(path, f'field path "{text}" must start with {_one_of(roots)}')
        return None
    if root == "status" and len(pattern) > 1:
        issues.error(path, 'field path "status" has no fields below it')
        return None
    if root in ("header", "query"):
        if len(pattern) != 2 or not isinstance(pattern[1], str):
            issues.error(path, f'field path "{text}" must be {root}.<name>')
            return None
        if root == "header":
            return (root, pattern[1].lower())
    return pattern


def _one_of(roots: tuple[str, ...]) -> str:
    quoted = [f'"{r}"' for r in roots]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


# --- cross-references, at apply ------------------------------------------------------------------


def comparison_conflicts(resources: Iterable[Resource]) -> list[tuple[tuple[str, str], str]]:
    """((namespace, name), error) for each Comparison that shares its host and primary with
    another: the data plane pairs a request with one Comparison, so one of them would silently
    compare nothing. Refused at apply, naming the others."""
    groups: dict[tuple[str, str], list[Comparison]] = {}
    for comparison in comparisons_for(resources):
        groups.setdefault((comparison.fqdn, comparison.primary), []).append(comparison)
    found: list[tuple[tuple[str, str], str]] = []
    for group in groups.values():
        for comparison in group if len(group) > 1 else ():
            others = ", ".join("/".join(o.key) for o in group if o is not comparison)
            found.append(
                (
                    comparison.key,
                    f"Comparison {'/'.join(comparison.key)}: host {comparison.host} with primary "
                    f"subset {comparison.primary} is also compared by Comparison {others}; one "
                    "Comparison per host and primary (delete the other first)",
                )
            )
    return found


def comparison_warnings(resources: Iterable[Resource]) -> list[tuple[tuple[str, str, str], str]]:
    """((kind, namespace, name), warning) for each Comparison that would compare nothing.

    Warnings, not errors: the VirtualService that mirrors to the candidate may be applied next.
    """
    all_resources = list(resources)
    services = [r for r in all_resources if isinstance(r, VirtualService)]
    found: list[tuple[tuple[str, str, str], str]] = []
    for comparison in comparisons_for(all_resources):
        key = ("Comparison", *comparison.key)
        for text in _comparison_problems(comparison, services):
            found.append((key, f"Comparison {'/'.join(comparison.key)}: {text}"))
    return found


def _comparison_problems(comparison: Comparison, services: list[VirtualService]) -> list[str]:
    host = comparison.fqdn
    routed: set[str] = set()
    mirrored: set[str] = set()
    claimed = False
    for vs in services:
        if not any(fqdn(h, vs.meta.namespace) == host for h in vs.hosts):
            continue
        claimed = True
        for route in vs.http:
            routed |= {
                d.destination.subset
                for d in route.route
                if fqdn(d.destination.host, vs.meta.namespace) == host
            }
            mirrored |= {
                m.destination.subset
                for m in route.mirrors
                if m.percentage > 0 and fqdn(m.destination.host, vs.meta.namespace) == host
            }
    if not claimed:
        return [f"no VirtualService routes host {comparison.host}; nothing will be compared"]
    problems = []
    if comparison.primary not in routed:
        problems.append(
            f"subset {comparison.primary} is not a route destination of host "
            f"{comparison.host}; nothing will be compared"
        )
    for subset in (comparison.candidate, comparison.baseline):
        if subset is not None and subset not in mirrored:
            problems.append(
                f"subset {subset} is not mirrored by any route of host {comparison.host}; "
                "nothing will be compared"
            )
    return problems
