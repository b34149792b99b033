"""TLS origination contexts against a real TLS server with a CA made in the test."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowmesh.model.trafficpolicy import ClientTls
from shadowmesh.routing.upstreampolicy import TlsOrigination
from shadowmesh.upstream.tls import (
    TlsContexts,
    TlsFilesError,
    client_context,
    san_problem,
    server_name,
)
from tests.support.certs import Authority, make_ca


class TlsServer:
    """Accepts TLS, records the SNI and client certificate, answers one HTTP response."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.sni: list[str | None] = []
        self.client_subjects: list[object] = []
        context.sni_callback = lambda sock, name, _: self.sni.append(name)  # type: ignore[assignment,misc]
        self._context = context
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(raw, server_side=True) as conn:
                    self.client_subjects.append(conn.getpeercert())
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            except (OSError, ssl.SSLError):
                raw.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def pki(tmp_path: Path) -> Authority:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def server(pki: Authority, tmp_path: Path) -> Iterator[TlsServer]:
    issued = pki.issue(tmp_path / "srv", "server", "api.example.com", "alt.example.com")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    context.load_verify_locations(cafile=pki.cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    made = TlsServer(context)
    yield made
    made.close()


def origination(**fields: object) -> TlsOrigination:
    return TlsOrigination(ClientTls(**fields))  # type: ignore[arg-type]


async def _get(port: int, tls: TlsOrigination, host: str) -> tuple[bytes, dict[str, object]]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(tls), server_hostname=server_name(tls, host)
    )
    peer = writer.get_extra_info("peercert") or {}
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    data = await reader.read(1000)
    writer.close()
    return data, peer


def get(port: int, tls: TlsOrigination, host: str) -> tuple[bytes, dict[str, object]]:
    return asyncio.run(_get(port, tls, host))


def test_simple_verifies_the_server_against_the_ca_and_sends_the_host_as_sni(
    server: TlsServer, pki: Authority
) -> None:
    tls = origination(mode="SIMPLE", ca_certificates=str(pki.cert))
    data, _ = get(server.port, tls, "api.example.com")
    assert data.endswith(b"ok")
    assert server.sni == ["api.example.com"]
    # auto SAN: the certificate must match the request's host.
    with pytest.raises(ssl.SSLCertVerificationError):
        get(server.port, tls, "other.example.com")


def test_an_unknown_ca_fails_unless_verification_is_skipped(
    server: TlsServer, tmp_path: Path
) -> None:
    stranger = make_ca(tmp_path / "other", "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        get(
            server.port,
            origination(mode="SIMPLE", ca_certificates=str(stranger.cert)),
            "api.example.com",
        )
    data, _ = get(server.port, origination(mode="SIMPLE", insecure_skip_verify=True), "x")
    assert data.endswith(b"ok")


def test_sni_and_subject_alt_names(server: TlsServer, pki: Authority) -> None:
    tls = origination(
        mode="SIMPLE",
        ca_certificates=str(pki.cert),
        sni="alt.example.com",
        subject_alt_names=("alt.example.com",),
    )
    data, peer = get(server.port, tls, "10.0.0.1")
    assert data.endswith(b"ok")
    assert server.sni[-1] == "alt.example.com"
    assert san_problem(tls, peer) == ""
    wrong = origination(
        mode="SIMPLE", ca_certificates=str(pki.cert), subject_alt_names=("nope.example.com",)
    )
    _, peer = get(server.port, wrong, "api.example.com")
    assert "CERTIFICATE_VERIFY_FAILED" in san_problem(wrong, peer)
    assert server_name(origination(mode="SIMPLE"), "10.0.0.1") is None  # no SNI for an IP


def test_mutual_presents_the_client_certificate(
    server: TlsServer, pki: Authority, tmp_path: Path
) -> None:
    client = pki.issue(tmp_path / "cli", "client", "sleep.default", client=True)
    tls = origination(
        mode="MUTUAL",
        ca_certificates=str(pki.cert),
        client_certificate=str(client.cert),
        private_key=str(client.key),
    )
    data, _ = get(server.port, tls, "api.example.com")
    assert data.endswith(b"ok")
    assert "sleep.default" in str(server.client_subjects[-1])


def test_missing_files_name_themselves_and_contexts_are_shared(pki: Authority) -> None:
    with pytest.raises(TlsFilesError, match="caCertificates '/no/such.pem'"):
        client_context(origination(mode="SIMPLE", ca_certificates="/no/such.pem"))
    with pytest.raises(TlsFilesError, match="clientCertificate '/no/c.pem'"):
        client_context(
            origination(mode="MUTUAL", client_certificate="/no/c.pem", private_key="/no/k.pem")
        )
    contexts = TlsContexts()
    a = origination(mode="SIMPLE", ca_certificates=str(pki.cert))
    b = origination(mode="SIMPLE", ca_certificates=str(pki.cert))
    assert contexts.context(a) is contexts.context(b)


def test_the_cluster_pool_originates_tls_and_refuses_a_san_mismatch(
    server: TlsServer, pki: Authority
) -> None:
    from shadowmesh.routing.decision import Endpoint
    from shadowmesh.routing.upstreampolicy import UpstreamPolicy
    from shadowmesh.upstream.clusterpool import GuardedPool

    async def run() -> None:
        ep = Endpoint("127.0.0.1", server.port)
        good = origination(mode="SIMPLE", ca_certificates=str(pki.cert))
        pool = GuardedPool("outbound|443||api", UpstreamPolicy(tls=good), TlsContexts())
        conn = await pool.connect(ep, b"api.example.com:443")
        assert conn.transport is not None
        assert conn.transport.get_extra_info("ssl_object") is not None
        assert server.sni[-1] == "api.example.com"
        conn.close()
        bad = origination(
            mode="SIMPLE", ca_certificates=str(pki.cert), subject_alt_names=("spiffe://x",)
        )
        pool = GuardedPool("outbound|443||api", UpstreamPolicy(tls=bad), TlsContexts())
        with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
            await pool.connect(ep, b"api.example.com:443")
        await asyncio.sleep(0.01)
        assert pool.connections == 0

    asyncio.run(run())
