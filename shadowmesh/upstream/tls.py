"""TLS origination: the client ``ssl.SSLContext`` of a DestinationRule's ``tls`` (SIMPLE, MUTUAL).

As istiod configures Envoy's upstream TLS (istio/istio ``pilot/pkg/networking/core/
cluster_tls.go`` buildUpstreamTLSSettings, setAutoSniAndAutoSanValidation):

- The server's chain is verified against ``caCertificates``, or the system's trust store
  when it is empty; ``insecureSkipVerify: true`` verifies nothing.
- SNI is ``sni``, or else the request's host (Envoy's ``auto_sni``; an IP literal gets none).
- ``subjectAltNames``: the certificate must carry one of them (exact, DNS, URI or IP SAN).
  With neither SANs nor ``sni`` (and verification on), the certificate must match the
  request's host (``auto_san_validation``).
- MUTUAL presents ``clientCertificate`` with ``privateKey``.
- TLS 1.2 is the least version (Envoy's client default); ALPN is offered only for HTTP/2,
  which upstreams do not speak here, so none.

A handshake that fails, or a certificate that fails these checks, is a connect failure: 503
``UF`` with the TLS reason, as Envoy reports it. Contexts are made once per set of files and
kept; a file that is missing or bad raises ``TlsFilesError`` naming it.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

from shadowmesh.errors import ShadowmeshError
from shadowmesh.routing.upstreampolicy import TlsOrigination


class TlsFilesError(ShadowmeshError):
    pass


def auto_san(tls: TlsOrigination) -> bool:
    """Whether the certificate is checked against the request's host (Envoy's auto SAN)."""
    return not tls.subject_alt_names and not tls.sni and not tls.insecure_skip_verify


def server_name(tls: TlsOrigination, host: str) -> str | None:
    """The SNI to send for a request to ``host`` (its authority without the port)."""
    if tls.sni:
        return tls.sni
    return None if not host or _is_ip(host) else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class TlsContexts:
    """Client contexts by what they are made of, built on first use."""

    def __init__(self) -> None:
        self._made: dict[tuple[object, ...], ssl.SSLContext] = {}

    def context(self, tls: TlsOrigination) -> ssl.SSLContext:
        key = (*tls.key(), auto_san(tls))
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = client_context(tls)
        return made


def client_context(tls: TlsOrigination) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        # The host check is ssl's own only in auto SAN mode; SANs listed are matched after
        # the handshake (``san_problem``), and with only ``sni`` set none is made.
        context.check_hostname = auto_san(tls)
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            if tls.ca_certificates:
                context.load_verify_locations(cafile=tls.ca_certificates)
            else:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(f"caCertificates {tls.ca_certificates!r}: {_reason(exc)}") from exc
    if tls.mode == "MUTUAL":
        try:
            context.load_cert_chain(tls.client_certificate, tls.private_key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(
                f"clientCertificate {tls.client_certificate!r} / privateKey "
                f"{tls.private_key!r}: {_reason(exc)}"
            ) from exc
    return context


def san_problem(tls: TlsOrigination, peercert: dict[str, Any] | None) -> str:
    """Why the server's certificate fails ``subjectAltNames`` ("" when it passes or none are
    listed), worded as Envoy's ``%UPSTREAM_TRANSPORT_FAILURE_REASON%`` puts it."""
    wanted = tls.subject_alt_names
    if not wanted or tls.insecure_skip_verify:
        return ""
    found = {str(value) for _, value in (peercert or {}).get("subjectAltName", ())}
    if any(name in found for name in wanted):
        return ""
    return "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
