"""shadowmesh: Istio's traffic management (weighted routing, mirroring) for any HTTP service."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from types import ModuleType

from shadowmesh._hotpath import MODULES, WHEEL_MARKER

__version__ = "0.1.0"


def module_files(root: str, name: str) -> tuple[str, str]:
    """The source of module ``name`` under ``root`` and the extension compiled from it."""
    base = os.path.join(root, *name.split("."))
    return base + ".py", base + EXTENSION_SUFFIXES[0]


def hot_path_state(root: str, modules: Sequence[str], check_times: bool) -> tuple[str, list[str]]:
    """``("pure", [])``: nothing was compiled; ``("compiled", [])``: every module has an
    extension at least as new as its source; ``("stale", names)``: some modules have none or an
    older one, so the compiled set no longer matches the source.

    ``check_times`` is off for a wheel install: the installer writes files in any order, so their
    times say nothing, and nobody edits an installed wheel's sources.
    """
    built: list[str] = []
    stale: list[str] = []
    for name in modules:
        source, extension = module_files(root, name)
        try:
            extension_time = os.stat(extension).st_mtime
        except OSError:
            stale.append(name)  # listed after the last compile
            continue
        built.append(name)
        if check_times:
            try:
                if os.stat(source).st_mtime > extension_time:
                    stale.append(name)
            except OSError:
                pass  # no source to fall back to: the extension is all there is
    if not built:
        return "pure", []
    return ("stale", stale) if stale else ("compiled", [])


class SourceFinder:
    """Finds exactly the listed modules as their ``.py`` files, ahead of any compiled extension
    in the same directory (the normal finder prefers the extension)."""

    def __init__(self, root: str, modules: Sequence[str]) -> None:
        self.sources = {name: module_files(root, name)[0] for name in modules}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        source = self.sources.get(fullname)
        return None if source is None else spec_from_file_location(fullname, source)


def _guard() -> str:
    """Decide, once per process, whether the hot path runs compiled; describe the choice."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from_wheel = os.path.exists(os.path.join(root, "shadowmesh", WHEEL_MARKER))
    state, stale = hot_path_state(root, MODULES, check_times=not from_wheel)
    pure = os.environ.get("SHADOWMESH_PURE") == "1"
    if state == "pure":
        return "pure Python"
    if state == "compiled" and not pure:
        return COMPILED
    # All or nothing: compiled modules call each other natively, past any finder.
    sys.meta_path.insert(0, SourceFinder(root, MODULES))
    if pure:
        return "pure Python (SHADOWMESH_PURE=1)"
    named = ", ".join(name.replace(".", "/") + ".py" for name in stale[:3])
    more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
    why = f"{named}{more} changed since it was compiled"
    # Once per process tree: the processes this one starts (workers, a test's `serve`) inherit
    # the variable and stay quiet, so their stderr is what it would be.
    if os.environ.get("SHADOWMESH_STALE_WARNED") != "1":
        os.environ["SHADOWMESH_STALE_WARNED"] = "1"
        print(
            f"shadowmesh: {why}; running pure Python; run `pip install -e .` again",
            file=sys.stderr,
        )
    return f"pure Python ({why})"


COMPILED = "compiled (mypyc)"
_HOT_PATH = _guard()


def hot_path() -> str:
    """How the hot-path modules run: ``compiled (mypyc)``, or ``pure Python`` and why."""
    return _HOT_PATH


def compiled() -> bool:
    """Whether the hot-path modules (``shadowmesh._hotpath.MODULES``) run compiled by mypyc."""
    return _HOT_PATH == COMPILED
