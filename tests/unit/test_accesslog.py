"""Access log lines: Envoy's field order, the shadow marker, and no forged lines."""

import json

from shadowmesh.observe.accesslog import format_json, format_text
from tests.support.records import record


def test_text_line_reads_like_envoy() -> None:
    assert format_text(record()) == (
        '[2025-11-26T01:02:39.123Z] "GET /headers HTTP/1.1" 200 - 0 321 3 "127.0.0.1" '
        '"curl/7.88.1" "rid-1" "httpbin:8000" "127.0.0.1:18081" '
        "outbound|8000|v1|httpbin.default.svc.cluster.local -"
    )


def test_shadow_and_flags_are_marked() -> None:
    line = format_text(record(shadow=True, status=503, response_flags="UF"))
    assert " 503 UF " in line and line.endswith(" shadow")


def test_client_supplied_fields_cannot_break_the_line() -> None:
    line = format_text(record(user_agent='evil"\n[fake] line', path="/a\x00b"))
    assert "\n" not in line and "\x00" not in line
    assert '\\"' in line


def test_json_line() -> None:
    data = json.loads(format_json(record(shadow=True)))
    assert data["shadow"] is True and data["status"] == 200
    assert data["start_time"] == "2025-11-26T01:02:39.123Z"
    assert data["response_flags"] == "-"
