"""The report of one Comparison: per endpoint and per field, with verdicts. Plain, JSON-able data.

Verdicts, per endpoint and overall (``ENDPOINT_VERDICTS``, worst first):

- ``regression``: a field regression (below) or a latency regression (the paired test of the
  candidate against the baseline, ``latency.py``);
- ``insufficient data``: fewer than ``min_pairs`` compared requests, and no regression found
  in them; overall, when fewer than ``min_pairs`` requests were compared at all, or no endpoint
  has that many: nothing compared is never a pass;
- ``difference``: some field differs and nothing says it is noise, but no test calls it a
  regression (always so without a baseline);
- ``ok``: compared enough, and every difference is noise.

Verdicts, per field:

- ``regression``: with a baseline, McNemar's test says the candidate differs here more often
  than the baseline does (one-sided, q < alpha after Benjamini-Hochberg over the fields tested,
  and an excess above ``min_excess`` of the endpoint's requests). Never without a baseline:
  there is no noise to test against, so use ``--fail-on difference`` there;
- ``noise``: only the baseline differs, or both do and the test does not call it, or every
  difference is volatile-for-volatile (a UUID for a UUID);
- ``difference``: the candidate differs, and nothing says it is noise;
- ``ok``: an endpoint with no difference at all.

Risk, per field: ``high`` for a removed field, a changed type or status, ``medium`` for a
changed value or order, ``low`` for an added field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shadowmesh.compare.latency import (
    LatencyLimits,
    LatencyTest,
    Sketch,
    latency_verdict,
    paired_test,
    quantiles,
)
from shadowmesh.compare.stats import benjamini_hochberg, diffy_figures, mcnemar
from shadowmesh.compare.store import SIDES, Snapshot
from shadowmesh.model.comparison import DEFAULT_THRESHOLDS as _D

# Of fields. "follows status": it differs only in requests whose status changed, and is shown
# under the status field (one error is one regression, not one per field of its body).
FOLLOWS = "follows status"
VERDICTS = ("regression", "difference", FOLLOWS, "noise", "ok")
INSUFFICIENT = "insufficient data"
ENDPOINT_VERDICTS = ("regression", INSUFFICIENT, "difference", "ok")
LATENCY_VERDICTS = ("regression", INSUFFICIENT, "ok", "not judged")
RISKS = ("high", "medium", "low", "none")
LARGEST_SHOWN = 5  # the report's "largest endpoints": where the traffic is, before the verdicts
TOP_SHOWN = 5  # the report's "top regressions": what to look at first, on one screen


@dataclass(frozen=True)
class Thresholds:
    """The knobs of the verdicts; the Comparison's spec sets them, the CLI can override them.

    ``alpha``: the false discovery rate, Benjamini-Hochberg over the fields tested, and again
    over the endpoints' latency tests. ``min_pairs``: compared requests an endpoint needs before
    it is judged. ``min_excess`` and ``min_relative``: the smallest field effect that counts, as
    Diffy's absolute and relative thresholds (fractions, not percent); the relative one is off
    by default because an always-noisy field (large n11) dilutes it below any threshold while
    McNemar's test, which only looks at the discordant pairs, still sees the regression.
    """

    alpha: float = _D.alpha
    min_pairs: int = _D.min_pairs
    min_excess: float = _D.min_excess  # Diffy's absolute threshold, 0.03 % of the requests
    min_relative: float = _D.min_relative
    latency_min_relative: float = _D.latency_min_relative
    latency_min_absolute_ms: float = _D.latency_min_absolute_ms
    latency_min_seconds: float = _D.latency_min_seconds

    def latency(self) -> LatencyLimits:
        return LatencyLimits(
            self.alpha,
            self.min_pairs,
            self.latency_min_relative,
            self.latency_min_absolute_ms,
            self.latency_min_seconds,
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Thresholds:
        """The thresholds a report's ``spec`` (``describe_spec``) names; defaults elsewhere."""
        values = spec.get("thresholds")
        if not isinstance(values, Mapping):
            return cls()
        return cls.override(cls(), values)

    @classmethod
    def override(cls, base: Thresholds, values: Mapping[str, Any]) -> Thresholds:
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key in known and value is not None:
                changes[key] = int(value) if key == "min_pairs" else float(value)
        return dataclasses.replace(base, **changes)


@dataclass
class ExampleReport:
    request_id: str
    method: str
    target: str
    path: str
    kind: str
    primary: str | None
    candidate: str | None
    baseline: str | None
    started: float
    # The drill-down: the redacted request, the three redacted responses (cut at a size), and
    # a curl line per version ($PRIMARY, $CANDIDATE, $BASELINE: their host:port).
    request: dict[str, Any] | None = None
    responses: dict[str, str] = dataclasses.field(default_factory=dict)
    curl: dict[str, str] = dataclasses.field(default_factory=dict)
    # The alignment of the array the difference is in (diff.ArrayDiff.to_json, with its
    # "path"), primary against candidate: moved, changed, removed and added indices.
    array: dict[str, Any] | None = None


@dataclass
class FieldReport:
    field: str
    verdict: str
    risk: str
    raw: int  # requests where the candidate differs here (Diffy's R)
    noise: int  # requests where the baseline differs here (Diffy's S)
    n10: int
    n01: int
    n11: int
    n00: int
    volatile: int  # requests where the candidate's value differed only volatile-for-volatile
    weight: int
    kinds: dict[str, int]
    p_value: float | None = None
    q_value: float | None = None
    test: str | None = None  # "exact" or "chi2"
    relative: float | None = None  # Diffy's figures, in percent
    absolute: float | None = None
    examples: list[ExampleReport] = dataclasses.field(default_factory=list)
    with_status: int = 0  # requests where it differed with a change of status (not in raw)
    followers: list[str] = dataclasses.field(default_factory=list)  # status: the fields under it
    # Without a baseline: seen to differ between two primary responses to one request: noise.
    primary_varies: bool = False


@dataclass
class LatencySide:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass
class LatencyReport:
    """The sides' distributions, and the paired test of candidate against baseline."""

    primary: LatencySide | None
    candidate: LatencySide | None
    baseline: LatencySide | None
    ratio: dict[str, float | None]  # candidate / baseline per quantile; {} without a baseline
    verdict: str  # LATENCY_VERDICTS
    flagged: bool  # verdict == "regression"
    reason: str
    pairs: int = 0
    p_value: float | None = None
    q_value: float | None = None
    median_ratio: float | None = None  # of candidate/baseline, request by request
    interval: list[float] | None = None  # its 95 % interval
    delta_ms: float | None = None  # median of candidate - baseline
    # The median ratio in each third of the window, oldest first (None: no pair in it).
    thirds: list[float | None] = dataclasses.field(default_factory=list)


@dataclass
class Transition:
    primary: int
    candidate: int
    count: int


@dataclass
class EndpointReport:
    endpoint: str
    verdict: str
    requests: int
    differing: int
    noisy: int
    difference_rate: float
    noise_rate: float
    transitions: list[Transition]
    latency: LatencyReport
    fields: list[FieldReport]
    reason: str = ""  # why the verdict, in a few words
    # [slice start (epoch s), requests, differing] over the kept requests' time: the picture of
    # the differing rate over time.
    timeline: list[list[float]] = dataclasses.field(default_factory=list)
    # The sets of fields that differ together (most frequent first): fields that always come
    # together are one change, not several.
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclass
class Report:
    namespace: str
    name: str
    configured: bool  # False: the Comparison was deleted; its data is still kept
    spec: dict[str, Any]
    digest: str
    has_baseline: bool
    generated_at: float
    first_seen: float | None
    last_seen: float | None
    compared: int
    differing: int
    skipped: dict[str, int]
    dropped: int
    thresholds: dict[str, float]
    verdict: str
    regressions: int  # fields
    latency_flags: int  # endpoints with a latency regression
    differences: int  # fields with the verdict "difference"
    endpoints: list[EndpointReport]
    insufficient: int = 0  # endpoints not judged: fewer than min_pairs compared
    latency_judged: int = 0  # endpoints whose latency was judged (ok or regression)
    reason: str = ""  # why the overall verdict, in a few words
    assumptions: list[str] = dataclasses.field(default_factory=list)
    since: float | None = None  # a window: only what was compared from then on
    # The few endpoints with the most compared requests ({endpoint, requests, share, verdict}),
    # most first: the endpoint table is sorted by verdict, and a template that did not collapse
    # ids shows here as many endpoints of a request or two each.
    largest: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The worst regressions ({endpoint, field ("latency" for a latency one), risk, detail}),
    # worst first, at most TOP_SHOWN: the whole report's verdict on one screen.
    top: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        values = dict(data)
        values["endpoints"] = [_endpoint(e) for e in data.get("endpoints", [])]
        return cls(**_known(cls, values))

    @property
    def failed_on_regression(self) -> bool:
        return self.regressions > 0 or self.latency_flags > 0

    def fails(self, fail_on: set[str], allow_insufficient: bool = False) -> bool:
        """Whether the CI gate fails. ``regression``: a field (or status) regression;
        ``latency``: a latency regression; ``difference``: either, or any field difference.
        Each also fails on insufficient data unless ``allow_insufficient``."""
        gates = fail_on - {"never"}
        if not gates:
            return False
        if self.verdict == INSUFFICIENT and not allow_insufficient:
            return True
        if "latency" in gates and not self.latency_judged and not allow_insufficient:
            return True  # no baseline, too few pairs, or saturated shadows: nothing judged
        if self.regressions and gates & {"regression", "difference"}:
            return True
        if self.latency_flags and gates & {"latency", "difference"}:
            return True
        return bool(self.differences) and "difference" in gates


def empty_report(
    namespace: str, name: str, spec: dict[str, Any], digest: str, dropped: int
) -> Report:
    """The report of a configured Comparison that has compared nothing yet."""
    return Report(
        namespace=namespace,
        name=name,
        configured=True,
        spec=spec,
        digest=digest,
        has_baseline=spec.get("baseline") is not None,
        generated_at=time.time(),
        first_seen=None,
        last_seen=None,
        compared=0,
        differing=0,
        skipped={},
        dropped=dropped,
        thresholds=dataclasses.asdict(Thresholds.from_spec(spec)),
        verdict=INSUFFICIENT,
        regressions=0,
        latency_flags=0,
        differences=0,
        endpoints=[],
        reason="nothing compared yet",
        assumptions=_assumptions(spec),
    )


def build_report(
    snapshot: Snapshot, *, configured: bool, dropped: int, thresholds: Thresholds | None = None
) -> Report:
    row = snapshot.row
    limits = thresholds or Thresholds.from_spec(row.spec)
    has_baseline = row.spec.get("baseline") is not None
    endpoints = [_endpoint_report(snapshot, e, has_baseline, limits) for e in snapshot.endpoints]
    if has_baseline:
        _judge_regressions(endpoints, limits)
        _judge_latency(snapshot, endpoints, limits)
    for endpoint in endpoints:
        _finish_endpoint(endpoint, limits)
    endpoints.sort(key=lambda e: (ENDPOINT_VERDICTS.index(e.verdict), -e.requests, e.endpoint))
    every_field = [f for e in endpoints for f in e.fields]
    regressions = sum(f.verdict == "regression" for f in every_field)
    latency_flags = sum(e.latency.flagged for e in endpoints)
    differences = sum(f.verdict == "difference" for f in every_field)
    verdict, reason = _overall(row.compared, endpoints, regressions, latency_flags, limits)
    return Report(
        namespace=row.namespace,
        name=row.name,
        configured=configured,
        spec=row.spec,
        digest=row.digest,
        has_baseline=has_baseline,
        generated_at=time.time(),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        compared=row.compared,
        differing=row.differing,
        skipped=dict(sorted(snapshot.skipped.items())),
        dropped=dropped,
        thresholds=dataclasses.asdict(limits),
        verdict=verdict,
        regressions=regressions,
        latency_flags=latency_flags,
        differences=differences,
        endpoints=endpoints,
        insufficient=sum(e.verdict == INSUFFICIENT for e in endpoints),
        latency_judged=sum(e.latency.verdict in ("ok", "regression") for e in endpoints),
        reason=reason,
        assumptions=_assumptions(row.spec),
        largest=largest_endpoints(endpoints),
        top=top_regressions(endpoints),
    )


def largest_endpoints(
    endpoints: Sequence[EndpointReport], shown: int = LARGEST_SHOWN
) -> list[dict[str, Any]]:
    total = sum(e.requests for e in endpoints)
    ranked = sorted(endpoints, key=lambda e: (-e.requests, e.endpoint))[:shown]
    return [
        {
            "endpoint": e.endpoint,
            "requests": e.requests,
            "share": e.requests / total if total else 0.0,
            "verdict": e.verdict,
        }
        for e in ranked
    ]


def top_regressions(
    endpoints: Sequence[EndpointReport], shown: int = TOP_SHOWN
) -> list[dict[str, Any]]:
    """The regressions to look at first, worst first: by risk (a removed field, a changed type
    or status before a changed value), then by the share of requests the candidate differs in
    beyond the baseline; a latency regression is a medium risk, ranked by its median ratio."""
    ranked: list[tuple[tuple[int, float, str, str], dict[str, Any]]] = []
    for e in endpoints:
        for f in e.fields:
            if f.verdict != "regression":
                continue
            excess = (f.n10 - f.n01) / e.requests if e.requests else 0.0
            what = ", ".join(f.kinds) or "value"
            detail = (
                f"{what}: differs in {f.raw} of {e.requests} requests, the baseline in {f.noise}"
            )
            if f.with_status:
                detail += f" (and in {f.with_status} with the status)"
            key = (RISKS.index(f.risk), -excess, e.endpoint, f.field)
            ranked.append((key, _top(e, f.field, f.risk, detail)))
        latency = e.latency
        if latency.flagged:
            ratio = latency.median_ratio or 1.0
            detail = (
                f"latency: x{ratio:.2f} ({latency.delta_ms or 0.0:+.1f} ms) candidate against "
                f"baseline, {latency.pairs} pairs"
            )
            key = (RISKS.index("medium"), 1.0 - ratio, e.endpoint, "latency")
            ranked.append((key, _top(e, "latency", "medium", detail)))
    ranked.sort(key=lambda item: item[0])
    return [entry for _, entry in ranked[:shown]]


def _top(endpoint: EndpointReport, field: str, risk: str, detail: str) -> dict[str, Any]:
    return {"endpoint": endpoint.endpoint, "field": field, "risk": risk, "detail": detail}


def _overall(
    compared: int,
    endpoints: list[EndpointReport],
    regressions: int,
    latency_flags: int,
    limits: Thresholds,
) -> tuple[str, str]:
    if regressions or latency_flags:
        return "regression", ""
    judged = [e for e in endpoints if e.verdict != INSUFFICIENT]
    if compared < limits.min_pairs or not judged:
        return INSUFFICIENT, (
            f"{compared} requests compared, {limits.min_pairs} needed"
            if compared < limits.min_pairs
            else f"no endpoint has {limits.min_pairs} compared requests yet"
        )
    if any(e.verdict == "difference" for e in endpoints):
        return "difference", ""
    return "ok", ""


def _assumptions(spec: Mapping[str, Any]) -> list[str]:
    """What the verdicts take for granted, for the report to say."""
    if spec.get("baseline") is not None:
        return [
            "volatile values (timestamps, http-dates, uuids, tokens...) are compared by type "
            "and shape, timestamps within the tolerance, not by value",
        ]
    return [
        "no baseline: no field difference can be called a regression, and latency is not judged",
        "volatile without a baseline: only values of a strict shape (uuid, ulid, ISO timestamp "
        "within the tolerance, http-date, trace id, JWT) and per-request id fields "
        "(x-request-id, traceId...) are compared by type, not value",
        "volatile without a baseline, learned: a field whose value differs between two primary "
        "responses to the same request (method, target, body; same status) is noise on its "
        "endpoint for values of the same type and class, also for the differences counted "
        "before; learned only where requests "
        "repeat, among the last 256 distinct ones",
    ]


def _endpoint_report(
    snapshot: Snapshot, row: dict[str, Any], has_baseline: bool, limits: Thresholds
) -> EndpointReport:
    name, requests = row["endpoint"], row["requests"]
    examples: dict[str, list[ExampleReport]] = {}
    for e in snapshot.examples:
        if e["endpoint"] == name:
            examples.setdefault(e["field"], []).append(_example_report(e, has_baseline))
    fields = [
        _field_report(f, requests, has_baseline, examples.get(f["field"], []))
        for f in snapshot.fields
        if f["endpoint"] == name
    ]
    transitions = [
        Transition(t["primary_status"], t["candidate_status"], t["count"])
        for t in snapshot.transitions
        if t["endpoint"] == name
    ]
    transitions.sort(key=lambda t: (t.primary == t.candidate, -t.count, t.primary, t.candidate))
    return EndpointReport(
        endpoint=name,
        verdict="ok",
        requests=requests,
        differing=row["differing"],
        noisy=row["noisy"],
        difference_rate=row["differing"] / requests if requests else 0.0,
        noise_rate=row["noisy"] / requests if requests else 0.0,
        transitions=transitions,
        latency=_latency(snapshot, name, has_baseline),
        fields=fields,
        timeline=[[t, n, d] for t, n, d in snapshot.timeline.get(name, [])],
        groups=[
            {"fields": fields, "requests": n} for fields, n in snapshot.signatures.get(name, [])
        ],
    )


def _field_report(
    row: dict[str, Any], requests: int, has_baseline: bool, examples: list[ExampleReport]
) -> FieldReport:
    kinds = {
        kind: row[f"{kind}_n"]
        for kind in ("status", "value", "type", "missing", "extra", "order")
        if row[f"{kind}_n"]
    }
    report = FieldReport(
        field=row["field"],
        verdict=_plain_verdict(row, has_baseline),
        risk=_risk(kinds),
        raw=row["raw"],
        noise=row["noise"],
        n10=row["n10"],
        n01=row["n01"],
        n11=row["n11"],
        n00=max(0, requests - row["n10"] - row["n01"] - row["n11"]),
        volatile=row["volatile"],
        weight=row["weight"],
        kinds=kinds,
        examples=examples,
        with_status=row.get("with_status", 0),
        primary_varies=not has_baseline and bool(row.get("primary_varies", 0)),
    )
    if has_baseline:
        test = mcnemar(report.n10, report.n01)
        figures = diffy_figures(report.raw, report.noise, requests)
        report.p_value, report.test = test.p_value, test.method
        report.relative, report.absolute = figures.relative, figures.absolute
    return report


def _plain_verdict(row: dict[str, Any], has_baseline: bool) -> str:
    """The verdict before the test: noise, follows status, or difference."""
    if row["raw"] == 0:
        return FOLLOWS if row.get("with_status", 0) else "noise"
    if has_baseline and row["noise"] > 0:
        return "noise"
    if not has_baseline and row.get("primary_varies", 0):
        return "noise"  # it differs between two primary responses to one request: volatile
    return "difference"


def _risk(kinds: Mapping[str, int]) -> str:
    if kinds.keys() & {"missing", "type", "status"}:
        return "high"
    if kinds.keys() & {"value", "order"}:
        return "medium"
    if "extra" in kinds:
        return "low"
    return "none"


def _judge_regressions(endpoints: list[EndpointReport], limits: Thresholds) -> None:
    """Benjamini-Hochberg over every field tested in the comparison, then the verdicts.

    Volatile matches are not in n10/n01 at all (``analysis._fold``)."""
    tested = [
        (e, f) for e in endpoints for f in e.fields if f.n10 + f.n01 > 0 and f.verdict != FOLLOWS
    ]
    q_values = benjamini_hochberg([f.p_value if f.p_value is not None else 1.0 for _, f in tested])
    for (endpoint, f), q in zip(tested, q_values, strict=True):
        f.q_value = q
        excess = (f.n10 - f.n01) / endpoint.requests if endpoint.requests else 0.0
        relative = (f.relative or 0.0) / 100
        if (
            f.n10 > f.n01
            and q < limits.alpha
            and excess > limits.min_excess
            and relative >= limits.min_relative
        ):
            f.verdict = "regression"


# Past this share of copies dropped for overflow, the shadows were saturated: their latencies
# are the length of their queues, which diverge (whichever process got less CPU falls behind
# and its queue grows), not the code's. Latency is not judged then.
SATURATED_SHARE = 0.01


def _judge_latency(snapshot: Snapshot, endpoints: list[EndpointReport], limits: Thresholds) -> None:
    """The paired test per endpoint, Benjamini-Hochberg over the endpoints tested."""
    latency = limits.latency()
    dropped = sum(n for why, n in snapshot.skipped.items() if "copy dropped (overflow)" in why)
    seen = dropped + snapshot.row.compared
    if seen and dropped / seen > SATURATED_SHARE:
        for endpoint in endpoints:
            report = endpoint.latency
            report.verdict, report.flagged = INSUFFICIENT, False
            report.reason = (
                f"latency not judged: shadows saturated, {100 * dropped / seen:.1f}% of copies "
                "dropped for overflow (lower the sample percentage, or give the shadows room)"
            )
        return
    tests = {}
    for e in endpoints:
        pairs = snapshot.pairs.get(e.endpoint, [])
        tests[e.endpoint] = paired_test([(c, b) for c, b, _ in pairs], [t for _, _, t in pairs])
    tested = [e for e in endpoints if tests[e.endpoint].pairs >= latency.min_pairs]
    q_values = benjamini_hochberg([tests[e.endpoint].p_value or 1.0 for e in tested])
    q_of = {e.endpoint: q for e, q in zip(tested, q_values, strict=True)}
    for endpoint in endpoints:
        test = tests[endpoint.endpoint]
        q = q_of.get(endpoint.endpoint)
        verdict = latency_verdict(test, q, latency)
        _set_latency(endpoint.latency, test, q, verdict, latency)
        queued = _queued(endpoint.latency)
        if queued and verdict != INSUFFICIENT:
            endpoint.latency.verdict, endpoint.latency.flagged = INSUFFICIENT, False
            endpoint.latency.reason = f"latency not judged: {queued}"


# The shadows are queued when the baseline (the primary's own code) takes more than this many
# times the primary's median, and this many ms more: most of their time is then spent waiting
# behind each other, and two queues drift apart with the CPU each process gets, not the code.
# The primary only tells whether the shadows are measurable here; it is never what they are
# judged against.
QUEUED_FACTOR = 2.0
QUEUED_MS = 5.0


def _queued(latency: LatencyReport) -> str:
    primary, baseline = latency.primary, latency.baseline
    if primary is None or baseline is None or primary.p50 is None or baseline.p50 is None:
        return ""
    if baseline.p50 > QUEUED_FACTOR * primary.p50 + QUEUED_MS:
        return (
            f"shadows queued (baseline p50 {baseline.p50:.1f} ms, the primary's "
            f"{primary.p50:.1f} ms): lower the sample percentage, or give the shadows room"
        )
    return ""


def _set_latency(
    report: LatencyReport, test: LatencyTest, q: float | None, verdict: str, limits: LatencyLimits
) -> None:
    report.verdict, report.flagged = verdict, verdict == "regression"
    report.pairs, report.p_value, report.q_value = test.pairs, test.p_value, q
    report.median_ratio, report.delta_ms = test.ratio, test.delta_ms
    report.thirds = [None if math.isnan(t) else t for t in test.thirds]  # JSON has no NaN
    report.interval = list(test.interval) if test.interval is not None else None
    if verdict == INSUFFICIENT:
        if test.pairs >= limits.min_pairs and test.span_s is not None:
            report.reason = (
                f"latency: {test.pairs} pairs over {test.span_s:.1f} s, "
                f"{limits.min_seconds:g} s needed"
            )
        else:
            report.reason = f"latency: {test.pairs} pairs of {limits.min_pairs} needed"
        return
    assert test.ratio is not None and test.delta_ms is not None and test.interval is not None
    low, high = test.interval
    thirds = "/".join("-" if math.isnan(t) else f"x{t:.2f}" for t in test.thirds)
    text = (
        f"median x{test.ratio:.2f} (95% interval x{low:.2f}-x{high:.2f}; by thirds {thirds}), "
        f"{test.delta_ms:+.1f} ms over the baseline, q={q:.2g}, {test.pairs} pairs"
    )
    report.reason = ("slower: " if verdict == "regression" else "") + text


def _finish_endpoint(endpoint: EndpointReport, limits: Thresholds) -> None:
    endpoint.fields.sort(
        key=lambda f: (VERDICTS.index(f.verdict), RISKS.index(f.risk), -f.raw, f.field)
    )
    status = next((f for f in endpoint.fields if f.field == "status"), None)
    if status is not None:
        status.followers = sorted(f.field for f in endpoint.fields if f.verdict == FOLLOWS)
    verdicts = {f.verdict for f in endpoint.fields}
    regressions = sum(f.verdict == "regression" for f in endpoint.fields)
    if regressions or endpoint.latency.flagged:
        endpoint.verdict = "regression"
        parts = [f"{regressions} field regression{'' if regressions == 1 else 's'}"]
        if not regressions:
            parts = []
        if endpoint.latency.flagged:
            parts.append("slower")
        endpoint.reason = ", ".join(parts)
    elif endpoint.requests < limits.min_pairs:
        endpoint.verdict = INSUFFICIENT
        endpoint.reason = f"{endpoint.requests} of {limits.min_pairs} requests needed"
    elif "difference" in verdicts:
        endpoint.verdict = "difference"
    else:
        endpoint.verdict = "ok"


def _latency(snapshot: Snapshot, endpoint: str, has_baseline: bool) -> LatencyReport:
    sketches: dict[str, Sketch | None] = {
        side: snapshot.latency.get((endpoint, side)) for side in SIDES
    }
    if not has_baseline:
        sketches["baseline"] = None
    sides = {side: _side(sketch) for side, sketch in sketches.items()}
    ratio: dict[str, float | None] = {}
    candidate, baseline = sides["candidate"], sides["baseline"]
    if candidate is not None and baseline is not None:
        for name in ("p50", "p90", "p99"):
            c, b = getattr(candidate, name), getattr(baseline, name)
            ratio[name] = c / b if c is not None and b else None
    return LatencyReport(
        primary=sides["primary"],
        candidate=candidate,
        baseline=baseline,
        ratio=ratio,
        verdict="not judged",
        flagged=False,
        reason="" if has_baseline else "latency not judged: no baseline",
    )


def _side(sketch: Sketch | None) -> LatencySide | None:
    if sketch is None or sketch.count == 0:
        return None
    q = quantiles(sketch)
    return LatencySide(sketch.count, q["p50"], q["p90"], q["p99"])


def _example_report(row: dict[str, Any], has_baseline: bool = True) -> ExampleReport:
    sample = json.loads(row["sample"]) if row.get("sample") else {}
    request = sample.get("request")
    return ExampleReport(
        request_id=row["request_id"],
        method=row["method"],
        target=row["target"],
        path=row["path"],
        kind=row["kind"],
        primary=row["primary_value"],
        candidate=row["candidate_value"],
        baseline=row["baseline_value"],
        started=row["started"],
        request=request,
        responses=sample.get("responses", {}),
        curl=curl_lines(request, has_baseline) if request else {},
        array=sample.get("arrays", {}).get(row["path"]),
    )


def curl_lines(request: Mapping[str, Any], has_baseline: bool) -> dict[str, str]:
    """One curl per version that replays the request; the address is left as a variable."""
    roles = ("primary", "candidate", "baseline") if has_baseline else ("primary", "candidate")
    parts = ["curl -sS -i", "-X", shlex.quote(str(request.get("method", "GET")))]
    for name, value in request.get("headers", []):
        if "<redacted" in value:
            value = "REDACTED"  # the value never reached storage: put a real one here
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    body = request.get("body")
    if body is not None and not body.endswith("not shown)"):
        parts += ["--data-binary", shlex.quote(body)]
    target = str(request.get("target", "/"))
    return {
        role: " ".join([*parts, f'"http://${role.upper()}"{shlex.quote(target)}']) for role in roles
    }


# --- from JSON (what the CLI reads from the admin API) ------------------------------------------


def _known(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _endpoint(data: Mapping[str, Any]) -> EndpointReport:
    values = dict(data)
    values["transitions"] = [Transition(**_known(Transition, t)) for t in data["transitions"]]
    values["latency"] = _latency_from(data["latency"])
    values["fields"] = [_field(f) for f in data["fields"]]
    return EndpointReport(**_known(EndpointReport, values))


def _field(data: Mapping[str, Any]) -> FieldReport:
    values = dict(data)
    values["examples"] = [ExampleReport(**_known(ExampleReport, e)) for e in data["examples"]]
    return FieldReport(**_known(FieldReport, values))


def _latency_from(data: Mapping[str, Any]) -> LatencyReport:
    values = dict(data)
    for side in SIDES:
        side_data = data.get(side)
        values[side] = LatencySide(**_known(LatencySide, side_data)) if side_data else None
    return LatencyReport(**_known(LatencyReport, values))
