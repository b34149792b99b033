"""The admin API's comparison endpoints, answered from the Analyzer's storage.

- ``GET /comparisons[?namespace=NS][&all=1]``: the Comparisons configured now (``all=1``: also
  deleted ones whose data is still stored) with their headline figures, and the analyzer's
  counters (queued, dropped...);
- ``GET /comparisons/{namespace}/{name}[?alpha=..&min_pairs=..][&since=EPOCH]``: the full
  report (``Report.to_dict()``); query parameters override the Comparison's thresholds for
  this answer only (``OVERRIDES``); ``since`` counts only what was compared from then on;
- ``POST /comparisons/{namespace}/{name}/reset``: forget what it counted; its report starts over.
"""

from __future__ import annotations

import math

from shadowmesh.admin.http import HttpError, Request, Response, json_response
from shadowmesh.compare.analyzer import Analyzer
from shadowmesh.model import validate

PREFIX = "/comparisons"
# Query parameter -> (the report's threshold, its bounds).
OVERRIDES: dict[str, tuple[float, float]] = {
    "alpha": (1e-9, 0.5),
    "min_pairs": (1, 1_000_000),
    "min_excess": (0.0, 1.0),
    "min_relative": (0.0, 1.0),
    "latency_min_relative": (0.0, 100.0),
    "latency_min_absolute_ms": (0.0, 1e6),
    "latency_min_seconds": (0.0, 1e6),
}


def owns(path: str) -> bool:
    return path.rstrip("/") == PREFIX or path.startswith(PREFIX + "/")


def handle(analyzer: Analyzer | None, request: Request) -> Response:
    parts = [p for p in request.path.split("/") if p]
    if len(parts) == 4 and parts[3] == "reset":
        if request.method != "POST":
            raise HttpError(405, f"{request.path} takes POST only", {"Allow": "POST"})
        return _reset(_analyzer(analyzer), parts[1], parts[2])
    if request.method != "GET":
        raise HttpError(405, f"{request.path} takes GET only", {"Allow": "GET"})
    if len(parts) == 1:
        return _list(_analyzer(analyzer), request)
    if len(parts) == 3:
        return _report(_analyzer(analyzer), parts[1], parts[2], request)
    raise HttpError(404, f"no such endpoint: {request.path}")


def _analyzer(analyzer: Analyzer | None) -> Analyzer:
    if analyzer is None:
        raise HttpError(404, "comparisons are not enabled on this server")
    return analyzer


def _list(analyzer: Analyzer, request: Request) -> Response:
    namespace = request.param("namespace") or None
    if namespace is not None:
        _check(namespace, validate.k8s_label(namespace), "namespace")
    every = request.param("all") in ("1", "true")
    items = [
        i
        for i in analyzer.comparisons()
        if namespace in (None, i["namespace"]) and (every or i["configured"])
    ]
    return json_response(200, {"items": items, "analyzer": analyzer.stats()})


def _report(analyzer: Analyzer, namespace: str, name: str, request: Request) -> Response:
    _names(namespace, name)
    report = analyzer.report(namespace, name, overrides(request), _since(request))
    if report is None:
        return json_response(404, {"error": _not_found(namespace, name)})
    return json_response(200, report.to_dict())


def _reset(analyzer: Analyzer, namespace: str, name: str) -> Response:
    _names(namespace, name)
    if analyzer.report(namespace, name) is None:
        return json_response(404, {"error": _not_found(namespace, name)})
    done = analyzer.reset(namespace, name)
    return json_response(200, {"namespace": namespace, "name": name, "reset": done})


def overrides(request: Request) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, (low, high) in OVERRIDES.items():
        text = request.param(key)
        if text is None or text == "":
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            expected = f"a number from {low:g} to {high:g}"
            raise HttpError(400, f"invalid {key} {text!r}: must be {expected}")
        out[key] = value
    return out


def _since(request: Request) -> float | None:
    """``since``: epoch seconds; the report counts only what was compared from then on."""
    text = request.param("since")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1e11:
        raise HttpError(400, f"invalid since {text!r}: must be epoch seconds")
    return value


def _names(namespace: str, name: str) -> None:
    _check(namespace, validate.k8s_label(namespace), "namespace")
    _check(name, validate.k8s_subdomain(name), "name")


def _not_found(namespace: str, name: str) -> str:
    return f'comparisons.shadowmesh.io "{name}" not found in namespace "{namespace}"'


def _check(value: str, problem: str | None, what: str) -> None:
    if problem:
        raise HttpError(400, f"invalid {what} {value!r}: {problem}")
