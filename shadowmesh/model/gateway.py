"""Istio ``Gateway``: the ingress servers, and gateway names as VirtualServices bind to them.

Validation and wording follow Istio 1.31 (``ValidateGateway``, ``validateServer``,
``validateTLSOptions``, ``validateGatewayNames``). shadowmesh serves a Gateway's HTTP and
HTTPS servers (TLS SIMPLE and MUTUAL terminated here); PASSTHROUGH, AUTO_PASSTHROUGH and the
non-HTTP protocols are accepted and warned about, their ports not opened.
"""

from __future__ import annotations

from typing import Any, cast

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj
from shadowmesh.model.resources import Gateway, GatewayServer, Meta, ServerTLS, TlsMode


def check_gateway_name(name: str, path: str, issues: Issues) -> None:
    """Istio's ``validateGatewayNames`` for one name (``mesh``, ``ns/name``, or legacy forms)."""
    if name == "mesh":
        return
    namespace, slash, short = name.partition("/")
    if not slash:
        if "." in name:
            parts = name.split(".")
            issues.warn(
                f'{issues.label}: {path}: using legacy gatewayName format "{name}"; prefer the '
                f'<namespace>/<name> format: "{parts[1]}/{parts[0]}"'
            )
        problem = validate.fqdn(name)
        if problem:
            issues.error(path, problem)
        return
    if not namespace or not short:
        issues.error(path, "config namespace and gateway name cannot be empty")
    if not validate.istio_label(namespace):
        issues.error(path, f'invalid value for namespace: "{namespace}"')
    if not validate.istio_label(short):
        issues.error(path, f'invalid value for gateway name: "{short}"')


# --- the Gateway kind ------------------------------------------------------------------------

SPEC_FIELDS = ("servers", "selector")
_SERVER_FIELDS = ("port", "bind", "hosts", "tls", "default_endpoint", "name")
_PORT_FIELDS = ("number", "protocol", "name", "target_port")
_TLS_FIELDS = (
    "https_redirect",
    "mode",
    "server_certificate",
    "private_key",
    "ca_certificates",
    "ca_crl",
    "credential_name",
    "credential_names",
    "ca_cert_credential_name",
    "tls_certificates",
    "subject_alt_names",
    "verify_certificate_spki",
    "verify_certificate_hash",
    "min_protocol_version",
    "max_protocol_version",
    "cipher_suites",
    "insecure_skip_verify",
)
_TLS_NOT_ACTED_ON = (
    "caCrl",
    "credentialNames",
    "caCertCredentialName",
    "tlsCertificates",
    "subjectAltNames",
    "verifyCertificateSpki",
    "verifyCertificateHash",
    "cipherSuites",
    "insecureSkipVerify",
)
_MODES = ("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL")
_TLS_VERSIONS = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
# Istio's protocol.Parse, case-insensitive.
PROTOCOLS = {
    "http": "HTTP",
    "https": "HTTPS",
    "http2": "HTTP2",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http_proxy": "HTTP_PROXY",
    "tls": "TLS",
    "tcp": "TCP",
    "udp": "UDP",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
}
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-Web", "HTTP_PROXY"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})


def parse_gateway(spec: Obj, meta: Meta | None, issues: Issues) -> Gateway | None:
    """Istio 1.31's ``ValidateGateway``, ``validateServer``, ``validateTLSOptions``."""
    issues.tail = "the gateway works without it"
    selector = spec.string_map("selector")
    servers: list[GatewayServer] = []
    if not spec.get("servers"):
        issues.error(spec.path("servers"), "gateway must have at least one server")
    names: set[str] = set()
    for path, value in spec.items("servers"):
        if value is None:
            issues.error(path, "server may not be nil")
            continue
        server = _server(path, value, issues)
        if server is None:
            continue
        if server.port_name in names:
            issues.error(
                f"{path}.port.name",
                f"port names in servers must be unique: duplicate name {server.port_name}",
            )
        names.add(server.port_name)
        servers.append(server)
    if meta is None:
        return None
    if not validate.istio_label(meta.name):
        issues.error("metadata.name", f'invalid gateway name: "{meta.name}"')
    return Gateway(meta=meta, servers=tuple(servers), selector=selector)


def _server(path: str, value: Any, issues: Issues) -> GatewayServer | None:
    obj = Obj.of(value, path, issues, _SERVER_FIELDS, proto=True)
    if obj is None:
        return None
    hosts: list[tuple[str, str]] = []
    if not obj.get("hosts"):
        issues.error(obj.path("hosts"), "server config must contain at least one host")
    for index, host in enumerate(obj.texts("hosts")):
        parsed = _server_host(host, f"{obj.path('hosts')}[{index}]", issues)
        if parsed is not None:
            hosts.append(parsed)
    unix = (obj.text("bind") or "").startswith(_UNIX)
    for name in ("bind", "defaultEndpoint"):
        if obj.text(name) is not None and not (unix and name == "bind"):
            issues.not_acted_on(obj.path(name), "the port listens on serve --gateway-bind")
    port = obj.sub("port", _PORT_FIELDS)
    _check_bind(obj.text("bind") or "", port, obj.path("bind"), issues)
    if port is None:
        if not obj.has("port"):
            issues.error(obj.path("port"), "port is required")
        return None
    number = port.integer("number") or 0
    written = port.text("protocol") or ""
    protocol = PROTOCOLS.get(written.lower(), "")
    if not protocol:
        issues.error(
            port.path("protocol"),
            f'invalid protocol "{written}", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, '
            "MONGO, REDIS, MYSQL, TCP",
        )
    if (number > 0 or not (obj.text("bind") or "").startswith(_UNIX)) and (
        problem := validate.port_number(number)
    ):
        issues.error(port.path("number"), problem)
    if port.integer("targetPort"):
        issues.error(port.path("targetPort"), "targetPort has no impact on Gateways")
    port_name = port.text("name") or ""
    if not port_name:
        issues.error(port.path("name"), "port name must be set")
    tls = _tls(obj, issues)
    if protocol in TLS_PROTOCOLS and tls is None:
        issues.error(obj.at, "server must have TLS settings for HTTPS/TLS protocols")
    elif protocol and protocol not in TLS_PROTOCOLS and tls is not None:
        # A plain HTTP server may carry tls only for httpsRedirect (a passthrough mode, no
        # certificates), as Istio's IsPassThroughServer allows.
        certificates = tls.server_certificate or tls.private_key or tls.ca_certificates
        if protocol not in HTTP_PROTOCOLS:
            issues.error(obj.path("tls"), "server cannot have TLS settings for non HTTPS/TLS ports")
        elif certificates or tls.mode not in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
            issues.error(
                obj.path("tls"), "server cannot have TLS settings for plain text HTTP ports"
            )
    if tls is not None and tls.https_redirect and protocol not in HTTP_PROTOCOLS:
        issues.note(obj.path("tls"), "tls.httpsRedirect should only be used with http servers")
    if protocol and protocol not in HTTP_PROTOCOLS and protocol != "HTTPS":
        issues.note(obj.path("port"), f"({protocol}) is not served by shadowmesh; only HTTP is")
    if tls is not None and tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and protocol != "HTTP":
        issues.note(
            obj.path("tls.mode"),
            f"{tls.mode} is not acted on by shadowmesh; the server's port is not opened",
        )
    if tls is not None and tls.mode in ("ISTIO_MUTUAL", "OPTIONAL_MUTUAL"):
        issues.note(
            obj.path("tls.mode"),
            f"{tls.mode} is not acted on by shadowmesh; the server's port is not opened",
        )
    if unix:
        # Istio listens on the socket (port 0); shadowmesh opens TCP ports only.
        issues.note(
            obj.path("bind"),
            "is a unix domain socket, which shadowmesh does not serve; the server is not opened",
        )
        return None
    return GatewayServer(
        port=number,
        port_name=port_name,
        protocol=protocol,
        hosts=tuple(hosts),
        tls=tls,
        name=obj.text("name") or "",
    )


def _server_host(host: str, path: str, issues: Issues) -> tuple[str, str] | None:
    """Istio's ``ValidateNamespaceSlashWildcardHostname`` for a gateway server host."""
    namespace, slash, name = host.partition("/")
    if not slash:
        namespace, name = "*", host
    elif not namespace or not name:
        issues.error(path, "config namespace and dnsName in host entry cannot be empty")
        return None
    elif namespace not in ("*", ".") and not validate.istio_label(namespace):
        issues.error(path, f'invalid namespace value "{namespace}" in gateway')
        return None
    if name != "*" and "." not in name:
        issues.error(path, "short names (non FQDN) are not allowed")
    if name != "*":
        problem = validate.wildcard_domain(name)
        if problem and not validate.ip_address(name):
            issues.error(path, problem)
            return None
    if "*" in name and len(name) != 1 and not name.startswith("*."):
        issues.error(path, f'partial wildcard "{name}" not allowed')
    return namespace, name.lower()


def _tls(server: Obj, issues: Issues) -> ServerTLS | None:
    tls = server.sub("tls", _TLS_FIELDS)
    if tls is None:
        return None
    mode = tls.text("mode") or "PASSTHROUGH"
    if mode not in _MODES:
        choices = ", ".join(_MODES)
        issues.error(tls.path("mode"), f'unsupported value "{mode}": supported values: {choices}')
        mode = "PASSTHROUGH"
    versions = []
    for name in ("minProtocolVersion", "maxProtocolVersion"):
        version = tls.text(name) or ""
        if version and version not in _TLS_VERSIONS:
            issues.error(
                tls.path(name),
                f'unsupported value "{version}": supported values: ' + ", ".join(_TLS_VERSIONS),
            )
        elif version in ("TLSV1_0", "TLSV1_1"):
            issues.note(
                tls.path(name), f"{version} is below what shadowmesh serves; TLS 1.2 is the least"
            )
        versions.append(version)
    for name in _TLS_NOT_ACTED_ON:
        if tls.has(name):
            issues.not_acted_on(tls.path(name))
    _check_ciphers(tls, versions[0], issues)
    settings = ServerTLS(
        mode=cast(TlsMode, mode),
        https_redirect=bool(tls.flag("httpsRedirect")),
        server_certificate=tls.text("serverCertificate") or "",
        private_key=tls.text("privateKey") or "",
        ca_certificates=tls.text("caCertificates") or "",
        credential_name=tls.text("credentialName") or "",
        min_protocol_version=versions[0],
        max_protocol_version=versions[1],
    )
    _check_certificates(tls, settings, issues)
    return settings


_UNIX = "unix://"
# Istio's security.ValidCipherSuites: the names Gateway.server.tls.cipherSuites accepts.
_CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    }
)


def _check_bind(bind: str, port: Obj | None, path: str, issues: Issues) -> None:
    """Istio's ``validateServerBind``: an IP, or ``unix://`` with an absolute path and port 0."""
    if bind.startswith(_UNIX):
        address = bind[len(_UNIX) :]
        if not address:
            issues.error(path, "unix address must not be empty")
        elif not address.startswith("@") and (not address.startswith("/") or address.endswith("/")):
            issues.error(path, f"{address} is not an absolute path to a file")
        if port is not None and port.integer("number"):
            issues.error(path, "port number must be 0 for unix domain socket")
    elif bind and not validate.ip_address(bind):
        issues.error(path, f"{bind} is not a valid IP")


def _check_ciphers(tls: Obj, min_version: str, issues: Issues) -> None:
    """Istio's cipher warnings in ``validateTLSOptions``: unknown or repeated suites are ignored."""
    suites = tls.texts("cipherSuites")
    path = tls.path("cipherSuites")
    if min_version in ("TLSV1_0", "TLSV1_1") and not suites:
        issues.note(
            tls.path("minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no "
            "longer include compatible ciphers.",
        )
    invalid, seen, repeated = set(), set(), set()
    for suite in suites:
        # "", ALL and expressions (-X, +X, !X) pass as Istio lets them (IsValidCipherSuite).
        if suite and suite != "ALL" and suite[0].isalnum() and suite not in _CIPHER_SUITES:
            invalid.add(suite)
        elif suite in seen:
            repeated.add(suite)
        seen.add(suite)
    if invalid:
        issues.note(path, f"ignoring invalid cipher suites: [{' '.join(sorted(invalid))}]")
    if repeated:
        issues.note(path, f"ignoring duplicate cipher suites: [{' '.join(sorted(repeated))}]")


def _check_certificates(tls: Obj, s: ServerTLS, issues: Issues) -> None:
    """The certificate rules of Istio 1.31's ``validateTLSOptions``, in its order."""
    at = tls.at
    names = len(tls.get("credentialNames") or ())
    pairs = [p for p in tls.get("tlsCertificates") or () if isinstance(p, dict)]
    crl = tls.text("caCrl") or ""
    if s.mode == "ISTIO_MUTUAL":
        for present, what in (
            (s.server_certificate, "server certificate"),
            (s.private_key, "private key"),
            (s.ca_certificates, "CA bundle"),
            (pairs, "tlsCertificates"),
            (s.credential_name, "credentialName"),
            (names, "credentialNames"),
        ):
            if present:
                issues.error(at, f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if s.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
        if (
            crl
            or s.server_certificate
            or s.private_key
            or s.ca_certificates
            or pairs
            or s.credential_name
            or names
        ):
            issues.note(
                tls.path("mode"), f"{s.mode} mode does not use certificates, they will be ignored"
            )
    sources = sum(
        (bool(s.server_certificate and s.private_key), bool(s.credential_name), bool(names))
    ) + bool(pairs)
    if sources > 1:
        issues.error(
            at,
            "only one of credential_name, credential_names, server_certificate/private_key, "
            "tls_certificates should be specified",
        )
    terminated = s.mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
    if terminated and (s.credential_name or names):
        return  # the credential is fetched by name: no files are needed
    if terminated:
        prefix = "SIMPLE TLS" if s.mode == "SIMPLE" else "MUTUAL TLS"
        if s.mode != "SIMPLE" and not s.ca_certificates:
            issues.error(at, f"{prefix} requires a client CA bundle")
        checked = [
            (
                p.get("serverCertificate") or p.get("server_certificate"),
                p.get("privateKey") or p.get("private_key"),
            )
            for p in pairs
        ]
        for certificate, key in checked or [(s.server_certificate, s.private_key)]:
            if not certificate:
                issues.error(at, f"{prefix} requires a server certificate")
            if not key:
                issues.error(at, f"{prefix} requires a private key")
    if crl and s.credential_name:
        issues.error(
            at,
            "CRL is not supported with credentialName. CRL has to be specified in the credential",
        )
    if crl and s.mode == "SIMPLE":
        issues.error(at, "CRL is not supported with SIMPLE TLS")
