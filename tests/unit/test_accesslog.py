"""Access log lines: Envoy's field order, the shadow marker, and no forged lines."""

import json

from shadowmesh.observe.accesslog import format_istio, format_istio_json, format_json, format_text
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


# --- Istio's formats ----------------------------------------------------------------------------

# istio.io's access-log task (docs/tasks/observability/logs/access-log), sleep -> httpbin.
ISTIO_DOCS_LINE = (
    '[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 '
    '"-" "curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" '
    '"10.44.1.27:80" outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 '
    "10.0.45.184:8000 10.44.1.23:46520 - default"
)
ISTIO_DOCS_RECORD = dict(
    start_time=1606339578.409,
    path="/status/418",
    status=418,
    bytes_sent=135,
    duration_ms=4,
    x_forwarded_for="",
    user_agent="curl/7.73.0-DEV",
    request_id="84961386-6d84-929d-98bd-c5aee93b5c88",
    upstream_host="10.44.1.27:80",
    upstream_cluster="outbound|8000||httpbin.foo.svc.cluster.local",
    upstream_service_time=4,
    upstream_local_address="10.44.1.23:37652",
    downstream_local_address="10.0.45.184:8000",
    downstream_remote_address="10.44.1.23:46520",
    route_name="default",
)
# The keys of Istio's EnvoyJSONLogFormatIstio (pilot/pkg/model/telemetry_logging.go).
ISTIO_JSON_KEYS = {
    "start_time", "route_name", "method", "path", "protocol", "response_code", "response_flags",
    "response_code_details", "connection_termination_details", "bytes_received", "bytes_sent",
    "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id",
    "authority", "upstream_host", "upstream_cluster", "upstream_local_address",
    "downstream_local_address", "downstream_remote_address", "requested_server_name",
    "upstream_transport_failure_reason",
}  # fmt: skip


def test_istio_text_line_is_istios_own_example() -> None:
    assert format_istio(record(**ISTIO_DOCS_RECORD)) == ISTIO_DOCS_LINE


def test_istio_text_line_of_local_replies() -> None:
    """No upstream answer: Envoy's details for the flag, no service time, empty fields '-'."""
    no_route = format_istio(
        record(
            status=404,
            response_flags="NR",
            upstream_host="",
            upstream_cluster="",
            bytes_sent=0,
            duration_ms=0,
        )  # fmt: skip
    )
    assert ' 404 NR route_not_found - "-" 0 0 0 - "127.0.0.1" ' in no_route
    assert no_route.endswith('"httpbin:8000" "-" - - - - - -')
    refused = format_istio(record(status=503, response_flags="UF", upstream_service_time=-1))
    assert " 503 UF upstream_reset_before_response_started{connection_failure} - " in refused
    broken = format_istio(record(response_flags="UC", upstream_service_time=2))
    assert " 200 UC upstream_reset_after_response_started{connection_termination} " in broken
    assert len(broken.split('" ')[-1].split()) == 6  # after "UPSTREAM_HOST": 6 fields


def test_istio_json_line_has_istios_keys_and_types() -> None:
    data = json.loads(format_istio_json(record(**ISTIO_DOCS_RECORD)))
    assert set(data) == ISTIO_JSON_KEYS
    assert list(data) == sorted(data)  # Envoy 1.33+ sorts them
    assert data["start_time"] == "2020-11-25T21:26:18.409Z"
    assert data["response_code"] == 418 and data["duration"] == 4 and data["bytes_sent"] == 135
    assert data["upstream_service_time"] == "4"  # a header's value: a string
    assert data["response_code_details"] == "via_upstream"
    assert data["response_flags"] == "-"
    assert data["x_forwarded_for"] is None and data["requested_server_name"] is None
    assert data["upstream_cluster"] == "outbound|8000||httpbin.foo.svc.cluster.local"
    assert data["downstream_remote_address"] == "10.44.1.23:46520"
    assert data["route_name"] == "default" and data["method"] == "GET"
    local = json.loads(format_istio_json(record(status=503, response_flags="UH", upstream_host="")))
    assert local["response_code_details"] == "no_healthy_upstream"
    assert local["upstream_service_time"] is None and local["upstream_host"] is None
    for flags in ("FI", "DI,FI"):
        aborted = record(status=500, response_flags=flags, upstream_host="")
        assert json.loads(format_istio_json(aborted))["response_code_details"] == (
            "fault_filter_abort"
        )


def test_istio_formats_cannot_be_broken_by_a_client_either() -> None:
    line = format_istio(record(user_agent='evil"\n[fake] line', path="/a b\x00"))
    assert "\n" not in line and "\x00" not in line
    assert len(line.split('" ')[-1].split()) == 6
