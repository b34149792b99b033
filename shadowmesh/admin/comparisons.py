"""The admin API's comparison endpoints, read-only, answered from the Analyzer's storage.

- ``GET /comparisons[?namespace=NS]``: every Comparison (configured, or with stored data) with
  its headline figures, and the analyzer's counters (queued, dropped...);
- ``GET /comparisons/{namespace}/{name}``: the full report (``Report.to_dict()``).
"""

from __future__ import annotations

from shadowmesh.admin.http import HttpError, Request, Response, json_response
from shadowmesh.compare.analyzer import Analyzer
from shadowmesh.model import validate

PREFIX = "/comparisons"


def owns(path: str) -> bool:
    return path.rstrip("/") == PREFIX or path.startswith(PREFIX + "/")


def handle(analyzer: Analyzer | None, request: Request) -> Response:
    if request.method != "GET":
        raise HttpError(405, f"{request.path} takes GET only", {"Allow": "GET"})
    if analyzer is None:
        raise HttpError(404, "comparisons are not enabled on this server")
    parts = [p for p in request.path.split("/") if p]
    if len(parts) == 1:
        return _list(analyzer, request)
    if len(parts) == 3:
        return _report(analyzer, parts[1], parts[2])
    raise HttpError(404, f"no such endpoint: {request.path}")


def _list(analyzer: Analyzer, request: Request) -> Response:
    namespace = request.param("namespace") or None
    if namespace is not None:
        _check(namespace, validate.k8s_label(namespace), "namespace")
    items = [i for i in analyzer.comparisons() if namespace in (None, i["namespace"])]
    return json_response(200, {"items": items, "analyzer": analyzer.stats()})


def _report(analyzer: Analyzer, namespace: str, name: str) -> Response:
    _check(namespace, validate.k8s_label(namespace), "namespace")
    _check(name, validate.k8s_subdomain(name), "name")
    report = analyzer.report(namespace, name)
    if report is None:
        message = f'comparisons.shadowmesh.io "{name}" not found in namespace "{namespace}"'
        return json_response(404, {"error": message})
    return json_response(200, report.to_dict())


def _check(value: str, problem: str | None, what: str) -> None:
    if problem:
        raise HttpError(400, f"invalid {what} {value!r}: {problem}")
