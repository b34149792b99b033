"""Delegate VirtualServices merged into their roots, as istiod merges them.

Istio (``pilot/pkg/model/virtualservice.go``, ``virtualservice_controller.go``, 1.31): a root
route with ``delegate`` is replaced by the delegate's routes. Each delegate match must fit
inside some root match (``hasConflict``), or that delegate route is dropped; merged matches
take the delegate's value where set and the root's otherwise, maps merged; the delegate's
unset fields (timeout, mirrors, rewrite, directResponse, retries, fault, corsPolicy,
headers) take the root's. One level only; a delegate not found, or not
exported to the root's namespace, drops that root route.

Hosts are resolved to FQDNs here, each in the namespace of the VirtualService that wrote it,
so a merged route no longer depends on which namespace it came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TypeVar

from shadowmesh.model.resources import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    StringMatch,
    VirtualService,
    fqdn,
)


def resolved(route: HTTPRoute, namespace: str) -> HTTPRoute:
    """The route with every destination and mirror host as an FQDN."""

    def host(d: Destination) -> Destination:
        return dataclasses.replace(d, host=fqdn(d.host, namespace))

    return dataclasses.replace(
        route,
        route=tuple(dataclasses.replace(r, destination=host(r.destination)) for r in route.route),
        mirrors=tuple(
            dataclasses.replace(m, destination=host(m.destination)) for m in route.mirrors
        ),
    )


def expand(
    vs: VirtualService, delegates: Mapping[tuple[str, str], VirtualService], notes: list[str]
) -> Iterator[HTTPRoute]:
    """The routes of a root VirtualService with every delegate merged in, hosts resolved."""
    ns = vs.meta.namespace
    for route in vs.http:
        if route.delegate is None:
            yield resolved(route, ns)
            continue
        name, namespace = route.delegate
        target = delegates.get((namespace or ns, name))
        where = f"{namespace or ns}/{name}"
        if target is None:
            notes.append(f"delegate virtual service {where} of {ns}/{vs.meta.name} not found")
            continue
        if not target.visible_in(ns):
            notes.append(
                f"delegate virtual service {where} of {ns}/{vs.meta.name} is not exported to {ns}"
            )
            continue
        for sub in target.http:
            merged = merge(route, resolved(sub, target.meta.namespace))
            if merged is None:
                notes.append(
                    f"HTTPMatchRequests conflict: root route {route.name}, delegate route "
                    f"{sub.name}"
                )
            else:
                yield merged


def merge(root: HTTPRoute, delegate: HTTPRoute) -> HTTPRoute | None:
    """Istio's ``mergeHTTPRoute``; None when the delegate's matches conflict with the root's."""
    matches = _merge_matches(root.match, delegate.match)
    if matches is None:
        return None
    return dataclasses.replace(
        delegate,
        name=_join(root.name, delegate.name),
        match=matches,
        timeout=delegate.timeout if delegate.timeout is not None else root.timeout,
        mirrors=delegate.mirrors or root.mirrors,
        delegate=None,
        rewrite=_either(delegate.rewrite, root.rewrite),
        direct_response=_either(delegate.direct_response, root.direct_response),
        retries=_either(delegate.retries, root.retries),
        fault=_either(delegate.fault, root.fault),
        cors_policy=_either(delegate.cors_policy, root.cors_policy),
        headers=_either(delegate.headers, root.headers),
    )


_T = TypeVar("_T")


def _either(mine: _T | None, root: _T | None) -> _T | None:
    return mine if mine is not None else root


def _join(root: str, delegate: str) -> str:
    if not delegate:
        return root
    return f"{root}-{delegate}" if root else delegate


def _merge_matches(
    root: tuple[HTTPMatchRequest, ...], delegate: tuple[HTTPMatchRequest, ...]
) -> tuple[HTTPMatchRequest, ...] | None:
    if not root:
        return delegate
    if not delegate:
        return root
    out: list[HTTPMatchRequest] = []
    for sub in delegate:
        fits = [top for top in root if not _conflict(top, sub)]
        if not fits:
            return None
        out.extend(_merge_match(top, sub) for top in fits)
    return tuple(out)


def _merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    return dataclasses.replace(
        leaf,
        name=_join(root.name, leaf.name),
        uri=leaf.uri or root.uri,
        scheme=leaf.scheme or root.scheme,
        method=leaf.method or root.method,
        authority=leaf.authority or root.authority,
        headers={**root.headers, **leaf.headers},
        without_headers={**root.without_headers, **leaf.without_headers},
        query_params={**root.query_params, **leaf.query_params},
        source_labels={**root.source_labels, **leaf.source_labels},
        port=leaf.port or root.port,
        gateways=leaf.gateways or root.gateways,
    )


def _conflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """Istio's ``hasConflict``: whether ``leaf`` can match outside ``root``."""
    pairs = (
        (root.uri, leaf.uri),
        (root.scheme, leaf.scheme),
        (root.method, leaf.method),
        (root.authority, leaf.authority),
    )
    if any(_string_conflict(a, b) for a, b in pairs):
        return True
    for mine, theirs in (
        (root.headers, leaf.headers),
        (root.without_headers, leaf.without_headers),
        (root.query_params, leaf.query_params),
    ):
        if any(_string_conflict(mine.get(k), v) for k, v in theirs.items()):
            return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.gateways and leaf.gateways:
        return len(root.gateways) < len(leaf.gateways) or not set(leaf.gateways) <= set(
            root.gateways
        )
    return False


def _string_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    if root is None or leaf is None:
        return False
    if root.kind == "regex" or leaf.kind == "regex":
        return True
    if root.kind == "exact":
        return leaf.kind != "exact" or leaf.value != root.value
    # root is a prefix: the leaf must stay under it
    return not leaf.value.startswith(root.value)
