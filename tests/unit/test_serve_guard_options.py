"""The request-guard options of ``serve`` reach the extra workers as they were given."""

from __future__ import annotations

from shadowmesh.cli.serve import ServeOptions, serve, worker_argv
from shadowmesh.observe.accesslog import DEFAULT_REDACTED_QUERY


def worker_params(o: ServeOptions) -> dict[str, object]:
    argv = worker_argv(o)
    assert argv[3] == "serve"
    return serve.make_context("serve", argv[4:]).params


def test_defaults_reach_a_worker_as_defaults() -> None:
    params = worker_params(ServeOptions(state="/tmp/s"))
    assert params["allow_underscores_in_headers"] is False
    assert params["redact_query"] == DEFAULT_REDACTED_QUERY
    assert params["shadow_strip_headers"] == ()
    # None at all: given as an empty name, so a worker does not fall back to the defaults.
    assert worker_params(ServeOptions(state="/tmp/s", redact_query=()))["redact_query"] == ()


def test_given_options_reach_a_worker() -> None:
    given = ServeOptions(
        state="/tmp/s",
        allow_underscores_in_headers=True,
        redact_query=("session", "token"),
        shadow_strip_headers=("authorization", "cookie"),
    )
    params = worker_params(given)
    assert params["allow_underscores_in_headers"] is True
    assert params["redact_query"] == ("session", "token")
    assert params["shadow_strip_headers"] == ("authorization", "cookie")
    assert ServeOptions(**params).downstream.allow_underscores is True
