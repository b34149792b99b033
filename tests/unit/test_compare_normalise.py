"""Normalising a captured response: headers, content codings, content types, redaction."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib

import pytest

from shadowmesh.compare.capture import CapturedResponse
from shadowmesh.compare.normalise import Redactor, normalise
from shadowmesh.model.comparison import DEFAULT_REDACTIONS, RedactRule, parse_path

KEY = b"k" * 32


def response(
    body: bytes, *headers: tuple[str, str], status: int = 200, truncated: bool = False
) -> CapturedResponse:
    return CapturedResponse(status, tuple(headers), body, truncated, 1.0)


def tree(r: CapturedResponse, rules: tuple[RedactRule, ...] = ()) -> dict[str, object]:
    return normalise(r, Redactor(rules, KEY)).tree


def kind(r: CapturedResponse) -> str:
    return normalise(r, Redactor((), KEY)).body_kind


def test_headers_lower_cased_joined_and_transport_dropped() -> None:
    r = response(
        b"",
        ("Content-Type", "text/plain"),
        ("X-Tag", "a"),
        ("x-tag", "b"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "0"),
        ("Connection", "keep-alive"),
    )
    assert tree(r) == {
        "status": 200,
        "header": {"content-type": "text/plain", "x-tag": "a, b"},
        "body": None,
    }


def test_json_body() -> None:
    r = response(
        b'{"a": [1, 2.5, null, true]}', ("content-type", "application/json; charset=utf-8")
    )
    assert tree(r)["body"] == {"a": [1, 2.5, None, True]}
    assert kind(r) == "json"


def test_problem_json_and_sniffed_json() -> None:
    assert tree(response(b'{"x": 1}', ("content-type", "application/problem+json")))["body"] == {
        "x": 1
    }
    assert tree(response(b" [1]"))["body"] == [1]


def test_broken_json_falls_back_to_text_lines() -> None:
    r = response(b'{"a": 1,\n', ("content-type", "application/json"))
    assert tree(r)["body"] == ['{"a": 1,']
    assert kind(r) == "text"


def test_form_body_repeated_names_become_lists() -> None:
    r = response(b"a=1&b=x+y&a=2&c=", ("content-type", "application/x-www-form-urlencoded"))
    assert tree(r)["body"] == {"a": ["1", "2"], "b": "x y", "c": ""}


def test_text_body_is_lines_in_its_charset() -> None:
    r = response(
        "é\nline two\r\n".encode("latin-1"), ("content-type", "text/plain; charset=latin-1")
    )
    assert tree(r)["body"] == ["é", "line two"]


def test_binary_body_is_length_and_hash() -> None:
    data = bytes(range(256))
    r = response(data, ("content-type", "image/png"))
    assert tree(r)["body"] == {"length": 256, "sha256": hashlib.sha256(data).hexdigest()}
    assert kind(r) == "binary"


def test_gzip_body_is_decoded_before_parsing() -> None:
    data = gzip.compress(json.dumps({"hello": "world"}).encode())
    r = response(data, ("content-type", "application/json"), ("content-encoding", "gzip"))
    assert tree(r)["body"] == {"hello": "world"}
    # The coding stays visible as a header: gzip against identity is a real difference.
    assert tree(r)["header"] == {"content-type": "application/json", "content-encoding": "gzip"}


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_zlib_wrapped_or_raw(wbits: int) -> None:
    packer = zlib.compressobj(wbits=wbits)
    data = packer.compress(b"one\ntwo\n") + packer.flush()
    r = response(data, ("content-type", "text/plain"), ("content-encoding", "deflate"))
    assert tree(r)["body"] == ["one", "two"]


def test_stacked_codings_are_undone_last_first() -> None:
    data = gzip.compress(zlib.compress(b'{"n": 1}'))
    r = response(data, ("content-type", "application/json"), ("content-encoding", "deflate, gzip"))
    assert tree(r)["body"] == {"n": 1}


def test_unknown_or_broken_coding_is_compared_by_hash() -> None:
    r = response(b"\x1b\x00garbage", ("content-encoding", "br"))
    assert kind(r) == "undecodable"
    assert set(tree(r)["body"]) == {"length", "sha256"}  # type: ignore[arg-type]
    assert kind(response(b"not gzip", ("content-encoding", "gzip"))) == "undecodable"


def test_truncated_body_is_never_parsed() -> None:
    r = response(b'{"a": 1, "b"', ("content-type", "application/json"), truncated=True)
    body = tree(r)["body"]
    assert body == {
        "length": 12,
        "sha256": hashlib.sha256(b'{"a": 1, "b"').hexdigest(),
        "truncated": True,
    }
    assert kind(r) == "truncated"


def test_default_redaction_hides_credentials_but_keeps_equality() -> None:
    body = json.dumps(
        {"user": {"Password": "hunter2", "name": "ann"}, "headers": {"Authorization": "Bearer x"}}
    )
    r = response(
        body.encode(),
        ("content-type", "application/json"),
        ("set-cookie", "session=abc"),
        ("authorization", "Bearer x"),
    )
    t = tree(r, DEFAULT_REDACTIONS)
    text = json.dumps(t)
    for secret in ("hunter2", "session=abc", "Bearer x"):
        assert secret not in text
    assert t["body"]["user"]["name"] == "ann"  # type: ignore[index]
    assert t["header"]["set-cookie"].startswith("<redacted:")  # type: ignore[index]
    # The same secret masks to the same text, so a changed secret is still a difference.
    again = tree(r, DEFAULT_REDACTIONS)
    assert again == t
    changed = response(
        body.replace("hunter2", "hunter3").encode(), ("content-type", "application/json")
    )
    assert tree(changed, DEFAULT_REDACTIONS)["body"] != t["body"]


def test_user_redaction_of_body_paths_and_query() -> None:
    rules = (RedactRule(parse_path("body.items[*].ssn")), RedactRule(("query", "sig")))
    r = response(
        b'{"items": [{"ssn": "123"}, {"ssn": "456", "n": 1}]}', ("content-type", "application/json")
    )
    body = tree(r, rules)["body"]
    assert "123" not in json.dumps(body) and "456" not in json.dumps(body)
    assert body["items"][1]["n"] == 1  # type: ignore[index]
    redactor = Redactor(rules, KEY)
    target = redactor.target("/x?a=1&sig=topsecret")
    assert target.startswith("/x?a=1&sig=<redacted:") and "topsecret" not in target
    assert redactor.target("/plain") == "/plain"


def test_a_gzip_bomb_is_not_inflated() -> None:
    bomb = gzip.compress(b"\x00" * (40 * 1024 * 1024))
    r = response(bomb, ("content-type", "text/plain"), ("content-encoding", "gzip"))
    assert kind(r) == "undecodable"


@pytest.mark.parametrize(
    ("rule", "hidden", "kept"),
    [
        ("body.a.**.key", ["x1", "x2", "x3"], ["k4"]),
        ("body.*.key", ["x1"], ["x2", "x3", "k4"]),
        ("body.a.list[1]", ["x3"], ["x1", "x2", "k4"]),
        ("body.**", ["x1", "x2", "x3", "k4"], []),
        ("body.A.KEY", ["x1"], ["x2", "x3", "k4"]),  # redaction ignores case
    ],
)
def test_body_redaction_patterns(rule: str, hidden: list[str], kept: list[str]) -> None:
    body = {"a": {"key": "x1", "b": {"key": "x2"}, "list": [{"k": "k4"}, {"key": "x3"}]}}
    r = response(json.dumps(body).encode(), ("content-type", "application/json"))
    text = json.dumps(tree(r, (RedactRule(parse_path(rule)),))["body"])
    for value in hidden:
        assert value not in text, (rule, value)
    for value in kept:
        assert value in text, (rule, value)
