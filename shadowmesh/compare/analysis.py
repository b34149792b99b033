"""One captured exchange in, what it says about each field out: pure, no storage, no threads.

The steps, in order: redact (before anything is kept), normalise, diff primary against
candidate (the raw diff) and, with a baseline, primary against baseline (the noise diff), drop
ignored paths, and fold the differences into fields (paths with ``[*]`` for indices). A side
that did not answer (status 0) is compared by its status only: a timeout is not a thousand
missing fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shadowmesh.compare.capture import NOT_SENT, CapturedExchange, CapturedResponse
from shadowmesh.compare.diff import (
    ABSENT,
    MAX_DIFFERENCES,
    Difference,
    Kind,
    array_diff,
    array_of,
    canonical,
    diff,
)
from shadowmesh.compare.normalise import BodyKind, Redactor, normalise
from shadowmesh.compare.paths import field_of, matches, names
from shadowmesh.compare.volatile import alike, volatile_match
from shadowmesh.model.comparison import (
    DEFAULT_MAX_EXAMPLE_CHARS,
    Comparison,
    IgnoreRule,
    Path,
    Pattern,
    format_path,
)

MAX_EXAMPLE_CHARS = 400
# An example's array diff lists at most this many moved, changed, added and removed indices each.
ARRAY_ENTRIES_SHOWN = 20
# Request headers a replay should not copy: hop-by-hop, framing, and the proxy's own.
_NOT_REPLAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-envoy-decorator-operation",
        "via",
    }
)


@dataclass(frozen=True)
class Rules:
    """What the analysis needs of a Comparison, compiled once per configuration."""

    comparison: Comparison
    redactor: Redactor
    ignore: tuple[tuple[IgnoreRule, re.Pattern[str] | None], ...]
    digest: str  # changes whenever the rules do: counters restart with new rules
    spec: dict[str, Any]  # the effective settings, as the report shows them

    @classmethod
    def of(cls, comparison: Comparison, key: bytes | None = None) -> Rules:
        ignore = tuple(
            (rule, re.compile(rule.pattern) if rule.pattern is not None else None)
            for rule in comparison.ignore
        )
        spec = describe_spec(comparison)
        digest = hashlib.sha256(canonical(spec).encode()).hexdigest()[:16]
        return cls(comparison, Redactor(comparison.redact, key), ignore, digest, spec)

    @property
    def has_baseline(self) -> bool:
        return self.comparison.baseline is not None

    def volatile(self, d: Difference) -> bool:
        """A value difference between two values of one volatile class and shape."""
        return d.kind in ("value", "type") and volatile_match(
            d.path,
            d.left,
            d.right,
            baseline=self.has_baseline,
            tolerance_s=self.comparison.thresholds.timestamp_tolerance_s,
        )

    def tolerated(self, d: Difference) -> bool:
        """Two numbers near enough under the path's tolerance rule."""
        if d.kind != "value" or not _number(d.left) or not _number(d.right):
            return False
        gap = abs(d.left - d.right)
        for rule in self.comparison.tolerance:
            if matches(rule.path, d.path):
                limit = max(rule.absolute, rule.relative * max(abs(d.left), abs(d.right)))
                return bool(gap <= limit)
        return False

    def ignored(self, difference: Difference) -> bool:
        for rule, pattern in self.ignore:
            if not matches(rule.path, difference.path):
                continue
            if pattern is None:
                return True
            if _full_match(pattern, difference.left) and _full_match(pattern, difference.right):
                return True
        return False


def describe_spec(comparison: Comparison) -> dict[str, Any]:
    """The Comparison's effective settings, as the report shows them."""
    return {
        "host": comparison.host,
        "primary": comparison.primary,
        "candidate": comparison.candidate,
        "baseline": comparison.baseline,
        "samplePercentage": comparison.sample_percentage,
        "maxBodyBytes": comparison.max_body_bytes,
        "maxExampleChars": comparison.max_example_chars,
        "ignore": [
            {"path": r.text, **({"pattern": r.pattern} if r.pattern is not None else {})}
            for r in comparison.ignore
        ],
        "redact": [r.text for r in comparison.redact],
        "thresholds": dataclasses.asdict(comparison.thresholds),
        "tolerance": [
            {"path": r.text, "absolute": r.absolute, "relative": r.relative}
            for r in comparison.tolerance
        ],
        "unordered": [format_path(p) for p in comparison.unordered],
        "endpoints": list(comparison.endpoints),
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def unorder(tree: Any, patterns: tuple[Pattern, ...], path: Path = ()) -> Any:
    """The tree with the arrays that ``patterns`` name sorted (by their canonical text), so
    they are compared as multisets: element by element once in the same order."""
    if not patterns:
        return tree
    if isinstance(tree, dict):
        return {k: unorder(v, patterns, (*path, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        items = [unorder(v, patterns, (*path, i)) for i, v in enumerate(tree)]
        if any(names(p, path) for p in patterns):
            items.sort(key=canonical)
        return items
    return tree


def _full_match(pattern: re.Pattern[str], value: Any) -> bool:
    if value is ABSENT:
        return False
    text = value if isinstance(value, str) else canonical(value)
    return pattern.fullmatch(text) is not None


@dataclass(frozen=True)
class Example:
    """One difference as the report shows it; values are JSON text, already redacted."""

    path: str  # the concrete path, with indices
    kind: Kind
    primary: str | None  # None: the side lacks the field
    candidate: str | None
    baseline: str | None = None
    array: Path | None = None  # the array whose alignment the drill-down shows (diff.array_of)


@dataclass
class FieldOutcome:
    field: str
    kinds: set[Kind] = dataclasses.field(default_factory=set)  # of the raw differences
    raw: bool = False  # the candidate differs from the primary here (volatile matches aside)
    noise: bool = False  # the baseline differs from the primary here (volatile matches aside)
    volatile: bool = False  # the candidate's value differs, but only volatile-for-volatile
    # It differed in a request whose status changed: explained by that change, so not counted
    # as its own (raw stays False), shown under the status field.
    with_status: bool = False
    # Without a baseline: it differed here, but two primary responses to one request differ
    # in this field too (repeats.py), so it is volatile, on this request and all before it.
    primary_varies: bool = False
    example: Example | None = None


@dataclass(frozen=True)
class Outcome:
    """What one exchange says; ``skipped`` names why it could not be compared."""

    endpoint_target: str  # the request target, sensitive query values masked
    method: str
    request_id: str
    started: float
    statuses: tuple[int, int, int | None]  # primary, candidate, baseline
    durations: tuple[float, float, float | None]
    body_kinds: tuple[BodyKind, ...]
    fields: dict[str, FieldOutcome]
    truncated_differences: bool = False
    # What the drill-down shows of this request, made only if one of its differences is kept
    # as an example (``sample()``): the redacted request and the three redacted responses.
    request_headers: tuple[tuple[str, str], ...] = ()
    request_body: str | None = None
    trees: tuple[dict[str, Any] | None, ...] = ()
    # The primary's and the candidate's trees as they were diffed (unordered arrays sorted):
    # the examples' paths and their array diffs refer to these.
    compared: tuple[Any, Any] | None = None
    sample_chars: int = DEFAULT_MAX_EXAMPLE_CHARS  # the Comparison's maxExampleChars

    def sample(self) -> dict[str, Any]:
        responses = {
            role: _capped(tree, self.sample_chars)
            for role, tree in zip(("primary", "candidate", "baseline"), self.trees, strict=False)
            if tree is not None
        }
        return {
            "request": {
                "method": self.method,
                "target": self.endpoint_target,
                "headers": [list(h) for h in self.request_headers],
                "body": self.request_body,
            },
            "responses": responses,
            "arrays": self._arrays(),
        }

    def _arrays(self) -> dict[str, dict[str, Any]]:
        """The array diffs of the examples, by the example's concrete path: each array aligned
        once, however many of its fields differ."""
        if self.compared is None:
            return {}
        aligned: dict[Path, dict[str, Any] | None] = {}
        out: dict[str, dict[str, Any]] = {}
        for f in self.fields.values():
            path = f.example.array if f.example is not None else None
            if f.example is None or path is None:
                continue
            if path not in aligned:
                left, right = (_at(tree, path) for tree in self.compared)
                found = None
                if isinstance(left, list) and isinstance(right, list):
                    found = array_diff(left, right)
                aligned[path] = (
                    None
                    if found is None
                    else {"path": format_path(path), **found.to_json(ARRAY_ENTRIES_SHOWN)}
                )
            entry = aligned[path]
            if entry is not None:
                out[f.example.path] = entry
        return out

    @property
    def differing(self) -> bool:
        return any(f.raw for f in self.fields.values())

    @property
    def noisy(self) -> bool:
        return any(f.noise for f in self.fields.values())


class Skipped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def analyse(
    exchange: CapturedExchange, rules: Rules, varying: frozenset[str] = frozenset()
) -> Outcome:
    """Raises Skipped when the exchange cannot be compared (no candidate, primary failed...).

    ``varying``: without a baseline, the fields seen to differ between two primary responses to
    one request (repeats.py); a value there that changes to one of its type and class is
    volatile, as a volatile match is (the status is never among them)."""
    candidate, baseline = _sides(exchange, rules)
    primary = exchange.primary
    trees = [normalise(r, rules.redactor) for r in (primary, candidate)]
    unordered = tuple((*p,) for p in rules.comparison.unordered)
    left, right = (unorder(t.tree, unordered) for t in trees)
    raw = _differences(left, right, primary, candidate, rules)
    noise: list[Difference] = []
    base_tree = None
    if baseline is not None:
        base_tree = unorder(normalise(baseline, rules.redactor).tree, unordered)
        noise = _differences(left, base_tree, primary, baseline, rules)
    fields = _fold(raw, noise, base_tree, rules, varying if baseline is None else frozenset())
    return Outcome(
        endpoint_target=rules.redactor.target(exchange.path),
        method=exchange.method,
        request_id=exchange.request_id,
        started=exchange.started,
        statuses=(primary.status, candidate.status, baseline.status if baseline else None),
        durations=(
            primary.duration_ms,
            candidate.duration_ms,
            baseline.duration_ms if baseline else None,
        ),
        body_kinds=tuple(t.body_kind for t in trees),
        fields=fields,
        truncated_differences=max(len(raw), len(noise)) >= MAX_DIFFERENCES,
        request_headers=_request_headers(exchange, rules),
        request_body=_request_body(exchange, rules),
        trees=(trees[0].tree, trees[1].tree, None if base_tree is None else base_tree),
        compared=(left, right),
        sample_chars=rules.comparison.max_example_chars,
    )


def _request_headers(exchange: CapturedExchange, rules: Rules) -> tuple[tuple[str, str], ...]:
    headers = {n.lower(): v for n, v in exchange.request_headers if n.lower() not in _NOT_REPLAYED}
    return tuple(rules.redactor.headers(headers).items())


def _request_body(exchange: CapturedExchange, rules: Rules) -> str | None:
    """The request body as text for the drill-down: JSON is redacted like a response's; any
    other body is not shown (a form or a blob may hold what no rule names)."""
    if not exchange.request_body:
        return None
    try:
        tree = json.loads(exchange.request_body)
    except ValueError:
        return f"({len(exchange.request_body)} bytes, not JSON: not shown)"
    return json.dumps(rules.redactor.body(tree), ensure_ascii=False)


def _capped(tree: dict[str, Any], limit: int) -> str:
    """A drill-down response: the normalised tree as JSON, cut at ``limit`` characters."""
    text = json.dumps(tree, ensure_ascii=False, sort_keys=True, indent=1, default=str)
    if len(text) > limit:
        return text[: limit - 40] + f"\n... (cut at {limit} characters)"
    return text


def _sides(
    exchange: CapturedExchange, rules: Rules
) -> tuple[CapturedResponse, CapturedResponse | None]:
    if exchange.primary.status == 0:
        raise Skipped(f"primary {exchange.primary.error or 'failed'}")
    if exchange.candidate is None:
        raise Skipped("no candidate response")
    if rules.has_baseline and exchange.baseline is None:
        # Counting this request's raw differences without its noise would bias the test.
        raise Skipped("no baseline response")
    for role, side in (("candidate", exchange.candidate), ("baseline", exchange.baseline)):
        if side is not None and side.status == 0 and side.error in NOT_SENT:
            # Dropped under load by the proxy: a copy refused for overflow is not the side's
            # 0 status, and counting it would call the busier shadow a regression.
            raise Skipped(f"{role} copy dropped ({side.error})")
    return exchange.candidate, exchange.baseline if rules.has_baseline else None


def _differences(
    left: dict[str, Any],
    right: dict[str, Any],
    primary: CapturedResponse,
    other: CapturedResponse,
    rules: Rules,
) -> list[Difference]:
    if other.status == 0:
        what = other.error or "no response"
        return [Difference(("status",), "status", primary.status, f"0 ({what})")]
    return [d for d in diff(left, right) if not rules.ignored(d) and not rules.tolerated(d)]


def _fold(
    raw: Iterable[Difference],
    noise: Iterable[Difference],
    baseline: dict[str, Any] | None,
    rules: Rules,
    varying: frozenset[str] = frozenset(),
) -> dict[str, FieldOutcome]:
    """Differences into fields. A volatile match (a UUID for a UUID, a timestamp of the same
    format within the tolerance) is no difference, on either side: counted as volatile, so the
    report can say so, and never in the test's n10/n01 (where two clocks ticking apart would
    turn into regressions, whichever shadow answered closer to the primary)."""
    fields: dict[str, FieldOutcome] = {}
    for d in raw:
        outcome = fields.setdefault(field_of(d.path), FieldOutcome(field_of(d.path)))
        if rules.volatile(d):
            outcome.volatile = True
            continue
        if d.kind == "value" and outcome.field in varying and alike(d.left, d.right):
            outcome.volatile = outcome.primary_varies = True
            continue
        outcome.raw = True
        outcome.kinds.add(d.kind)
        if outcome.example is None:
            outcome.example = _example(d, baseline)
    for d in noise:
        if rules.volatile(d):
            continue
        outcome = fields.setdefault(field_of(d.path), FieldOutcome(field_of(d.path)))
        outcome.noise = True
    status = fields.get("status")
    status_changed = status is not None and status.raw
    for outcome in fields.values():
        if outcome.raw:
            outcome.volatile = False  # counted once: as a difference
            if status_changed and outcome is not status:
                outcome.raw, outcome.with_status = False, True
    return fields


def _example(d: Difference, baseline: dict[str, Any] | None) -> Example:
    base = _at(baseline, d.path) if baseline is not None else ABSENT
    return Example(
        path=format_path(d.path),
        kind=d.kind,
        primary=show(d.left),
        candidate=show(d.right),
        baseline=show(base) if baseline is not None else None,
        array=array_of(d),
    )


def _at(tree: Any, path: Iterable[str | int]) -> Any:
    node = tree
    for segment in path:
        if isinstance(node, dict) and isinstance(segment, str) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            node = node[segment]
        else:
            return ABSENT
    return node


def show(value: Any) -> str | None:
    """A value as example text: JSON, cut to a readable length; None when absent."""
    if value is ABSENT:
        return None
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > MAX_EXAMPLE_CHARS:
        return text[: MAX_EXAMPLE_CHARS - 3] + "..."
    return text
