"""An HTTPRoute's policy fields read and validated with Istio's rules and wording
(model.httppolicy): headers, retries, fault, rewrite, redirect, directResponse, corsPolicy."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from shadowmesh.errors import ConfigErrors
from shadowmesh.model.load import load_raw, load_text
from shadowmesh.model.resources import (
    CorsPolicy,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFault,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    Percent,
    StringMatch,
    VirtualService,
)

DEST = [{"destination": {"host": "ratings", "subset": "v1"}}]


def vs(http: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "ratings", "namespace": "ns"},
        "spec": {"hosts": ["ratings"], "http": http},
    }


def parsed(**fields: Any) -> HTTPRoute:
    document = load_raw(vs([{"route": DEST, **fields}]), "t.yaml", 0)
    resource = document.resource
    assert isinstance(resource, VirtualService)
    return resource.http[0]


def warnings(**fields: Any) -> tuple[str, ...]:
    return load_raw(vs([{"route": DEST, **fields}]), "t.yaml", 0).warnings


def errors(http: dict[str, Any]) -> list[tuple[str, str]]:
    text = yaml.safe_dump(vs([http]), sort_keys=False)
    with pytest.raises(ConfigErrors) as caught:
        load_text(text, "t.yaml")
    return [(e.field, e.message) for e in caught.value.errors]


def error(**fields: Any) -> tuple[str, str]:
    (only,) = errors({"route": DEST, **fields})
    return only


# --- retries -------------------------------------------------------------------------------------


def test_retries_are_read() -> None:
    retries = {"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,connect-failure"}
    assert parsed(retries=retries).retries == HTTPRetry(
        attempts=3, per_try_timeout=2.0, retry_on="gateway-error,connect-failure"
    )


def test_no_retries_is_none_and_empty_retries_is_attempts_zero() -> None:
    assert parsed().retries is None
    assert parsed(retries={}).retries == HTTPRetry(attempts=0)


def test_negative_attempts() -> None:
    assert error(retries={"attempts": -1}) == (
        "spec.http[0].retries.attempts",
        "attempts cannot be negative",
    )


@pytest.mark.parametrize(
    "extra", [{"perTryTimeout": "1s"}, {"retryOn": "5xx"}, {"retryRemoteLocalities": False}]
)
def test_policy_with_attempts_zero_is_refused(extra: dict[str, Any]) -> None:
    assert error(retries={"attempts": 0, **extra}) == (
        "spec.http[0].retries",
        "http retry policy configured when attempts are set to 0 (disabled)",
    )


def test_retry_on_is_checked_untrimmed_as_istio_does() -> None:
    assert error(retries={"attempts": 2, "retryOn": "5xx, reset"}) == (
        "spec.http[0].retries.retryOn",
        '" reset" is not a valid retryOn policy',
    )
    assert error(retries={"attempts": 2, "retryOn": "5xx,nope"})[1] == (
        '"nope" is not a valid retryOn policy'
    )


def test_retry_on_status_codes_are_those_go_knows() -> None:
    assert parsed(retries={"attempts": 2, "retryOn": "503,429,cancelled"}).retries is not None
    assert error(retries={"attempts": 2, "retryOn": "599"})[1] == (
        '"599" is not a valid retryOn policy'
    )


def test_per_try_timeout_in_whole_milliseconds() -> None:
    assert error(retries={"attempts": 2, "perTryTimeout": "1.0005s"}) == (
        "spec.http[0].retries.perTryTimeout",
        "only durations to ms precision are supported",
    )


def test_typo_inside_retries() -> None:
    assert error(retries={"attempts": 2, "atempts": 3}) == (
        "spec.http[0].retries.atempts",
        'unknown field "atempts" (did you mean "attempts"?)',
    )


# --- fault ---------------------------------------------------------------------------------------

BOOKINFO_DELAY = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        percentage:
          value: 100.0
        fixedDelay: 7s
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"""


def test_bookinfo_delay_file() -> None:
    (document,) = load_text(BOOKINFO_DELAY, "virtual-service-ratings-test-delay.yaml").documents
    assert isinstance(document.resource, VirtualService)
    assert document.resource.http[0].fault == HTTPFault(
        delay=7.0, delay_chance=Percent(1_000_000, 1_000_000)
    )
    assert document.resource.http[1].fault is None


def test_bookinfo_abort_file() -> None:
    fault = {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}}
    assert parsed(fault=fault).fault == HTTPFault(
        abort_status=500, abort_chance=Percent(1_000_000, 1_000_000)
    )


def test_percentage_is_value_times_ten_thousand_of_a_million_truncated() -> None:
    fault = {"abort": {"percentage": {"value": 0.00015}, "httpStatus": 503}}
    assert parsed(fault=fault).fault == HTTPFault(abort_status=503, abort_chance=Percent(1, 10**6))


def test_missing_percentage_means_never() -> None:
    # The delay falls back to the deprecated integer percent (0), the abort to Envoy's 0/100.
    assert parsed(fault={"delay": {"fixedDelay": "1s"}}).fault == HTTPFault(
        delay=1.0, delay_chance=Percent(0, 100)
    )
    assert parsed(fault={"abort": {"httpStatus": 500}}).fault == HTTPFault(
        abort_status=500, abort_chance=Percent(0, 100)
    )


def test_deprecated_percent_is_of_a_hundred() -> None:
    assert parsed(fault={"delay": {"fixedDelay": "5s", "percent": 30}}).fault == HTTPFault(
        delay=5.0, delay_chance=Percent(30, 100)
    )


def test_fault_needs_abort_or_delay() -> None:
    assert error(fault={}) == (
        "spec.http[0].fault",
        "HTTP fault injection must have an abort and/or a delay",
    )


@pytest.mark.parametrize(("value", "shown"), [(150, "150"), (0.00001, "1e-05"), (-1, "-1")])
def test_percentage_range(value: float, shown: str) -> None:
    fault = {"abort": {"httpStatus": 500, "percentage": {"value": value}}}
    assert error(fault=fault) == (
        "spec.http[0].fault.abort.percentage",
        f"percentage {shown} is neither 0.0, nor in range [0.0001, 100.0]",
    )


def test_http_status_range() -> None:
    assert error(fault={"abort": {"httpStatus": 199}}) == (
        "spec.http[0].fault.abort.httpStatus",
        "HTTP status 199 is not in range 200-599",
    )
    # Istio's check lets 600 through, its message notwithstanding.
    assert parsed(fault={"abort": {"httpStatus": 600}}).fault is not None


def test_grpc_status() -> None:
    fault = {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 50}}}
    assert parsed(fault=fault).fault == HTTPFault(
        abort_status=200, abort_grpc="UNAVAILABLE", abort_chance=Percent(500_000, 10**6)
    )
    assert error(fault={"abort": {"grpcStatus": "NOPE"}})[1].startswith(
        'gRPC status "NOPE" is not supported. See https://github.com/grpc/grpc/blob/master/doc/'
    )


def test_http2_error_and_exponential_delay_are_refused() -> None:
    assert error(fault={"abort": {"http2Error": "CANCEL"}})[1] == (
        "HTTP/2 abort fault injection not supported yet"
    )
    assert error(fault={"delay": {"exponentialDelay": "1s"}})[1] == (
        "exponentialDelay not supported yet"
    )


def test_abort_without_error_type_warns_and_is_dropped() -> None:
    fault = {"abort": {"percentage": {"value": 10}}, "delay": {"fixedDelay": "1s"}}
    assert parsed(fault=fault).fault == HTTPFault(delay=1.0, delay_chance=Percent(0, 100))
    assert (
        "VirtualService ns/ratings: spec.http[0].fault.abort: abort configured, but error type "
        "not set"
    ) in warnings(fault=fault)


def test_fault_delay_of_a_microsecond_is_the_crd_rule() -> None:
    assert error(fault={"delay": {"fixedDelay": "500us"}}) == (
        "spec.http[0].fault.delay.fixedDelay",
        'Invalid value: "string": must be a valid duration greater than 1ms',
    )


# --- headers -------------------------------------------------------------------------------------


def test_headers_are_read_for_the_route_and_its_destinations() -> None:
    route = [{**DEST[0], "headers": {"response": {"remove": ["server"]}}}]
    http = parsed(route=route, headers={"request": {"set": {"x-a": "1"}, "add": {"x-b": "2"}}})
    assert http.headers == Headers(
        request=HeaderOperations(set=(("x-a", "1"),), add=(("x-b", "2"),))
    )
    assert http.route[0].headers == Headers(response=HeaderOperations(remove=("server",)))


COLON = 'header cannot have ":" prefix'
HOST = "cannot set Host header"
FORMAT = "header value configuration: invalid header configuration."


@pytest.mark.parametrize(
    ("headers", "field", "message"),
    [
        (
            {"request": {"set": {":path": "/x"}}},
            "request.set.:path",
            f'invalid header ":path": {COLON}',
        ),
        ({"request": {"remove": ["Host"]}}, "request.remove[0]", f'invalid header "Host": {HOST}'),
        (
            {"response": {"set": {"host": "a"}}},
            "response.set.host",
            f'invalid header "host": {HOST}',
        ),
        ({"response": {"add": {"": "a"}}}, "response.add.", "header name cannot be empty"),
        (
            {"request": {"add": {"x": "a\x01b"}}},
            "request.add.x",
            "header value configuration a\x01b is invalid",
        ),
        ({"request": {"add": {"x": "50%"}}}, "request.add.x", f"{FORMAT} Un-escaped %"),
        (
            {"request": {"add": {"x": "%START"}}},
            "request.add.x",
            f"{FORMAT} Un-terminated variable expression '%START'",
        ),
    ],
)
def test_header_operations_are_checked(headers: dict[str, Any], field: str, message: str) -> None:
    assert error(headers=headers) == (f"spec.http[0].headers.{field}", message)


def test_host_may_be_set_in_request_headers() -> None:
    http = parsed(headers={"request": {"set": {"host": "a.example"}}})
    assert http.headers is not None and http.headers.request.set == (("host", "a.example"),)


def test_authority_set_twice_is_refused() -> None:
    assert error(headers={"request": {"set": {":authority": "b"}}}, rewrite={"authority": "a"}) == (
        "spec.http[0]",
        'authority header cannot be set multiple times: have "a", attempting to set "b"',
    )


def test_formatters_are_accepted_with_a_warning() -> None:
    headers = {"request": {"set": {"x-host": "%HOSTNAME%", "x-pct": "100%%"}}}
    notes = [w for w in warnings(headers=headers) if "formatters" in w]
    assert notes == [
        "VirtualService ns/ratings: spec.http[0].headers.request.set.x-host: Envoy's %VARIABLE% "
        "formatters are not evaluated by shadowmesh"
    ]


# --- rewrite -------------------------------------------------------------------------------------


def test_rewrite_is_read() -> None:
    assert parsed(rewrite={"uri": "/v1", "authority": "a"}).rewrite == HTTPRewrite("/v1", None, "a")
    regex = {"uriRegexRewrite": {"match": "^/b/(.*)$", "rewrite": "/\\1"}}
    assert parsed(rewrite=regex).rewrite == HTTPRewrite(uri_regex=("^/b/(.*)$", "/\\1"))


def test_rewrite_rules() -> None:
    assert error(rewrite={"uri": "/a", "uriRegexRewrite": {"match": "a", "rewrite": "b"}})[1] == (
        "rewrite may only contain one of URI or UriRegexRewrite"
    )
    assert error(rewrite={})[1] == (
        "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of "
        "URI or UriRegexRewrite may be specified"
    )
    found = errors({"route": DEST, "rewrite": {"uriRegexRewrite": {"match": "a"}}})
    assert [m for _, m in found] == [
        "UriRegexRewrite has errors",
        "UriRegexRewrite requires both Rewrite and Match fields to be specified",
    ]


def test_rewrite_regex_must_be_re2() -> None:
    found = errors(
        {"route": DEST, "rewrite": {"uriRegexRewrite": {"match": "(?=a)", "rewrite": "b"}}}
    )
    assert found[1][1].startswith(
        '"HTTPRewrite.UriRegexRewrite.Match": regex is invalid: lookahead'
    )


def test_rewrite_substitution_group_must_exist() -> None:
    found = errors(
        {"route": DEST, "rewrite": {"uriRegexRewrite": {"match": "^/(a)", "rewrite": "/\\2"}}}
    )
    assert found[1][1] == (
        "Rewrite schema requests 2 matches, but the regexp only has 1 parenthesized subexpressions"
    )


# --- redirect and directResponse ------------------------------------------------------------------


def redirect(**fields: Any) -> HTTPRedirect | None:
    document = load_raw(vs([{"redirect": fields}]), "t.yaml", 0)
    assert isinstance(document.resource, VirtualService)
    return document.resource.http[0].redirect


def redirect_error(value: dict[str, Any], match: Any = None) -> tuple[str, str]:
    http: dict[str, Any] = {"redirect": value}
    if match is not None:
        http["match"] = match
    (only,) = errors(http)
    return only


def test_redirect_is_read_with_its_default_code() -> None:
    assert redirect(uri="/v2", authority="b") == HTTPRedirect(uri="/v2", authority="b", code=301)
    assert redirect(scheme="https", derivePort="FROM_REQUEST_PORT", redirectCode=308) == (
        HTTPRedirect(scheme="https", derive_port="FROM_REQUEST_PORT", code=308)
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"uri": "/a", "prefixRewrite": "/b"}, "redirect may only specify one of uri or "
         "prefix_rewrite"),
        ({"redirectCode": 301}, "redirect must specify URI, authority, scheme, or port"),
        ({"uri": "/a", "redirectCode": 200}, "200 is not a valid redirect code, must be 3xx"),
        ({"scheme": "ftp"}, 'invalid redirect scheme, must be "http" or "https"'),
        ({"port": 70000}, "port number 70000 must be in the range 1..65535"),
    ],
)  # fmt: skip
def test_redirect_rules(value: dict[str, Any], message: str) -> None:
    assert redirect_error(value) == ("spec.http[0].redirect", message)


def test_redirect_prefix_rewrite_needs_prefix_matches() -> None:
    assert redirect_error({"prefixRewrite": "/b"}, [{"uri": {"exact": "/a"}}])[1] == (
        "redirect prefix_rewrite requires all URI matches to use prefix match type"
    )


def test_unsupported_redirect_code_warns() -> None:
    document = load_raw(vs([{"redirect": {"uri": "/a", "redirectCode": 300}}]), "t.yaml", 0)
    assert any("Redirect Code 300 is not yet supported" in w for w in document.warnings)


def test_direct_response_bodies() -> None:
    def direct(value: dict[str, Any]) -> HTTPDirectResponse | None:
        document = load_raw(vs([{"directResponse": value}]), "t.yaml", 0)
        assert isinstance(document.resource, VirtualService)
        return document.resource.http[0].direct_response

    assert direct({"status": 503, "body": {"string": "down"}}) == HTTPDirectResponse(503, b"down")
    assert direct({"status": 200, "body": {"bytes": "aGk="}}) == HTTPDirectResponse(200, b"hi")
    assert direct({"status": 204}) == HTTPDirectResponse(204, None)


def test_direct_response_rules() -> None:
    (only,) = errors({"directResponse": {"status": 700}})
    assert only == ("spec.http[0].directResponse.status", "HTTP status 700 is not in range 200-599")
    (only,) = errors({"directResponse": {"status": 200, "body": {"string": "x" * (1 << 20 | 1)}}})
    assert only[1] == (
        "large direct_responses may impact control plane performance, must be less than 1MB"
    )
    big = load_raw(
        vs([{"directResponse": {"status": 200, "body": {"string": "x" * 200_000}}}]), "t", 0
    )
    assert any("large direct_responses may impact" in w for w in big.warnings)


# --- corsPolicy ----------------------------------------------------------------------------------


def test_cors_policy_is_read() -> None:
    cors = {
        "allowOrigins": [{"exact": "https://a.example"}, {"regex": "https://.*\\.b\\.example"}],
        "allowMethods": ["GET", "POST"],
        "allowHeaders": ["x-a"],
        "exposeHeaders": ["x-b"],
        "maxAge": "24h",
        "allowCredentials": True,
        "unmatchedPreflights": "IGNORE",
    }
    assert parsed(corsPolicy=cors).cors_policy == CorsPolicy(
        allow_origins=(
            StringMatch("exact", "https://a.example"),
            StringMatch("regex", "https://.*\\.b\\.example"),
        ),
        allow_methods=("GET", "POST"),
        allow_headers=("x-a",),
        expose_headers=("x-b",),
        max_age=86400,
        allow_credentials=True,
        unmatched_preflights="IGNORE",
    )


def test_deprecated_allow_origin_is_exact() -> None:
    cors = parsed(corsPolicy={"allowOrigin": ["https://a"]}).cors_policy
    assert cors is not None and cors.allow_origins == (StringMatch("exact", "https://a"),)


@pytest.mark.parametrize(
    ("cors", "message"),
    [
        ({"allowOrigins": [{"exact": ""}]}, "'' is not a valid match type for CORS allow origins"),
        ({"allowMethods": ["get"]}, '"get" is not a supported HTTP method'),
        ({"allowHeaders": ["x a"]}, "header name x a is not a valid header name"),
        ({"maxAge": "1500ms"}, "max_age duration is accurate only to seconds precision"),
    ],
)  # fmt: skip
def test_cors_rules(cors: dict[str, Any], message: str) -> None:
    assert error(corsPolicy=cors)[1] == message


# --- warnings ------------------------------------------------------------------------------------


def test_no_route_policy_warns_now_the_data_plane_acts_on_all_of_it() -> None:
    found = warnings(
        retries={"attempts": 1}, rewrite={"uri": "/"}, fault={"abort": {"httpStatus": 500}}
    )
    assert [w for w in found if " is not acted on" in w] == []


def test_what_retries_cannot_act_on_here_is_warned_about() -> None:
    found = warnings(
        retries={"attempts": 2, "retryOn": "5xx,retriable-headers", "retryRemoteLocalities": True}
    )
    assert [w.split(": ", 1)[1] for w in found if " is not acted on" in w] == [
        "spec.http[0].retries.retryRemoteLocalities is not acted on by shadowmesh yet; shadowmesh"
        " has no locality priorities: a retry goes to another endpoint of the same cluster",
        "spec.http[0].retries.retryOn is not acted on by shadowmesh yet; retriable-headers"
        " retries no response: the x-envoy-retriable-header-names request header is not read",
    ]
    quiet = warnings(retries={"attempts": 2, "retryOn": "5xx", "retryRemoteLocalities": False})
    assert [w for w in quiet if " is not acted on" in w] == []
