"""The structural rules of Istio's CRDs, run over a whole spec before the kind's own reading.

A cluster validates an Istio resource twice: the API server first checks it against the CRD's
``openAPIV3Schema`` (types, enums, bounds, required fields, ``maxItems``/``maxLength``, the
``oneOf`` groups and the ``x-kubernetes-validations`` CEL rules), then Istio's webhook runs its
Go rules. This module is the first step, for every field of every kind shadowmesh reads, acted
on or not, so an invalid value in a field shadowmesh ignores is refused as a cluster refuses it.
The webhook's rules stay with each kind's reader (``virtualservice.py`` and friends).

The rules are our own table, written from Istio 1.31's published API (istio/api
``kubernetes/customresourcedefinitions.gen.yaml``: its v1, v1beta1 and v1alpha3 schemas are
the same), not generated from it. Messages use Kubernetes' wording (``Required value``,
``Unsupported value: "X": supported values: ...``, ``Invalid value: "string": <CEL message>``),
type and unknown-field errors the wording of ``fields.py``, so both layers read alike.

Field names follow protojson as the readers do: each key may be written with its JSON name or
its proto name; ``null`` is absent (the API server prunes it), except as a list element.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from shadowmesh.model.shapes import DURATION_RULE

ISTIO_VERSION = "1.31"

# A CEL rule: (holds, message); ``holds`` sees the value with every key in its JSON spelling.
Rule: TypeAlias = tuple[Callable[[Any], bool], str]


@dataclass(frozen=True)
class Node:
    """One schema node. ``type``: object, array, map, string, integer, number, boolean, any."""

    type: str
    fields: Mapping[str, Node] = field(default_factory=dict)  # object
    element: Node | None = None  # array items, map values
    required: tuple[str, ...] = ()
    # Each group: at most one of these fields may be set (the CRD's oneOf over ``required``).
    one_of: tuple[tuple[str, ...], ...] = ()
    rules: tuple[Rule, ...] = ()
    enum: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    max_items: int | None = None  # arrays; maps: maxProperties
    min_items: int | None = None
    max_length: int | None = None
    map_key: str = ""  # x-kubernetes-list-type: map, keyed by this field: no two items share it
    format: str = ""  # "duration": the CEL rule every Duration field carries


_U32 = 2**32 - 1
_PORT_RULE = "port must be between 1-65535"


def obj(
    fields: Mapping[str, Node],
    *,
    required: tuple[str, ...] = (),
    one_of: tuple[tuple[str, ...], ...] = (),
    rules: tuple[Rule, ...] = (),
) -> Node:
    return Node("object", fields=fields, required=required, one_of=one_of, rules=rules)


def arr(element: Node, **limits: Any) -> Node:
    return Node("array", element=element, **limits)


def smap(element: Node | None = None, **limits: Any) -> Node:
    return Node("map", element=element or STR, **limits)


def text(**limits: Any) -> Node:
    return Node("string", **limits)


def enum(*values: str) -> Node:
    return Node("string", enum=values)


STR = Node("string")
STRS = arr(STR)
BOOL = Node("boolean")
INT = Node("integer")  # int32/int64: the API server checks no range
NUM = Node("number")
U32 = Node("integer", low=0, high=_U32)  # google.protobuf.UInt32Value, uint32
DUR = Node("string", format="duration")
PORT = Node(
    "integer", low=0, high=_U32, rules=((lambda n: 0 < n <= 65535, _PORT_RULE),)
)  # the CRD's port fields: a uint32 with a CEL range
ANY = Node("any")


def _at_most_one(*names: str, message: str) -> Rule:
    return (lambda o: sum(1 for n in names if n in o) <= 1, message)


# --- shared messages ---------------------------------------------------------------------------

_STRING_MATCH = obj(
    {"exact": STR, "prefix": STR, "regex": STR}, one_of=(("exact", "prefix", "regex"),)
)
_PORT_SELECTOR = obj({"number": U32})
_DESTINATION = obj({"host": STR, "subset": STR, "port": _PORT_SELECTOR}, required=("host",))
_PERCENT = obj({"value": NUM})
_HEADER_OPERATIONS = obj({"set": smap(), "add": smap(), "remove": STRS})
_HEADERS = obj({"request": _HEADER_OPERATIONS, "response": _HEADER_OPERATIONS})
_ISTIO_LABEL = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_PORT_NAMES: Rule = (
    lambda ports: all(len(k) < 63 and _ISTIO_LABEL.fullmatch(k) for k in ports),
    "port name must be valid",
)


def _uds_absolute(address: str) -> bool:
    return not address.startswith("unix://") or address[7:8] in ("/", "@")


# WorkloadEntry, and each ServiceEntry endpoint (the same message in istio/api).
_WORKLOAD_ENTRY = obj(
    {
        "address": text(
            max_length=256,
            rules=(
                (_uds_absolute, "UDS must be an absolute path or abstract socket"),
                (
                    lambda a: not a.startswith("unix://") or not a.endswith("/"),
                    "UDS may not be a dir",
                ),
            ),
        ),
        "ports": smap(PORT, max_items=128, rules=(_PORT_NAMES,)),
        "labels": smap(max_items=256),
        "network": text(max_length=2048),
        "locality": text(max_length=2048),
        "weight": U32,
        "serviceAccount": text(max_length=253),
    },
    rules=(
        (lambda o: "address" in o or "network" in o, "Address is required"),
        (
            lambda o: (
                not (isinstance(o.get("address"), str) and o["address"].startswith("unix://"))
                or "ports" not in o
            ),
            "UDS may not include ports",
        ),
    ),
)

# --- VirtualService ----------------------------------------------------------------------------

_HTTP_MATCH = obj(
    {
        "name": STR,
        "uri": _STRING_MATCH,
        "scheme": _STRING_MATCH,
        "method": _STRING_MATCH,
        "authority": _STRING_MATCH,
        "headers": smap(_STRING_MATCH),
        "port": U32,
        "sourceLabels": smap(),
        "gateways": STRS,
        "queryParams": smap(_STRING_MATCH),
        "ignoreUriCase": BOOL,
        "withoutHeaders": smap(_STRING_MATCH),
        "sourceNamespace": STR,
        "statPrefix": STR,
    }
)
_HTTP_ROUTE = obj(
    {
        "name": STR,
        "match": arr(_HTTP_MATCH),
        "route": arr(
            obj(
                {"destination": _DESTINATION, "weight": INT, "headers": _HEADERS},
                required=("destination",),
            )
        ),
        # Owned by the route policy (model/virtualservice.py, shapes.py): read and checked there.
        "redirect": ANY,
        "directResponse": ANY,
        "delegate": obj({"name": STR, "namespace": STR}),
        "rewrite": ANY,
        "timeout": DUR,
        "retries": ANY,
        "fault": ANY,
        "mirror": _DESTINATION,
        "mirrors": arr(
            obj({"destination": _DESTINATION, "percentage": _PERCENT}, required=("destination",))
        ),
        "mirrorPercent": U32,
        "mirrorPercentage": _PERCENT,
        "corsPolicy": ANY,
        "headers": ANY,
    }
)
_L4_MATCH: dict[str, Node] = {
    "destinationSubnets": STRS,
    "port": U32,
    "sourceLabels": smap(),
    "gateways": STRS,
    "sourceNamespace": STR,
}
_L4_ROUTE = arr(obj({"destination": _DESTINATION, "weight": INT}, required=("destination",)))
VIRTUAL_SERVICE = obj(
    {
        "hosts": STRS,
        "gateways": STRS,
        "http": arr(_HTTP_ROUTE),
        "tls": arr(
            obj(
                {
                    "match": arr(obj({**_L4_MATCH, "sniHosts": STRS}, required=("sniHosts",))),
                    "route": _L4_ROUTE,
                },
                required=("match",),
            )
        ),
        "tcp": arr(
            obj({"match": arr(obj({**_L4_MATCH, "sourceSubnet": STR})), "route": _L4_ROUTE})
        ),
        "exportTo": STRS,
    }
)

# --- DestinationRule ---------------------------------------------------------------------------

_CLIENT_TLS = obj(
    {
        "mode": enum("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"),
        "clientCertificate": STR,
        "privateKey": STR,
        "caCertificates": STR,
        "credentialName": STR,
        "subjectAltNames": STRS,
        "sni": STR,
        "insecureSkipVerify": BOOL,
        "caCrl": STR,
    }
)
_CONNECTION_POOL = obj(
    {
        "tcp": obj(
            {
                "maxConnections": INT,
                "connectTimeout": DUR,
                "tcpKeepalive": obj({"probes": U32, "time": DUR, "interval": DUR}),
                "maxConnectionDuration": DUR,
                "idleTimeout": STR,  # no duration rule on this one in the CRD
            }
        ),
        "http": obj(
            {
                "http1MaxPendingRequests": INT,
                "http2MaxRequests": INT,
                "maxRequestsPerConnection": INT,
                "maxRetries": INT,
                "idleTimeout": DUR,
                "h2UpgradePolicy": enum("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"),
                "useClientProtocol": BOOL,
                "maxConcurrentStreams": INT,
                "http2KeepAlive": obj({"interval": DUR, "timeout": DUR}),
            }
        ),
    }
)
_OUTLIER_DETECTION = obj(
    {
        "splitExternalLocalOriginErrors": BOOL,
        "consecutiveLocalOriginFailures": U32,
        "consecutiveGatewayErrors": U32,
        "consecutive5xxErrors": U32,
        "interval": DUR,
        "baseEjectionTime": DUR,
        "maxEjectionPercent": INT,
        "minHealthPercent": INT,
        "consecutiveErrors": INT,
        "outlierDetectionHttpErrorCodes": arr(Node("integer", low=100, high=599)),
    }
)
_FAILOVER = arr(obj({"from": STR, "to": STR}))
_LOAD_BALANCER = obj(
    {
        "simple": enum(
            "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
        ),
        "consistentHash": obj(
            {
                "httpHeaderName": STR,
                "httpCookie": obj(
                    {
                        "name": STR,
                        "path": STR,
                        "ttl": STR,
                        "attributes": arr(obj({"name": STR, "value": STR}, required=("name",))),
                    },
                    required=("name",),
                ),
                "useSourceIp": BOOL,
                "httpQueryParameterName": STR,
                "ringHash": obj({"minimumRingSize": Node("integer", low=0)}),
                "maglev": obj({"tableSize": Node("integer", low=0)}),
                "minimumRingSize": Node("integer", low=0),
            },
            one_of=(
                ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"),
                ("ringHash", "maglev"),
            ),
        ),
        "localityLbSetting": obj(
            {
                "distribute": arr(obj({"from": STR, "to": smap(U32)})),
                "failover": _FAILOVER,
                "failoverPriority": STRS,
                "enabled": BOOL,
            }
        ),
        "zoneAwareLbSetting": obj(
            {
                "enabled": BOOL,
                "failover": _FAILOVER,
                "failoverPriority": STRS,
                "minClusterSize": Node("integer", low=1),
            }
        ),
        "warmupDurationSecs": DUR,
        "warmup": obj(
            {
                "duration": DUR,
                "minimumPercent": Node("number", low=0, high=100),
                "aggression": Node("number", low=0),
            },
            required=("duration",),
        ),
    },
    one_of=(("simple", "consistentHash"),),
)
_POLICY_PARTS: dict[str, Node] = {
    "loadBalancer": _LOAD_BALANCER,
    "connectionPool": _CONNECTION_POOL,
    "outlierDetection": _OUTLIER_DETECTION,
    "tls": _CLIENT_TLS,
}
_TRAFFIC_POLICY = obj(
    {
        **_POLICY_PARTS,
        "portLevelSettings": arr(obj({"port": _PORT_SELECTOR, **_POLICY_PARTS}), max_items=4096),
        "tunnel": obj(
            {"protocol": STR, "targetHost": STR, "targetPort": U32},
            required=("targetHost", "targetPort"),
        ),
        "proxyProtocol": obj({"version": enum("V1", "V2")}),
        "retryBudget": obj(
            {
                "percent": Node("number", low=0, high=100),  # a DoubleValue, not a Percent
                "minRetryConcurrency": U32,
                "budgetInterval": STR,
            }
        ),
    }
)
_NO_WILDCARD_KEY: Rule = (
    lambda m: all("*" not in k for k in m),
    "wildcard not allowed in label key match",
)
DESTINATION_RULE = obj(
    {
        "host": STR,
        "trafficPolicy": _TRAFFIC_POLICY,
        "subsets": arr(
            obj(
                {"name": STR, "labels": smap(), "trafficPolicy": _TRAFFIC_POLICY},
                required=("name",),
            )
        ),
        "exportTo": STRS,
        "workloadSelector": obj(
            {
                "matchLabels": smap(
                    text(
                        max_length=63,
                        rules=(
                            (lambda v: "*" not in v, "wildcard not allowed in label value match"),
                        ),
                    ),
                    max_items=4096,
                    rules=(
                        _NO_WILDCARD_KEY,
                        (lambda m: all(k for k in m), "key must not be empty"),
                    ),
                )
            }
        ),
    },
    required=("host",),
)

# --- Gateway -----------------------------------------------------------------------------------

_SERVER_TLS = obj(
    {
        "httpsRedirect": BOOL,
        "mode": enum(
            "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
        ),
        "serverCertificate": STR,
        "privateKey": STR,
        "caCertificates": STR,
        "caCrl": STR,
        "credentialName": STR,
        "credentialNames": arr(STR, min_items=1, max_items=2),
        "caCertCredentialName": STR,
        "tlsCertificates": arr(
            obj({"serverCertificate": STR, "privateKey": STR, "caCertificates": STR}),
            min_items=1,
            max_items=2,
        ),
        "subjectAltNames": STRS,
        "verifyCertificateSpki": STRS,
        "verifyCertificateHash": STRS,
        "minProtocolVersion": enum("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"),
        "maxProtocolVersion": enum("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"),
        "cipherSuites": STRS,
        "insecureSkipVerify": BOOL,
    },
    rules=(
        _at_most_one(
            "tlsCertificates",
            "credentialNames",
            message="only one of credentialNames or tlsCertificates can be set",
        ),
        _at_most_one(
            "credentialName",
            "credentialNames",
            message="only one of credentialName or credentialNames can be set",
        ),
        # istio/api checks credentialNames against tlsCertificates again under this message.
        _at_most_one(
            "credentialNames",
            "tlsCertificates",
            message="only one of credentialName or tlsCertificates can be set",
        ),
    ),
)
GATEWAY = obj(
    {
        "servers": arr(
            obj(
                {
                    "port": obj(
                        {"number": U32, "protocol": STR, "name": STR, "targetPort": U32},
                        required=("number", "protocol", "name"),
                    ),
                    "bind": STR,
                    "hosts": STRS,
                    "tls": _SERVER_TLS,
                    "defaultEndpoint": STR,
                    "name": STR,
                },
                required=("port", "hosts"),
            )
        ),
        "selector": smap(),
    }
)

# --- ServiceEntry ------------------------------------------------------------------------------


def _resolution(entry: Mapping[str, Any], default: str) -> Any:
    return entry.get("resolution", default)


SERVICE_ENTRY = obj(
    {
        "hosts": arr(
            text(rules=((lambda h: h != "*", "hostname cannot be wildcard"),)),
            min_items=1,
            max_items=256,
        ),
        "addresses": arr(text(max_length=64), max_items=256),
        "ports": arr(
            obj(
                {
                    "number": PORT,
                    "protocol": text(max_length=256),
                    "name": text(max_length=256),
                    "targetPort": PORT,
                },
                required=("number", "name"),
            ),
            max_items=256,
            map_key="name",
            rules=(
                (
                    lambda ports: all(
                        sum(1 for q in ports if _get(q, "number") == _get(p, "number")) == 1
                        for p in ports
                    ),
                    "port number cannot be duplicated",
                ),
            ),
        ),
        "location": enum("MESH_EXTERNAL", "MESH_INTERNAL"),
        "resolution": enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"),
        "endpoints": arr(_WORKLOAD_ENTRY, max_items=4096),
        "workloadSelector": obj(
            {
                "labels": smap(
                    text(
                        max_length=63,
                        rules=((lambda v: "*" not in v, "wildcard is not supported in selector"),),
                    ),
                    max_items=256,
                )
            }
        ),
        "exportTo": STRS,
        "subjectAltNames": STRS,
    },
    required=("hosts",),
    rules=(
        _at_most_one(
            "workloadSelector",
            "endpoints",
            message="only one of WorkloadSelector or Endpoints can be set",
        ),
        (
            lambda e: (
                not (
                    any("/" in a for a in e.get("addresses") or () if isinstance(a, str))
                    and _resolution(e, "NONE") not in ("STATIC", "NONE")
                )
            ),
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        ),
        (
            lambda e: _resolution(e, "NONE") != "NONE" or "endpoints" not in e,
            "NONE mode cannot set endpoints",
        ),
        (
            lambda e: _resolution(e, "") != "DNS_ROUND_ROBIN" or len(e.get("endpoints") or ()) <= 1,
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        ),
    ),
)

WORKLOAD_ENTRY = _WORKLOAD_ENTRY

SPECS: dict[str, Node] = {
    "VirtualService": VIRTUAL_SERVICE,
    "DestinationRule": DESTINATION_RULE,
    "Gateway": GATEWAY,
    "ServiceEntry": SERVICE_ENTRY,
    "WorkloadEntry": WORKLOAD_ENTRY,
}
# The kinds whose top level says ``required: [spec]``.
SPEC_REQUIRED = frozenset({"ServiceEntry", "WorkloadEntry"})


# --- the walker --------------------------------------------------------------------------------


def _get(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else None


def check_spec(kind: str, spec: Any, issues: Issues, path: str = "spec") -> None:
    """Record the CRD's structural errors of ``spec`` (a kind of ``SPECS``) in ``issues``."""
    node = SPECS.get(kind)
    if node is not None and spec is not None and not _valid(spec, node):
        _check(spec, node, path, issues)


def _valid(value: Any, node: Node) -> bool:
    """The same rules without paths or messages: True when ``_check`` would find nothing.

    A stored config of 10,000 documents is read at every start; only a document this refuses
    (or one it cannot judge quickly: a proto spelling) is walked again for the messages.
    """
    kind = node.type
    if kind == "any":
        return True
    if kind == "object":
        if type(value) is not dict:
            return False
        fields = node.fields
        for key, element in value.items():
            sub = fields.get(key)
            if sub is None:
                return False  # unknown, or a proto spelling: the slow walk decides
            if element is None:
                continue
            if sub is STR:  # the commonest leaf, without a call
                if type(element) is not str:
                    return False
            elif not _valid(element, sub):
                return False
        for name in node.required:
            if value.get(name) is None:
                return False
        for group in node.one_of:
            if sum(1 for name in group if value.get(name) is not None) > 1:
                return False
        return not node.rules or _rules_hold(
            {k: v for k, v in value.items() if v is not None}, node
        )
    if kind == "array":
        if type(value) is not list:
            return False
        if node.max_items is not None and len(value) > node.max_items:
            return False
        if node.min_items is not None and len(value) < node.min_items:
            return False
        element = node.element
        assert element is not None
        if element is STR:
            if not all(type(e) is str for e in value):
                return False
        elif not all(_valid(e, element) for e in value):
            return False
        if node.map_key:
            keys = [e.get(node.map_key) for e in value if type(e) is dict]
            if len(keys) != len(set(keys)):
                return False
        return not node.rules or _rules_hold(value, node)
    if kind == "map":
        if type(value) is not dict:
            return False
        if node.max_items is not None and len(value) > node.max_items:
            return False
        element = node.element
        assert element is not None
        if not all(v is None or _valid(v, element) for v in value.values()):
            return False
        return not node.rules or _rules_hold(value, node)
    if kind == "string":
        if type(value) is not str:
            return False
        if node.enum and value not in node.enum:
            return False
        if node.max_length is not None and len(value) * 4 > node.max_length:
            return False  # maybe too long in UTF-8: the slow walk counts the bytes
        if node.format == "duration" and not _duration_ok(value):
            return False
        return not node.rules or _rules_hold(value, node)
    if kind == "boolean":
        return type(value) is bool
    if kind == "integer":
        if type(value) is not int:
            return False
    elif not is_number(value):
        return False
    if node.low is not None and value < node.low or node.high is not None and value > node.high:
        return False
    return not node.rules or _rules_hold(value, node)


def _rules_hold(value: Any, node: Node) -> bool:
    for holds, _ in node.rules:
        try:
            if not holds(value):
                return False
        except (TypeError, AttributeError, KeyError):
            return False
    return True


def _check(value: Any, node: Node, path: str, issues: Issues) -> None:
    kind = node.type
    if kind == "any":
        return
    if kind == "object":
        _check_object(value, node, path, issues)
    elif kind == "array":
        _check_array(value, node, path, issues)
    elif kind == "map":
        _check_map(value, node, path, issues)
    elif kind == "string":
        _check_string(value, node, path, issues)
    elif kind == "boolean":
        if not isinstance(value, bool):
            type_error(issues, path, "true or false", value)
    else:
        _check_number(value, node, path, issues)


def _check_object(value: Any, node: Node, path: str, issues: Issues) -> None:
    if not isinstance(value, Mapping):
        type_error(issues, path, "a mapping", value)
        return
    # The fields by JSON name, and each proto spelling written (``per_try_timeout``).
    spelled = [k for k in value if isinstance(k, str) and "_" in k and json_name(k) in node.fields]
    reader = Obj.of(value, path, issues, (*node.fields, *spelled), proto=True)
    assert reader is not None  # a mapping
    present = reader.present()
    for name in node.required:
        if name not in present:
            issues.error(reader.path(name), "Required value")
    for group in node.one_of:
        chosen = [name for name in group if name in present]
        if len(chosen) > 1:
            issues.error(
                path,
                'Invalid value: "object": must validate one and only one schema (oneOf): '
                f"only one of {', '.join(group)} may be set, got {', '.join(chosen)}",
            )
    for name in present:
        _check(reader.get(name), node.fields[name], reader.path(name), issues)
    if node.rules:
        _apply_rules({name: reader.get(name) for name in present}, node, "object", path, issues)


def _check_array(value: Any, node: Node, path: str, issues: Issues) -> None:
    if not isinstance(value, list):
        type_error(issues, path, "a list", value)
        return
    _too_many(value, node, path, issues)
    if node.min_items is not None and len(value) < node.min_items:
        issues.error(
            path, f"Invalid value: {len(value)}: should have at least {node.min_items} items"
        )
    assert node.element is not None
    keys: set[str] = set()
    for index, element in enumerate(value):
        _check(element, node.element, item(path, index), issues)
        key = _get(_normalised(element), node.map_key) if node.map_key else None
        if isinstance(key, str) and key in keys:
            # Kubernetes prints the key as Go formats the map.
            issues.error(
                item(path, index),
                f'Duplicate value: map[string]interface {{}}{{"{node.map_key}":"{key}"}}',
            )
        elif isinstance(key, str):
            keys.add(key)
    if node.rules:
        _apply_rules([_normalised(e) for e in value], node, "array", path, issues)


def _too_many(value: list[Any] | Mapping[Any, Any], node: Node, path: str, issues: Issues) -> None:
    """``maxItems`` of a list, ``maxProperties`` of a map: Kubernetes words both alike."""
    if node.max_items is not None and len(value) > node.max_items:
        issues.error(path, f"Too many: {len(value)}: must have at most {node.max_items} items")


def _check_map(value: Any, node: Node, path: str, issues: Issues) -> None:
    if not isinstance(value, Mapping):
        type_error(issues, path, "a mapping", value)
        return
    _too_many(value, node, path, issues)
    assert node.element is not None
    for key, element in value.items():
        if element is not None:
            _check(element, node.element, child(path, key), issues)
    if node.rules:
        _apply_rules(dict(value), node, "object", path, issues)


def _check_string(value: Any, node: Node, path: str, issues: Issues) -> None:
    if not isinstance(value, str):
        expected = 'a duration string like "5s"' if node.format == "duration" else "a string"
        type_error(issues, path, expected, value)
        return
    if node.enum and value not in node.enum:
        choices = ", ".join(f'"{v}"' for v in node.enum)
        issues.error(path, f'Unsupported value: "{value}": supported values: {choices}')
        return
    if (
        node.max_length is not None
        and len(value.encode("utf-8", "surrogatepass")) > node.max_length
    ):
        issues.error(path, f"Too long: may not be more than {node.max_length} bytes")
    if node.format == "duration" and not _duration_ok(value):
        issues.error(path, f'Invalid value: "string": {DURATION_RULE}')
    if node.rules:
        _apply_rules(value, node, "string", path, issues)


def _check_number(value: Any, node: Node, path: str, issues: Issues) -> None:
    integer = node.type == "integer"
    if not (is_int(value) if integer else is_number(value)):
        type_error(issues, path, "an integer" if integer else "a finite number", value)
        return
    if node.low is not None and value < node.low:
        issues.error(
            path, f"Invalid value: {value}: should be greater than or equal to {node.low:g}"
        )
    elif node.high is not None and value > node.high:
        issues.error(path, f"Invalid value: {value}: should be less than or equal to {node.high:g}")
    elif node.rules:
        _apply_rules(value, node, "integer" if integer else "number", path, issues)


def _apply_rules(value: Any, node: Node, type_name: str, path: str, issues: Issues) -> None:
    """Each CEL rule, as the API server reports one that fails: the value's type, the message."""
    for holds, message in node.rules:
        try:
            ok = holds(value)
        except (TypeError, AttributeError, KeyError):
            ok = True  # a rule over a value of the wrong type: its type error is reported
        if not ok:
            issues.error(path, f'Invalid value: "{type_name}": {message}')


def _normalised(value: Any) -> Any:
    """A list element as CEL sees it: keys in their JSON spelling."""
    if not isinstance(value, Mapping):
        return value
    return {json_name(k) if isinstance(k, str) else k: v for k, v in value.items()}


def _duration_ok(text_value: str) -> bool:
    try:
        return validate.parse_duration(text_value) >= Fraction(1, 1000)
    except ValueError:
        return False
