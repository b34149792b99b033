"""Mirroring beyond the tutorial: sampling, the explicit zero, and a shadow that never answers."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e


def _mirror_vs(percentage: float) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: {percentage}
"""


def test_mirror_percentage_50_is_within_a_binomial_bound(mesh: Mesh) -> None:
    n = 400
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    run = mesh.apply_examples("04-mirror-percentage.yaml")
    assert run.stderr == ""

    assert mesh.statuses("/get", n) == [200] * n

    assert len(mesh.v1.settled(at_least=n)) == n
    mirrored = mesh.v2.settled()
    # Each request is sampled on its own with p = 0.5: 4 standard deviations either side.
    sigma = math.sqrt(n * 0.5 * 0.5)
    assert abs(len(mirrored) - n / 2) <= 4 * sigma, f"{len(mirrored)} of {n} mirrored"
    assert {e.host for e in mirrored} == {mesh.shadow_authority}


def test_mirror_percentage_0_mirrors_none(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    mesh.apply(mesh.write("mirror-0.yaml", _mirror_vs(0.0)))

    assert mesh.statuses("/get", 50) == [200] * 50

    assert len(mesh.v1.settled(at_least=50)) == 50
    assert mesh.v2.settled() == []


def test_frozen_shadow_leaves_the_primary_200(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 20
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")
    plain = mesh.curl("/get", n)

    mesh.apply_examples("03-mirror.yaml")
    mark = mesh.v2.log.mark()
    mesh.v2.freeze()
    try:
        frozen = mesh.curl("/get", n)
        assert mesh.v2.log.since(mark) == [], "the shadow answered while frozen"
    finally:
        mesh.v2.thaw()

    assert [c.status for c in plain] == [200] * n
    # curl gives up after 10 s with status 000: a primary waiting on its shadow fails here.
    assert [c.status for c in frozen] == [200] * n
    plain_ms = statistics.median(c.seconds for c in plain) * 1000
    frozen_ms = statistics.median(c.seconds for c in frozen) * 1000
    with capsys.disabled():
        print(
            f"\nprimary median latency over {n} requests on one keep-alive connection: "
            f"without mirroring {plain_ms:.2f} ms, mirrored to a frozen shadow {frozen_ms:.2f} ms"
        )
