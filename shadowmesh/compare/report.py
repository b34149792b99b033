"""The report of one Comparison: per endpoint and per field, with verdicts. Plain, JSON-able data.

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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shadowmesh.compare.latency import Sketch, judge, quantiles
from shadowmesh.compare.stats import benjamini_hochberg, diffy_figures, mcnemar
from shadowmesh.compare.store import SIDES, Snapshot

DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EXCESS = 0.0003  # Diffy's absolute threshold, 0.03 % of the endpoint's requests
VERDICTS = ("regression", "difference", "noise", "ok")
RISKS = ("high", "medium", "low", "none")


@dataclass(frozen=True)
class Thresholds:
    alpha: float = DEFAULT_ALPHA
    min_excess: float = DEFAULT_MIN_EXCESS
    latency_margin: float = 1.2
    latency_min_delta_ms: float = 5.0


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
    volatile: int  # raw differences that were volatile-for-volatile
    weight: int
    kinds: dict[str, int]
    p_value: float | None = None
    q_value: float | None = None
    test: str | None = None  # "exact" or "chi2"
    relative: float | None = None  # Diffy's figures, in percent
    absolute: float | None = None
    examples: list[ExampleReport] = dataclasses.field(default_factory=list)


@dataclass
class LatencySide:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass
class LatencyReport:
    primary: LatencySide | None
    candidate: LatencySide | None
    baseline: LatencySide | None
    ratio: dict[str, float | None]
    baseline_ratio: dict[str, float | None]
    flagged: bool
    reason: str


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
    latency_flags: int  # endpoints
    differences: int  # fields with the verdict "difference"
    endpoints: list[EndpointReport]

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
        thresholds=dataclasses.asdict(Thresholds()),
        verdict="ok",
        regressions=0,
        latency_flags=0,
        differences=0,
        endpoints=[],
    )


def build_report(
    snapshot: Snapshot, *, configured: bool, dropped: int, thresholds: Thresholds | None = None
) -> Report:
    limits = thresholds or Thresholds()
    row = snapshot.row
    has_baseline = row.spec.get("baseline") is not None
    endpoints = [_endpoint_report(snapshot, e, has_baseline, limits) for e in snapshot.endpoints]
    if has_baseline:
        _judge_regressions(endpoints, limits)
    for endpoint in endpoints:
        _finish_endpoint(endpoint)
    endpoints.sort(key=lambda e: (VERDICTS.index(e.verdict), -e.requests, e.endpoint))
    every_field = [f for e in endpoints for f in e.fields]
    regressions = sum(f.verdict == "regression" for f in every_field)
    latency_flags = sum(e.latency.flagged for e in endpoints)
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
        verdict=_worst([e.verdict for e in endpoints]),
        regressions=regressions,
        latency_flags=latency_flags,
        differences=sum(f.verdict == "difference" for f in every_field),
        endpoints=endpoints,
    )


def _endpoint_report(
    snapshot: Snapshot, row: dict[str, Any], has_baseline: bool, limits: Thresholds
) -> EndpointReport:
    name, requests = row["endpoint"], row["requests"]
    examples: dict[str, list[ExampleReport]] = {}
    for e in snapshot.examples:
        if e["endpoint"] == name:
            examples.setdefault(e["field"], []).append(_example_report(e))
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
        latency=_latency(snapshot, name, has_baseline, limits),
        fields=fields,
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
    )
    if has_baseline:
        test = mcnemar(report.n10, report.n01)
        figures = diffy_figures(report.raw, report.noise, requests)
        report.p_value, report.test = test.p_value, test.method
        report.relative, report.absolute = figures.relative, figures.absolute
    return report


def _plain_verdict(row: dict[str, Any], has_baseline: bool) -> str:
    """The verdict before the test: noise or difference."""
    if row["raw"] == 0 or row["raw"] == row["volatile"]:
        return "noise"
    if has_baseline and row["noise"] > 0:
        return "noise"
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
    """Benjamini-Hochberg over every field tested in the comparison, then the verdicts."""
    tested = [(e, f) for e in endpoints for f in e.fields if f.n10 + f.n01 > 0]
    q_values = benjamini_hochberg([f.p_value if f.p_value is not None else 1.0 for _, f in tested])
    for (endpoint, f), q in zip(tested, q_values, strict=True):
        f.q_value = q
        excess = (f.n10 - f.n01) / endpoint.requests if endpoint.requests else 0.0
        if f.n10 > f.n01 and q < limits.alpha and excess > limits.min_excess:
            f.verdict = "regression"


def _finish_endpoint(endpoint: EndpointReport) -> None:
    endpoint.fields.sort(
        key=lambda f: (VERDICTS.index(f.verdict), RISKS.index(f.risk), -f.raw, f.field)
    )
    verdicts = [f.verdict for f in endpoint.fields]
    if endpoint.latency.flagged:
        verdicts.append("regression")
    endpoint.verdict = _worst(verdicts)


def _worst(verdicts: list[str]) -> str:
    return min(verdicts, key=VERDICTS.index) if verdicts else "ok"


def _latency(
    snapshot: Snapshot, endpoint: str, has_baseline: bool, limits: Thresholds
) -> LatencyReport:
    sketches: dict[str, Sketch | None] = {
        side: snapshot.latency.get((endpoint, side)) for side in SIDES
    }
    if not has_baseline:
        sketches["baseline"] = None
    verdict = judge(
        sketches["primary"],
        sketches["candidate"],
        sketches["baseline"],
        limits.latency_margin,
        limits.latency_min_delta_ms,
    )
    sides = {side: _side(sketch) for side, sketch in sketches.items()}
    return LatencyReport(
        primary=sides["primary"],
        candidate=sides["candidate"],
        baseline=sides["baseline"],
        ratio=verdict.ratio,
        baseline_ratio=verdict.baseline_ratio,
        flagged=verdict.flagged,
        reason=verdict.reason,
    )


def _side(sketch: Sketch | None) -> LatencySide | None:
    if sketch is None or sketch.count == 0:
        return None
    q = quantiles(sketch)
    return LatencySide(sketch.count, q["p50"], q["p90"], q["p99"])


def _example_report(row: dict[str, Any]) -> ExampleReport:
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
    )


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
