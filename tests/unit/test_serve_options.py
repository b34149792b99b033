"""Every ``serve`` option, declared once in ``ServeOptions``, reaches the settings and the
extra workers' command line (``--workers 2``), and a new option cannot be left out of here."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from shadowmesh.cli.options import options_of, to_argv
from shadowmesh.cli.serve import ServeOptions, serve, serving_line, worker_argv
from shadowmesh.routing.table import RouteTable

# A value other than the default for every option: (what is typed, what the settings hold).
GIVEN: dict[str, tuple[list[str], object]] = {
    "state": (["--state", "/tmp/elsewhere"], "/tmp/elsewhere"),
    "admin": (["--admin", "127.0.0.2:15999"], ("127.0.0.2", 15999)),
    "admin_token_file": (["--admin-token-file", "/tmp/token"], "/tmp/token"),
    "bind": (["--bind", "127.0.0.3"], "127.0.0.3"),
    "outbound": (["--outbound", "[::1]:15002"], ("::1", 15002)),
    "gateway_bind": (["--gateway-bind", "127.0.0.4"], "127.0.0.4"),
    "credentials_dir": (["--credentials-dir", "/tmp/creds"], "/tmp/creds"),
    "files": (["-f", "a.yaml", "-f", "b.yaml"], ("a.yaml", "b.yaml")),
    "namespace": (["-n", "shop"], "shop"),
    "workload_labels": (
        ["--workload-labels", "app=sleep,version=v1"],
        (("app", "sleep"), ("version", "v1")),
    ),
    "access_log": (["--access-log", "/tmp/access.log"], "/tmp/access.log"),
    "access_log_format": (["--access-log-format", "istio-json"], "istio-json"),
    "shadow_host_suffix": (["--no-shadow-host-suffix"], False),
    "shadow_timeout": (["--shadow-timeout", "2.5"], 2.5),
    "shadow_max_in_flight": (["--shadow-max-in-flight", "77"], 77),
    "shadow_max_in_flight_per_endpoint": (["--shadow-max-in-flight-per-endpoint", "9"], 9),
    "shadow_max_body": (["--shadow-max-body", "4096"], 4096),
    "connect_timeout": (["--connect-timeout", "0.25"], 0.25),
    "idle_timeout": (["--idle-timeout", "7.5"], 7.5),
    "request_header_timeout": (["--request-header-timeout", "3"], 3.0),
    "stream_idle_timeout": (["--stream-idle-timeout", "11"], 11.0),
    "max_connections": (["--max-connections", "12"], 12),
    "workers": (["--workers", "2"], 2),
    "allow_underscores_in_headers": (["--allow-underscores-in-headers"], True),
    "redact_query": (["--redact-query-param", "session"], ("session",)),
    "shadow_strip_headers": (
        ["--shadow-strip-header", "cookie", "--shadow-strip-header", "authorization"],
        ("cookie", "authorization"),
    ),
    "dns_refresh_min": (["--dns-refresh-min", "1.5"], 1.5),
    "dns_refresh_max": (["--dns-refresh-max", "30"], 30.0),
    "otlp_endpoint": (
        ["--otlp-endpoint", "http://127.0.0.1:4318"],
        "http://127.0.0.1:4318/v1/traces",
    ),
    "otlp_sampling": (["--otlp-sampling", "12.5"], 12.5),
    "otlp_shadow_spans": (["--no-otlp-shadow-spans"], False),
    "worker": (["--worker"], True),
    "drain_timeout": (["--drain-timeout", "0.5"], 0.5),
}

# Options of the first process alone: a worker has no admin API, applies no files, starts no
# workers, and is told it is one by ``--worker`` itself.
FIRST_PROCESS_ONLY = {"admin", "admin_token_file", "files", "namespace", "workers", "worker"}


def parse(argv: list[str]) -> ServeOptions:
    return ServeOptions(**serve.make_context("serve", argv).params)


def given_argv(skip: frozenset[str] = frozenset()) -> list[str]:
    return [word for name, (typed, _) in GIVEN.items() if name not in skip for word in typed]


def test_every_option_has_a_given_value_here() -> None:
    names = {f.name for f, _ in options_of(ServeOptions)}
    assert names == set(GIVEN), "a new serve option needs a line in GIVEN"
    inherited = {f.name for f, cli in options_of(ServeOptions) if not cli.inherited}
    assert inherited == FIRST_PROCESS_ONLY


def test_every_option_reaches_the_settings() -> None:
    options = parse(given_argv())
    for name, (_, value) in GIVEN.items():
        assert getattr(options, name) == value, name
        assert value != getattr(ServeOptions(), name), f"{name}: GIVEN holds its default"


def test_every_option_reaches_the_workers() -> None:
    options = parse(given_argv(skip=frozenset({"worker"})))
    assert options.workers == 2
    argv = worker_argv(options)
    assert argv[3:5] == ["serve", "--worker"]
    worker = parse(argv[4:])
    assert worker.worker is True
    for f, cli in options_of(ServeOptions):
        if cli.inherited:
            assert getattr(worker, f.name) == getattr(options, f.name), f.name
        elif f.name != "worker":
            assert getattr(worker, f.name) == getattr(ServeOptions(), f.name), f.name
    # The parts built from them, as the worker builds them.
    # (Read field by field: compiled, ShadowLimits is a native class, without a __dict__.)
    shadow = ("timeout", "max_in_flight", "max_in_flight_per_endpoint", "max_body_bytes")

    def fields(limits: object) -> list[object]:
        return [getattr(limits, a) for a in shadow]

    assert fields(worker.limits) == fields(options.limits)
    assert worker.downstream == options.downstream


def test_defaults_reach_the_workers_as_defaults() -> None:
    defaults = ServeOptions()
    assert parse(worker_argv(defaults)[4:]) == dataclasses.replace(defaults, worker=True)


@pytest.mark.parametrize("value", ["off", "127.0.0.1:0"])
def test_outbound_off_and_on_reach_the_workers(value: str) -> None:
    options = parse(["--outbound", value])
    assert parse(to_argv(options)).outbound == options.outbound


def test_a_bad_address_is_refused_with_the_option_named() -> None:
    out = CliRunner().invoke(serve, ["--admin", "nowhere"])
    assert out.exit_code == 2
    assert "--admin" in out.output and "expected HOST:PORT, got 'nowhere'" in out.output


def test_workload_labels_are_refused_as_kubernetes_refuses_them() -> None:
    assert parse(["--workload-labels", ""]).workload_labels == ()
    assert parse(["--workload-labels", "a=1,,b="]).workload_labels == (("a", "1"), ("b", ""))
    out = CliRunner().invoke(serve, ["--workload-labels", "app"])
    assert out.exit_code == 2 and "expected KEY=VALUE, got 'app'" in out.output
    out = CliRunner().invoke(serve, ["--workload-labels", "app=a b"])
    assert out.exit_code == 2 and 'invalid label value "a b"' in out.output


def test_the_serving_line_names_every_listener_and_the_workload() -> None:
    options = parse(["--outbound", "127.0.0.1:15001", "--workload-labels", "app=sleep,version=v1"])
    line = serving_line(options, 15000, 15001, RouteTable.compile([]))
    assert line == (
        "shadowmesh serving: admin http://127.0.0.1:15000, outbound proxy 127.0.0.1:15001, "
        "Service ports on 127.0.0.1: none yet, as workload app=sleep,version=v1"
    )
