"""Istio's own validation cases (tests/unit/data/istio_validation_cases.yaml): same verdicts here.

What Istio's webhook accepts applies (with a warning where Istio warns), what it refuses is
refused, with Istio's words where its test names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shadowmesh.errors import ConfigErrors
from shadowmesh.model.load import load_text

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "istio_validation_cases.yaml").read_text()
)
# shadowmesh's own warnings about what it does not act on are not Istio's.
_OWN = ("is not acted on", "is not served by shadowmesh", "skipped")


def outcome(case: dict[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    document = {
        "apiVersion": "networking.istio.io/v1",
        "kind": case["kind"],
        "metadata": {"name": "r", "namespace": case.get("namespace", "default")},
        "spec": case["spec"],
    }
    try:
        (loaded,) = load_text(yaml.safe_dump(document), "t.yaml").documents
    except ConfigErrors as exc:
        return [e.message for e in exc.errors], ()
    return [], loaded.warnings


def test_the_cases_are_many_and_of_every_kind() -> None:
    assert len(CASES) >= 200
    kinds = {"Gateway", "VirtualService", "WorkloadEntry", "DestinationRule", "ServiceEntry"}
    assert {case["kind"] for case in CASES} == kinds


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_istio_s_validation_case(case: dict[str, Any]) -> None:
    errors, warnings = outcome(case)
    if "shadowmesh" in case or "cluster" in case:
        reason = case.get("shadowmesh", case.get("cluster", "")).removeprefix("refuses: ")
        assert reason in errors, errors
    elif case["istio"] == "invalid":
        assert errors, f"accepted: {warnings}"
        if case.get("message"):
            assert any(case["message"] in e for e in errors), errors
    else:
        assert errors == []
        if case["istio"] == "warns":
            assert [w for w in warnings if not any(own in w for own in _OWN)], warnings
