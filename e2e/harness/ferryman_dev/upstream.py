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


def v1_crd(plural: str) -> Path:
    """A Training Operator v1.9 CRD: ``pytorchjobs``, ``tfjobs``, ``mpijobs`` (v1), ``xgboostjobs``, ..."""
    root = module_dir(TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION)
    return root / "manifests" / "base" / "crds" / f"kubeflow.org_{plural}.yaml"


def pytorchjob_crd() -> Path:
    """The Training Operator v1.9 PyTorchJob CRD."""
    return v1_crd("pytorchjobs")


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
    return kustomize(trainer_dir(trainer_api) / "manifests/base/runtimes")


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The documents a kustomization builds from its ``resources`` and ``patches``.

    Patches are JSON 6902 operation lists applied to a ``target``, or strategic-merge patches (a file or an
    inline ``patch``) merged into the document of the same kind and name. That is all the upstream base
    manifests the harness reads use (runtimes, webhook configurations, CRDs); name references, name
    prefixes and namespaces, which only matter inside a cluster, are left to the caller.
    """
    (kustomization,) = load_documents(directory / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = directory / entry
        docs.extend(kustomize(target) if target.is_dir() else load_documents(target))
    for patch in kustomization.get("patches", []):
        if "patch" in patch:
            patches = [doc for doc in yaml.load_all(patch["patch"], Loader=_Loader) if doc]
        elif "path" in patch:
            patches = load_documents(directory / patch["path"])
        else:
            raise UpstreamUnavailable(f"{directory}/kustomization.yaml: unsupported patch {patch}")
        if len(patches) == 1 and isinstance(patches[0], list):  # JSON 6902
            if "target" not in patch:
                raise UpstreamUnavailable(f"{directory}/kustomization.yaml: a JSON patch without a target")
            for doc in docs:
                if _targeted(doc, patch["target"]):
                    for operation in patches[0]:
                        _json_patch(doc, operation)
            continue
        for merge in patches:
            if not isinstance(merge, dict) or "kind" not in merge or "name" not in merge.get("metadata", {}):
                raise UpstreamUnavailable(f"{directory}/kustomization.yaml: unsupported patch {patch}")
            key = (merge["kind"], merge["metadata"]["name"])
            matches = [doc for doc in docs if (doc.get("kind"), doc["metadata"].get("name")) == key]
            if not matches:
                raise UpstreamUnavailable(f"{directory}: a patch for {key}, which no resource is")
            for doc in matches:
                _strategic_merge(doc, merge)
    return docs


def _strategic_merge(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge ``patch`` into ``doc``: mappings key by key, lists of named items item by name, else replace."""
    for key, value in patch.items():
        old = doc.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _strategic_merge(old, value)
        elif isinstance(old, list) and isinstance(value, list) and all(_named(v) for v in value):
            by_name = {item.get("name"): item for item in old if isinstance(item, dict)}
            for item in value:
                if item["name"] in by_name:
                    _strategic_merge(by_name[item["name"]], item)
                else:
                    old.append(item)
        else:
            doc[key] = value


def _named(item: Any) -> bool:
    return isinstance(item, dict) and "name" in item


def _targeted(doc: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    actual = {
        "group": group,
        "version": version,
        "kind": doc.get("kind"),
        "name": doc["metadata"].get("name"),
    }
    return all(actual[key] == value for key, value in target.items() if key in actual)


def _json_patch(doc: Any, operation: dict[str, Any]) -> None:
    """Apply one RFC 6902 ``add``, ``replace`` or ``remove`` operation to ``doc`` in place."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    op = operation["op"]
    if isinstance(doc, list):
        index = len(doc) if last == "-" else int(last)
        if op == "add":
            doc.insert(index, operation["value"])
        elif op == "replace":
            doc[index] = operation["value"]
        elif op == "remove":
            del doc[index]
        else:
            raise UpstreamUnavailable(f"unsupported JSON patch operation {op!r}")
    elif op in ("add", "replace"):
        doc[last] = operation["value"]
    elif op == "remove":
        del doc[last]
    else:
        raise UpstreamUnavailable(f"unsupported JSON patch operation {op!r}")


def pytorchjob_examples() -> list[tuple[Path, dict[str, Any]]]:
    """The Training Operator's example PyTorchJobs (``examples/pytorch``), each with the file it came from."""
    root = module_dir(TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION) / "examples" / "pytorch"
    return [
        (path, doc)
        for path in sorted(root.rglob("*.yaml"))
        for doc in load_documents(path)
        if doc.get("kind") == "PyTorchJob"
    ]
