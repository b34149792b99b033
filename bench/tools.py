"""The programs the bench drives, installed from Debian's packages when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

NEEDED = {"nginx": "nginx", "wrk": "wrk", "taskset": "util-linux"}  # program: package


def missing() -> list[str]:
    # nginx lives in /usr/sbin, which a non-login PATH may lack.
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [prog for prog in NEEDED if shutil.which(prog, path=path) is None]


def ensure(say: Callable[[str], None]) -> None:
    """apt-get install what is missing (``apt-get update`` once first); we run as root."""
    if "/usr/sbin" not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    lacking = missing()
    if not lacking:
        return
    packages = sorted({NEEDED[p] for p in lacking})
    if not shutil.which("apt-get"):
        raise RuntimeError(f"missing {', '.join(lacking)} and no apt-get to install them")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    say(f"installing {' '.join(packages)} with apt-get (missing: {', '.join(lacking)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr.strip()}")
    still = missing()
    if still:
        raise RuntimeError(f"still missing after apt-get install: {', '.join(still)}")
