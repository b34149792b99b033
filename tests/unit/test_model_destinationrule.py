"""DestinationRule trafficPolicy as read and validated: Istio's webhook rules and wording."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from shadowmesh.errors import ConfigError, ConfigErrors
from shadowmesh.model.load import load_raw, load_text
from shadowmesh.model.resources import DestinationRule
from shadowmesh.model.trafficpolicy import (
    ClientTls,
    ConnectionPool,
    ConsistentHash,
    HashCookie,
    OutlierDetection,
)


def dr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "httpbin"},
        "spec": {"host": "httpbin", **spec},
    }


def rule(**spec: Any) -> tuple[DestinationRule, tuple[str, ...]]:
    document = load_raw(dr(**spec), "test.yaml", 0)
    assert isinstance(document.resource, DestinationRule)
    return document.resource, document.warnings


def errors(**spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as caught:
        load_text(yaml.safe_dump(dr(**spec)), "test.yaml")
    found: list[ConfigError] = caught.value.errors
    return [(e.field, e.message) for e in found]


def test_every_block_is_read() -> None:
    read, warnings = rule(
        trafficPolicy={
            "connectionPool": {
                "tcp": {"maxConnections": 7, "connectTimeout": "250ms", "idleTimeout": "0s"},
                "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
            },
            "outlierDetection": {
                "consecutive5xxErrors": 1,
                "interval": "1s",
                "baseEjectionTime": "3m",
                "maxEjectionPercent": 100,
            },
            "loadBalancer": {
                "consistentHash": {
                    "httpCookie": {"name": "user", "ttl": "0s", "path": "/"},
                    "maglev": {"tableSize": 65537},
                }
            },
            "tls": {"mode": "SIMPLE", "caCertificates": "/ca.pem", "sni": "a.example"},
            "portLevelSettings": [{"port": {"number": 8000}, "loadBalancer": {"simple": "RANDOM"}}],
        }
    )
    assert warnings == ()
    policy = read.traffic_policy
    assert policy is not None
    assert policy.connection_pool == ConnectionPool(
        max_connections=7,
        connect_timeout=0.25,
        tcp_idle_timeout=0.0,
        http1_max_pending_requests=1,
        max_requests_per_connection=1,
    )
    assert policy.outlier_detection == OutlierDetection(
        consecutive_5xx_errors=1, interval=1.0, base_ejection_time=180.0, max_ejection_percent=100
    )
    assert policy.load_balancer is not None
    assert policy.load_balancer.consistent_hash == ConsistentHash(
        http_cookie=HashCookie("user", "/", 0.0), maglev_table_size=65537
    )
    assert policy.tls == ClientTls(mode="SIMPLE", ca_certificates="/ca.pem", sni="a.example")
    port = policy.for_port(8000)
    assert port is not None and port.load_balancer is not None
    assert port.load_balancer.simple == "RANDOM"
    assert port.connection_pool is None  # nothing inherited from the top level
    assert policy.for_port(9000) is None


@pytest.mark.parametrize(
    ("policy", "field", "message"),
    [
        ({}, "spec.trafficPolicy", "traffic policy must have at least one field"),
        (
            {"connectionPool": {}},
            "spec.trafficPolicy.connectionPool",
            "connection pool must have at least one field",
        ),
        (
            {"connectionPool": {"http": {"http1MaxPendingRequests": -1}}},
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
            "http1 max pending requests must be non-negative",
        ),
        (
            {"connectionPool": {"http": {"maxRetries": -2}}},
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "max retries must be non-negative",
        ),
        (
            {"connectionPool": {"tcp": {"maxConnections": -1}}},
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            "max connections must be non-negative",
        ),
        (
            {"connectionPool": {"tcp": {"connectTimeout": "1.5ms"}}},
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "only durations to ms precision are supported",
        ),
        (
            {"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}}},
            "spec.trafficPolicy.connectionPool.http.useClientProtocol",
            "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
        ),
        (
            {"outlierDetection": {"consecutiveLocalOriginFailures": 3}},
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "outlier detection consecutive local origin failures is specified, but split "
            "external local origin errors is set to false",
        ),
        (
            {"outlierDetection": {"maxEjectionPercent": 120}},
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "percentage 120 is not in range 0..100",
        ),
        (
            {"outlierDetection": {"minHealthPercent": -1}},
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "percentage -1 is not in range 0..100",
        ),
        (
            {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "", "ttl": "1s"}}}},
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "name required for HttpCookie",
        ),
        (
            {"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 65536}}}},
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "tableSize must be a prime number for maglev",
        ),
        (
            {"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 5000011}}}},
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "tableSize must be less than 5000011 for maglev",
        ),
        (
            {
                "loadBalancer": {
                    "consistentHash": {
                        "httpHeaderName": "x",
                        "minimumRingSize": 10,
                        "ringHash": {"minimumRingSize": 10},
                    }
                }
            },
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of MinimumRingSize or Maglev/Ringhash can be specified",
        ),
        (
            {
                "loadBalancer": {
                    "consistentHash": {
                        "httpCookie": {
                            "name": "c",
                            "attributes": [{"name": "Secure"}, {"name": "Secure"}],
                        }
                    }
                }
            },
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name",
            "duplicate cookie attribute name: Secure",
        ),
        (
            {"tls": {"mode": "MUTUAL", "privateKey": "/k.pem"}},
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required for mutual tls",
        ),
        (
            {"tls": {"mode": "MUTUAL", "clientCertificate": "/c.pem"}},
            "spec.trafficPolicy.tls.privateKey",
            "private key required for mutual tls",
        ),
        (
            {"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca"}},
            "spec.trafficPolicy.tls",
            "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
            "InsecureSkipVerify is set true",
        ),
        (
            {"portLevelSettings": [{"port": {"number": 80}}]},
            "spec.trafficPolicy.portLevelSettings[0]",
            "port traffic policy must have at least one field",
        ),
        (
            {"portLevelSettings": [{"loadBalancer": {"simple": "RANDOM"}}]},
            "spec.trafficPolicy.portLevelSettings[0].port",
            "portTrafficPolicy must have valid port",
        ),
    ],
)
def test_istio_validation(policy: dict[str, Any], field: str, message: str) -> None:
    assert errors(trafficPolicy=policy) == [(field, message)]


def test_subset_policies_are_validated_too() -> None:
    subsets = [{"name": "v1", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": -1}}}}]
    assert errors(subsets=subsets) == [
        (
            "spec.subsets[0].trafficPolicy.connectionPool.tcp.maxConnections",
            "max connections must be non-negative",
        )
    ]


def test_istio_mutual_is_warned_about_in_one_line_and_stays_plaintext() -> None:
    _, warnings = rule(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})
    assert warnings == (
        "DestinationRule default/httpbin: spec.trafficPolicy.tls.mode ISTIO_MUTUAL is not "
        "acted on by shadowmesh (no Istio certificates): the upstream is reached in plaintext",
    )


def test_fields_not_acted_on_inside_acted_on_blocks_warn() -> None:
    _, warnings = rule(
        trafficPolicy={
            "connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}},
            "outlierDetection": {"consecutiveErrors": 3},
        }
    )
    inner = [w.split(": ", 1)[1] for w in warnings if ".http." in w or "consecutiveErrors" in w]
    assert inner == [
        "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy is not acted on by shadowmesh "
        "yet; upstream connections are HTTP/1.1",
        "spec.trafficPolicy.outlierDetection.consecutiveErrors outlier detection consecutive "
        "errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
    ]


def test_the_crds_structural_rules_come_first() -> None:
    # A duration under 1ms: the CRD's CEL rule refuses it before the webhook would.
    assert errors(trafficPolicy={"outlierDetection": {"interval": "0s"}}) == [
        (
            "spec.trafficPolicy.outlierDetection.interval",
            'Invalid value: "string": must be a valid duration greater than 1ms',
        )
    ]
