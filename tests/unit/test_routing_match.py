"""HTTPMatchRequest semantics: kinds, AND within a block, OR across blocks."""

from __future__ import annotations

from typing import Any

import pytest

from shadowmesh.model.resources import HTTPMatchRequest, StringMatch
from shadowmesh.routing.match import RequestFacts, RouteMatch, parse_query
from shadowmesh.routing.testing import SimpleRequest


def fits(blocks: tuple[HTTPMatchRequest, ...], port: int = 8000, **request: Any) -> bool:
    return RouteMatch(blocks).fits(RequestFacts(SimpleRequest(**request), port))


def exact(v: str) -> StringMatch:
    return StringMatch("exact", v)


def prefix(v: str) -> StringMatch:
    return StringMatch("prefix", v)


def regex(v: str) -> StringMatch:
    return StringMatch("regex", v)


def test_no_blocks_match_everything() -> None:
    assert fits((), method="DELETE", path="/anything?x=1")


def test_an_empty_block_matches_everything() -> None:
    assert fits((HTTPMatchRequest(),), path="/x")


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        (exact("/headers"), "/headers", True),
        (exact("/headers"), "/headers?show_env=1", True),  # the query is not part of the uri
        (exact("/headers"), "/headers/", False),
        (exact("/headers"), "/HEADERS", False),
        (prefix("/api"), "/api/v1", True),
        (prefix("/api"), "/apix", True),
        (prefix("/api"), "/ap", False),
        (regex("/status/[0-9]+"), "/status/418", True),
        (regex("/status/[0-9]+"), "/status/418/x", False),  # whole value, as RE2 full match
        (regex("[0-9]+"), "/status/418", False),
        (regex("/a|/b"), "/b", True),  # alternation is anchored as a whole
        (regex("/a|/b"), "/bc", False),
    ],
)
def test_uri(match: StringMatch, path: str, expected: bool) -> None:
    assert fits((HTTPMatchRequest(uri=match),), path=path) is expected


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        (exact("/Headers"), "/hEADERS", True),
        (prefix("/API"), "/api/v1", True),
        (regex("/api"), "/API", False),  # ignoreUriCase is for exact and prefix only
    ],
)
def test_ignore_uri_case(match: StringMatch, path: str, expected: bool) -> None:
    assert fits((HTTPMatchRequest(uri=match, ignore_uri_case=True),), path=path) is expected


def test_method_scheme_authority() -> None:
    block = HTTPMatchRequest(
        method=exact("POST"), scheme=exact("http"), authority=prefix("httpbin")
    )
    assert fits((block,), method="POST", authority="httpbin:8000")
    assert not fits((block,), method="GET", authority="httpbin:8000")
    assert not fits((block,), method="POST", scheme="https", authority="httpbin:8000")
    assert not fits((block,), method="POST", authority="other:8000")


def test_headers_exact_prefix_regex_and_presence() -> None:
    block = HTTPMatchRequest(
        headers={
            "end-user": exact("jason"),
            "x-version": regex("v[12]"),
            "user-agent": prefix("curl/"),
            "x-canary": None,
        }
    )
    good = {"End-User": "jason", "x-version": "v2", "user-agent": "curl/8.0", "x-canary": ""}
    assert fits((block,), headers=good)
    for name in good:
        assert not fits((block,), headers={k: v for k, v in good.items() if k != name})
    assert not fits((block,), headers={**good, "x-version": "v3"})
    assert not fits((block,), headers={**good, "End-User": "Jason"})


def test_without_headers_holds_when_absent_or_not_matching() -> None:
    block = HTTPMatchRequest(without_headers={"x-debug": exact("1"), "x-internal": None})
    assert fits((block,))
    assert fits((block,), headers={"x-debug": "0"})
    assert not fits((block,), headers={"x-debug": "1"})
    assert not fits((block,), headers={"x-internal": "anything"})


def test_query_params() -> None:
    block = HTTPMatchRequest(query_params={"show_env": exact("1"), "debug": None})
    assert fits((block,), path="/headers?show_env=1&debug")
    assert fits((block,), path="/headers?debug=&show_env=%31")  # values are percent-decoded
    assert not fits((block,), path="/headers?show_env=1")
    assert not fits((block,), path="/headers?show_env=2&debug=1")
    assert not fits((block,), path="/headers")


def test_first_query_value_counts() -> None:
    assert parse_query("/p?a=1&a=2&b&c=x%20y") == {"a": "1", "b": "", "c": "x y"}


def test_port_restricts_to_the_service_port() -> None:
    block = HTTPMatchRequest(port=9000)
    assert fits((block,), port=9000)
    assert not fits((block,), port=8000)


def test_conditions_in_a_block_are_anded() -> None:
    block = HTTPMatchRequest(uri=prefix("/api"), method=exact("GET"), headers={"x-a": None})
    assert fits((block,), path="/api/x", method="GET", headers={"x-a": "1"})
    assert not fits((block,), path="/api/x", method="GET")
    assert not fits((block,), path="/api/x", method="PUT", headers={"x-a": "1"})
    assert not fits((block,), path="/web", method="GET", headers={"x-a": "1"})


def test_blocks_are_ored() -> None:
    blocks = (HTTPMatchRequest(uri=prefix("/api")), HTTPMatchRequest(headers={"x-a": None}))
    assert fits(blocks, path="/api/x")
    assert fits(blocks, path="/web", headers={"x-a": "1"})
    assert not fits(blocks, path="/web")
