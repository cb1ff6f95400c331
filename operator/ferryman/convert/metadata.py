"""Metadata hygiene: what of a source object's metadata a converted object may inherit."""

from __future__ import annotations

from typing import Any

from ferryman.api.kinds import DROPPED_METADATA_FIELDS, SOURCE_ANNOTATION, is_foreign_metadata
from ferryman.convert.findings import Finding, Severity


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
        if key in DROPPED_METADATA_FIELDS:
            findings.append(
                Finding(
                    severity=Severity.INFO,
                    path=f"{path}.{key}",
                    code="metadata-dropped",
                    message=f"{key} not copied: {DROPPED_METADATA_FIELDS[key]}",
                )
            )
        elif key in ("labels", "annotations"):
            kept = {}
            for entry, entry_value in (value or {}).items():
                if is_foreign_metadata(entry):
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
