"""Logs: every logged field escaped, whatever a client put in it; credentials never printed."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowmesh.demo.scenario import _show_headers
from shadowmesh.demo.traffic import Answer
from shadowmesh.observe.accesslog import FIELDS, escape, format_json, format_text
from shadowmesh.observe.redact import SECRET_HEADERS, redact_headers, redacted
from tests.support.records import record

HOSTILE = [
    'evil"\n[2025-01-01T00:00:00.000Z] "GET /forged HTTP/1.1" 200',
    "\r\n\r\nHTTP/1.1 200 OK",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",  # terminal escapes
    "nul\x00byte",
    "del\x7f",
    "\\x41 already escaped-looking",
    "caf\xe9 \u2028 \u202e rtl",  # latin-1, a line separator, a bidi override
    "\ud800 lone surrogate",
    '" "" \\" \\',
    "",
]
# The text line's shape, as tests/e2e/conftest.py reads it: one line, quoted fields.
TEXT_LINE = re.compile(
    r'^\[[^\]]+\] "\S+ \S+ \S+" \d{3} \S+ \d+ \d+ \d+ '
    r'"(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" '
    r'"(?:[^"\\]|\\.)*" \S+ (?:-|shadow)$'
)
TEXT_FIELDS = [name for name in FIELDS if isinstance(getattr(record(), name), str)]


def assert_safe_text(line: str) -> None:
    assert line.isascii() and line.isprintable(), repr(line)
    assert TEXT_LINE.match(line), line


@pytest.mark.parametrize("name", TEXT_FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_every_text_field_is_escaped(name: str, value: str) -> None:
    line = format_text(record(**{name: value}))
    assert_safe_text(line)


@pytest.mark.parametrize("name", TEXT_FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_every_json_field_is_escaped_and_round_trips(name: str, value: str) -> None:
    line = format_json(record(**{name: value}))
    assert line.isascii() and line.isprintable(), repr(line)
    assert json.loads(line)[name] == (value or "-" if name == "response_flags" else value)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text())
def test_any_text_stays_one_printable_line(path: str, agent: str, rid: str) -> None:
    for line in (
        format_text(record(path=path or "/", user_agent=agent, request_id=rid)),
        format_json(record(path=path, user_agent=agent, request_id=rid)),
    ):
        assert "\n" not in line and "\r" not in line
        assert line.isascii() and line.isprintable()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_escape_is_reversible(value: str) -> None:
    # Nothing is lost: a reader can get the exact bytes the client sent back.
    escaped = escape(value)
    assert escaped.isascii() and escaped.isprintable()
    assert '"' not in escaped.replace('\\"', "")
    back = escaped.replace('\\"', '"').encode("ascii").decode("unicode_escape")
    assert back == value


def test_plain_values_are_left_alone() -> None:
    for value in ("curl/7.88.1", "/status/200?x=1&y=%0d%0a", "outbound|8000|v1|a.b"):
        assert escape(value) == value


# --- credentials --------------------------------------------------------------------------------


def test_credential_headers_are_redacted_to_a_digest() -> None:
    headers = {
        "Authorization": "Bearer top-secret",
        "cookie": "session=top-secret",
        "X-Api-Key": "top-secret",
        "Accept": "*/*",
    }
    shown = redact_headers(headers)
    assert shown["Accept"] == "*/*"
    assert all("top-secret" not in v for v in shown.values())
    assert shown["Authorization"] == redacted("Bearer top-secret")
    assert shown["Authorization"].startswith("<redacted:sha256-")
    assert redacted("a") == redacted("a") != redacted("b")
    assert {"authorization", "cookie", "set-cookie", "proxy-authorization"} <= SECRET_HEADERS


def test_the_demo_never_prints_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    echoed = {
        "headers": {
            "Authorization": "Bearer top-secret",
            "Cookie": "session=top-secret",
            "Host": "httpbin:8000",
            "User-Agent": "\x1b[2Jevil",
        }
    }
    _show_headers(Answer(200, json.dumps(echoed).encode()))
    out = capsys.readouterr().out
    assert "top-secret" not in out and "\x1b" not in out
    assert "Host: httpbin:8000" in out and "Authorization: <redacted:sha256-" in out
