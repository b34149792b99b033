"""An access-log record with usual values, for the log tests to vary one field at a time."""

from __future__ import annotations

from shadowmesh.observe.accesslog import AccessRecord


def record(**changes: object) -> AccessRecord:
    values: dict[str, object] = dict(
        start_time=1764118959.123,
        method="GET",
        path="/headers",
        protocol="HTTP/1.1",
        status=200,
        response_flags="",
        bytes_received=0,
        bytes_sent=321,
        duration_ms=3,
        x_forwarded_for="127.0.0.1",
        user_agent="curl/7.88.1",
        request_id="rid-1",
        authority="httpbin:8000",
        upstream_host="127.0.0.1:18081",
        upstream_cluster="outbound|8000|v1|httpbin.default.svc.cluster.local",
    )
    values.update(changes)
    return AccessRecord(**values)  # type: ignore[arg-type]
