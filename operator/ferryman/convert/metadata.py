"""Metadata hygiene: what of a source object's metadata a converted object may inherit."""

from __future__ import annotations

from typing import Any

from ferryman.convert.findings import Finding, Severity

SOURCE_ANNOTATION = "ferryman.dev/source"

# Server-populated or owner-specific fields that must never be copied onto a new object.
_DROPPED_FIELDS = {
    "uid": "assigned by the API server",
    "resourceVersion": "assigned by the API server",
    "generation": "assigned by the API server",
    "creationTimestamp": "assigned by the API server",
    "deletionTimestamp": "assigned by the API server",
    "deletionGracePeriodSeconds": "assigned by the API server",
    "managedFields": "server-side apply bookkeeping of the source",
    "selfLink": "assigned by the API server",
    "clusterName": "obsolete server field",
    "ownerReferences": "the owners of the source do not own the converted object",
    "finalizers": "the source's finalizers belong to its controllers and would block deletion",
}
_DROPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
_DROPPED_KEY_PREFIXES = ("argocd.argoproj.io/", "kopf.zalando.org/", "kopf.dev/")
_DROPPED_KEYS = {"app.kubernetes.io/instance"}  # ArgoCD's tracking label would make Argo prune the copy


def _dropped_key(key: str) -> bool:
    return key in _DROPPED_KEYS or key in _DROPPED_ANNOTATIONS or key.startswith(_DROPPED_KEY_PREFIXES)


def source_ref(metadata: dict[str, Any]) -> str:
    """``<namespace>/<name>`` (or ``<name>``) of the source object."""
    name = str(metadata.get("name") or metadata.get("generateName") or "")
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def clean_metadata(
    metadata: dict[str, Any], name: str, path: str = "metadata"
) -> tuple[dict[str, Any], list[Finding]]:
    """Metadata for an object converted from one with ``metadata``, named ``name``.

    Keeps namespace, labels and annotations minus server, GitOps and kopf bookkeeping; records the source
    in the ``ferryman.dev/source`` annotation. Every dropped entry is reported (info).
    """
    findings: list[Finding] = []
    out: dict[str, Any] = {"name": name}
    for key, value in metadata.items():
        if key in ("name", "generateName"):
            continue
        if key in _DROPPED_FIELDS:
            findings.append(
                Finding(
                    severity=Severity.INFO,
                    path=f"{path}.{key}",
                    code="metadata-dropped",
                    message=f"{key} not copied: {_DROPPED_FIELDS[key]}",
                )
            )
        elif key in ("labels", "annotations"):
            kept = {}
            for entry, entry_value in (value or {}).items():
                if _dropped_key(entry):
                    findings.append(
                        Finding(
                            severity=Severity.INFO,
                            path=f"{path}.{key}.{entry}",
                            code="metadata-dropped",
                            message=(
                                f"{key[:-1]} {entry} not copied: it belongs to the tool managing the source"
                            ),
                        )
                    )
                else:
                    kept[entry] = entry_value
            if kept:
                out[key] = kept
        else:
            out[key] = value
    out["annotations"] = {**out.get("annotations", {}), SOURCE_ANNOTATION: source_ref(metadata)}
    return out, findings
