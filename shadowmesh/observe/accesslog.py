"""Access log records and writers, in the shape of Envoy's default format, or Istio's.

``text`` and ``json``: one line per primary request and one per shadow. The text line reads
like Envoy's, with one field added at the end: ``-`` for a primary, ``shadow`` for a mirrored
copy. ``istio`` and ``istio-json``: Istio's default formats field for field (istio/istio
``pilot/pkg/model/telemetry_logging.go``: ``EnvoyTextLogFormat`` and the JSON keys of
``EnvoyJSONLogFormatIstio``), one line per primary only, as a client sidecar logs no shadow.
Lines are written in batches once per event-loop turn, so logging costs a list append on the
request path.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import IO, Any, Literal
from urllib.parse import unquote_to_bytes

Format = Literal["text", "json", "istio", "istio-json"]
FORMATS: tuple[Format, ...] = ("text", "json", "istio", "istio-json")


FIELDS = (
    "start_time",
    "method",
    "path",
    "protocol",
    "status",
    "response_flags",
    "bytes_received",
    "bytes_sent",
    "duration_ms",
    "x_forwarded_for",
    "user_agent",
    "request_id",
    "authority",
    "upstream_host",
    "upstream_cluster",
    "shadow",
)
# What only Istio's formats print; not in the ``json`` format's keys.
ISTIO_FIELDS = (
    "upstream_service_time",
    "upstream_local_address",
    "downstream_local_address",
    "downstream_remote_address",
    "route_name",
    "requested_server_name",
)

# %RESPONSE_CODE_DETAILS% by response flag, for an answer the upstream did not start (Envoy's
# StreamInfo::ResponseCodeDetails); an upstream's answer is ``via_upstream``, one it started and
# broke off is ``upstream_reset_after_response_started{...}``.
_LOCAL_DETAILS = {
    "NR": "route_not_found",
    "NC": "cluster_not_found",
    "UH": "no_healthy_upstream",
    "UT": "response_timeout",
    "UF": "upstream_reset_before_response_started{connection_failure}",
    "UC": "upstream_reset_before_response_started{connection_termination}",
    "UPE": "upstream_reset_before_response_started{protocol_error}",
    "DC": "downstream_remote_disconnect",
    "FI": "fault_filter_abort",
    "DI,FI": "fault_filter_abort",
}
_STARTED_DETAILS = {
    "": "via_upstream",
    "UT": "response_timeout",
    "UC": "upstream_reset_after_response_started{connection_termination}",
    "UPE": "upstream_reset_after_response_started{protocol_error}",
    "DC": "downstream_remote_disconnect",
}


class AccessRecord:
    """One access log line's fields. A plain class with __slots__: one is made per request (a
    dataclass's generated __init__ stays interpreted under mypyc; see routing/decision.py)."""

    __slots__ = FIELDS + ISTIO_FIELDS

    def __init__(
        self,
        start_time: float,  # epoch seconds
        method: str,
        path: str,
        protocol: str,
        status: int,
        response_flags: str,
        bytes_received: int,
        bytes_sent: int,
        duration_ms: int,
        x_forwarded_for: str,
        user_agent: str,
        request_id: str,
        authority: str,
        upstream_host: str,
        upstream_cluster: str,
        shadow: bool = False,
        upstream_service_time: int = -1,  # ms, upstream request to its head; -1: no head
        upstream_local_address: str = "",
        downstream_local_address: str = "",
        downstream_remote_address: str = "",
        route_name: str = "",
        requested_server_name: str = "",  # the SNI name of a TLS connection
    ) -> None:
        self.start_time = start_time
        self.method = method
        self.path = path
        self.protocol = protocol
        self.status = status
        self.response_flags = response_flags
        self.bytes_received = bytes_received
        self.bytes_sent = bytes_sent
        self.duration_ms = duration_ms
        self.x_forwarded_for = x_forwarded_for
        self.user_agent = user_agent
        self.request_id = request_id
        self.authority = authority
        self.upstream_host = upstream_host
        self.upstream_cluster = upstream_cluster
        self.shadow = shadow
        self.upstream_service_time = upstream_service_time
        self.upstream_local_address = upstream_local_address
        self.downstream_local_address = downstream_local_address
        self.downstream_remote_address = downstream_remote_address
        self.route_name = route_name
        self.requested_server_name = requested_server_name

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


class _Second:
    """The last whole second formatted, and its text."""

    __slots__ = ("whole", "text")

    def __init__(self) -> None:
        self.whole = -1
        self.text = ""


_second = _Second()


def iso_time(epoch: float) -> str:
    """``2026-11-26T01:02:03.456Z``; the seconds part is formatted once per second."""
    whole = int(epoch)
    last = _second
    if whole != last.whole:
        last.whole, last.text = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return last.text + _MILLIS[int(epoch * 1000) % 1000]


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def escape(value: str) -> str:
    """Printable ASCII only: control bytes, DEL and anything past 0x7e become ``\\xNN``-style
    escapes, and a backslash or a quote is escaped too.

    A client controls most logged fields: it must never forge a line, a field boundary or a
    terminal escape sequence in whoever reads the log.
    """
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value  # the usual case, without building a new string
    return value.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _word(value: str) -> str:
    """A space-separated field: escaped, and its spaces too, so it stays one field."""
    if not value:
        return "-"
    text = escape(value)
    return text.replace(" ", "\\x20") if " " in text else text


# The request's HTTP version as the parser gives it -> the log's protocol; "" (a request refused
# before its version was read) is logged as ``-``.
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "0.9": "HTTP/0.9"}


def _protocol(value: str) -> str:
    return value if value == "HTTP/1.1" or value == "HTTP/1.0" else _word(value)


def _quoted(value: str) -> str:
    return f'"{escape(value)}"' if value else '"-"'


def format_text(r: AccessRecord) -> str:
    q = _quoted
    return (
        f"[{iso_time(r.start_time)}] "
        f'"{_word(r.method)} {_word(r.path)} {_protocol(r.protocol)}" '
        f"{r.status} {_word(r.response_flags)} {r.bytes_received} {r.bytes_sent} "
        f"{r.duration_ms} {q(r.x_forwarded_for)} {q(r.user_agent)} {q(r.request_id)} "
        f"{q(r.authority)} {q(r.upstream_host)} {_word(r.upstream_cluster)} "
        f"{'shadow' if r.shadow else '-'}"
    )


def format_json(r: AccessRecord) -> str:
    record = r.as_dict()
    record["start_time"] = iso_time(r.start_time)
    record["response_flags"] = r.response_flags or "-"
    return json.dumps(record, separators=(",", ":"))


def response_code_details(r: AccessRecord) -> str:
    flag = r.response_flags
    if flag not in _LOCAL_DETAILS and flag not in _STARTED_DETAILS:
        flag = flag.partition(",")[0]  # "UF,URX": the reset's details (Envoy's)
    if r.upstream_service_time >= 0:
        return _STARTED_DETAILS.get(flag, "via_upstream")
    return _LOCAL_DETAILS.get(flag, "-")


def _service_time(r: AccessRecord) -> str:
    return str(r.upstream_service_time) if r.upstream_service_time >= 0 else "-"


def format_istio(r: AccessRecord) -> str:
    """Istio's ``EnvoyTextLogFormat``, operator for operator; ``-`` where Envoy has no value
    (no TLS: no transport failure reason, no server name)."""
    q = _quoted
    return (
        f"[{iso_time(r.start_time)}] "
        f'"{_word(r.method)} {_word(r.path)} {_protocol(r.protocol)}" '
        f"{r.status} {_word(r.response_flags)} {response_code_details(r)} - "
        f'"-" {r.bytes_received} {r.bytes_sent} {r.duration_ms} {_service_time(r)} '
        f"{q(r.x_forwarded_for)} {q(r.user_agent)} {q(r.request_id)} {q(r.authority)} "
        f"{q(r.upstream_host)} {_word(r.upstream_cluster)} {_word(r.upstream_local_address)} "
        f"{_word(r.downstream_local_address)} {_word(r.downstream_remote_address)} "
        f"{_word(r.requested_server_name)} {_word(r.route_name)}"
    )


def format_istio_json(r: AccessRecord) -> str:
    """Istio's JSON keys, as Envoy 1.33+ writes them: sorted, numbers as numbers, a missing
    value ``null``; a header's value (upstream_service_time) stays a string."""
    record = {
        "authority": r.authority or None,
        "bytes_received": r.bytes_received,
        "bytes_sent": r.bytes_sent,
        "connection_termination_details": None,
        "downstream_local_address": r.downstream_local_address or None,
        "downstream_remote_address": r.downstream_remote_address or None,
        "duration": r.duration_ms,
        "method": r.method or None,
        "path": r.path or None,
        "protocol": r.protocol,
        "request_id": r.request_id or None,
        "requested_server_name": r.requested_server_name or None,
        "response_code": r.status,
        "response_code_details": _none(response_code_details(r)),
        "response_flags": r.response_flags or "-",
        "route_name": r.route_name or None,
        "start_time": iso_time(r.start_time),
        "upstream_cluster": r.upstream_cluster or None,
        "upstream_host": r.upstream_host or None,
        "upstream_local_address": r.upstream_local_address or None,
        "upstream_service_time": _none(_service_time(r)),
        "upstream_transport_failure_reason": None,
        "user_agent": r.user_agent or None,
        "x_forwarded_for": r.x_forwarded_for or None,
    }
    return json.dumps(record, separators=(",", ":"))


def _none(text: str) -> str | None:
    return None if text == "-" else text


_FORMATTERS = {
    "text": format_text,
    "json": format_json,
    "istio": format_istio,
    "istio-json": format_istio_json,
}


# Query parameters whose values are credentials often enough that a log must not keep them:
# API keys and OAuth tokens passed in URLs, and the signed-URL schemes of S3, GCS and Azure.
DEFAULT_REDACTED_QUERY = (
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "auth",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
)
REDACTED = b"REDACTED"


def redact_query(target: bytes, names: frozenset[bytes]) -> bytes:
    """``target`` with the value of each query parameter named in ``names`` (lower case,
    matched in any case and percent-decoded) replaced by ``REDACTED``."""
    query = target.find(b"?")
    if query < 0 or not names:
        return target
    pairs = target[query + 1 :].split(b"&")
    changed = False
    for i, pair in enumerate(pairs):
        name, equals, value = pair.partition(b"=")
        if not equals or not value:
            continue
        key = name
        if b"%" in key or b"+" in key:
            key = unquote_to_bytes(key.replace(b"+", b" "))
        key = key.lower()
        if key in names:
            pairs[i] = name + b"=" + REDACTED
            changed = True
    return target[: query + 1] + b"&".join(pairs) if changed else target


class AccessLog:
    """Buffers formatted lines and writes them once per loop turn; ``None`` stream: disabled.

    ``redact``: query parameters whose values are never written (``redact_query``)."""

    def __init__(
        self, stream: IO[str] | None, fmt: Format = "text", redact: Iterable[str] = ()
    ) -> None:
        self._stream = stream
        self._redact = frozenset(n.lower().encode("latin-1") for n in redact)
        self._format = _FORMATTERS[fmt]
        self._pending: list[str] = []
        # Istio's formats: addresses and route names are wanted, shadows are not logged.
        self.istio = fmt == "istio" or fmt == "istio-json"

    def reopen(self, stream: IO[str]) -> None:
        """Write to ``stream`` from now on (SIGHUP after a logrotate); the old one is flushed
        and closed."""
        self.flush()
        old, self._stream = self._stream, stream
        if old is not None and old is not stream:
            old.close()

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def request(
        self,
        started: float,
        method: bytes,
        path: bytes,
        version: str,
        status: int,
        flag: str,
        received: int,
        sent: int,
        xff: bytes,
        user_agent: bytes,
        request_id: bytes,
        authority: bytes,
        upstream_host: str,
        upstream_cluster: str,
        shadow: bool = False,
        upstream_service_time: int = -1,
        upstream_local_address: str = "",
        downstream_local_address: str = "",
        downstream_remote_address: str = "",
        route_name: str = "",
        requested_server_name: str = "",
    ) -> None:
        """Log one request (a primary or a shadow copy) from its wire values: the one place a
        record is made from an exchange, so every line decodes and times its fields alike."""
        if self._stream is None or (shadow and self.istio):
            return
        self.log(
            AccessRecord(
                start_time=started,
                method=method.decode("latin-1"),
                path=redact_query(path, self._redact).decode("latin-1"),
                protocol=_PROTOCOLS.get(version, ""),
                status=status,
                response_flags=flag,
                bytes_received=received,
                bytes_sent=sent,
                duration_ms=int((time.time() - started) * 1000),
                x_forwarded_for=xff.decode("latin-1"),
                user_agent=user_agent.decode("latin-1"),
                request_id=request_id.decode("latin-1"),
                authority=authority.decode("latin-1"),
                upstream_host=upstream_host,
                upstream_cluster=upstream_cluster,
                shadow=shadow,
                upstream_service_time=upstream_service_time,
                upstream_local_address=upstream_local_address,
                downstream_local_address=downstream_local_address,
                downstream_remote_address=downstream_remote_address,
                route_name=route_name,
                requested_server_name=requested_server_name,
            )
        )

    def log(self, record: AccessRecord) -> None:
        if self._stream is None:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(self._format(record))

    def flush(self) -> None:
        if self._stream is None or not self._pending:
            return
        lines, self._pending = self._pending, []
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()
