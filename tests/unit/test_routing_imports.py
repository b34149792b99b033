"""model and routing are pure: importing them must not pull in asyncio or sockets."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, pkgutil, sys
import shadowmesh.model, shadowmesh.routing
names = []
for package in (shadowmesh.model, shadowmesh.routing):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop", "httptools"}


def test_model_and_routing_import_no_io() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    probe = json.loads(result.stdout)
    assert "shadowmesh.routing.table" in probe["modules"]
    assert "shadowmesh.routing.analyze" in probe["modules"]
    assert FORBIDDEN.isdisjoint(probe["loaded"]), FORBIDDEN & set(probe["loaded"])
