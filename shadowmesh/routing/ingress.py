"""The ingress: Istio Gateways' servers as listeners, and the VirtualServices bound to them.

Every Gateway is served by the one ingress this proxy is (its ``selector`` names Istio's
ingress pods, which shadowmesh stands for), so servers of several Gateways on one port share
its listener, as servers merged on one gateway workload do. Per port:

- the servers it serves: HTTP ones, and HTTPS ones whose TLS shadowmesh terminates (SIMPLE,
  MUTUAL); PASSTHROUGH, AUTO_PASSTHROUGH and ISTIO_MUTUAL servers are left out (the loader
  warned about them). A port with a TLS server is a TLS port; plain servers on it are left out;
- its virtual hosts: each VirtualService bound to a Gateway (``gateways: [ns/name]``, a short
  name in the VirtualService's namespace), for each host that one of that Gateway's servers on
  the port admits (``ns/host``: ``*`` any namespace, ``.`` the Gateway's), under the narrower
  of the two names (``*`` meets ``bookinfo.com`` as ``bookinfo.com``). The first VirtualService
  by namespace/name wins a host, as on the mesh; ``match.gateways`` selects matches;
- ``https_redirect``: the port's servers ask plain HTTP to be sent to https (301).

Pure: the data plane reads the certificate files and opens the listeners.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shadowmesh.model.gateway import HTTP_PROTOCOLS
from shadowmesh.model.resources import Gateway, GatewayServer, ServerTLS, VirtualService

# Listener keys from here up name ingress ports (key - GATEWAY_KEY); below, Service ports.
GATEWAY_KEY = 1 << 16
_TERMINATED = ("SIMPLE", "MUTUAL")


@dataclass(frozen=True)
class TlsServer:
    """TLS to terminate for the SNI names ``hosts`` (``*``: any, the default certificate)."""

    hosts: tuple[str, ...]
    tls: ServerTLS
    gateway: str  # namespace/name, for messages


@dataclass(frozen=True)
class IngressPlan:
    """What the listener of one ingress port must be; equal plans keep their listener."""

    port: int
    tls: tuple[TlsServer, ...] = ()  # empty: plain HTTP
    https_redirect: bool = False


@dataclass(frozen=True)
class IngressPort:
    plan: IngressPlan
    servers: tuple[tuple[Gateway, GatewayServer], ...]
    notes: tuple[str, ...] = field(default=())
    dropped: tuple[str, ...] = ()  # namespace/name of Gateways whose servers are left out


def ingress_ports(gateways: Iterable[Gateway]) -> dict[int, IngressPort]:
    """Per port, the servers the ingress serves there and its listener's plan."""
    by_port: dict[int, list[tuple[Gateway, GatewayServer]]] = {}
    for gateway in gateways:
        for server in gateway.servers:
            if _served(server):
                by_port.setdefault(server.port, []).append((gateway, server))
    out: dict[int, IngressPort] = {}
    for port, servers in sorted(by_port.items()):
        secure = [(g, s) for g, s in servers if s.tls is not None and s.tls.mode in _TERMINATED]
        notes: list[str] = []
        dropped: tuple[str, ...] = ()
        if secure and len(secure) != len(servers):
            dropped = tuple(dict.fromkeys(g.key for g, s in servers if (g, s) not in secure))
            notes.append(
                f"port {port} has TLS servers and plain-text ones (of {', '.join(dropped)}); the "
                "plain-text ones are not served"
            )
            servers = secure
        tls = tuple(
            TlsServer(tuple(h for _, h in s.hosts), s.tls, g.key)
            for g, s in secure
            if s.tls is not None
        )
        redirect = not secure and any(
            s.tls is not None and s.tls.https_redirect for _, s in servers
        )
        plan = IngressPlan(port, tls, redirect)
        out[port] = IngressPort(plan, tuple(servers), tuple(notes), dropped)
    return out


def _served(server: GatewayServer) -> bool:
    if server.protocol in HTTP_PROTOCOLS:
        return True
    return server.protocol == "HTTPS" and server.tls is not None and server.tls.mode in _TERMINATED


def admits(gateway: Gateway, server: GatewayServer, vs: VirtualService, host: str) -> str | None:
    """The name under which ``server`` serves VirtualService host ``host``, or None."""
    for namespace, allowed in server.hosts:
        if namespace == "." and vs.meta.namespace != gateway.meta.namespace:
            continue
        if namespace not in ("*", ".") and namespace != vs.meta.namespace:
            continue
        name = intersect(host, allowed)
        if name is not None:
            return name
    return None


def intersect(a: str, b: str) -> str | None:
    """The narrower of two host names when one covers the other (``*`` covers every name)."""
    if a == b or b == "*":
        return a
    if a == "*":
        return b
    if a.startswith("*") and b.endswith(a[1:]):
        return b
    if b.startswith("*") and a.endswith(b[1:]):
        return a
    return None


def bound_to(vs: VirtualService, gateway: Gateway) -> bool:
    return not vs.is_delegate and gateway.key in vs.bound_gateways()
