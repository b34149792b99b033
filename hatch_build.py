"""Build hook: compile the hot-path modules (shadowmesh/_hotpath.py) with mypyc.

An editable install builds the extensions in place, next to each ``.py``, so the checkout, the
tests and the ``serve`` processes they start all run compiled code; it skips the compile when
every extension is newer than its source and this hook's inputs. A regular wheel gets them from
a scratch directory and is tagged for this interpreter and platform.

SHADOWMESH_COMPILE=0 installs pure Python. Unset, a failed compile (no C compiler, ...) warns and
installs pure Python; SHADOWMESH_COMPILE=1 makes it an error, so CI never tests pure Python by
accident.
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

LIST = "shadowmesh/_hotpath.py"


class CompileError(Exception):
    pass


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    scratch: tempfile.TemporaryDirectory[str] | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        setting = os.environ.get("SHADOWMESH_COMPILE", "")
        hot = HotPath(root)
        if setting == "0":
            if version == "editable":
                hot.remove_in_place()
            return
        try:
            if version == "editable":
                hot.build_in_place(strict=setting == "1")
            else:
                self.scratch = tempfile.TemporaryDirectory(prefix="shadowmesh-mypyc-")
                built = hot.build(Path(self.scratch.name), strict=setting == "1")
                marker = Path(self.scratch.name) / hot.marker
                marker.write_text("Extensions compiled by mypyc at build time; see __init__.py.\n")
                built[f"shadowmesh/{hot.marker}"] = marker
                for relative, path in built.items():
                    build_data["force_include"][str(path)] = relative
                build_data["pure_python"] = False
                build_data["infer_tag"] = True
        except Exception as exc:
            if setting == "1":
                raise CompileError(f"compiling the hot path with mypyc failed: {exc}") from exc
            if version == "editable":
                hot.remove_in_place()  # never leave extensions from an older source behind
            print(
                f"WARNING: shadowmesh: compiling the hot path with mypyc failed ({exc!s:.2000});"
                " installing pure Python, which is slower. SHADOWMESH_COMPILE=1 makes this an"
                " error, SHADOWMESH_COMPILE=0 skips compiling.",
                file=sys.stderr,
            )

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None


class HotPath:
    def __init__(self, root: Path) -> None:
        self.root = root
        listing = runpy.run_path(str(root / LIST))
        self.modules: tuple[str, ...] = listing["MODULES"]
        self.group: str = listing["GROUP"]
        self.marker: str = listing["WHEEL_MARKER"]
        self.suffix: str = sysconfig.get_config_var("EXT_SUFFIX")

    def extension(self, module: str) -> str:
        """Path of a module's extension, relative to the root."""
        return module.replace(".", "/") + self.suffix

    def products(self) -> list[str]:
        return [self.extension(m) for m in (*self.modules, self.group + "__mypyc")]

    def fresh(self) -> bool:
        """Whether every in-place extension is newer than its source and this hook's inputs."""
        inputs = max(os.stat(self.root / LIST).st_mtime, os.stat(__file__).st_mtime)
        for module in self.modules:
            try:
                built = os.stat(self.root / self.extension(module)).st_mtime
                source = os.stat(self.root / (module.replace(".", "/") + ".py")).st_mtime
            except OSError:
                return False
            if built < max(source, inputs):
                return False
        return (self.root / self.extension(self.group + "__mypyc")).exists()

    def remove_in_place(self, keep: frozenset[Path] = frozenset()) -> None:
        """Delete extensions built in place but those in ``keep``: everything with our suffix in
        the package, so one left from a module since dropped from the list goes too."""
        for path in (self.root / "shadowmesh").rglob("*" + self.suffix):
            if path not in keep:
                path.unlink()

    def build_in_place(self, strict: bool) -> None:
        if self.fresh():
            return
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="shadowmesh-mypyc-") as scratch:
            built = self.build(Path(scratch), strict)
            self.remove_in_place(keep=frozenset(self.root / r for r in built))
            for relative, path in built.items():
                target = self.root / relative
                # Replace, never overwrite: a running process keeps its mapped copy intact.
                staged = target.with_name(target.name + ".new")
                shutil.copyfile(path, staged)
                # Dated to when the sources were read: a .py saved during the compile is
                # then newer than its extension, so it counts as stale, as it is.
                os.utime(staged, (started, started))
                os.replace(staged, target)

    def build(self, scratch: Path, strict: bool) -> dict[str, Path]:
        """Compile into ``scratch``; returns each extension's path in the package -> its file."""
        # Imported here: a build with SHADOWMESH_COMPILE=0 needs neither.
        from mypyc.build import mypycify
        from setuptools import Distribution
        from setuptools.command.build_ext import build_ext

        sources = [m.replace(".", "/") + ".py" for m in self.modules]
        messages = io.StringIO()
        cwd = os.getcwd()
        os.chdir(self.root)  # mypy reads its settings from pyproject.toml here
        try:
            with contextlib.redirect_stdout(messages):
                extensions = mypycify(
                    sources,
                    opt_level="3",
                    target_dir=str(scratch / "c"),
                    group_name=self.group,
                )
        except SystemExit as exc:  # how mypyc reports type errors
            raise CompileError(f"mypyc failed:\n{messages.getvalue()}{exc.code or ''}") from None
        finally:
            os.chdir(cwd)
        if messages.getvalue().strip():
            sys.stderr.write(messages.getvalue())
            if strict:  # CI: a mypyc warning (a construct it compiles slowly or not) fails it
                raise CompileError(f"mypyc reported:\n{messages.getvalue()}")
        command = build_ext(Distribution({"name": "shadowmesh", "ext_modules": extensions}))
        command.build_lib = str(scratch / "lib")
        command.build_temp = str(scratch / "temp")
        command.parallel = os.cpu_count() or 1
        command.ensure_finalized()
        command.run()
        built = {}
        for extension in extensions:
            relative = self.extension(extension.name)
            built[relative] = scratch / "lib" / relative
        return built
