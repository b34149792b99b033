"""Istio's standard metrics, ``istio_requests_total`` and its three histograms, at scrape time.

The data plane keeps one ``RequestCell`` per (cluster, endpoint or Host, status, flag) and
nothing else (``observe.stats``); here each cell is given Istio's 25 labels from the config the
route table was compiled from, as a client sidecar (``reporter="source"``) fills them
(istio/proxy ``istio_stats.cc``, client side):

- destination_*: the endpoint's WorkloadEntry, as Envoy reads it from endpoint metadata and the
  metadata exchange: workload name (the ``service.istio.io/workload-name`` label, else the
  entry's name), namespace, ``app`` and ``version`` labels, canonical service and revision (Istio's
  label fallbacks); ``unknown`` (revision ``latest``) when no endpoint was picked.
- destination_service / _name: the cluster's Service (FQDN, and its name); with no cluster (404
  NR, 503 NC), the request's Host header as sent, as Envoy falls back to it.
- source_*: shadowmesh is no workload of the mesh: ``unknown``, revision ``latest``.
- connection_security_policy ``unknown`` (a client never knows), principals ``unknown`` (no
  mTLS), request_protocol ``http`` and grpc_response_status empty (HTTP/1.1 only: no gRPC).

Shadows are not counted here, as Istio's client sidecar does not count them (the mirror's
async client skips the filters); shadowmesh's own ``shadowmesh_shadows_*`` counters do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shadowmesh.observe.stats import ISTIO_BOUNDS, CellKey, Peer, RequestCell
from shadowmesh.routing.clusters import Cluster
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.inventory import host_namespace
from shadowmesh.routing.table import RouteTable

UNKNOWN = "unknown"
LATEST = "latest"
# Istio's single-cluster default cluster id (``global.multiCluster.clusterName`` unset).
CLUSTER_ID = "Kubernetes"

LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)

# reporter and source_*: the same for every request shadowmesh reports.
_SOURCE = ("source", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, LATEST, UNKNOWN)
_NO_PEER = (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)  # workload, ns, principal, app, version

# Label keys Istio reads a workload's names from, in its order of preference.
WORKLOAD_NAME = ("service.istio.io/workload-name",)
CANONICAL_NAME = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
CANONICAL_REVISION = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
APP = ("app", "app.kubernetes.io/name")
VERSION = ("version", "app.kubernetes.io/version")

Source = Callable[[], tuple[Mapping[CellKey, RequestCell], RouteTable | None]]
LabelValues = tuple[str, ...]


@dataclass(frozen=True)
class Destination:
    """The destination_* labels of one (cluster, peer), in ``LABELS`` order."""

    workload: str = UNKNOWN
    workload_namespace: str = UNKNOWN
    principal: str = UNKNOWN
    app: str = UNKNOWN
    version: str = UNKNOWN
    service: str = UNKNOWN
    service_name: str = UNKNOWN
    service_namespace: str = UNKNOWN
    canonical_service: str = UNKNOWN
    canonical_revision: str = LATEST
    cluster: str = UNKNOWN

    def values(self) -> LabelValues:
        return (
            self.workload,
            self.workload_namespace,
            self.principal,
            self.app,
            self.version,
            self.service,
            self.service_name,
            self.service_namespace,
            self.canonical_service,
            self.canonical_revision,
            self.cluster,
        )


def first_label(labels: Mapping[str, str], keys: tuple[str, ...], default: str) -> str:
    return next((labels[k] for k in keys if labels.get(k)), default)


def service_name(host: str) -> str:
    """The Service's own name for a cluster-local host (``httpbin``); any other host (a
    ServiceEntry's) is its own name, as Istio's cluster metadata has it."""
    return host.split(".", 1)[0] if host_namespace(host) is not None else host


def parse_cluster_name(name: str) -> str:
    """The host of ``outbound|8000|v1|httpbin.default.svc.cluster.local``, "" if not one."""
    parts = name.split("|")
    return parts[3] if len(parts) == 4 and parts[0] == "outbound" else ""


def destination(cluster: Cluster | None, host: str, peer: Peer) -> Destination:
    """The destination labels of a request to ``host`` (a cluster's) through ``peer``."""
    member = None
    if cluster is not None and isinstance(peer, Endpoint):
        member = next((m for m in cluster.members if m.endpoint == peer), None)
    service = host or UNKNOWN
    name = service_name(host) if host else UNKNOWN
    if member is None:
        return Destination(service=service, service_name=name)
    namespace, _, entry = member.workload.partition("/")
    labels = member.labels
    workload = first_label(labels, WORKLOAD_NAME, entry)
    return Destination(
        workload=workload,
        workload_namespace=namespace,
        app=first_label(labels, APP, UNKNOWN),
        version=first_label(labels, VERSION, UNKNOWN),
        service=service,
        service_name=name,
        service_namespace=namespace,
        canonical_service=first_label(labels, CANONICAL_NAME, workload),
        canonical_revision=first_label(labels, CANONICAL_REVISION, LATEST),
        cluster=CLUSTER_ID,
    )


def _host_fallback(peer: Peer) -> Destination:
    """No cluster: Envoy names the destination service by the Host header, as sent."""
    host = peer if isinstance(peer, str) and peer else UNKNOWN
    return Destination(service=host, service_name=host)


class IstioCollector(Collector):
    """Expands the data plane's cells into Istio's metric families on every scrape.

    Destinations are resolved against the route table in force; a cluster a newer config
    removed keeps the labels it was last seen with (else what its name tells).
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self._known: dict[tuple[str, Peer], Destination] = {}

    def collect(self) -> Iterator[Metric]:
        cells, table = self.source()
        merged: dict[LabelValues, list[RequestCell]] = {}
        for key, cell in list(cells.items()):
            merged.setdefault(self.labels(key, table), []).append(cell)
        requests = CounterMetricFamily(
            "istio_requests", "Requests the proxy handled (Istio standard metric).", labels=LABELS
        )
        histograms = {
            name: HistogramMetricFamily(name, text, labels=LABELS)
            for name, text in _HISTOGRAMS.items()
        }
        for values, group in sorted(merged.items()):
            requests.add_metric(values, float(sum(c.count for c in group)))
            for name, (buckets, total) in _histograms(group).items():
                histograms[name].add_metric(values, buckets, total)
        yield requests
        yield from histograms.values()

    def labels(self, key: CellKey, table: RouteTable | None) -> LabelValues:
        cluster_name, peer, status, flag = key
        return (
            *_SOURCE,
            *self.destination(cluster_name, peer, flag, table).values(),
            "http",
            str(status),
            "",
            flag or "-",
            UNKNOWN,
        )

    def destination(
        self, cluster_name: str, peer: Peer, flag: str, table: RouteTable | None
    ) -> Destination:
        if not cluster_name or flag == "NC":
            return _host_fallback(peer)
        cluster = table.cluster(cluster_name) if table is not None else None
        if cluster is not None:
            found = destination(cluster, cluster.host, peer)
            self._known[(cluster_name, peer)] = found
            return found
        known = self._known.get((cluster_name, peer))
        if known is not None:
            return known
        return destination(None, parse_cluster_name(cluster_name), peer)


_HISTOGRAMS = {
    "istio_request_duration_milliseconds": (
        "Request duration, first byte received to last byte sent, in milliseconds."
    ),
    "istio_request_bytes": "Request body sizes, in bytes.",
    "istio_response_bytes": "Response body sizes, in bytes.",
}
_LE = [f"{bound:g}" for bound in ISTIO_BOUNDS] + ["+Inf"]  # 0.5, 1, ... 1.8e+06, as Envoy


def _histograms(cells: list[RequestCell]) -> dict[str, tuple[list[tuple[str, float]], float]]:
    """Each histogram of ``cells`` summed, as (cumulative buckets, sum)."""
    return {
        "istio_request_duration_milliseconds": _buckets(
            [c.duration for c in cells], sum(c.duration_sum for c in cells)
        ),
        "istio_request_bytes": _buckets(
            [c.request_bytes for c in cells], sum(c.request_bytes_sum for c in cells)
        ),
        "istio_response_bytes": _buckets(
            [c.response_bytes for c in cells], sum(c.response_bytes_sum for c in cells)
        ),
    }


def _buckets(counts: list[list[int]], total: int) -> tuple[list[tuple[str, float]], float]:
    cumulative, buckets = 0, []
    for i, le in enumerate(_LE):
        cumulative += sum(c[i] for c in counts)
        buckets.append((le, float(cumulative)))
    return buckets, float(total)
