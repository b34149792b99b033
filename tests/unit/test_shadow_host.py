"""The shadow's Host, as Envoy's shadowAppendedHost computes it."""

import pytest

from shadowmesh.mirror.host import shadow_authority


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        (b"httpbin:8000", b"httpbin-shadow:8000"),
        (b"cluster-1", b"cluster-1-shadow"),
        (b"httpbin.default.svc.cluster.local", b"httpbin.default.svc.cluster.local-shadow"),
        (b"[::1]:80", b"[::1]-shadow:80"),
        (b"[::1]", b"[::1]-shadow"),
        (b"127.0.0.1:8000", b"127.0.0.1-shadow:8000"),
        (b"localhost:8080", b"localhost-shadow:8080"),
    ],
)
def test_suffix_goes_before_the_port(authority: bytes, expected: bytes) -> None:
    assert shadow_authority(authority) == expected
