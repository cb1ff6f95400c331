"""Upstream CRDs, default runtimes and example jobs at pinned versions, fetched from the Go module proxy.

The Kubeflow Trainer, Training Operator and JobSet Go modules ship their CRD manifests, runtimes and
examples inside the module zip, so ``go mod download`` (module cache under ``go env GOMODCACHE``)
is all it takes to get them at an exact version; nothing upstream is copied into this repository.

Which Trainer release stands for which :class:`~ferryman.api.trainer.TrainerAPI` flavour:

* ``v2.0`` -> ``github.com/kubeflow/trainer/v2`` ``v2.0.0`` (``podSpecOverrides``)
* ``v2.1`` -> ``v2.1.0`` (``podTemplateOverrides``, IntOrString ``numProcPerNode``)
* ``v2.2`` -> ``v2.3.0``, the current release (``runtimePatches``, integer ``numProcPerNode``)

The proxy's version list for these modules is incomplete (it lists only ``v2.0.0`` and training-operator
``v1.8.1``), but the pinned versions resolve when asked for by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ferryman.api.trainer import TrainerAPI

TRAINER_MODULE = "github.com/kubeflow/trainer/v2"
TRAINER_VERSIONS: dict[TrainerAPI, str] = {
    TrainerAPI.V2_0: "v2.0.0",
    TrainerAPI.V2_1: "v2.1.0",
    TrainerAPI.V2_2: "v2.3.0",
}
TRAINING_OPERATOR_MODULE = "github.com/kubeflow/training-operator"
TRAINING_OPERATOR_VERSION = "v1.9.4"
JOBSET_MODULE = "sigs.k8s.io/jobset"
JOBSET_VERSION = "v0.12.0"  # the JobSet release Trainer v2.3.0 builds against

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UpstreamUnavailable(RuntimeError):
    """A pinned upstream module cannot be obtained (no Go toolchain, or the module proxy is unreachable)."""


@cache
def module_dir(module: str, version: str) -> Path:
    """The extracted module ``module@version`` in the Go module cache, downloading it if needed."""
    go = shutil.which("go")
    if go is None:
        raise UpstreamUnavailable(
            f"cannot fetch {module}@{version}: no `go` on PATH (install Go >= 1.26 to get upstream CRDs)"
        )
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""}
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,  # outside any Go module: a plain download
        check=False,
    )
    info: dict[str, Any] = {}
    if done.stdout.strip():
        info = json.loads(done.stdout)
    if done.returncode != 0 or "Dir" not in info:
        reason = info.get("Error") or done.stderr.strip() or f"go mod download exited {done.returncode}"
        raise UpstreamUnavailable(
            f"cannot fetch {module}@{version} from the Go module proxy ({env.get('GOPROXY') or 'default'}): "
            f"{reason}"
        )
    return Path(info["Dir"])


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a manifest file (fresh objects; parsed once per process)."""
    return list(json.loads(_documents_json(path)))


@cache
def _documents_json(path: Path) -> str:
    with path.open(encoding="utf-8") as stream:
        return json.dumps([doc for doc in yaml.load_all(stream, Loader=_Loader) if doc])


def trainer_dir(trainer_api: TrainerAPI) -> Path:
    return module_dir(TRAINER_MODULE, TRAINER_VERSIONS[trainer_api])


def trainer_crds(trainer_api: TrainerAPI) -> list[Path]:
    """TrainJob, TrainingRuntime and ClusterTrainingRuntime CRDs of the release serving ``trainer_api``."""
    crds = trainer_dir(trainer_api) / "manifests" / "base" / "crds"
    return [
        crds / f"trainer.kubeflow.org_{plural}.yaml"
        for plural in ("trainjobs", "trainingruntimes", "clustertrainingruntimes")
    ]


def pytorchjob_crd() -> Path:
    """The Training Operator v1.9 PyTorchJob CRD."""
    root = module_dir(TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION)
    return root / "manifests" / "base" / "crds" / "kubeflow.org_pytorchjobs.yaml"


def jobset_crd() -> Path:
    root = module_dir(JOBSET_MODULE, JOBSET_VERSION)
    return root / "config" / "components" / "crd" / "bases" / "jobset.x-k8s.io_jobsets.yaml"


def upstream_crds(trainer_api: TrainerAPI = TrainerAPI.V2_2) -> list[Path]:
    """Every upstream CRD a test cluster serves: Trainer (flavour ``trainer_api``), PyTorchJob and JobSet."""
    return [*trainer_crds(trainer_api), pytorchjob_crd(), jobset_crd()]


def trainjob_crd(trainer_api: TrainerAPI = TrainerAPI.V2_2) -> dict[str, Any]:
    """The parsed TrainJob CRD of the release serving ``trainer_api``."""
    (doc,) = load_documents(trainer_crds(trainer_api)[0])
    return doc


def default_runtimes(trainer_api: TrainerAPI = TrainerAPI.V2_2) -> list[dict[str, Any]]:
    """The ClusterTrainingRuntimes a Trainer release installs by default (its ``manifests/base/runtimes``)."""
    return [
        doc
        for path in _kustomize_files(trainer_dir(trainer_api) / "manifests/base/runtimes")
        for doc in load_documents(path)
    ]


def _kustomize_files(directory: Path) -> list[Path]:
    """The resource files a kustomization lists, following nested kustomization directories."""
    (kustomization,) = load_documents(directory / "kustomization.yaml")
    files: list[Path] = []
    for entry in kustomization.get("resources", []):
        target = directory / entry
        files.extend(_kustomize_files(target) if target.is_dir() else [target])
    return files


def pytorchjob_examples() -> list[tuple[Path, dict[str, Any]]]:
    """The Training Operator's example PyTorchJobs (``examples/pytorch``), each with the file it came from."""
    root = module_dir(TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION) / "examples" / "pytorch"
    return [
        (path, doc)
        for path in sorted(root.rglob("*.yaml"))
        for doc in load_documents(path)
        if doc.get("kind") == "PyTorchJob"
    ]
