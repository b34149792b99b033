"""``metadata``, the part every kind shares, read as Kubernetes reads it."""

from __future__ import annotations

from collections.abc import Callable

from shadowmesh.model import validate
from shadowmesh.model.fields import Issues, Obj, child
from shadowmesh.model.resources import Meta

# What ``kubectl get -o yaml`` writes besides name and namespace: accepted and ignored, so a
# resource exported from a cluster applies unchanged.
METADATA_FIELDS = (
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "generateName",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
)


def read_meta(
    top: Obj,
    issues: Issues,
    default_namespace: str,
    name_rule: Callable[[str], str | None] = validate.k8s_subdomain,
) -> Meta | None:
    """The resource's name and namespace; ``issues`` learns them for its messages."""
    meta = top.sub("metadata", METADATA_FIELDS, proto=False)
    if meta is None:
        if not top.has("metadata"):
            issues.error("metadata.name", "name is required")
        return None
    name = _name(meta, issues, name_rule)
    namespace = _namespace(meta, issues, default_namespace)
    _labels(meta, "labels", issues)
    meta.string_map("annotations")
    if name is None or namespace is None:
        return None
    return Meta(name=name, namespace=namespace)


def _name(meta: Obj, issues: Issues, rule: Callable[[str], str | None]) -> str | None:
    name = meta.text("name")
    if name is None:
        if not meta.has("name"):
            issues.error(meta.path("name"), "name is required")
        return None
    issues.name = name
    problem = rule(name)
    if problem:
        issues.error(meta.path("name"), problem)
        return None
    return name


def _namespace(meta: Obj, issues: Issues, default: str) -> str | None:
    namespace = meta.text("namespace") or default
    issues.namespace = namespace
    # The default (``-n``) is checked too: a bad one must not reach the store.
    problem = validate.k8s_label(namespace)
    if problem:
        issues.error(meta.path("namespace"), problem)
        return None
    return namespace


def _labels(meta: Obj, name: str, issues: Issues) -> dict[str, str]:
    labels = meta.string_map(name)
    check_labels(labels, meta.path(name), issues)
    return labels


def check_labels(labels: dict[str, str], path: str, issues: Issues) -> None:
    """Label keys and values as Kubernetes and Istio (``labels.Instance.Validate``) allow."""
    for key, value in labels.items():
        problem = validate.label_key(key) or validate.label_value(value)
        if problem:
            issues.error(child(path, key), problem)


# Istio's validateMetadata (pkg/config/validation, Istio 1.31): annotations its webhook refuses
# on every Istio kind shadowmesh reads (none of them is an AuthorizationPolicy, the one kind that
# may carry istio.io/dry-run).
_INTERNAL_ANNOTATIONS = ("internal.istio.io/parent-namespace", "internal.istio.io/parents")


def check_istio_annotations(top: Obj, issues: Issues) -> None:
    metadata = top.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict):
        return
    path = "metadata.annotations"
    if "istio.io/dry-run" in annotations:
        issues.error(
            child(path, "istio.io/dry-run"),
            f"{issues.namespace}/{issues.name} has unsupported annotation istio.io/dry-run, "
            "please remove the annotation",
        )
    if "internal.istio.io/webhook-always-reject" in annotations:
        issues.error(
            child(path, "internal.istio.io/webhook-always-reject"),
            '"internal.istio.io/webhook-always-reject" annotation found, rejecting',
        )
    for name in _INTERNAL_ANNOTATIONS:
        if name in annotations:
            issues.error(
                child(path, name), f'"{name}" annotation found, this may not be set by users'
            )
