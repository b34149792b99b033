"""The request target and Host as the proxy checks and normalises them (pure), and what it
removes from shadow copies and from logged targets."""

from __future__ import annotations

import pytest

from shadowmesh.http.request import normalize_path, strip_lines, valid_authority
from shadowmesh.observe.accesslog import DEFAULT_REDACTED_QUERY, redact_query


@pytest.mark.parametrize(
    ("sent", "normalised"),
    [
        (b"/", b"/"),
        (b"/get?a=1", b"/get?a=1"),
        (b"/a/../b", b"/b"),
        (b"/a/./b", b"/a/b"),
        (b"/..", b"/"),
        (b"/../../etc/passwd", b"/etc/passwd"),
        (b"/a/..", b"/"),
        (b"/a/b/.", b"/a/b/"),
        (b"/a/b/..", b"/a/"),
        (b"/a//../b", b"/a/b"),  # slashes are not merged (merge_slashes off)
        (b"//a", b"//a"),
        (b"/%2e%2e/admin", b"/admin"),  # an encoded dot is a dot once decoded
        (b"/public/%2E%2e/admin", b"/admin"),
        (b"/%7euser/%41%62", b"/~user/Ab"),  # unreserved escapes decoded
        (b"/a%2fb%3f", b"/a%2Fb%3F"),  # reserved ones kept, upper-cased
        (b"/50%zz%", b"/50%zz%"),  # not escapes: as sent
        (b"/.well-known/x", b"/.well-known/x"),
        (b"/x?next=/../admin", b"/x?next=/../admin"),  # the query is left as sent
    ],
)
def test_paths_are_normalised_as_envoys_normalize_path(sent: bytes, normalised: bytes) -> None:
    assert normalize_path(sent) == normalised


@pytest.mark.parametrize(
    "host",
    [b"app", b"app:8000", b"app:", b"10.0.0.1:80", b"[::1]", b"[::1]:8080", b"xn--bcher-kva.de"],
)
def test_valid_hosts(host: bytes) -> None:
    assert valid_authority(host)


@pytest.mark.parametrize(
    "host",
    [
        b"a b",
        b"app/x",
        b"app?x",
        b"app#x",
        b"user@app",
        b"app:8x",
        b"a:1:2",
        b":80",
        b"[::1",
        b"[::1]x",
        b"app]",
        b"app\t",
        b"\xffapp",
        b'app"',
    ],
)
def test_invalid_hosts(host: bytes) -> None:
    assert not valid_authority(host)


def test_strip_lines_removes_named_headers_only() -> None:
    lines = b"authorization: Bearer x\r\naccept: */*\r\ncookie: a=b\r\nx-cookie: kept\r\n"
    names = frozenset({b"authorization", b"cookie"})
    assert strip_lines(lines, names) == b"accept: */*\r\nx-cookie: kept\r\n"
    assert strip_lines(b"cookie: a\r\n", names) == b""


def test_credentials_in_query_strings_are_redacted() -> None:
    names = frozenset(n.lower().encode() for n in DEFAULT_REDACTED_QUERY)
    assert redact_query(b"/get", names) == b"/get"
    assert redact_query(b"/get?q=1&page=2", names) == b"/get?q=1&page=2"
    assert (
        redact_query(b"/s?API_KEY=abc&q=1&token=t&X-Amz-Signature=s&sig=", names)
        == b"/s?API_KEY=REDACTED&q=1&token=REDACTED&X-Amz-Signature=REDACTED&sig="
    )
    assert redact_query(b"/s?api%5Fkey=abc&keyword=x", names) == b"/s?api%5Fkey=REDACTED&keyword=x"
    assert redact_query(b"/s?token", names) == b"/s?token"
    assert redact_query(b"/s?token=a", frozenset()) == b"/s?token=a"
