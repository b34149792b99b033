"""``shadowmesh serve``: the proxy process (data plane, config store, admin API).

This module holds serve's options, each declared once in ``ServeOptions`` (the click options,
the settings and the extra workers' command lines all come from it: ``cli.options``), and the
composition of the parts that run in the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click

from shadowmesh import compiled, hot_path
from shadowmesh.admin.auth import TokenError, serve_token
from shadowmesh.admin.server import AdminServer
from shadowmesh.cli.client import read_sources
from shadowmesh.cli.options import Address, Labels, click_options, from_params, option, to_argv
from shadowmesh.cli.process import on_signals, run
from shadowmesh.cli.workers import Workers, die_with_parent, process_report, serve_as_worker
from shadowmesh.compare.analyzer import Analyzer
from shadowmesh.control.controller import Controller
from shadowmesh.control.dns import Resolver
from shadowmesh.control.identity import proxy_pseudonym
from shadowmesh.control.offload import ConfigThread
from shadowmesh.control.store import Store, StoreError
from shadowmesh.dataplane.server import DataPlane, DownstreamLimits
from shadowmesh.errors import ConfigError, ConfigErrors, ShadowmeshError
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.observe.accesslog import DEFAULT_REDACTED_QUERY, FORMATS, AccessLog, Format
from shadowmesh.observe.fleet import Fleet
from shadowmesh.observe.logfile import open_log, reopen_log
from shadowmesh.observe.otlp import start_exporter, traces_url
from shadowmesh.observe.stats import Stats
from shadowmesh.observe.upstreamstats import KEY as UPSTREAM_CLUSTERS
from shadowmesh.observe.upstreamstats import cluster_stats
from shadowmesh.routing.analyze import OwnListeners
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.connection import Pool


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "shadowmesh")


class OtlpUrl(click.ParamType[Any, Any]):
    """A collector's URL as spans are POSTed to it (``/v1/traces`` added to a bare one)."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return traces_url(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@dataclass(frozen=True)
class ServeOptions:
    """Every option of ``serve``, declared once (``cli.options``): a new option is one field
    here, and the extra workers get it unless it says ``inherited=False``."""

    state: str = option(
        "--state",
        default_factory=default_state_dir,
        show_default="$XDG_STATE_HOME/shadowmesh",
        help="Directory of the config store (SQLite); config survives restarts.",
    )
    admin: tuple[str, int] = option(
        "--admin",
        default=("127.0.0.1", 15000),
        type=Address(),
        inherited=False,
        help="Admin API address (apply, get, delete, /ready, /stats).",
    )
    admin_token_file: str | None = option(
        "--admin-token-file",
        default=None,
        type=click.Path(dir_okay=False),
        inherited=False,
        help="File holding a token every admin request but GET /ready must carry as "
        "'Authorization: Bearer TOKEN'; required when --admin is not loopback.",
    )
    bind: str = option(
        "--bind",
        default="127.0.0.1",
        help="Address the Service ports listen on (the Services' cluster IP).",
    )
    outbound: tuple[str, int] | None = option(
        "--outbound",
        default=("127.0.0.1", 15001),
        type=Address(off="off"),
        help="HTTP forward-proxy address, as a sidecar's outbound capture; 'off' for none.",
    )
    gateway_bind: str = option(
        "--gateway-bind",
        default="127.0.0.1",
        help="Address the ingress listens on: the ports of Istio Gateways' servers.",
    )
    credentials_dir: str | None = option(
        "--credentials-dir",
        default=None,
        type=click.Path(file_okay=False),
        help="Where a Gateway's tls.credentialName is looked up: DIR/NAME/tls.crt and tls.key "
        "(and ca.crt for MUTUAL), as a Kubernetes TLS secret holds them.",
    )
    files: tuple[str, ...] = option(
        "-f", "--filename", default=(), multiple=True, inherited=False,
        help="Apply these files at start.",
    )  # fmt: skip
    namespace: str = option("-n", "--namespace", default="default", inherited=False)
    workload_labels: tuple[tuple[str, str], ...] = option(
        "--workload-labels",
        default=(),
        type=Labels(),
        show_default="none",
        help="The labels of the workload whose sidecar this proxy is, e.g. app=sleep,version=v1: "
        "a route match whose sourceLabels they do not all hold never applies (Istio's "
        "sourceLabels). Without them, no match with sourceLabels applies.",
    )
    access_log: str = option(
        "--access-log",
        default="-",
        help="Access log file; '-' for stdout, 'off' for none.",
    )
    access_log_format: Format = option(
        "--access-log-format",
        default="text",
        type=click.Choice(FORMATS),
        help="text or json: Envoy's fields plus a shadow marker, a line per primary and per "
        "shadow; istio or istio-json: Istio's default formats field for field, a line per primary.",
    )
    shadow_host_suffix: bool = option(
        "--shadow-host-suffix/--no-shadow-host-suffix",
        default=True,
        help="Append -shadow to the mirrored request's Host, as Istio up to 1.27 and Envoy.",
    )
    shadow_timeout: float = option(
        "--shadow-timeout",
        default=5.0,
        help="Seconds a shadow may take before it is abandoned (counted).",
    )
    shadow_max_in_flight: int = option("--shadow-max-in-flight", default=1024)
    shadow_max_in_flight_per_endpoint: int = option(
        "--shadow-max-in-flight-per-endpoint",
        default=128,
        help="Copies in flight to one shadow endpoint; more are dropped (counted). Keeps a slow "
        "shadow from costing the live traffic more than a tenth of its throughput.",
    )
    shadow_max_body: int = option(
        "--shadow-max-body",
        default=8 * 1024 * 1024,
        help="Largest request body mirrored, in bytes; larger ones are dropped (counted).",
    )
    connect_timeout: float = option(
        "--connect-timeout",
        default=10.0,
        help="Upstream connect timeout in seconds (Istio's default is 10s).",
    )
    idle_timeout: float = option(
        "--idle-timeout",
        default=60.0,
        help="Seconds a client connection may wait between requests before it is closed.",
    )
    request_header_timeout: float = option(
        "--request-header-timeout",
        default=10.0,
        help="Seconds a client has to send a whole request head (408 after that).",
    )
    stream_idle_timeout: float = option(
        "--stream-idle-timeout",
        default=60.0,
        help="Seconds a request may go without a byte moving either way, client or upstream, "
        "before it is ended: 408 if the client still owes its body, 504 if the upstream owes "
        "its answer, a reset once part of the answer is out (Envoy's stream idle timeout, "
        "flag SI).",
    )
    max_connections: int = option(
        "--max-connections",
        default=10_000,
        help="Client connections served at once; more are closed on accept.",
    )
    workers: int = option(
        "--workers",
        default=1,
        type=click.IntRange(1, 64),
        inherited=False,
        help="Data-plane processes sharing the ports (SO_REUSEPORT); one event loop each.",
    )
    allow_underscores_in_headers: bool = option(
        "--allow-underscores-in-headers",
        default=False,
        help="Pass request headers whose names contain '_' (by default they are dropped and "
        "counted, as nginx's underscores_in_headers off).",
    )
    redact_query: tuple[str, ...] = option(
        "--redact-query-param",
        default=DEFAULT_REDACTED_QUERY,
        multiple=True,
        help="Query parameter whose value the access log writes as REDACTED (any case); "
        "repeatable; given, it replaces the defaults ('' for none).",
    )
    shadow_strip_headers: tuple[str, ...] = option(
        "--shadow-strip-header",
        default=(),
        multiple=True,
        help="Request header removed from shadow copies only (e.g. authorization, cookie); "
        "repeatable. Copies otherwise carry the primary's headers, credentials included.",
    )
    dns_refresh_min: float = option(
        "--dns-refresh-min",
        default=5.0,
        type=click.FloatRange(0.1),
        help="Seconds: the least time a ServiceEntry's DNS answer is kept (and the retry after "
        "a failed lookup).",
    )
    dns_refresh_max: float = option(
        "--dns-refresh-max",
        default=300.0,
        type=click.FloatRange(0.1),
        help="Seconds: the most time a ServiceEntry's DNS answer is kept before it is looked "
        "up again.",
    )
    otlp_endpoint: str | None = option(
        "--otlp-endpoint",
        default=None,
        type=OtlpUrl(),
        help="Export traces (OTLP over HTTP, protobuf) to this collector, e.g. "
        "http://127.0.0.1:4318 (/v1/traces is added to a URL without a path). Off by default.",
    )
    otlp_sampling: float = option(
        "--otlp-sampling",
        default=1.0,
        type=click.FloatRange(0, 100),
        help="Percent of new traces sampled (Istio's default is 1); a client's x-b3-sampled wins.",
    )
    otlp_shadow_spans: bool = option(
        "--otlp-shadow-spans/--no-otlp-shadow-spans",
        default=True,
        help="Export a span per shadow (marked, flagged not sampled); Envoy reports none.",
    )
    # This process is one of the extra workers (``worker_argv`` says so).
    worker: bool = option("--worker", default=False, hidden=True, inherited=False)
    drain_timeout: float = option(
        "--drain-timeout",
        default=5.0,
        help="On SIGTERM, seconds to let in-flight requests finish.",
    )
    # Derived at start, no option: the token read from --admin-token-file.
    admin_token: str | None = field(default=None)

    @property
    def limits(self) -> ShadowLimits:
        return ShadowLimits(
            timeout=self.shadow_timeout,
            max_in_flight=self.shadow_max_in_flight,
            max_in_flight_per_endpoint=self.shadow_max_in_flight_per_endpoint,
            max_body_bytes=self.shadow_max_body,
        )

    @property
    def downstream(self) -> DownstreamLimits:
        return DownstreamLimits(
            self.idle_timeout,
            self.request_header_timeout,
            self.max_connections,
            allow_underscores=self.allow_underscores_in_headers,
            stream_idle_timeout=self.stream_idle_timeout,
        )


@click.command()
@click_options(ServeOptions)
def serve(**params: Any) -> None:
    """Run the proxy: a listener per Service port, the forward proxy, and the admin API."""
    options = from_params(ServeOptions, params)
    if options.worker:
        die_with_parent()  # first of all: a worker never outlives the process that started it
    try:
        admin_token, token_warnings = serve_token(options.admin[0], options.admin_token_file)
    except TokenError as exc:
        raise click.BadParameter(str(exc), param_hint="--admin-token-file") from None
    for warning in token_warnings:
        warn(warning)
    options = dataclasses.replace(options, admin_token=admin_token)
    sources = read_sources(options.files) if options.files else []
    try:
        store = Store(options.state)
    except StoreError as exc:  # names the file, the problem and what to do
        raise click.ClickException(str(exc)) from None
    except (OSError, ShadowmeshError) as exc:
        message = f"cannot open the config store in {options.state}: {exc}"
        raise click.ClickException(message) from None
    try:
        stream = open_log(options.access_log)
    except OSError as exc:
        raise click.ClickException(f"cannot open access log {options.access_log}: {exc}") from None
    try:
        run(serve_forever(options, store, sources, stream))
    except (ConfigError, ConfigErrors) as exc:
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        for error in errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)
    except ShadowmeshError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        # The config store names its own file (StoreError); this is another one of the state
        # directory's databases (the comparisons'), on the same disk.
        message = f"a database in {options.state} failed: {exc}: check that disk, then retry"
        raise click.ClickException(message) from None
    finally:
        store.close()


async def serve_forever(
    options: ServeOptions,
    store: Store,
    sources: list[tuple[str, str]],
    log_stream: IO[str] | None,
) -> None:
    stats = Stats()
    access_log = AccessLog(log_stream, options.access_log_format, options.redact_query)
    dispatcher = Dispatcher(
        options.limits,
        stats,
        access_log,
        options.shadow_host_suffix,
        strip_headers=options.shadow_strip_headers,
    )
    plane = DataPlane(
        RouteTable.compile([]),
        options.bind,
        Pool(connect_timeout=options.connect_timeout),
        dispatcher,
        access_log,
        stats,
        options.downstream,
        reuse_port=options.workers > 1 or options.worker,
        pseudonym=proxy_pseudonym(options.state).encode(),
    )
    plane.gateway_bind = options.gateway_bind
    plane.credentials_dir = options.credentials_dir
    plane.spawn(plane.sweep())
    exporter = None
    if options.otlp_endpoint is not None:
        spans, exporter = start_exporter(
            options.otlp_endpoint, options.otlp_sampling, options.otlp_shadow_spans
        )
        plane.spans = dispatcher.spans = spans
    # Config work (the stored config at start, -f, the admin API's changes, a worker following
    # the store) runs on one thread beside the serving loop, never on it; see control.offload.
    config = ConfigThread(asyncio.get_running_loop())
    controller = Controller(store, config.on_loop(plane.swap), dict(options.workload_labels))
    controller.own_listeners = own_listeners(options)
    # ServiceEntry names are resolved in a thread of their own; a changed answer recompiles
    # the table on the config thread, as every other config change.
    loop = asyncio.get_running_loop()

    def changed() -> None:
        loop.call_soon_threadsafe(lambda: plane.spawn(config.run(controller.refresh)))

    dns = Resolver(
        changed,
        min_refresh=options.dns_refresh_min,
        max_refresh=options.dns_refresh_max,
    )
    controller.dns = dns
    plane.skip_bad_credentials = True
    started = await config.run(controller.start)
    plane.skip_bad_credentials = False
    for warning in [*started, *plane.ingress_skipped]:
        warn(warning)
    dns.start()
    try:
        await _serve(options, sources, config, controller, plane, stats, dispatcher)
    finally:
        dns.stop()
        if exporter is not None:
            exporter.close()  # what is queued is sent, within two seconds


async def _serve(
    options: ServeOptions,
    sources: list[tuple[str, str]],
    config: ConfigThread,
    controller: Controller,
    plane: DataPlane,
    stats: Stats,
    dispatcher: Dispatcher,
) -> None:
    if options.worker:
        reopen = functools.partial(reopen_log, options.access_log, plane.access_log, warn)
        await serve_as_worker(
            plane, config, controller, options.outbound, options.drain_timeout, reopen, warn
        )
        await config.close()
        return
    if sources:
        outcome = await config.run(controller.apply_files, sources, options.namespace)
        for warning in outcome.warnings:
            warn(warning)
        for line in outcome.lines:
            click.echo(line, err=True)

    # Comparisons are captured by this process (not by extra workers) and analysed in a child
    # process, so the analysis never holds this event loop's GIL.
    analyzer = Analyzer(options.state, lambda: plane.table.comparisons)
    plane.analyzer = analyzer

    # With --workers, every worker's counters are summed in (observe.fleet).
    workers = Workers(worker_argv(options), options.workers - 1) if options.workers > 1 else None
    fleet = workers.fleet if workers is not None else Fleet()

    def extra() -> dict[str, object]:
        own = process_report(plane)
        totals = fleet.total(own)
        snapshot = totals.stats.snapshot()
        snapshot.update(totals.gauges)
        snapshot["processes"] = fleet.processes(own)
        snapshot["comparison"] = analyzer.stats()
        snapshot[UPSTREAM_CLUSTERS] = cluster_stats(plane.table.clusters(), plane.pools.stats())
        snapshot["shadow_skipped"] = totals.skipped
        snapshot["compiled"] = compiled()
        if controller.dns is not None:
            snapshot["dns"] = controller.dns.stats()
        if totals.otlp is not None:
            snapshot["otlp"] = totals.otlp
        return snapshot

    admin = AdminServer(
        controller,
        options.admin[0],
        options.admin[1],
        extra=extra,
        token=options.admin_token,
        analyzer=analyzer,
        requests=lambda: fleet.total(process_report(plane)).stats.cells,
        config=config,
        fresh=workers.fresh if workers is not None else None,
    )
    await admin.start()
    outbound_port = None
    if options.outbound is not None:
        outbound_port = await plane.start_outbound(*options.outbound)
    controller.own_listeners = own_listeners(options, admin.bound_port, outbound_port)
    # Pure Python (a failed compile, a stale build, SHADOWMESH_PURE=1) serves about half the
    # requests a second, and nothing else shows it: say which one runs.
    click.echo(f"shadowmesh hot path: {hot_path()}", err=True)
    click.echo(serving_line(options, admin.bound_port, outbound_port, plane.table), err=True)

    def hangup() -> None:
        reopen_log(options.access_log, plane.access_log, warn)
        if workers is not None:
            workers.send_signal(signal.SIGHUP)

    stop = on_signals(hangup)
    if workers is not None:
        workers.start()
        plane.spawn(workers.watch())
    await stop.wait()
    if workers is not None:
        workers.stopping = True  # from now on a worker that exits is not started again
    await admin.close()
    # The workers drain while this process does: each stops accepting at once.
    draining = [plane.shutdown(options.drain_timeout)]
    if workers is not None:
        draining.append(workers.stop(options.drain_timeout + 2))
    await asyncio.gather(*draining)
    analyzer.close()
    await config.close()


def warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def serving_line(
    options: ServeOptions, admin_port: int, outbound_port: int | None, table: RouteTable
) -> str:
    """The line that says where this proxy serves, once it does."""
    parts = [f"admin http://{options.admin[0]}:{admin_port}"]
    if options.outbound is not None:
        parts.append(f"outbound proxy {options.outbound[0]}:{outbound_port}")
    ports = ", ".join(str(p) for p in sorted(table.ports)) or "none yet"
    parts.append(f"Service ports on {options.bind}: {ports}")
    if table.ingress:
        ingress = ", ".join(str(p) for p in sorted(table.ingress))
        parts.append(f"Gateway ports on {options.gateway_bind}: {ingress}")
    if options.workload_labels:
        parts.append(f"as workload {Labels().format(options.workload_labels)}")
    return "shadowmesh serving: " + ", ".join(parts)


def own_listeners(
    options: ServeOptions, admin_port: int | None = None, outbound_port: int | None = None
) -> OwnListeners:
    """Where this proxy listens (ports as bound once they are: ``:0`` picks one)."""
    others = [(options.admin[0], admin_port or options.admin[1])]
    if options.outbound is not None:
        others.append((options.outbound[0], outbound_port or options.outbound[1]))
    return OwnListeners(options.bind, tuple(others), options.gateway_bind)


def worker_argv(options: ServeOptions) -> list[str]:
    """The command line of an extra worker: the same data plane, without admin API or -f."""
    return [sys.executable, "-m", "shadowmesh", "serve", "--worker", *to_argv(options)]
