"""TLS for the ingress: an ``ssl.SSLContext`` per Gateway port, certificates per SNI name.

A port's servers each name the SNI hosts they answer for (``hosts``) and their certificate:
files (``serverCertificate``, ``privateKey``, ``caCertificates``) or ``credentialName``, looked
up in ``serve --credentials-dir DIR`` as ``DIR/NAME/tls.crt`` and ``tls.key`` (the files of a
Kubernetes TLS secret), with the client CA of MUTUAL in ``DIR/NAME/ca.crt`` or, as Istio also
reads it, ``DIR/NAME-cacert/ca.crt``. The first server is the default certificate, for clients
that send no SNI or a name no server lists. TLS 1.2 is the least version served (Envoy's
default for servers), 1.3 when ``minProtocolVersion: TLSV1_3``.

Files are read when a table is installed: a missing or bad one refuses the apply, naming it.
"""

from __future__ import annotations

import os
import ssl

from shadowmesh.errors import ShadowmeshError
from shadowmesh.routing.ingress import IngressPlan, TlsServer, intersect

_VERSIONS = {"TLSV1_2": ssl.TLSVersion.TLSv1_2, "TLSV1_3": ssl.TLSVersion.TLSv1_3}


class CredentialError(ShadowmeshError):
    pass


def server_context(plan: IngressPlan, credentials_dir: str | None) -> ssl.SSLContext | None:
    """The context of an ingress port; None for a plain-text one."""
    if not plan.tls:
        return None
    contexts = [(s.hosts, _context(s, credentials_dir, plan.port)) for s in plan.tls]
    default = contexts[0][1]

    def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if not name:
            return
        name = name.lower()
        setattr(sock, SNI_ATTRIBUTE, name)  # the access log's REQUESTED_SERVER_NAME
        for hosts, context in contexts:
            if any(intersect(name, h) == name for h in hosts):
                sock.context = context
                return

    default.sni_callback = choose
    return default


# Where ``choose`` leaves the name a client asked for; the server side of ``ssl`` keeps none.
SNI_ATTRIBUTE = "shadowmesh_requested_server_name"


def requested_server_name(ssl_object: object) -> str:
    """The SNI name of a connection's ``ssl_object`` (``get_extra_info``), "" if none."""
    name = getattr(ssl_object, SNI_ATTRIBUTE, "") if ssl_object is not None else ""
    return name if isinstance(name, str) else ""


def _context(server: TlsServer, credentials_dir: str | None, port: int) -> ssl.SSLContext:
    tls = server.tls
    where = f"Gateway {server.gateway} port {port}"
    cert, key, ca = tls.server_certificate, tls.private_key, tls.ca_certificates
    if tls.credential_name:
        if credentials_dir is None:
            raise CredentialError(
                f"{where}: credentialName {tls.credential_name!r} needs serve --credentials-dir"
            )
        folder = os.path.join(credentials_dir, tls.credential_name)
        cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
        if tls.mode == "MUTUAL":
            ca = os.path.join(folder, "ca.crt")
            if not os.path.exists(ca):
                ca = os.path.join(f"{folder}-cacert", "ca.crt")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS.get(tls.min_protocol_version, ssl.TLSVersion.TLSv1_2)
    if tls.max_protocol_version in _VERSIONS:
        context.maximum_version = _VERSIONS[tls.max_protocol_version]
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialError(f"{where}: cannot load {cert} and {key}: {exc}") from None
    if tls.mode == "MUTUAL":
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise CredentialError(f"{where}: cannot load the client CA {ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
