"""The shapes of the Istio fields shadowmesh accepts but does not act on yet.

Such a field draws one warning naming it, but a typo inside it (``retries: {atempts: 3}``) is
still an error, as Kubernetes' strict validation would make it: the same YAML must apply on a
real mesh. A shape is a dict of proto field names to shapes, a one-element list (a repeated
field), or a leaf tag: ``str``, ``int``, ``num``, ``bool``, ``strs`` (list of strings),
``strmap`` (string-to-string map), ``any``, and the CRD's structural rules: ``dur`` (a duration
of at least 1ms, its CEL rule), ``enum:A|B``, ``u32``, ``code`` (100..599), ``pct`` (0..100),
``nonneg``, with Kubernetes' wording. Sources: istio/api ``networking/v1alpha3``
``virtual_service.proto`` and ``destination_rule.proto`` (as of istio/api for Istio 1.31).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, TypeAlias

from shadowmesh.model import validate
from shadowmesh.model.fields import (
    Issues,
    Obj,
    child,
    is_int,
    is_number,
    item,
    json_name,
    type_error,
)

Shape: TypeAlias = str | dict[str, "Shape"] | list["Shape"]

PERCENT: Shape = {"value": "num"}
STRING_MATCH: Shape = {"exact": "str", "prefix": "str", "regex": "str"}
PORT_SELECTOR: Shape = {"number": "int"}
DESTINATION: Shape = {"host": "str", "subset": "str", "port": PORT_SELECTOR}
_HEADER_OPERATIONS: Shape = {"set": "strmap", "add": "strmap", "remove": "strs"}
HEADERS: Shape = {"request": _HEADER_OPERATIONS, "response": _HEADER_OPERATIONS}

RETRIES: Shape = {
    "attempts": "int",
    "per_try_timeout": "dur",
    "retry_on": "str",
    "retry_remote_localities": "bool",
    "retry_ignore_previous_hosts": "bool",
    "backoff": "dur",
}
FAULT: Shape = {
    "delay": {
        "fixed_delay": "dur",
        "exponential_delay": "dur",
        "percentage": PERCENT,
        "percent": "int",
    },
    "abort": {
        "http_status": "int",
        "grpc_status": "str",
        "http2_error": "str",
        "percentage": PERCENT,
    },
}
REWRITE: Shape = {
    "uri": "str",
    "authority": "str",
    "uri_regex_rewrite": {"match": "str", "rewrite": "str"},
}
CORS_POLICY: Shape = {
    "allow_origins": [STRING_MATCH],
    "allow_origin": "strs",
    "allow_methods": "strs",
    "allow_headers": "strs",
    "expose_headers": "strs",
    "max_age": "dur",
    "allow_credentials": "bool",
    "unmatched_preflights": "enum:UNSPECIFIED|FORWARD|IGNORE",
}
REDIRECT: Shape = {
    "uri": "str",
    "authority": "str",
    "port": "int",
    "derive_port": "enum:FROM_PROTOCOL_DEFAULT|FROM_REQUEST_PORT",
    "scheme": "str",
    "redirect_code": "int",
    "prefix_rewrite": "str",
}
DIRECT_RESPONSE: Shape = {"status": "int", "body": {"string": "str", "bytes": "str"}}
DELEGATE: Shape = {"name": "str", "namespace": "str"}

_L4_MATCH: dict[str, Shape] = {
    "destination_subnets": "strs",
    "port": "int",
    "source_labels": "strmap",
    "gateways": "strs",
    "source_namespace": "str",
}
_TCP_MATCH: dict[str, Shape] = {**_L4_MATCH, "source_subnet": "str"}
_L4_ROUTE: Shape = [{"destination": DESTINATION, "weight": "int"}]
TCP_ROUTE: Shape = {"match": [_TCP_MATCH], "route": _L4_ROUTE}
TLS_ROUTE: Shape = {"match": [{**_L4_MATCH, "sni_hosts": "strs"}], "route": _L4_ROUTE}

CONNECTION_POOL: Shape = {
    "tcp": {
        "max_connections": "int",
        "connect_timeout": "dur",
        "tcp_keepalive": {"probes": "u32", "time": "dur", "interval": "dur"},
        "max_connection_duration": "dur",
        "idle_timeout": "dur",
    },
    "http": {
        "http1_max_pending_requests": "int",
        "http2_max_requests": "int",
        "max_requests_per_connection": "int",
        "max_retries": "int",
        "idle_timeout": "dur",
        "h2_upgrade_policy": "enum:DEFAULT|DO_NOT_UPGRADE|UPGRADE",
        "use_client_protocol": "bool",
        "max_concurrent_streams": "int",
        "http2_keep_alive": {"interval": "dur", "timeout": "dur"},
    },
}
OUTLIER_DETECTION: Shape = {
    "split_external_local_origin_errors": "bool",
    "consecutive_local_origin_failures": "u32",
    "consecutive_gateway_errors": "u32",
    "consecutive_5xx_errors": "u32",
    "consecutive_errors": "int",
    "interval": "dur",
    "base_ejection_time": "dur",
    "max_ejection_percent": "int",
    "min_health_percent": "int",
    "outlier_detection_http_error_codes": ["code"],
}
CLIENT_TLS: Shape = {
    "mode": "enum:DISABLE|SIMPLE|MUTUAL|ISTIO_MUTUAL",
    "client_certificate": "str",
    "private_key": "str",
    "ca_certificates": "str",
    "credential_name": "str",
    "subject_alt_names": "strs",
    "sni": "str",
    "insecure_skip_verify": "bool",
    "ca_crl": "str",
}
CONSISTENT_HASH: Shape = {
    "http_header_name": "str",
    "http_cookie": {
        "name": "str",
        "path": "str",
        "ttl": "str",
        "attributes": [{"name": "str", "value": "str"}],
    },
    "use_source_ip": "bool",
    "http_query_parameter_name": "str",
    "ring_hash": {"minimum_ring_size": "int"},
    "maglev": {"table_size": "int"},
    "minimum_ring_size": "int",
}
LOCALITY_LB_SETTING: Shape = {
    "distribute": [{"from": "str", "to": "any"}],
    "failover": [{"from": "str", "to": "str"}],
    "failover_priority": "strs",
    "enabled": "bool",
}
WARMUP: Shape = {"duration": "dur", "minimum_percent": "pct", "aggression": "nonneg"}
ZONE_AWARE_LB_SETTING: Shape = {
    "enabled": "bool",
    "failover": [{"from": "str", "to": "str"}],
    "failover_priority": "strs",
    "min_cluster_size": "int",
}
LOAD_BALANCER: Shape = {
    "simple": "str",
    "consistent_hash": CONSISTENT_HASH,
    "locality_lb_setting": LOCALITY_LB_SETTING,
    "zone_aware_lb_setting": ZONE_AWARE_LB_SETTING,
    "warmup_duration_secs": "dur",
    "warmup": WARMUP,
}
PORT_LEVEL_SETTINGS: Shape = [
    {
        "port": PORT_SELECTOR,
        "load_balancer": LOAD_BALANCER,
        "connection_pool": CONNECTION_POOL,
        "outlier_detection": OUTLIER_DETECTION,
        "tls": CLIENT_TLS,
    }
]
TUNNEL: Shape = {"protocol": "str", "target_host": "str", "target_port": "int"}
PROXY_PROTOCOL: Shape = {"version": "enum:V1|V2"}
# ``percent`` is a google.protobuf.DoubleValue (a bare number), and ``budgetInterval`` carries no
# 1ms rule in the CRD: a cluster accepts ``percent: 20`` and ``budgetInterval: 0s``.
RETRY_BUDGET: Shape = {
    "percent": "pct",
    "min_retry_concurrency": "u32",
    "budget_interval": "str",
}
WORKLOAD_SELECTOR: Shape = {"match_labels": "strmap"}

_UINT32_MAX = 2**32 - 1
_LEAVES: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", is_int),
    "num": ("a finite number", is_number),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "any": ("anything", lambda v: True),
}


def check(value: Any, shape: Shape, path: str, issues: Issues) -> None:
    """Record an error for each unknown field or wrong type in ``value``; null is absent."""
    if value is None:
        return
    if isinstance(shape, dict):
        _check_message(value, shape, path, issues)
    elif isinstance(shape, list):
        if not isinstance(value, list):
            type_error(issues, path, "a list", value)
            return
        for index, element in enumerate(value):
            check(element, shape[0], item(path, index), issues)
    elif shape == "strs":
        check(value, ["str"], path, issues)
    elif shape == "strmap":
        _check_string_map(value, path, issues)
    elif shape.startswith("enum:"):
        _check_enum(value, shape[5:].split("|"), path, issues)
    elif shape in _BOUNDS:
        _check_bounds(value, shape, path, issues)
    elif shape == "dur":
        _check_duration(value, path, issues)
    else:
        expected, accepts = _LEAVES[shape]
        if not accepts(value):
            type_error(issues, path, expected, value)


def _check_message(value: Any, shape: dict[str, Shape], path: str, issues: Issues) -> None:
    obj = Obj.of(value, path, issues, shape, proto=True)
    if obj is None:
        return
    by_json = {json_name(name): sub for name, sub in shape.items()}
    for name in obj.present():
        check(obj.get(name), by_json[name], obj.path(name), issues)


# Bounds of the CRD's structural schema (istio/api 1.31 customresourcedefinitions.gen.yaml).
_BOUNDS: dict[str, tuple[bool, float, float]] = {  # (integer?, minimum, maximum)
    "u32": (True, 0, _UINT32_MAX),
    "code": (True, 100, 599),
    "pct": (False, 0, 100),
    "nonneg": (False, 0, math.inf),
}
DURATION_RULE = "must be a valid duration greater than 1ms"


def _check_enum(value: Any, allowed: list[str], path: str, issues: Issues) -> None:
    if not isinstance(value, str):
        type_error(issues, path, "a string", value)
    elif value not in allowed:
        choices = ", ".join(f'"{a}"' for a in allowed)
        issues.error(path, f'Unsupported value: "{value}": supported values: {choices}')


def _check_bounds(value: Any, shape: str, path: str, issues: Issues) -> None:
    integer, low, high = _BOUNDS[shape]
    if not (is_int(value) if integer else is_number(value)):
        type_error(issues, path, "an integer" if integer else "a finite number", value)
    elif value < low:
        issues.error(path, f"Invalid value: {value}: should be greater than or equal to {low:g}")
    elif value > high:
        issues.error(path, f"Invalid value: {value}: should be less than or equal to {high:g}")


def _check_duration(value: Any, path: str, issues: Issues) -> None:
    """The CRD's CEL rule ``duration(self) >= duration('1ms')``, with its message."""
    if not isinstance(value, str):
        type_error(issues, path, 'a duration string like "5s"', value)
        return
    try:
        ok = validate.parse_duration(value) >= Fraction(1, 1000)
    except ValueError:
        ok = False
    if not ok:
        issues.error(path, f'Invalid value: "string": {DURATION_RULE}')


def _check_string_map(value: Any, path: str, issues: Issues) -> None:
    if not isinstance(value, Mapping):
        type_error(issues, path, "a mapping", value)
        return
    for key, val in value.items():
        if not isinstance(val, str):
            type_error(issues, child(path, key), "a string", val)
