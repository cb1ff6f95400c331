"""The custom resources ferryman serves, and their rendering into `crds/` (`make crds`)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from ferryman.api.crd import CustomResource, crd_manifest
from ferryman.api.cutoverpolicy import CUTOVER_POLICY

RESOURCES: tuple[CustomResource, ...] = (CUTOVER_POLICY,)

HEADER = "# Generated from operator/ferryman/api by `make crds`; do not edit.\n"


def render_crds() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {
        f"{resource.group}_{resource.plural}.yaml": HEADER
        + yaml.safe_dump(crd_manifest(resource), sort_keys=False, width=120)
        for resource in RESOURCES
    }


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    for stale in directory.glob("*.yaml"):
        if stale not in written:
            stale.unlink()
    return written


if __name__ == "__main__":
    for written_path in write_crds(Path(sys.argv[1] if len(sys.argv) > 1 else "crds")):
        print(f"wrote {written_path}")
