"""ArgoCD health checks, run by a real Lua interpreter (lupa) the way ArgoCD runs them: a global `obj`, only
the base and table libraries open (ArgoCD's VM has no string or math library either), a `{status, message}`
table returned. e2e/test_takeover_controllers.py runs them in ArgoCD's own engine on real statuses."""

from pathlib import Path
from typing import Any

import pytest
import yaml

lupa = pytest.importorskip("lupa")

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the check ArgoCD runs for ``<group>_<Kind>``: the one the argocd-cm patch carries under its key."""
    patch = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml").read_text())
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lua_globals = runtime.globals()
    closed = ("os", "io", "require", "dofile", "loadfile", "load", "debug", "package", "string", "math")
    for library in closed:
        lua_globals[library] = None
    lua_globals.obj = to_lua(runtime, obj)
    result = runtime.execute(patch["data"][f"resource.customizations.health.{kind}"])
    return result["status"], result["message"]


def to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({key: to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, item) for item in value])
    return value


def cond(type_: str, status: str = "True", **extra: str) -> dict[str, str]:
    return {"type": type_, "status": status, **extra}


V1_JOBS = [
    f"kubeflow.org_{kind}" for kind in ("PyTorchJob", "MPIJob", "JAXJob", "XGBoostJob", "TFJob", "PaddleJob")
]
TRAINJOB = "trainer.kubeflow.org_TrainJob"
MIGRATION = "ferryman.dev_ExperimentMigration"
POLICY = "ferryman.dev_CutoverPolicy"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"spec": {}}, "Progressing"),
        ({"spec": {"runPolicy": {"suspend": True}}}, "Suspended"),
        ({"spec": {}, "status": {"conditions": [cond("Created"), cond("Running")]}}, "Progressing"),
        ({"status": {"conditions": [cond("Running", "False"), cond("Succeeded")]}}, "Healthy"),
        (
            {"spec": {}, "status": {"conditions": [cond("Created"), cond("Failed", message="OOMKilled")]}},
            "Degraded",
        ),
    ],
)
@pytest.mark.parametrize("kind", V1_JOBS)
def test_v1_job(kind: str, obj: dict[str, Any], expected: str) -> None:
    assert health(kind, obj)[0] == expected


@pytest.mark.parametrize("kind", V1_JOBS)
def test_v1_job_failure_message_is_shown(kind: str) -> None:
    obj = {"spec": {}, "status": {"conditions": [cond("Failed", message="TFJob x has failed")]}}
    assert health(kind, obj) == ("Degraded", "TFJob x has failed")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"spec": {}}, "Progressing"),
        ({"spec": {"suspend": True}}, "Suspended"),
        ({"status": {"conditions": [cond("Suspended", "False", reason="Resumed")]}}, "Progressing"),
        ({"spec": {}, "status": {"conditions": [cond("Complete", reason="AllJobsCompleted")]}}, "Healthy"),
        ({"spec": {}, "status": {"conditions": [cond("Failed", reason="DeadlineExceeded")]}}, "Degraded"),
    ],
)
def test_trainjob(obj: dict[str, Any], expected: str) -> None:
    assert health(TRAINJOB, obj)[0] == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"generation": 1}, "spec": {}}, "Progressing"),
        (
            {
                "metadata": {"generation": 2},
                "spec": {},
                "status": {"observedGeneration": 1, "conditions": [cond("Ready")]},
            },
            "Progressing",
        ),
        ({"metadata": {"generation": 1}, "spec": {"suspend": True}, "status": {}}, "Suspended"),
        (
            {
                "metadata": {"generation": 1},
                "spec": {},
                "status": {"observedGeneration": 1, "conditions": [cond("Progressing")]},
            },
            "Progressing",
        ),
        (
            {
                "metadata": {"generation": 1},
                "spec": {},
                "status": {"observedGeneration": 1, "conditions": [cond("Ready"), cond("Succeeded")]},
            },
            "Healthy",
        ),
        (
            {
                "metadata": {"generation": 1},
                "spec": {},
                "status": {
                    "observedGeneration": 1,
                    "conditions": [cond("Ready", "False"), cond("Stalled", message="no progress for 10m")],
                },
            },
            "Degraded",
        ),
        (
            {
                "metadata": {"generation": 1},
                "spec": {},
                "status": {
                    "observedGeneration": 1,
                    "conditions": [cond("Failed", message="3 runs did not verify")],
                },
            },
            "Degraded",
        ),
    ],
)
def test_experiment_migration(obj: dict[str, Any], expected: str) -> None:
    assert health(MIGRATION, obj)[0] == expected


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], "Progressing"),
        ([cond("Ready", reason="Planned")], "Healthy"),
        ([cond("Ready", "False", reason="RateLimited")], "Progressing"),
        ([cond("Ready", "False", reason="Applying")], "Progressing"),
        ([cond("Ready", reason="Serving"), cond("Degraded", reason="JobsNotServed")], "Degraded"),
        ([cond("Ready", reason="Mirrored"), cond("Degraded", "False", reason="NotMirrored")], "Healthy"),
        (
            [
                cond(
                    "Ready",
                    "False",
                    reason="TrainerNotInstalled",
                    message="the TrainJob CRD is not installed",
                )
            ],
            "Degraded",
        ),
    ],
)
def test_cutover_policy(conditions: list[dict[str, str]], expected: str) -> None:
    obj = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "conditions": conditions}}
    assert health(POLICY, obj)[0] == expected


def test_argocd_cm_patch_carries_every_check() -> None:
    patch = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml").read_text())
    scripts = {script.stem: script.read_text() for script in HEALTH.glob("*.lua")}
    expected = {
        f"resource.customizations.health.{stem}": text
        for stem, text in scripts.items()
        if "v1-jobs" not in stem
    }
    expected |= {
        f"resource.customizations.health.{kind}": scripts["kubeflow.org_v1-jobs"] for kind in V1_JOBS
    }
    assert patch["data"] == expected
