"""Every kind shadowmesh knows, in one table: those it acts on, and those it skips.

A kind it acts on is declared once here with everything each layer needs: its apiVersions, how
its spec is read (``model``), the names kubectl gives it (``vs``, ``virtualservices``...,
``control``) and its ``kubectl get`` columns (``cli``), which are data, as a CRD's
``additionalPrinterColumns`` are. Adding a kind is adding a row.

A kind it does not act on (PeerAuthentication, Sidecar, Deployment, an Argo Application...) is
skipped with one warning naming it, so a manifest that holds one still applies what shadowmesh
does act on; a security kind's warning says plainly that it is not enforced. A kind name that
none of Kubernetes, Istio or shadowmesh has in the group written (``VirtualServce``) stays an
error: a cluster refuses it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shadowmesh.model import (
    comparison,
    destinationrule,
    gateway,
    service,
    serviceentry,
    validate,
    virtualservice,
    workload,
)
from shadowmesh.model.fields import Issues, Obj
from shadowmesh.model.resources import Meta, Resource

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_VERSIONS = (
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
)


@dataclass(frozen=True)
class Column:
    """One ``kubectl get`` column: a title, the field it shows and how (cli/format renders it).

    ``show``: ``text`` (the value as is), ``json`` (a list as compact JSON, as kubectl prints a
    CRD's array column), ``labels`` (``k=v,...``), ``names`` (the ``name`` of each element),
    ``ports`` (a Service's ``port/protocol,...``), ``percent`` (``N%``, 100 when absent),
    ``subset`` (a mapping's ``subset``, ``<none>`` when absent).
    """

    title: str
    path: str  # dotted, from the document root: "spec.hosts"
    show: str = "text"
    wide: bool = False


@dataclass(frozen=True)
class KindInfo:
    kind: str  # "VirtualService", as in the documents and the store
    group: str  # "networking.istio.io"; "" for the core group
    versions: tuple[str, ...]  # apiVersions accepted, the preferred first
    singular: str  # "virtualservice"
    plural: str  # "virtualservices"
    short_names: tuple[str, ...]
    spec_fields: tuple[str, ...]
    proto: bool  # Istio's kinds are protobuf messages: both spellings of each field
    parse: Callable[[Obj, Meta | None, Issues], Resource | None]
    columns: tuple[Column, ...] = ()
    name_rule: Callable[[str], str | None] = field(default=validate.k8s_subdomain)

    @property
    def resource(self) -> str:
        """``virtualservice.networking.istio.io``: the prefix of kubectl's apply lines."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def resources(self) -> str:
        """``virtualservices.networking.istio.io``: the name in kubectl's NotFound errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def names(self) -> tuple[str, ...]:
        """Every spelling kubectl accepts for this kind, lower-cased."""
        base = (self.singular, self.plural, *self.short_names)
        if not self.group:
            return base
        return base + tuple(f"{n}.{self.group}" for n in (self.singular, self.plural))


KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        "Service",
        "",
        ("v1",),
        "service",
        "services",
        ("svc",),
        service.SPEC_FIELDS,
        False,
        service.parse_service,
        (
            Column("PORT(S)", "spec.ports", "ports"),
            Column("SELECTOR", "spec.selector", "labels", True),
        ),
        validate.dns1035_label,
    ),
    KindInfo(
        "VirtualService",
        ISTIO_NETWORKING,
        ISTIO_VERSIONS,
        "virtualservice",
        "virtualservices",
        ("vs",),
        virtualservice.SPEC_FIELDS,
        True,
        virtualservice.parse_virtual_service,
        (Column("GATEWAYS", "spec.gateways", "json"), Column("HOSTS", "spec.hosts", "json")),
    ),
    KindInfo(
        "DestinationRule",
        ISTIO_NETWORKING,
        ISTIO_VERSIONS,
        "destinationrule",
        "destinationrules",
        ("dr",),
        destinationrule.SPEC_FIELDS,
        True,
        destinationrule.parse_destination_rule,
        (Column("HOST", "spec.host"), Column("SUBSETS", "spec.subsets", "names", True)),
    ),
    KindInfo(
        "WorkloadEntry",
        ISTIO_NETWORKING,
        ISTIO_VERSIONS,
        "workloadentry",
        "workloadentries",
        ("we",),
        workload.SPEC_FIELDS,
        True,
        workload.parse_workload_entry,
        (Column("ADDRESS", "spec.address"), Column("LABELS", "spec.labels", "labels", True)),
    ),
    KindInfo(
        "ServiceEntry",
        ISTIO_NETWORKING,
        ISTIO_VERSIONS,
        "serviceentry",
        "serviceentries",
        ("se",),
        serviceentry.SPEC_FIELDS,
        True,
        serviceentry.parse_service_entry,
        (
            Column("HOSTS", "spec.hosts", "json"),
            Column("LOCATION", "spec.location"),
            Column("RESOLUTION", "spec.resolution"),
        ),
    ),
    KindInfo(
        "Gateway",
        ISTIO_NETWORKING,
        ISTIO_VERSIONS,
        "gateway",
        "gateways",
        ("gw",),
        gateway.SPEC_FIELDS,
        True,
        gateway.parse_gateway,
    ),
    KindInfo(
        "Comparison",
        "shadowmesh.io",
        (comparison.API_VERSION,),
        "comparison",
        "comparisons",
        ("cmp",),
        comparison.SPEC_FIELDS,
        False,
        comparison.parse_comparison,
        (
            Column("HOST", "spec.host"),
            Column("PRIMARY", "spec.primary", "subset"),
            Column("CANDIDATE", "spec.candidate", "subset"),
            Column("BASELINE", "spec.baseline", "subset"),
            Column("SAMPLE", "spec.sample.percentage", "percent", True),
        ),
    ),
)

_BY_KIND: dict[str, KindInfo] = {info.kind: info for info in KINDS}
_BY_NAME: dict[str, KindInfo] = {name: info for info in KINDS for name in info.names()}


def kind_info(kind: str) -> KindInfo:
    """The KindInfo of a kind shadowmesh acts on (``VirtualService``); KeyError otherwise."""
    return _BY_KIND[kind]


def acted_on(kind: str) -> KindInfo | None:
    return _BY_KIND.get(kind)


def by_name(name: str) -> KindInfo | None:
    """The kind a user typed (``vs``, ``Services``, ``dr.networking.istio.io``...), or None."""
    return _BY_NAME.get(name.strip().lower())


def supported_kinds_text() -> str:
    """``Service (v1), VirtualService (networking.istio.io/v1, ...)``: for error messages."""
    parts = []
    for info in KINDS:
        versions = (
            f"{info.group}/{', '.join(v.rpartition('/')[2] for v in info.versions)}"
            if info.group
            else ", ".join(info.versions)
        )
        parts.append(f"{info.kind} ({versions})")
    return ", ".join(parts)


# --- kinds shadowmesh skips -------------------------------------------------------------------

_WORKLOADS = (
    "shadowmesh runs no workloads; declare the running process as a WorkloadEntry "
    "(networking.istio.io/v1)"
)
_NOT_ACTED_ON = "shadowmesh does not act on this kind"
_ISTIO_V1 = ("v1", "v1beta1", "v1alpha3")
_ISTIO_SECURITY = ("v1", "v1beta1")

# Istio 1.31's other kinds (istio/api), with the versions a cluster serves them in. Why each
# skipped kind is skipped: the end of its warning. Security kinds say what is not
# enforced, in capitals, because a user who applies a deny policy must not believe it holds.
_ISTIO_SKIPPED: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    (ISTIO_NETWORKING, "Sidecar"): (_ISTIO_V1, _NOT_ACTED_ON + "; every workload sees every host"),
    (ISTIO_NETWORKING, "EnvoyFilter"): (
        ("v1alpha3",),
        "shadowmesh runs no Envoy; the patch is not applied",
    ),
    (ISTIO_NETWORKING, "WorkloadGroup"): (
        _ISTIO_V1,
        _NOT_ACTED_ON + "; declare each process as a WorkloadEntry",
    ),
    (ISTIO_NETWORKING, "ProxyConfig"): (("v1beta1",), _NOT_ACTED_ON),
    ("security.istio.io", "AuthorizationPolicy"): (
        _ISTIO_SECURITY,
        "shadowmesh does not act on it: this policy is NOT ENFORCED, requests it would deny "
        "are let through",
    ),
    ("security.istio.io", "PeerAuthentication"): (
        _ISTIO_SECURITY,
        "shadowmesh does not act on it: mutual TLS is NOT ENFORCED, plain-text peers are accepted",
    ),
    ("security.istio.io", "RequestAuthentication"): (
        _ISTIO_SECURITY,
        "shadowmesh does not act on it: request JWTs are NOT VALIDATED",
    ),
    ("telemetry.istio.io", "Telemetry"): (("v1", "v1alpha1"), _NOT_ACTED_ON),
    ("extensions.istio.io", "WasmPlugin"): (("v1alpha1",), _NOT_ACTED_ON + "; no plugin is run"),
    ("install.istio.io", "IstioOperator"): (
        ("v1alpha1",),
        "it installs Istio, which shadowmesh replaces",
    ),
}

# Kubernetes' built-in kinds by group (``kubectl api-resources``), matched by name whatever the
# version: shadowmesh reads none of them but Service.
_K8S_KINDS: dict[str, tuple[str, ...]] = {
    "": (
        "Pod",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Namespace",
        "Endpoints",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "ReplicationController",
        "LimitRange",
        "ResourceQuota",
        "Node",
        "Event",
        "PodTemplate",
    ),
    "apps": ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ControllerRevision"),
    "batch": ("Job", "CronJob"),
    "autoscaling": ("HorizontalPodAutoscaler",),
    "policy": ("PodDisruptionBudget", "PodSecurityPolicy"),
    "rbac.authorization.k8s.io": ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"),
    "networking.k8s.io": ("NetworkPolicy", "Ingress", "IngressClass"),
    "gateway.networking.k8s.io": (
        "Gateway",
        "GatewayClass",
        "HTTPRoute",
        "GRPCRoute",
        "TCPRoute",
        "TLSRoute",
        "UDPRoute",
        "ReferenceGrant",
        "BackendTLSPolicy",
    ),
    "apiextensions.k8s.io": ("CustomResourceDefinition",),
    "admissionregistration.k8s.io": (
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ),
    "storage.k8s.io": ("StorageClass", "CSIDriver", "CSINode", "VolumeAttachment"),
    "scheduling.k8s.io": ("PriorityClass",),
    "coordination.k8s.io": ("Lease",),
    "discovery.k8s.io": ("EndpointSlice",),
    "node.k8s.io": ("RuntimeClass",),
    "certificates.k8s.io": ("CertificateSigningRequest",),
}
WORKLOAD_KINDS = frozenset(
    {
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "ReplicationController",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Namespace",
    }
)
_K8S_SKIPPED: dict[str, str] = {
    "NetworkPolicy": "shadowmesh does not act on it: this policy is NOT ENFORCED, all traffic is "
    "allowed",
    "HTTPRoute": _NOT_ACTED_ON + "; use an Istio VirtualService",
    "GRPCRoute": _NOT_ACTED_ON + "; use an Istio VirtualService",
    "Ingress": _NOT_ACTED_ON + "; use an Istio Gateway and VirtualService",
}
# Groups whose kinds shadowmesh knows in full: an unknown kind name in them is a typo.
_OWN_GROUPS = frozenset({*(i.group for i in KINDS), *(g for g, _ in _ISTIO_SKIPPED), *_K8S_KINDS})


@dataclass(frozen=True)
class Verdict:
    """What the loader does with a document of a kind it does not act on."""

    warning: str = ""  # skip it with this warning
    error: str = ""  # refuse it (an unknown kind in a known group, a wrong version)
    field: str = "kind"


def skipped(kind: str, api_version: str, name: str) -> Verdict | None:
    """None for a kind shadowmesh acts on (or cannot judge: no apiVersion); else the verdict."""
    group, slash, version = api_version.rpartition("/")
    if not slash:
        group, version = "", api_version
    info = _BY_KIND.get(kind)
    if info is not None and info.group == group:
        return None
    label = f'{kind} "{name}"'
    istio = _ISTIO_SKIPPED.get((group, kind))
    if istio is not None:
        versions, why = istio
        if version not in versions:
            preferred = f"{group}/{versions[0]}"
            return Verdict(
                error=f'no matches for kind "{kind}" in version "{api_version}"; '
                f"use apiVersion {preferred}",
                field="apiVersion",
            )
        return Verdict(warning=f"{label} skipped: {why}")
    # A workload kind is skipped whatever apiVersion names it (``v1 Deployment`` too): the
    # warning tells what to write instead, which helps more than a version error.
    if kind in WORKLOAD_KINDS and (group in _K8S_KINDS or not api_version):
        return Verdict(warning=f"{label} skipped: {_WORKLOADS}")
    if kind in _K8S_KINDS.get(group, ()):
        why = _K8S_SKIPPED.get(kind, _NOT_ACTED_ON)
        return Verdict(warning=f"{label} ({api_version}) skipped: {why}")
    if not api_version or group in _OWN_GROUPS or group.endswith(".istio.io"):
        return None  # the loader's own error: unknown kind, or the kind in a wrong version
    return Verdict(
        warning=f"{label} ({api_version}) skipped: not a Kubernetes or Istio kind; "
        "shadowmesh does not act on it"
    )
