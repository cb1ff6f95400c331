"""`make demo`: the conversion of the bundled examples, one `ferryman verify` report, then the operator end
to end on the local control plane.

Brings up etcd, kube-apiserver and controllers, with a real node on this host when the real-node tier can
run here (root, the host packages of `make host-packages`, the image of `make image`), else kwok's fake GPU
nodes, and says which; installs ferryman from deploy/ and runs the operator with its own least-privilege
ServiceAccount; applies the example PyTorchJobs and the example CutoverPolicy (Plan, then Mirror); then an
ExperimentMigration of freshly written TensorBoard logs into an embedded MLflow store. On the real node its
worker pod runs the image in a container (PodSecurity ``restricted``), reading and writing the demo's
directories through PersistentVolumeClaims; on kwok (which runs no containers) the pods are executed here.
Everything is torn down at the end; the MLflow store stays in .cache/demo/.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from ferryman.kube.builders import WORKER_UID
from ferryman_dev.cluster import ClusterSpec, ControlPlane, repo_root
from ferryman_dev.image import IMAGE_ARCHIVE, image_name
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig, run_pod_worker
from ferryman_dev.realnode import RealNode, missing_prerequisites
from ferryman_dev.waiting import wait_for


def say(text: str) -> None:
    print(text, flush=True)


def write_tensorboard_logs(directory: Path) -> None:
    """Three training runs with loss and accuracy curves and hyperparameters, written by tensorboardX."""
    import math

    from tensorboardX import SummaryWriter

    for run, lr in (("resnet-lr0.1", 0.1), ("resnet-lr0.01", 0.01), ("resnet-lr0.001", 0.001)):
        with SummaryWriter(str(directory / run)) as writer:
            for step in range(500):
                writer.add_scalar("train/loss", 2.5 * math.exp(-lr * step / 10) + 0.05, step)
                writer.add_scalar("eval/accuracy", 1 - math.exp(-lr * step / 20), step)
            writer.add_hparams({"lr": lr, "batch_size": 256}, {"hparam/final_loss": 2.5 * math.exp(-lr * 50)})


def show_conversion(examples: Path, out: Path) -> None:
    """`ferryman convert examples/pytorchjobs -o OUT/`: the report, then one converted file in full (the
    TrainJob whose pod settings needed a derived TrainingRuntime, and that runtime)."""
    import io

    from ferryman.cli.convert import run_convert
    from ferryman.convert.options import ConvertOptions

    shutil.rmtree(out, ignore_errors=True)
    report = io.StringIO()
    run_convert([str(examples)], ConvertOptions(), output=out, report_format="text", stdout=report)
    say(f"== ferryman convert {examples.relative_to(repo_root())} -o {out.relative_to(repo_root())}/")
    for line in report.getvalue().splitlines():
        say(f"   {line}")
    with_runtime = next(
        (p for p in sorted(out.rglob("*.yaml")) if "kind: TrainingRuntime" in p.read_text()), None
    )
    if with_runtime is not None:
        say(f"== {with_runtime.relative_to(repo_root())}: the TrainJob and the derived runtime it runs on")
        for line in with_runtime.read_text().splitlines():
            say(f"   {line}")


def show_verify(example: Path) -> None:
    """`ferryman verify EXAMPLE`: in a disposable sandbox control plane, the job runs under the Training
    Operator and its conversion under Trainer and JobSet; their pods are compared rank by rank."""
    from ferryman.convert.options import ConvertOptions
    from ferryman_dev.verify.report import render_text
    from ferryman_dev.verify.run import verify_paths

    say(f"== ferryman verify {example.relative_to(repo_root())}: both sides run in a sandbox control plane")
    report = verify_paths([str(example)], ConvertOptions(), progress=lambda line: say(f"   verify: {line}"))
    for line in render_text(report).splitlines():
        say(f"   {line}")


def ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def main() -> int:
    from lightkube import codecs
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace
    from lightkube.types import PatchType

    from ferryman.kube.resources import CutoverPolicy, ExperimentMigration, TrainingRuntime, TrainJob

    root = repo_root()
    state = root / ".cache" / "demo"
    shutil.rmtree(state / "cluster", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    show_conversion(root / "examples" / "pytorchjobs", state / "converted")
    show_verify(root / "examples" / "pytorchjobs" / "multi-node-nccl.yaml")
    archive = root / IMAGE_ARCHIVE
    missing = missing_prerequisites() + ([] if archive.exists() else [f"{IMAGE_ARCHIVE} (make image)"])
    plane = ControlPlane(state / "cluster", ClusterSpec(kwok=bool(missing)))  # kwok: no real node
    node = None if missing else RealNode(plane)
    if node is None:
        say(f"== no real node on this host (missing: {'; '.join(missing)}): pods go to kwok's fake GPU nodes")
        say("== starting the local control plane (etcd, kube-apiserver, controllers, kwok fake GPU nodes)")
    else:
        say("== a real node on this host: pods run in containers (containerd, kubelet), make image's image")
        say("== starting the local control plane (etcd, kube-apiserver, controllers) and the real node")
    operator = None
    try:
        plane.start(progress=lambda line: say(f"   {line}"))
        if node is not None:
            node.start()
            say("   importing the ferryman image into the node's containerd")
            node.import_archive(archive)
        say("== installing ferryman from deploy/kustomize/base (CRDs, RBAC) and starting the operator")
        install_ferryman(plane)
        kubeconfig = operator_kubeconfig(plane, state / "operator.kubeconfig")
        (state / "operator.log").unlink(missing_ok=True)
        image = {"FERRYMAN_IMAGE": image_name(archive)} if node is not None else {}
        operator = OperatorProcess(
            kubeconfig, state / "operator.log", resync_seconds=2, extra_env=image
        ).start()
        client = plane.client()

        jobs = []
        for path in sorted((root / "examples" / "pytorchjobs").glob("*.yaml")):
            jobs += [d for d in yaml.safe_load_all(path.read_text()) if d]
        for namespace in sorted({d["metadata"]["namespace"] for d in jobs}):
            client.create(Namespace(metadata=ObjectMeta(name=namespace)))
        for document in jobs:
            client.create(codecs.from_dict(document))
        say(f"== applied {sum(d['kind'] == 'PyTorchJob' for d in jobs)} example PyTorchJobs")

        policy = yaml.safe_load((root / "examples" / "operator" / "cutoverpolicy.yaml").read_text())
        client.create(codecs.from_dict(policy))
        name = policy["metadata"]["name"]
        status = wait_for(lambda: _ready_status(client.get(CutoverPolicy, name).to_dict()), "the Plan")
        say(f"== CutoverPolicy {name}, mode Plan")
        say(
            f"   jobs {status['jobs']}, convertible {status['convertible']}, blocked {status['blocked']}, "
            f"derived runtimes {status['derivedRuntimes']}, findings {status['findings']} "
            f"(TrainJob API {status['trainerAPI']}, discovered)"
        )
        for blocker in status["topBlockers"]:
            say(f"   blocker {blocker['code']}: {blocker['jobs']} job(s), e.g. {blocker['example']}")
        say(f"   full report: ConfigMap {status['reportConfigMap']}")

        patched = client.patch(
            CutoverPolicy,
            name,
            {"spec": {"mode": "Mirror", "mirror": {"suspend": True}}},
            patch_type=PatchType.MERGE,
        )
        generation = patched.metadata.generation
        wait_for(lambda: _ready_status(client.get(CutoverPolicy, name).to_dict(), generation), "the Mirror")
        say("== mode Mirror: converted TrainJobs side by side, suspended, owned by the policy")
        for runtime in client.list(TrainingRuntime, namespace="*"):
            name = f"{runtime.metadata.namespace}/{runtime.metadata.name}"
            say(f"   TrainingRuntime {name} (derived for settings a TrainJob cannot patch, created first)")
        for trainjob in client.list(TrainJob, namespace="*"):
            spec = trainjob.to_dict()["spec"]
            say(
                f"   {trainjob.metadata.namespace}/{trainjob.metadata.name}: "
                f"runtime {spec['runtimeRef']['name']}, "
                f"{spec['trainer'].get('numNodes', 1)} node(s), suspended {spec.get('suspend')}"
            )

        say(
            "== ExperimentMigration: TensorBoard logs (written by tensorboardX) into an embedded MLflow store"
        )
        logs = state / "tensorboard"
        shutil.rmtree(logs, ignore_errors=True)
        write_tensorboard_logs(logs)
        migration = yaml.safe_load((root / "examples" / "operator" / "experimentmigration.yaml").read_text())
        if node is not None:
            store = _migrate_on_the_real_node(node, migration, logs, state / "mlflow")
        else:
            store = _migrate_on_kwok(plane, migration, logs, state)
        em_name, em_namespace = migration["metadata"]["name"], migration["metadata"]["namespace"]
        em = wait_for(
            lambda: _ready_status(client.get(ExperimentMigration, em_name, namespace=em_namespace).to_dict()),
            "the migration to be Ready",
            timeout=300,
        )
        say(f"   {json.dumps(em['totals'])}")
        for condition in em["conditions"]:
            say(
                f"   {condition['type']}={condition['status']} {condition['reason']}: "
                f"{condition.get('message', '')}"
            )
        say(f"   browse it: mlflow ui --backend-store-uri sqlite:///{store}")
        forbidden = operator.forbidden()
        say(f"== operator RBAC refusals: {len(forbidden)}")
        return 1 if forbidden else 0
    finally:
        if operator is not None:
            operator.stop()
        if node is not None:
            node.stop()
        plane.stop()


def _migrate_on_kwok(plane: ControlPlane, migration: dict[str, Any], logs: Path, state: Path) -> Path:
    """Create `migration` (TensorBoard `logs` into an SQLite store in `state`) and run its worker pods,
    scheduled on kwok's fake GPU nodes, here with their own command lines; the store."""
    from lightkube import codecs
    from lightkube.resources.batch_v1 import Job
    from lightkube.resources.core_v1 import Pod

    client = plane.client()
    store = state / "mlflow.db"
    store.unlink(missing_ok=True)
    # the pods run here, on the demo's directories: an emptyDir stands for their volumes on kwok's nodes
    migration["spec"]["source"] = {"uri": f"tensorboard:{logs}", "volumes": [_here(logs)]}
    migration["spec"]["destination"] = {"uri": f"sqlite:///{store}", "volumes": [_here(state)]}
    client.create(codecs.from_dict(migration))
    namespace, parallelism = migration["metadata"]["namespace"], migration["spec"]["parallelism"]
    job = wait_for(lambda: _first(client.list(Job, namespace=namespace)), "the migration Job")

    def scheduled() -> list[Any] | None:
        pods = list(client.list(Pod, namespace=namespace, labels={"job-name": job.metadata.name}))
        bound = [p for p in pods if p.spec.nodeName]
        return bound if len(pods) >= parallelism else None

    for pod in wait_for(scheduled, "worker pods scheduled"):
        say(f"   pod {pod.metadata.name} on node {pod.spec.nodeName} (a fake GPU node)")
        scratch = state / "workers" / pod.metadata.name
        scratch.mkdir(parents=True, exist_ok=True)
        code = run_pod_worker(plane, copy.deepcopy(pod.to_dict()), scratch)
        say(f"   worker of {pod.metadata.name} exited {code}")
    return store


def _migrate_on_the_real_node(node: RealNode, migration: dict[str, Any], logs: Path, store_dir: Path) -> Path:
    """Create `migration` (TensorBoard `logs` into an SQLite store in `store_dir`) with both directories as
    PersistentVolumeClaims in a PodSecurity `restricted` namespace; its worker pod runs on the real node."""
    from lightkube import codecs
    from lightkube.resources.core_v1 import Namespace, Pod
    from lightkube.types import PatchType

    client = node.plane.client()
    namespace = migration["metadata"]["namespace"]
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir(parents=True)
    for directory in (logs, store_dir):
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, WORKER_UID, WORKER_UID)  # the workers' user reads the logs and writes the store
    node.plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
    client.patch(Namespace, namespace, {"metadata": {"labels": restricted}}, patch_type=PatchType.MERGE)
    node.host_path_claim(namespace, "demo-tensorboard", logs)
    node.host_path_claim(namespace, "demo-mlflow", store_dir)
    spec = migration["spec"]
    spec["source"] = {
        "uri": "tensorboard:/data/tensorboard",
        "volumes": [_claim_volume("/data/tensorboard", "demo-tensorboard")],
    }
    spec["destination"] = {
        "uri": "sqlite:////data/mlflow/mlflow.db",
        "volumes": [_claim_volume("/data/mlflow", "demo-mlflow")],
    }
    spec["parallelism"] = 1
    spec["placement"] = {"nodeSelector": {}, "tolerations": [], "resources": {"requests": {"cpu": "100m"}}}
    client.create(codecs.from_dict(migration))
    pod = wait_for(lambda: _first(client.list(Pod, namespace=namespace)), "the worker pod", timeout=120)
    say(
        f"   pod {pod.metadata.name} on node {pod.spec.nodeName} (real, PodSecurity restricted), claims "
        "demo-tensorboard (read-only) and demo-mlflow"
    )
    return store_dir / "mlflow.db"


def _here(path: Path) -> dict[str, Any]:
    return {"mountPath": str(path), "volume": {"emptyDir": {}}}


def _claim_volume(mount_path: str, claim: str) -> dict[str, Any]:
    return {"mountPath": mount_path, "volume": {"persistentVolumeClaim": {"claimName": claim}}}


def _ready_status(obj: dict[str, Any], generation: int | None = None) -> dict[str, Any] | None:
    status = obj.get("status") or {}
    wanted = generation or obj["metadata"]["generation"]
    return status if ready(status) and status.get("observedGeneration") == wanted else None


def _first(items: Any) -> Any:
    return next(iter(items), None)


if __name__ == "__main__":
    sys.exit(main())
