"""Running the scenarios: the upstreams, the shadow, each proxy in turn, and what is measured.

CPU layout on a 2-core machine, for one-worker figures: the proxy under test alone on CPU 1;
wrk, the upstream nginx, the Python shadow and the bench itself on CPU 0. The load side then
competes only with itself, and the proxy's CPU% says how close to saturation it ran. With
``--workers N`` > 1 nothing is pinned: both proxies get both CPUs and share them with the load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import nginx, wrk
from bench.mesh import HOST, Mesh, MeshConfig
from bench.procs import Procs, cpu_seconds, family, free_port, peak_rss_mib, rss_mib
from bench.scenarios import MIB, Scenario

REPO = Path(__file__).resolve().parent.parent
LOAD_CPUS = (0,)
PROXY_CPUS = (1,)
ALL_CPUS = (0, 1)
PROXIES = ("nginx", "shadowmesh")


@dataclass(frozen=True)
class Options:
    duration: int  # seconds measured per run
    warmup: int  # seconds of load before measuring, on the same proxy process
    rounds: int
    connections: int
    workers: int
    shadow_timeout: float = 1.0  # both proxies give up on a shadow after this long
    slow_ms: float = 200.0

    def proxy_cpus(self) -> tuple[int, ...]:
        return PROXY_CPUS if self.workers == 1 else ALL_CPUS

    def load_cpus(self) -> tuple[int, ...]:
        return LOAD_CPUS if self.workers == 1 else ALL_CPUS

    def wrk_timeout(self) -> float:
        # Above the shadow timeout: a peer that waits for its shadow shows as slow, not failed.
        return max(5.0, 3 * self.shadow_timeout)


@dataclass
class Measurement:
    """One wrk run through one proxy (or straight to v1: ``direct``)."""

    proxy: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int
    requests: int
    cpu_pct: float  # of one CPU, over the measured run, the proxy's processes together
    peak_rss_mb: float  # VmHWM of the proxy's largest process (nginx: its worker), MiB
    rss_growth_mb: float  # VmRSS at the end of the measured run minus at its start, MiB
    error_detail: dict[str, int]
    mib_per_s: float | None = None
    shadow: dict[str, Any] = field(default_factory=dict)


@dataclass
class Shadow:
    port: int
    counts: Callable[[], dict[str, int]] | None = None


class Lab:
    """The upstreams, started once for the whole run, and the measurement of one proxy run."""

    def __init__(self, procs: Procs, tmp: Path, options: Options, say: Callable[[str], None]):
        self.procs = procs
        self.tmp = tmp
        self.options = options
        self.say = say
        self.v1 = free_port()
        self.v2 = free_port()
        prefix = tmp / "upstreams"
        config = nginx.upstream_config(prefix, (self.v1, self.v2))
        nginx.start(procs, "upstreams", prefix, config, options.load_cpus(), self.v2)
        self.post_script = wrk.post_script(tmp / "post.lua", MIB)

    @contextmanager
    def shadow(self, scenario: Scenario) -> Iterator[Shadow]:
        """Subset v2's endpoint for this scenario, started for it and stopped after it."""
        if scenario.shadow == "fast":
            yield Shadow(self.v2)
        elif scenario.shadow == "dead":
            yield Shadow(free_port())  # bound and closed: refuses connections
        else:
            mode = "ok" if scenario.shadow == "counting" else scenario.shadow
            argv = [sys.executable, "-m", "bench.shadow", "--mode", mode]
            argv += ["--delay-ms", f"{self.options.slow_ms:g}"]
            proc = self.procs.start(
                f"shadow-{scenario.name}", argv, self.options.load_cpus(), subprocess.PIPE, REPO
            )
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line.strip().isdigit():
                    raise RuntimeError(f"bench.shadow did not start (see {scenario.name} log)")
                port = int(line)
                yield Shadow(port, lambda: shadow_counts(port))
            finally:
                self.procs.stop(proc)

    def run_scenario(self, scenario: Scenario) -> list[Measurement]:
        measured: list[Measurement] = []
        with self.shadow(scenario) as v2:
            for r in range(self.options.rounds):
                # Alternate who goes first, so a drift in the machine does not favour either.
                order: tuple[str, ...] = PROXIES if r % 2 == 0 else PROXIES[::-1]
                if scenario.direct:
                    order = ("direct", *order)
                for proxy in order:
                    m = self.measure(proxy, scenario, v2, r)
                    self.say(progress(scenario, m))
                    measured.append(m)
        return measured

    def measure(self, proxy: str, scenario: Scenario, v2: Shadow, round_: int) -> Measurement:
        prefix = self.tmp / f"{scenario.name}-{round_}-{proxy}"
        listen = free_port()
        proc: subprocess.Popen[bytes] | None = None
        mesh: Mesh | None = None
        if proxy == "nginx":
            peer = nginx.PeerConfig(
                listen, self.v1, v2.port, scenario.mirror_percent, scenario.access_log,
                self.options.workers, self.options.shadow_timeout,
            )  # fmt: skip
            config = nginx.peer_config(prefix, peer)
            proc = nginx.start(
                self.procs, "peer", prefix, config, self.options.proxy_cpus(), listen
            )
        elif proxy == "shadowmesh":
            cfg = MeshConfig(
                listen, self.v1, v2.port, scenario.mirror_percent, scenario.access_log,
                self.options.workers, self.options.shadow_timeout, scenario.compare,
            )  # fmt: skip
            mesh = Mesh(self.procs, prefix, cfg, self.options.proxy_cpus())
            proc = mesh.proc
        else:
            listen = self.v1
        try:
            return self._load(proxy, scenario, v2, round_, listen, proc, mesh)
        finally:
            if proc is not None:
                self.procs.stop(proc)

    def _wrk(self, scenario: Scenario, port: int, seconds: int) -> wrk.WrkResult:
        return wrk.run(
            port,
            HOST,
            scenario.clients(self.options.connections),
            seconds,
            self.options.load_cpus(),
            self.post_script if scenario.body_bytes else None,
            self.options.wrk_timeout(),
        )

    def _load(
        self,
        proxy: str,
        scenario: Scenario,
        v2: Shadow,
        round_: int,
        port: int,
        proc: subprocess.Popen[bytes] | None,
        mesh: Mesh | None,
    ) -> Measurement:
        if self.options.warmup:
            self._wrk(scenario, port, self.options.warmup)
        pids = family(proc.pid) if proc is not None else []
        counts0 = v2.counts() if v2.counts else {}
        stats0 = mesh.stats() if mesh else {}
        cpu0, rss0, t0 = cpu_seconds(pids), rss_mib(pids), time.monotonic()
        result = self._wrk(scenario, port, max(self.options.duration, scenario.min_seconds))
        cpu1, rss1, t1 = cpu_seconds(pids), rss_mib(pids), time.monotonic()
        peak = peak_rss_mib(pids)
        shadow: dict[str, Any] = {}
        if v2.counts is not None and proxy != "direct":
            # Let the shadows still in flight land (or time out) before counting them.
            time.sleep(min(self.options.shadow_timeout, 1.0) + 0.3)
            shadow["v2"] = diff(v2.counts(), counts0)
            if mesh:
                shadow["shadowmesh"] = diff_stats(mesh.stats(), stats0)
        return Measurement(
            proxy=proxy,
            round=round_,
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            mean_ms=result.mean_ms,
            errors=result.errors,
            requests=result.requests,
            cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0) if pids else 0.0,
            peak_rss_mb=peak,
            rss_growth_mb=rss1 - rss0,
            error_detail={
                "non_2xx": result.non_2xx,
                "connect": result.connect_errors,
                "read": result.read_errors,
                "write": result.write_errors,
                "timeout": result.timeouts,
            },
            mib_per_s=result.rps * scenario.body_bytes / MIB if scenario.body_bytes else None,
            shadow=shadow,
        )


def shadow_counts(port: int) -> dict[str, int]:
    url = f"http://127.0.0.1:{port}/__bench__/counts"
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, int] = json.loads(r.read())
        return data


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Counters after minus before; nested dicts (counters by name) likewise."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        prior = before.get(key)
        if isinstance(value, dict):
            out[key] = diff(value, prior if isinstance(prior, dict) else {})
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value - (prior if isinstance(prior, int | float) else 0)
        else:
            out[key] = value
    return out


def diff_stats(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """shadowmesh's /stats over a run: its counters are nested dicts, its top-level numbers
    gauges (``shadow_in_flight``), kept as they are at the end."""
    return {
        key: diff(value, before.get(key) or {}) if isinstance(value, dict) else value
        for key, value in after.items()
    }


def progress(scenario: Scenario, m: Measurement) -> str:
    return (
        f"  {scenario.name:<20} round {m.round + 1} {m.proxy:<10} "
        f"{m.rps:>10,.0f} rps  p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:8.2f} ms  "
        f"CPU {m.cpu_pct:5.1f}%  RSS {m.peak_rss_mb:6.1f} MB  errors {m.errors}"
    )


def run_all(
    procs: Procs,
    tmp: Path,
    options: Options,
    scenarios: Sequence[Scenario],
    say: Callable[[str], None],
) -> list[tuple[Scenario, list[Measurement]]]:
    lab = Lab(procs, tmp, options, say)
    return [(s, lab.run_scenario(s)) for s in scenarios]
