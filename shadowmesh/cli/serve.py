"""``shadowmesh serve``: the proxy process (data plane, config store, admin API)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click

from shadowmesh import compiled, hot_path
from shadowmesh.admin.auth import TokenError, serve_token
from shadowmesh.admin.server import AdminServer
from shadowmesh.cli.client import read_sources
from shadowmesh.cli.workers import (
    ParentLink,
    Workers,
    die_with_parent,
    follow_store,
    process_report,
)
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
from shadowmesh.observe.fleet import Fleet, encode
from shadowmesh.observe.otlp import Exporter, traces_url
from shadowmesh.observe.spans import Spans
from shadowmesh.observe.stats import Stats
from shadowmesh.routing.analyze import OwnListeners
from shadowmesh.routing.table import RouteTable
from shadowmesh.upstream.connection import Pool


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "shadowmesh")


def split_address(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=option)
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class ServeOptions:
    state: str
    admin: tuple[str, int]
    bind: str
    outbound: tuple[str, int] | None
    files: tuple[str, ...]
    namespace: str
    access_log: str
    access_log_format: Format
    shadow_host_suffix: bool
    limits: ShadowLimits
    connect_timeout: float
    drain_timeout: float
    downstream: DownstreamLimits
    workers: int = 1
    worker: bool = False  # this process is one of the extra workers
    admin_token: str | None = None
    redact_query: tuple[str, ...] = DEFAULT_REDACTED_QUERY
    shadow_strip_headers: tuple[str, ...] = ()
    dns_refresh: tuple[float, float] = (5.0, 300.0)  # bounds on a name's time to live
    otlp_endpoint: str | None = None
    otlp_sampling: float = 1.0
    otlp_shadow_spans: bool = True
    gateway_bind: str = "127.0.0.1"  # where the ingress (Gateway servers) listens
    credentials_dir: str | None = None  # credentialName folders: NAME/tls.crt, NAME/tls.key


@click.command()
@click.option(
    "--state",
    default=default_state_dir,
    show_default="$XDG_STATE_HOME/shadowmesh",
    help="Directory of the config store (SQLite); config survives restarts.",
)
@click.option(
    "--admin",
    "admin",
    default="127.0.0.1:15000",
    show_default=True,
    help="Admin API address (apply, get, delete, /ready, /stats).",
)
@click.option(
    "--admin-token-file",
    type=click.Path(dir_okay=False),
    help="File holding a token every admin request but GET /ready must carry as "
    "'Authorization: Bearer TOKEN'; required when --admin is not loopback.",
)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address the Service ports listen on (the Services' cluster IP).",
)
@click.option(
    "--outbound",
    default="127.0.0.1:15001",
    show_default=True,
    help="HTTP forward-proxy address, as a sidecar's outbound capture; 'off' for none.",
)
@click.option(
    "--gateway-bind",
    default="127.0.0.1",
    show_default=True,
    help="Address the ingress listens on: the ports of Istio Gateways' servers.",
)
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False),
    help="Where a Gateway's tls.credentialName is looked up: DIR/NAME/tls.crt and tls.key "
    "(and ca.crt for MUTUAL), as a Kubernetes TLS secret holds them.",
)
@click.option("-f", "--filename", "files", multiple=True, help="Apply these files at start.")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option(
    "--access-log",
    default="-",
    show_default=True,
    help="Access log file; '-' for stdout, 'off' for none.",
)
@click.option(
    "--access-log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text or json: Envoy's fields plus a shadow marker, a line per primary and per shadow; "
    "istio or istio-json: Istio's default formats field for field, a line per primary.",
)
@click.option(
    "--shadow-host-suffix/--no-shadow-host-suffix",
    default=True,
    show_default=True,
    help="Append -shadow to the mirrored request's Host, as Istio up to 1.27 and Envoy.",
)
@click.option(
    "--shadow-timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds a shadow may take before it is abandoned (counted).",
)
@click.option("--shadow-max-in-flight", type=int, default=1024, show_default=True)
@click.option(
    "--shadow-max-in-flight-per-endpoint",
    type=int,
    default=128,
    show_default=True,
    help="Copies in flight to one shadow endpoint; more are dropped (counted). Keeps a slow "
    "shadow from costing the live traffic more than a tenth of its throughput.",
)
@click.option(
    "--shadow-max-body",
    type=int,
    default=8 * 1024 * 1024,
    show_default=True,
    help="Largest request body mirrored, in bytes; larger ones are dropped (counted).",
)
@click.option(
    "--connect-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Upstream connect timeout in seconds (Istio's default is 10s).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a client connection may wait between requests before it is closed.",
)
@click.option(
    "--request-header-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a whole request head (408 after that).",
)
@click.option(
    "--stream-idle-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a request may go without a byte moving either way, client or upstream, "
    "before it is ended: 408 if the client still owes its body, 504 if the upstream owes its "
    "answer, a reset once part of the answer is out (Envoy's stream idle timeout, flag SI).",
)
@click.option(
    "--max-connections",
    type=int,
    default=10_000,
    show_default=True,
    help="Client connections served at once; more are closed on accept.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Data-plane processes sharing the ports (SO_REUSEPORT); one event loop each.",
)
@click.option(
    "--allow-underscores-in-headers",
    is_flag=True,
    help="Pass request headers whose names contain '_' (by default they are dropped and "
    "counted, as nginx's underscores_in_headers off).",
)
@click.option(
    "--redact-query-param",
    "redact_query",
    multiple=True,
    default=DEFAULT_REDACTED_QUERY,
    show_default=True,
    help="Query parameter whose value the access log writes as REDACTED (any case); "
    "repeatable; given, it replaces the defaults ('' for none).",
)
@click.option(
    "--shadow-strip-header",
    "shadow_strip_headers",
    multiple=True,
    help="Request header removed from shadow copies only (e.g. authorization, cookie); "
    "repeatable. Copies otherwise carry the primary's headers, credentials included.",
)
@click.option(
    "--dns-refresh-min",
    type=click.FloatRange(0.1),
    default=5.0,
    show_default=True,
    help="Seconds: the least time a ServiceEntry's DNS answer is kept (and the retry after a "
    "failed lookup).",
)
@click.option(
    "--dns-refresh-max",
    type=click.FloatRange(0.1),
    default=300.0,
    show_default=True,
    help="Seconds: the most time a ServiceEntry's DNS answer is kept before it is looked up again.",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Export traces (OTLP over HTTP, protobuf) to this collector, e.g. "
    "http://127.0.0.1:4318 (/v1/traces is added to a URL without a path). Off by default.",
)
@click.option(
    "--otlp-sampling",
    type=click.FloatRange(0, 100),
    default=1.0,
    show_default=True,
    help="Percent of new traces sampled (Istio's default is 1); a client's x-b3-sampled wins.",
)
@click.option(
    "--otlp-shadow-spans/--no-otlp-shadow-spans",
    default=True,
    show_default=True,
    help="Export a span per shadow (marked, flagged not sampled); Envoy reports none.",
)
@click.option("--worker", is_flag=True, hidden=True)
@click.option(
    "--drain-timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="On SIGTERM, seconds to let in-flight requests finish.",
)
def serve(
    state: str,
    admin: str,
    admin_token_file: str | None,
    bind: str,
    outbound: str,
    gateway_bind: str,
    credentials_dir: str | None,
    files: tuple[str, ...],
    namespace: str,
    access_log: str,
    access_log_format: Format,
    shadow_host_suffix: bool,
    shadow_timeout: float,
    shadow_max_in_flight: int,
    shadow_max_in_flight_per_endpoint: int,
    shadow_max_body: int,
    connect_timeout: float,
    idle_timeout: float,
    request_header_timeout: float,
    stream_idle_timeout: float,
    max_connections: int,
    allow_underscores_in_headers: bool,
    redact_query: tuple[str, ...],
    shadow_strip_headers: tuple[str, ...],
    otlp_endpoint: str | None,
    otlp_sampling: float,
    otlp_shadow_spans: bool,
    workers: int,
    dns_refresh_min: float,
    dns_refresh_max: float,
    worker: bool,
    drain_timeout: float,
) -> None:
    """Run the proxy: a listener per Service port, the forward proxy, and the admin API."""
    if worker:
        die_with_parent()  # first of all: a worker never outlives the process that started it
    admin_address = split_address(admin, "--admin")
    try:
        admin_token, token_warnings = serve_token(admin_address[0], admin_token_file)
    except TokenError as exc:
        raise click.BadParameter(str(exc), param_hint="--admin-token-file") from None
    for warning in token_warnings:
        click.echo(f"Warning: {warning}", err=True)
    options = ServeOptions(
        state=state,
        admin=admin_address,
        bind=bind,
        outbound=None if outbound == "off" else split_address(outbound, "--outbound"),
        files=files,
        namespace=namespace,
        access_log=access_log,
        access_log_format=access_log_format,
        shadow_host_suffix=shadow_host_suffix,
        limits=ShadowLimits(
            timeout=shadow_timeout,
            max_in_flight=shadow_max_in_flight,
            max_in_flight_per_endpoint=shadow_max_in_flight_per_endpoint,
            max_body_bytes=shadow_max_body,
        ),
        connect_timeout=connect_timeout,
        drain_timeout=drain_timeout,
        downstream=DownstreamLimits(
            idle_timeout,
            request_header_timeout,
            max_connections,
            allow_underscores=allow_underscores_in_headers,
            stream_idle_timeout=stream_idle_timeout,
        ),
        workers=workers,
        worker=worker,
        admin_token=admin_token,
        redact_query=tuple(n for n in redact_query if n),
        shadow_strip_headers=shadow_strip_headers,
        dns_refresh=(dns_refresh_min, dns_refresh_max),
        otlp_endpoint=_otlp_url(otlp_endpoint) if otlp_endpoint else None,
        otlp_sampling=otlp_sampling,
        otlp_shadow_spans=otlp_shadow_spans,
        gateway_bind=gateway_bind,
        credentials_dir=credentials_dir,
    )
    sources = read_sources(files) if files else []
    try:
        store = Store(options.state)
    except StoreError as exc:  # names the file, the problem and what to do
        raise click.ClickException(str(exc)) from None
    except (OSError, ShadowmeshError) as exc:
        message = f"cannot open the config store in {options.state}: {exc}"
        raise click.ClickException(message) from None
    stream = open_log(options.access_log)
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


def _otlp_url(endpoint: str) -> str:
    try:
        return traces_url(endpoint)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--otlp-endpoint") from None


def start_tracing(
    options: ServeOptions, plane: DataPlane, dispatcher: Dispatcher
) -> Exporter | None:
    """With ``--otlp-endpoint``: the span queue the data plane fills and its exporter thread."""
    if options.otlp_endpoint is None:
        return None
    spans = Spans(options.otlp_sampling, options.otlp_shadow_spans)
    exporter = Exporter(spans, options.otlp_endpoint)
    try:
        exporter.start()
    except ImportError as exc:
        raise ShadowmeshError(
            f"--otlp-endpoint needs opentelemetry-proto ({exc}): pip install 'shadowmesh[otlp]'"
        ) from None
    plane.spans = dispatcher.spans = spans
    return exporter


def open_log(target: str) -> IO[str] | None:
    if target == "off":
        return None
    if target == "-":
        return sys.stdout
    try:
        return open(target, "a", encoding="utf-8")  # lives as long as the process
    except OSError as exc:
        raise click.ClickException(f"cannot open access log {target}: {exc}") from None


def run(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


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
    exporter = start_tracing(options, plane, dispatcher)
    # Config work (the stored config at start, -f, the admin API's changes, a worker following
    # the store) runs on one thread beside the serving loop, never on it; see control.offload.
    config = ConfigThread(asyncio.get_running_loop())
    controller = Controller(store, config.on_loop(plane.swap))
    controller.own_listeners = own_listeners(options)
    # ServiceEntry names are resolved in a thread of their own; a changed answer recompiles
    # the table on the config thread, as every other config change.
    loop = asyncio.get_running_loop()

    def changed() -> None:
        loop.call_soon_threadsafe(lambda: plane.spawn(config.run(controller.refresh)))

    dns = Resolver(
        changed,
        min_refresh=options.dns_refresh[0],
        max_refresh=options.dns_refresh[1],
    )
    controller.dns = dns
    plane.skip_bad_credentials = True
    started = await config.run(controller.start)
    plane.skip_bad_credentials = False
    for warning in [*started, *plane.ingress_skipped]:
        click.echo(f"Warning: {warning}", err=True)
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
        await serve_as_worker(options, config, controller, plane)
        await config.close()
        return
    if sources:
        outcome = await config.run(controller.apply_files, sources, options.namespace)
        for warning in outcome.warnings:
            click.echo(f"Warning: {warning}", err=True)
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
        total, gauges, otlp = fleet.total(own)
        snapshot = total.snapshot()
        snapshot.update(gauges)
        snapshot["processes"] = fleet.processes(own)
        snapshot["comparison"] = analyzer.stats()
        snapshot["shadow_skipped"] = dict(getattr(plane.table, "shadow_skipped", {}))
        snapshot["compiled"] = compiled()
        if controller.dns is not None:
            snapshot["dns"] = controller.dns.stats()
        if otlp is not None:
            snapshot["otlp"] = otlp
        return snapshot

    admin = AdminServer(
        controller,
        options.admin[0],
        options.admin[1],
        extra=extra,
        token=options.admin_token,
        analyzer=analyzer,
        requests=lambda: fleet.total(process_report(plane))[0].cells,
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
    click.echo(
        f"shadowmesh serving: admin http://{options.admin[0]}:{admin.bound_port}"
        + (f", outbound proxy {options.outbound[0]}:{outbound_port}" if options.outbound else "")
        + f", Service ports on {options.bind}: "
        + (", ".join(str(p) for p in sorted(plane.table.ports)) or "none yet")
        + (
            f", Gateway ports on {options.gateway_bind}: "
            + ", ".join(str(p) for p in sorted(plane.table.ingress))
            if plane.table.ingress
            else ""
        ),
        err=True,
    )

    def hangup() -> None:
        reopen_log(options, plane.access_log)
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


def on_signals(hangup: Callable[[], None]) -> asyncio.Event:
    """SIGTERM and SIGINT set the event returned (a drain follows); SIGHUP calls ``hangup``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    return stop


def reopen_log(options: ServeOptions, access_log: AccessLog) -> None:
    """SIGHUP: open the access log file again by its name, as nginx does on USR1, so that a
    logrotate that moved it away gets a new file; if it cannot be opened, keep the old one."""
    if options.access_log in ("-", "off"):
        return
    try:
        stream = open(options.access_log, "a", encoding="utf-8")  # the old one is closed then
    except OSError as exc:
        click.echo(f"Warning: cannot reopen access log {options.access_log}: {exc}", err=True)
        return
    access_log.reopen(stream)


def own_listeners(
    options: ServeOptions, admin_port: int | None = None, outbound_port: int | None = None
) -> OwnListeners:
    """Where this proxy listens (ports as bound once they are: ``:0`` picks one)."""
    others = [(options.admin[0], admin_port or options.admin[1])]
    if options.outbound is not None:
        others.append((options.outbound[0], outbound_port or options.outbound[1]))
    return OwnListeners(options.bind, tuple(others), options.gateway_bind)


async def serve_as_worker(
    options: ServeOptions, config: ConfigThread, controller: Controller, plane: DataPlane
) -> None:
    stop = on_signals(lambda: reopen_log(options, plane.access_log))
    link = ParentLink(lambda answered: encode(process_report(plane, answered)))
    await link.open(stop)
    if options.outbound is not None:
        await plane.start_outbound(*options.outbound)
    plane.spawn(follow_store(config, controller, lambda w: click.echo(f"Warning: {w}", err=True)))
    await stop.wait()
    await plane.shutdown(options.drain_timeout)
    await link.close()


def worker_argv(options: ServeOptions) -> list[str]:
    """The command line of an extra worker: the same data plane, without admin API or -f."""
    limits, downstream = options.limits, options.downstream
    outbound = f"{options.outbound[0]}:{options.outbound[1]}" if options.outbound else "off"
    return [
        sys.executable,
        "-m",
        "shadowmesh",
        "serve",
        "--worker",
        "--state",
        options.state,
        "--bind",
        options.bind,
        "--outbound",
        outbound,
        "--access-log",
        options.access_log,
        "--access-log-format",
        options.access_log_format,
        "--shadow-host-suffix" if options.shadow_host_suffix else "--no-shadow-host-suffix",
        "--gateway-bind",
        options.gateway_bind,
        *(("--credentials-dir", options.credentials_dir) if options.credentials_dir else ()),
        "--dns-refresh-min",
        str(options.dns_refresh[0]),
        "--dns-refresh-max",
        str(options.dns_refresh[1]),
        "--shadow-timeout",
        str(limits.timeout),
        "--shadow-max-in-flight",
        str(limits.max_in_flight),
        "--shadow-max-in-flight-per-endpoint",
        str(limits.max_in_flight_per_endpoint),
        "--shadow-max-body",
        str(limits.max_body_bytes),
        "--connect-timeout",
        str(options.connect_timeout),
        "--idle-timeout",
        str(downstream.idle_timeout),
        "--request-header-timeout",
        str(downstream.header_timeout),
        "--stream-idle-timeout",
        str(downstream.stream_idle_timeout),
        "--max-connections",
        str(downstream.max_connections),
        "--drain-timeout",
        str(options.drain_timeout),
        *(["--allow-underscores-in-headers"] if downstream.allow_underscores else []),
        # Always given (an empty name when there are none), so the defaults never come back.
        *[a for name in options.redact_query or ("",) for a in ("--redact-query-param", name)],
        *[a for name in options.shadow_strip_headers for a in ("--shadow-strip-header", name)],
        *(["--otlp-endpoint", options.otlp_endpoint] if options.otlp_endpoint else []),
        "--otlp-sampling",
        str(options.otlp_sampling),
        "--otlp-shadow-spans" if options.otlp_shadow_spans else "--no-otlp-shadow-spans",
    ]
