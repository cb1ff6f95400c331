"""The ferryman image as `make image` builds it (``deploy/image/build.sh``), for tests on the real node."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from ferryman import __version__
from ferryman_dev.cluster import ClusterError, repo_root

IMAGE_ARCHIVE = Path(".cache") / "image" / "ferryman.oci.tar"
LOCAL_IMAGE = f"localhost/ferryman:{__version__}"  # the name build.sh gives the image


def image_archive(root: Path | None = None) -> Path:
    """The OCI archive of `make image` (``deploy/image/build.sh``), which rebuilds it when it is stale."""
    root = root or repo_root()
    result = subprocess.run(
        ["make", "--no-print-directory", "image"], cwd=root, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"make image failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
    return root / IMAGE_ARCHIVE


def image_name(archive: Path) -> str:
    """The image reference the archive's index names (``localhost/ferryman:<version>``)."""
    index = _member_json(archive, "index.json")
    return str(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])


def image_config(archive: Path) -> dict[str, Any]:
    """The OCI image config (``config``: User, Entrypoint, Env, WorkingDir, ...) of the archive's image."""
    index = _member_json(archive, "index.json")
    manifest = _member_json(archive, _blob(index["manifests"][0]["digest"]))
    return _member_json(archive, _blob(manifest["config"]["digest"]))


def _blob(digest: str) -> str:
    algorithm, value = digest.split(":", 1)
    return f"blobs/{algorithm}/{value}"


def _member_json(archive: Path, name: str) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        for candidate in (name, f"./{name}"):
            try:
                member = tar.extractfile(candidate)
            except KeyError:
                continue
            if member is not None:
                return dict(json.load(member))
    raise ClusterError(f"{archive} has no {name}")
