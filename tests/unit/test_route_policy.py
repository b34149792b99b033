"""routing.policy: the compiled route policy objects, as Envoy evaluates them."""

from __future__ import annotations

import random
import re

import pytest

from shadowmesh.routing.decision import Endpoint, Forward, Upstream
from shadowmesh.routing.policy import (
    DEFAULT_RETRY,
    INLINE_RESPONSE,
    NO_POLICY,
    POLICY_OFF,
    CorsPolicy,
    FaultPolicy,
    HeaderOps,
    RetryPolicy,
    Rewrite,
    RoutePolicy,
    overwrite,
)
from shadowmesh.routing.testing import within_binomial

# --- HeaderOps: HeaderParser::evaluateHeaders -------------------------------------------------


def test_removes_then_sets_then_adds() -> None:
    ops = HeaderOps(
        set=((b"x-a", b"set"),),
        add=((b"x-a", b"added"), (b"x-b", b"b")),
        remove=(b"x-a", b"x-gone"),
    )
    out = ops.apply([(b"x-a", b"old"), (b"x-gone", b"1"), (b"x-keep", b"k")])
    assert out == [(b"x-keep", b"k"), (b"x-a", b"set"), (b"x-a", b"added"), (b"x-b", b"b")]


def test_set_replaces_every_entry_and_goes_last() -> None:
    ops = HeaderOps(set=((b"x-a", b"new"),))
    out = ops.apply([(b"x-a", b"1"), (b"y", b"y"), (b"x-a", b"2")])
    assert out == [(b"y", b"y"), (b"x-a", b"new")]


def test_of_two_sets_of_one_name_the_later_stays_at_its_place() -> None:
    # A single destination's set after the route's: each set removes the name and adds last.
    ops = HeaderOps(set=((b"x", b"route"), (b"y", b"2"), (b"x", b"dest")))
    assert ops.apply([(b"x", b"client")]) == [(b"y", b"2"), (b"x", b"dest")]


def test_add_to_an_inline_header_comma_joins_else_second_entry() -> None:
    ops = HeaderOps(add=((b"user-agent", b"extra"), (b"x-custom", b"two")))
    out = ops.apply([(b"user-agent", b"curl"), (b"x-custom", b"one")])
    assert out == [(b"user-agent", b"curl,extra"), (b"x-custom", b"one"), (b"x-custom", b"two")]


def test_response_inline_set_differs_from_request() -> None:
    ops = HeaderOps(add=((b"server", b"b"), (b"user-agent", b"y")), inline=INLINE_RESPONSE)
    out = ops.apply([(b"server", b"a"), (b"user-agent", b"x")])
    assert out == [(b"server", b"a,b"), (b"user-agent", b"x"), (b"user-agent", b"y")]


def test_then_runs_after_and_wins() -> None:
    # A weighted destination's parser runs first, the route's after it ("later wins").
    route = HeaderOps(set=((b"x-who", b"route"),), remove=(b"x-dest",))
    dest = HeaderOps(set=((b"x-who", b"dest"),), add=((b"x-dest", b"1"),), then=route)
    assert dest.apply([]) == [(b"x-who", b"route")]


def test_header_ops_describe() -> None:
    ops = HeaderOps(set=((b"a", b"1"),), remove=(b"b",))
    assert ops.describe() == {"set": [["a", "1"]], "remove": ["b"]}


# --- Rewrite ------------------------------------------------------------------------------------


def test_prefix_rewrite_replaces_the_matched_portion() -> None:
    rewrite = Rewrite(prefix=b"/v1", matched=len(b"/ratings"))
    assert rewrite.path(b"/ratings/0?x=1") == b"/v1/0?x=1"


def test_prefix_rewrite_of_an_exact_match_keeps_the_query() -> None:
    rewrite = Rewrite(prefix=b"/new", matched=len(b"/old"))
    assert rewrite.path(b"/old?q=1") == b"/new?q=1"


def test_prefix_rewrite_of_a_regex_match_replaces_the_whole_path() -> None:
    rewrite = Rewrite(prefix=b"/all", matched=-1)
    assert rewrite.path(b"/a/b/c?q") == b"/all?q"
    assert rewrite.path(b"/a/b/c") == b"/all"


def test_trailing_slash_matters_as_in_envoy() -> None:
    assert Rewrite(prefix=b"/", matched=len(b"/foo")).path(b"/foo/bar") == b"//bar"


def test_regex_rewrite_on_the_path_keeps_the_query() -> None:
    rewrite = Rewrite(pattern=re.compile(rb"^/service/([^/]+)(/.*)$"), substitution=rb"\g<2>/\g<1>")
    assert rewrite.path(b"/service/foo/v1/api?x=/service/a/b") == b"/v1/api/foo?x=/service/a/b"


def test_authority_only_keeps_the_path() -> None:
    rewrite = Rewrite(authority=b"example.com")
    assert not rewrite.rewrites_path
    assert rewrite.path(b"/a?b") == b"/a?b"


# --- RetryPolicy: retry_state_impl.cc -----------------------------------------------------------


def retry(*tokens: str, statuses: frozenset[int] = frozenset()) -> RetryPolicy:
    return RetryPolicy(3, frozenset(tokens), statuses)


def test_5xx_retries_every_5xx_and_every_reset() -> None:
    policy = retry("5xx")
    assert policy.on_status(500) and policy.on_status(599) and not policy.on_status(404)
    for kind in ("connect-failure", "reset", "per-try-timeout", "refused-stream"):
        assert policy.on_failure(kind), kind
    assert not policy.on_failure("overflow")


def test_gateway_error() -> None:
    policy = retry("gateway-error")
    assert [s for s in (500, 501, 502, 503, 504, 505) if policy.on_status(s)] == [502, 503, 504]
    assert policy.on_failure("reset")


def test_connect_failure_alone_retries_connect_failures_only() -> None:
    policy = retry("connect-failure")
    assert policy.on_failure("connect-failure")
    assert not policy.on_failure("reset")
    assert not policy.on_failure("per-try-timeout")
    assert not policy.on_status(503)


def test_reset_before_request() -> None:
    policy = retry("reset-before-request")
    assert policy.on_failure("connect-failure")
    assert policy.on_failure("reset-before-request")
    assert not policy.on_failure("reset")


def test_retriable_4xx_is_409() -> None:
    policy = retry("retriable-4xx")
    assert policy.on_status(409) and not policy.on_status(408) and not policy.on_status(429)


def test_status_codes_need_retriable_status_codes() -> None:
    assert retry("retriable-status-codes", statuses=frozenset({503})).on_status(503)
    assert not retry("reset", statuses=frozenset({503})).on_status(503)


def test_ratelimited_response_is_retried_only_with_its_token() -> None:
    headers = [(b"x-envoy-ratelimited", b"true")]
    assert not retry("5xx").on_response(503, headers)
    assert retry("envoy-ratelimited").on_response(429, headers)
    assert retry("5xx").on_response(503, [])


def test_grpc_tokens_read_grpc_status_in_the_headers() -> None:
    policy = retry("unavailable", "cancelled")
    assert policy.on_response(200, [(b"grpc-status", b"14")])
    assert policy.on_response(200, [(b"grpc-status", b"1")])
    assert not policy.on_response(200, [(b"grpc-status", b"13")])
    assert not policy.on_response(200, [])


def test_istio_default_policy() -> None:
    assert DEFAULT_RETRY.attempts == 2
    assert DEFAULT_RETRY.on_failure("connect-failure")
    assert DEFAULT_RETRY.on_failure("refused-stream")
    # The default does not retry a reset after the request was sent, nor a per-try timeout.
    assert not DEFAULT_RETRY.on_failure("reset")
    assert not DEFAULT_RETRY.on_failure("per-try-timeout")
    assert not DEFAULT_RETRY.on_status(503)
    assert DEFAULT_RETRY.on_response(200, [(b"grpc-status", b"14")])


def test_backoff_is_fully_jittered_and_capped() -> None:
    rng = random.Random(3)
    policy = RetryPolicy(5, frozenset({"5xx"}))
    first = [policy.backoff(1, rng) for _ in range(2000)]
    assert 0 <= min(first) and max(first) < 0.025
    assert max(first) > 0.02  # uniform over the whole range, not a fixed wait
    third = [policy.backoff(3, rng) for _ in range(2000)]
    assert max(third) < 7 * 0.025 and max(third) > 6 * 0.025
    assert max(policy.backoff(8, rng) for _ in range(200)) == pytest.approx(0.25)
    assert RetryPolicy(1, frozenset(), backoff=0.1).max == pytest.approx(1.0)


# --- FaultPolicy --------------------------------------------------------------------------------


def test_no_chance_never_fires() -> None:
    rng = random.Random(1)
    fault = FaultPolicy(delay_seconds=5.0, delay_numerator=0, abort_status=500)
    assert all(fault.delay(rng) == 0.0 and fault.abort(rng) == 0 for _ in range(1000))


def test_full_chance_always_fires() -> None:
    rng = random.Random(1)
    fault = FaultPolicy(5.0, 1_000_000, abort_status=503, abort_numerator=1_000_000)
    assert all(fault.delay(rng) == 5.0 and fault.abort(rng) == 503 for _ in range(100))


@pytest.mark.parametrize(("numerator", "denominator"), [(100_000, 1_000_000), (50, 100)])
def test_partial_chance_is_binomial(numerator: int, denominator: int) -> None:
    rng = random.Random(5)
    fault = FaultPolicy(abort_status=500, abort_numerator=numerator, abort_denominator=denominator)
    hits = sum(fault.abort(rng) == 500 for _ in range(10_000))
    assert within_binomial(hits, 10_000, numerator / denominator)


def test_delay_and_abort_draws_are_independent() -> None:
    rng = random.Random(9)
    fault = FaultPolicy(1.0, 500_000, abort_status=500, abort_numerator=500_000)
    both = sum(fault.delay(rng) > 0 and fault.abort(rng) > 0 for _ in range(10_000))
    assert within_binomial(both, 10_000, 0.25)


# --- CorsPolicy: cors_filter.cc -----------------------------------------------------------------


def exact(value: bytes) -> object:
    return lambda origin: origin == value


def cors(**kwargs: object) -> CorsPolicy:
    origins = kwargs.pop("origins", (lambda o: o == b"https://ok.example",))
    return CorsPolicy(origins, **kwargs)  # type: ignore[arg-type]


def test_preflight_of_an_allowed_origin_is_answered() -> None:
    policy = cors(methods=b"GET,POST", headers=b"x-a", max_age=b"86400", credentials=True)
    assert policy.preflight(b"https://ok.example", b"POST", b"x-a") == [
        (b"access-control-allow-origin", b"https://ok.example"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-methods", b"GET,POST"),
        (b"access-control-allow-headers", b"x-a"),
        (b"access-control-max-age", b"86400"),
    ]


def test_unmatched_preflight_is_forwarded_by_default() -> None:
    assert cors(methods=b"GET").preflight(b"https://evil.example", b"GET", b"") is None


def test_unmatched_preflight_ignored_is_answered_without_origin() -> None:
    policy = cors(methods=b"GET", max_age=b"10", forward_unmatched=False)
    assert policy.preflight(b"https://evil.example", b"GET", b"") == [
        (b"access-control-allow-methods", b"GET"),
        (b"access-control-max-age", b"10"),
    ]


def test_star_methods_and_headers_echo_the_request() -> None:
    policy = cors(methods=b"*", headers=b"*")
    assert policy.preflight(b"https://ok.example", b"PUT", b"x-b,x-c") == [
        (b"access-control-allow-origin", b"https://ok.example"),
        (b"access-control-allow-methods", b"PUT"),
        (b"access-control-allow-headers", b"x-b,x-c"),
    ]


def test_a_matcher_of_star_allows_every_origin() -> None:
    policy = cors(origins=(lambda o: o == b"*",))
    assert policy.allows(b"https://anything.example")


def test_simple_response_is_decorated_for_an_allowed_origin_only() -> None:
    policy = cors(expose=b"x-total", credentials=True, methods=b"GET")
    assert policy.decorate(b"https://ok.example") == [
        (b"access-control-allow-origin", b"https://ok.example"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"x-total"),
    ]
    assert policy.decorate(b"https://evil.example") == []


# --- RoutePolicy and Forward ----------------------------------------------------------------------


def test_no_policy_carries_istio_defaults_only() -> None:
    assert NO_POLICY.timeout == 0.0
    assert NO_POLICY.retry is DEFAULT_RETRY
    unset = (NO_POLICY.fault, NO_POLICY.request_ops, NO_POLICY.response_ops, NO_POLICY.rewrite)
    assert unset == (None, None, None, None) and NO_POLICY.cors is None
    assert POLICY_OFF.retry is None
    assert POLICY_OFF.describe()["retries"] == {"attempts": 0}


class _Balancer:
    def pick(self) -> Endpoint | None:
        return None

    def release(self, endpoint: Endpoint) -> None:
        pass


def test_forward_defaults_to_no_policy() -> None:
    upstream = Upstream("outbound|80||a.default", Endpoint("::1", 80), _Balancer())
    assert Forward(upstream, (), None).policy is NO_POLICY
    policy = RoutePolicy(timeout=2.0)
    assert Forward(upstream, (), 2.0, "r", policy).policy is policy


def test_describe_shows_what_is_set() -> None:
    policy = RoutePolicy(
        timeout=0.5,
        fault=FaultPolicy(abort_status=400, abort_numerator=1_000_000),
        rewrite=Rewrite(prefix=b"/v1", matched=4),
    )
    assert policy.describe() == {
        "timeout": 0.5,
        "retries": DEFAULT_RETRY.describe(),
        "fault": {"abort": {"httpStatus": 400, "percent": 100.0}},
        "rewrite": {"uri": "/v1", "matchedLength": 4},
    }


def test_finalize_request_runs_ops_then_host_then_path_rewrite() -> None:
    policy = RoutePolicy(
        request_ops=HeaderOps(set=((b"x-env", b"canary"),), remove=(b"cookie",)),
        rewrite=Rewrite(prefix=b"/v1", matched=len(b"/ratings"), authority=b"ratings.internal"),
    )
    path, authority, headers = policy.finalize_request(
        b"/ratings/0?u=1", b"ratings:9080", [(b"cookie", b"c"), (b"accept", b"*/*")]
    )
    assert (path, authority) == (b"/v1/0?u=1", b"ratings.internal")
    assert headers == [
        (b"accept", b"*/*"),
        (b"x-env", b"canary"),
        (b"x-envoy-original-host", b"ratings:9080"),
        (b"x-envoy-original-path", b"/ratings/0?u=1"),
    ]


def test_finalize_request_without_a_path_rewrite_keeps_the_path_and_adds_nothing() -> None:
    policy = RoutePolicy(request_ops=HeaderOps(add=((b"x-a", b"1"),)))
    assert policy.finalize_request(b"/p", b"h", []) == (b"/p", b"h", [(b"x-a", b"1")])


def test_overwrite_replaces_the_upstream_s_values() -> None:
    upstream = [(b"access-control-allow-origin", b"*"), (b"x", b"1")]
    decorated = [(b"access-control-allow-origin", b"https://ok.example")]
    assert overwrite(upstream, decorated) == [
        (b"x", b"1"),
        (b"access-control-allow-origin", b"https://ok.example"),
    ]
    assert overwrite(upstream, []) is upstream


def test_local_headers_are_the_response_ops_on_an_empty_reply() -> None:
    ops = HeaderOps(set=((b"x-a", b"1"),), inline=INLINE_RESPONSE)
    assert RoutePolicy(response_ops=ops).local_headers == ((b"x-a", b"1"),)
    assert NO_POLICY.local_headers == ()


def test_a_client_s_original_path_header_is_replaced() -> None:
    policy = RoutePolicy(rewrite=Rewrite(prefix=b"/b", matched=2))
    _, _, headers = policy.finalize_request(b"/a/x", b"h", [(b"x-envoy-original-path", b"/lie")])
    assert headers == [(b"x-envoy-original-path", b"/a/x")]
