"""Config as a whole: a refused apply changes nothing, and config survives a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

# A valid change (everything to v2) followed by an invalid document: apply is all or nothing.
MIXED = """\
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
        subset: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
spec:
  hosts:
  - other
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 150
"""


def test_refused_apply_names_the_problem_and_changes_nothing(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")

    run = mesh.cli("apply", "-f", str(mesh.write("mixed.yaml", MIXED)))

    assert run.code == 1
    assert run.stdout == ""
    errors = [line for line in run.err_lines if line.startswith("error:")]
    assert errors, run.stderr
    assert "mixed.yaml: document 2: VirtualService 'broken'" in run.stderr
    assert "field spec.http[0].mirrorPercentage" in run.stderr
    # The valid first document was not applied either: traffic still goes to v1 only.
    assert mesh.statuses("/get", 10) == [200] * 10
    assert len(mesh.v1.settled(at_least=10)) == 10
    assert mesh.v2.settled() == []
    assert mesh.cli("get", "virtualservice", "broken").code == 1


def test_config_survives_a_restart(mesh: Mesh) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml", "02-route-v1.yaml")

    assert mesh.proxy.stop() == 0
    mesh.proxy.start()

    listed = mesh.cli("get", "virtualservice")
    assert listed.code == 0 and "httpbin" in listed.stdout
    assert mesh.statuses("/get", 10, via="direct") == [200] * 10
    assert len(mesh.v1.settled(at_least=10)) == 10
    assert mesh.v2.settled() == []
