"""Value checks and field readers the loader is built from, tested on their own."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from shadowmesh.model import shapes, validate
from shadowmesh.model.fields import Issues, Obj, describe, json_name

# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["httpbin", "a", "v1", "my-name", "a" * 63])
def test_k8s_label_accepts(name: str) -> None:
    assert validate.k8s_label(name) is None


@pytest.mark.parametrize("name", ["", "Httpbin", "-a", "a-", "a.b", "a_b", "a" * 64])
def test_k8s_label_refuses(name: str) -> None:
    assert validate.k8s_label(name) is not None


@pytest.mark.parametrize("name", ["httpbin", "httpbin.v1", "a-b.c-d", "0abc"])
def test_k8s_subdomain_accepts(name: str) -> None:
    assert validate.k8s_subdomain(name) is None


@pytest.mark.parametrize("name", ["", "A", "a..b", ".a", "a.", "a_b", "a" * 254])
def test_k8s_subdomain_refuses(name: str) -> None:
    assert validate.k8s_subdomain(name) is not None


def test_dns1035_label_must_start_with_a_letter() -> None:
    assert validate.dns1035_label("httpbin") is None
    assert validate.dns1035_label("1httpbin") is not None
    assert validate.dns1035_label("http.bin") is not None


def test_subset_names_follow_istio() -> None:
    assert validate.subset_name("v1") is None
    assert validate.subset_name("V1") is None  # Istio's label rule allows upper case
    assert validate.subset_name("") == "subset name cannot be empty"
    assert validate.subset_name("v_1") == "subset name is invalid: v_1"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("http", True), ("http-alt", True), ("h2c", True), ("8080", False), ("a--b", False)]
    + [("Http", False), ("a" * 16, False), ("-http", False), ("a" * 15, True)],
)
def test_iana_svc_name(value: str, ok: bool) -> None:
    assert (validate.iana_svc_name(value) is None) is ok


def test_port_numbers() -> None:
    assert validate.port_number(1) is None
    assert validate.port_number(65535) is None
    assert validate.port_number(0) == "port number 0 must be in the range 1..65535"
    assert validate.port_number(65536) is not None


def test_port_names() -> None:
    assert validate.port_name("http") is None
    assert validate.port_name("http_1") == "invalid port name: http_1"


# --- domains -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "httpbin",
        "httpbin.ns",
        "httpbin.ns.svc.cluster.local",
        "istio.io.",
        "*",
        "*.example.com",
        "*-suffix.example.com",
        "Upper.Example.com",
    ],
)
def test_wildcard_domain_accepts(host: str) -> None:
    assert validate.wildcard_domain(host) is None


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("", "empty domain name not allowed"),
        ("a" * 256, None),
        ("a.*.com", 'domain name "a.*.com" invalid (label "*" invalid)'),
        ("**.com", 'domain name "**.com" invalid (label "**" invalid)'),
        ("a..b", 'domain name "a..b" invalid (label "" invalid)'),
        (
            "example.123",
            'domain name "example.123" invalid (top level domain "123" cannot be all-numeric)',
        ),
        ("under_score", 'domain name "under_score" invalid (label "under_score" invalid)'),
    ],
)
def test_wildcard_domain_refuses(host: str, message: str | None) -> None:
    problem = validate.wildcard_domain(host)
    assert problem is not None
    assert message is None or problem == message


def test_fqdn_refuses_wildcards() -> None:
    assert validate.fqdn("httpbin.local") is None
    assert validate.fqdn("*.local") is not None


def test_ip_address() -> None:
    assert validate.ip_address("127.0.0.1")
    assert validate.ip_address("::1")
    assert not validate.ip_address("localhost")


# --- labels and headers --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["app", "version", "app.kubernetes.io/name", "a_b.c-d"])
def test_label_key_accepts(key: str) -> None:
    assert validate.label_key(key) is None


@pytest.mark.parametrize("key", ["", "-app", "a b", "/name", "Bad_Prefix/name", "a" * 64])
def test_label_key_refuses(key: str) -> None:
    assert validate.label_key(key) is not None


def test_label_value() -> None:
    assert validate.label_value("") is None
    assert validate.label_value("v1.2_3-a") is None
    assert validate.label_value("a b") is not None
    assert validate.label_value("a" * 64) is not None


def test_header_name() -> None:
    assert validate.header_name("x-request-id") is None
    assert validate.header_name("") == "header name cannot be empty"
    assert validate.header_name("a:b") == "header name a:b is not a valid header"


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", Fraction(5)),
        ("1.5s", Fraction(3, 2)),
        ("300ms", Fraction(3, 10)),
        ("1m30s", Fraction(90)),
        ("2h", Fraction(7200)),
        ("1500us", Fraction(3, 2000)),
        ("10µs", Fraction(1, 100000)),
        ("7ns", Fraction(7, 10**9)),
        (".5s", Fraction(1, 2)),
        ("0", Fraction(0)),
        ("-1s", Fraction(-1)),
    ],
)
def test_parse_duration(text: str, seconds: Fraction) -> None:
    assert validate.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "5sec", "1.5.s", "+", "5s5"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        validate.parse_duration(text)


def test_duration_follows_istio_validate_duration() -> None:
    assert validate.duration("1ms") == (0.001, None)
    assert validate.duration("0.5ms") == (None, "duration must be greater than 1ms")
    assert validate.duration("1.0001s") == (None, "only durations to ms precision are supported")


# --- regex ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "/api/v[0-9]+",
        r"\d{3}",
        "(?i)abc",
        "(?P<name>a)",
        r"\(?=literal",
        "[(?=]",
        r"[\]]+",
        "[]a]",
        "[^]a]",
        r"\0",
    ],
)
def test_regex_accepts(pattern: str) -> None:
    assert validate.regex(pattern, "uri") is None


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        ("a(?=b)", "lookahead"),
        ("a(?!b)", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "lookbehind"),
        (r"(a)\1", "a backreference"),
        ("(?P<x>a)(?P=x)", "a backreference"),
        ("(?>a)", "an atomic group"),
        ("a*+", "a possessive quantifier"),
    ],
)
def test_regex_refuses_what_re2_lacks(pattern: str, construct: str) -> None:
    problem = validate.regex(pattern, "uri")
    assert problem is not None
    assert problem.startswith(f'"uri": regex is invalid: {construct} is not supported by RE2')


def test_regex_errors() -> None:
    assert validate.regex("", "headers") == '"headers": regex string match should not be empty'
    assert validate.regex("a" * 1025, "uri") == (
        '"uri": regex is too large, max length allowed is 1024'
    )
    problem = validate.regex("(", "uri")
    assert problem is not None and problem.startswith('"uri": regex is invalid: ')


# --- field readers -------------------------------------------------------------------------


def test_json_name_is_protocs() -> None:
    assert json_name("mirror_percentage") == "mirrorPercentage"
    assert json_name("consecutive_5xx_errors") == "consecutive5xxErrors"
    assert json_name("http1_max_pending_requests") == "http1MaxPendingRequests"
    assert json_name("name") == "name"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "a boolean (true)"),
        (3, "an integer (3)"),
        (1.5, "a number (1.5)"),
        ("v1", 'a string ("v1")'),
        ("x" * 50, 'a string ("' + "x" * 37 + '...")'),
        ({}, "a mapping"),
        ([], "a list"),
        (b"x", "a bytes"),
    ],
)
def test_describe(value: Any, text: str) -> None:
    assert describe(value) == text


def test_obj_reads_both_proto_spellings_and_reports_paths_as_written() -> None:
    issues = Issues(kind="VirtualService")
    obj = Obj.of(
        {"mirror_percent": 5, "name": "a"},
        "spec.http[0]",
        issues,
        ["mirror_percent", "name"],
        proto=True,
    )
    assert obj is not None
    assert obj.integer("mirrorPercent") == 5
    assert obj.path("mirrorPercent") == "spec.http[0].mirror_percent"
    assert obj.path("timeout") == "spec.http[0].timeout"
    assert obj.present() == ["mirrorPercent", "name"]
    assert issues.errors == []


def test_obj_kubernetes_fields_have_one_spelling() -> None:
    issues = Issues(kind="Service")
    Obj.of({"target_port": 80}, "spec.ports[0]", issues, ["targetPort"], proto=False)
    assert issues.errors == [
        ("spec.ports[0].target_port", 'unknown field "target_port" (did you mean "targetPort"?)')
    ]


def test_obj_null_is_absent_and_wrong_types_are_reported() -> None:
    issues = Issues(kind="X")
    obj = Obj.of({"a": None, "b": "x", "c": [1, "y"]}, "", issues, ["a", "b", "c"], proto=False)
    assert obj is not None
    assert not obj.has("a") and obj.text("a") is None
    assert obj.integer("b") is None
    assert obj.texts("c") == ("y",)
    assert issues.errors == [
        ("b", 'must be an integer, got a string ("x")'),
        ("c[0]", "must be a string, got an integer (1)"),
    ]


def test_obj_of_a_non_mapping() -> None:
    issues = Issues(kind="X")
    assert Obj.of([1], "spec", issues, [], proto=False) is None
    assert issues.errors == [("spec", "must be a mapping, got a list")]


def test_issues_warnings_are_deduplicated_and_prefixed() -> None:
    issues = Issues(kind="VirtualService", namespace="ns", name="a", tail="it still works")
    issues.warn("w")
    issues.warn("w")
    issues.not_acted_on("spec.x")
    assert issues.warnings == [
        "w",
        "VirtualService ns/a: spec.x is not acted on by shadowmesh yet; it still works",
    ]


# --- shapes of not-acted-on fields ---------------------------------------------------------


def check(value: Any, shape: shapes.Shape) -> list[tuple[str, str]]:
    issues = Issues(kind="X")
    shapes.check(value, shape, "f", issues)
    return issues.errors


def test_shapes_accept_valid_values_in_both_spellings() -> None:
    assert check({"attempts": 3, "per_try_timeout": "2s", "retryOn": "5xx"}, shapes.RETRIES) == []
    pool = {"http": {"http1MaxPendingRequests": 1, "idle_timeout": "1s"}, "tcp": {}}
    assert check(pool, shapes.CONNECTION_POOL) == []
    assert check({"consecutive_5xx_errors": 5}, shapes.OUTLIER_DETECTION) == []
    both = {"consecutive_5xx_errors": 5, "consecutive5xxErrors": 6}
    ((path, message),) = check(both, shapes.OUTLIER_DETECTION)
    assert path == "f.consecutive5xxErrors"
    assert message.startswith('field "consecutive5xxErrors" is set twice')


def test_shapes_report_unknown_fields_and_types() -> None:
    assert check({"atempts": 3}, shapes.RETRIES) == [
        ("f.atempts", 'unknown field "atempts" (did you mean "attempts"?)')
    ]
    assert check({"attempts": "3"}, shapes.RETRIES) == [
        ("f.attempts", 'must be an integer, got a string ("3")')
    ]
    assert check({"request": {"set": {"a": 1}}}, shapes.HEADERS) == [
        ("f.request.set.a", "must be a string, got an integer (1)")
    ]
    assert check({"allowOrigins": [{"exact": "a"}, "b"]}, shapes.CORS_POLICY) == [
        ("f.allowOrigins[1]", 'must be a mapping, got a string ("b")')
    ]
    assert check({"allowMethods": "GET"}, shapes.CORS_POLICY) == [
        ("f.allowMethods", 'must be a list, got a string ("GET")')
    ]
    assert check({"request": {"set": []}}, shapes.HEADERS) == [
        ("f.request.set", "must be a mapping, got a list")
    ]
    assert check(None, shapes.RETRIES) == []
