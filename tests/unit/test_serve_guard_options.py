"""The request-guard options of ``serve`` reach the extra workers as they were given."""

from __future__ import annotations

from shadowmesh.cli.serve import ServeOptions, serve, worker_argv
from shadowmesh.dataplane.server import DownstreamLimits
from shadowmesh.mirror.dispatcher import ShadowLimits
from shadowmesh.observe.accesslog import DEFAULT_REDACTED_QUERY


def options(**kwargs: object) -> ServeOptions:
    base: dict[str, object] = dict(
        state="/tmp/s",
        admin=("127.0.0.1", 15000),
        bind="127.0.0.1",
        outbound=None,
        files=(),
        namespace="default",
        access_log="-",
        access_log_format="text",
        shadow_host_suffix=True,
        limits=ShadowLimits(),
        connect_timeout=10.0,
        drain_timeout=5.0,
        downstream=DownstreamLimits(),
    )
    base.update(kwargs)
    return ServeOptions(**base)  # type: ignore[arg-type]


def worker_params(o: ServeOptions) -> dict[str, object]:
    argv = worker_argv(o)
    assert argv[3] == "serve"
    return serve.make_context("serve", argv[4:]).params


def test_defaults_reach_a_worker_as_defaults() -> None:
    params = worker_params(options())
    assert params["allow_underscores_in_headers"] is False
    assert params["redact_query"] == DEFAULT_REDACTED_QUERY
    assert params["shadow_strip_headers"] == ()
    # None at all: an empty name, so a worker does not fall back to the defaults.
    assert worker_params(options(redact_query=()))["redact_query"] == ("",)


def test_given_options_reach_a_worker() -> None:
    given = options(
        downstream=DownstreamLimits(allow_underscores=True),
        redact_query=("session", "token"),
        shadow_strip_headers=("authorization", "cookie"),
    )
    params = worker_params(given)
    assert params["allow_underscores_in_headers"] is True
    assert params["redact_query"] == ("session", "token")
    assert params["shadow_strip_headers"] == ("authorization", "cookie")
