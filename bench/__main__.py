"""``python -m bench``: shadowmesh against nginx, scenario by scenario; see bench/README.md."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from bench import mesh, nginx, report, tools, wrk
from bench.procs import Procs
from bench.runner import LOAD_CPUS, Options, run_all
from bench.scenarios import BY_NAME, pick


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark shadowmesh against nginx (one worker each, loopback, wrk).",
    )
    p.add_argument("--quick", action="store_true", help="1 s per run, 1 round, no warm-up")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--scenarios", metavar="A,B", help=f"comma-separated, from: {', '.join(BY_NAME)}"
    )
    p.add_argument("--duration", type=int, metavar="S", help="seconds measured per run")
    p.add_argument("--rounds", type=int, metavar="N", help="rounds (default 3; --quick 1)")
    p.add_argument("--connections", type=int, default=50, metavar="C", help="default 50")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="proxy workers, default 1")
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    duration = args.duration or (1 if args.quick else 5)
    return Options(
        duration=max(1, duration),
        warmup=0 if args.quick else 1,
        rounds=max(1, args.rounds or (1 if args.quick else 3)),
        connections=max(1, args.connections),
        workers=max(1, args.workers),
    )


def say(line: str) -> None:
    print(line, flush=True)


def raise_file_limit() -> None:
    # 1,000 client connections plus as many upstream ones: children inherit this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    # As Ctrl-C does: unwind through the finally blocks that stop every process.
    raise KeyboardInterrupt


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx.version(),
        "wrk": wrk.version(),
        "shadowmesh": mesh.version(),
        "hot_path": mesh.hot_path(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_from(args)
    try:
        scenarios = pick(args.scenarios)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if options.workers == 1 and (os.cpu_count() or 1) < 2:
        print("error: one-worker figures need 2 CPUs (wrk on 0, the proxy on 1)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_sigterm)
    tools.ensure(say)
    raise_file_limit()
    # The bench itself waits on CPU 0 with the load: CPU 1 is the proxy's alone.
    os.sched_setaffinity(0, LOAD_CPUS if options.workers == 1 else range(os.cpu_count() or 1))
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    say(f"# {command}")
    say(f"# {len(scenarios)} scenario(s), {options.rounds} round(s) of {options.duration}s")
    say(f"# shadowmesh hot path: {mesh.hot_path()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shadowmesh-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            measured = run_all(procs, Path(tmp), options, scenarios, say)
        except KeyboardInterrupt:
            print("interrupted: stopping what the bench started", file=sys.stderr)
            return 130
        except Exception:
            print(f"failed; process logs were in {tmp}:", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            # A second Ctrl-C must not cut the clean-up short and leave processes behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            procs.stop_all()
            signal.signal(signal.SIGINT, signal.default_int_handler)
    results = [report.scenario_result(s, runs, options.connections) for s, runs in measured]
    checks = report.targets(results)
    say("")
    say(report.table(results))
    say("")
    for line in report.notes(results):
        say(line)
    say("\nissue 3 targets (one run; --quick figures are noise):")
    for line in report.target_lines(checks):
        say(line)
    elapsed = time.monotonic() - started
    say(f"\n{elapsed:.0f}s; CPU 0: wrk, upstreams, shadow, bench; CPU 1: the proxy under test")
    if args.json:
        document = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": command,
            "options": asdict(options) | {"quick": args.quick},
            "machine": machine(),
            "seconds": round(elapsed, 1),
            "scenarios": results,
            "targets": checks,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
