"""The custom resources ferryman serves, and the files generated from them (`make crds`).

`crds/` holds the CRDs (with a kustomization so `deploy/kustomize/base` can include them), the Helm chart
gets a copy in its `crds/`, and the ArgoCD health checks in `deploy/argocd/health/*.lua` are bundled into
an `argocd-cm` patch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from ferryman.api.admission import admission_policy, operator_username
from ferryman.api.crd import CustomResource, crd_manifest
from ferryman.api.cutoverpolicy import CUTOVER_POLICY
from ferryman.api.kinds import JAXJOB, MPIJOB, PADDLEJOB, PYTORCHJOB, TFJOB, XGBOOSTJOB
from ferryman.api.migrationstatus import EXPERIMENT_MIGRATION

RESOURCES: tuple[CustomResource, ...] = (CUTOVER_POLICY, EXPERIMENT_MIGRATION)

HEADER = "# Generated from operator/ferryman/api by `make crds`; do not edit.\n"


GENERATED_DIRECTORIES = ("crds", "deploy/helm/ferryman/crds")
HEALTH_CHECKS = "deploy/argocd/health"
ARGOCD_PATCH = "deploy/argocd/argocd-cm-patch.yaml"
# One health check serves every v1 job kind: `<group>_v1-jobs.lua`, under each kind's key.
V1_JOBS_HEALTH = "v1-jobs"
V1_JOB_KINDS = (PYTORCHJOB, MPIJOB, JAXJOB, XGBOOSTJOB, TFJOB, PADDLEJOB)
BASE_RBAC = "deploy/kustomize/base/rbac.yaml"
HELM_RBAC = "deploy/helm/ferryman/templates/rbac.yaml"
BASE_KUSTOMIZATION = "deploy/kustomize/base/kustomization.yaml"
BASE_ADMISSION = "deploy/kustomize/base/admission-policy.yaml"
HELM_ADMISSION = "deploy/helm/ferryman/templates/admission-policy.yaml"
ADMISSION_POLICY_SUFFIX = "-operator-children"


def render_crds() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {
        f"{resource.kind.group}_{resource.kind.plural}.yaml": HEADER
        + yaml.safe_dump(crd_manifest(resource), sort_keys=False, width=120)
        for resource in RESOURCES
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the Lua scripts) as readable `|` blocks."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def render_argocd_patch(root: Path) -> str:
    """A strategic-merge patch for `argocd-cm` carrying every health check of `deploy/argocd/health`: a
    `<group>_<Kind>.lua` for that kind, `<group>_v1-jobs.lua` for each v1 job kind of that group."""
    data = {}
    for script in sorted((root / HEALTH_CHECKS).glob("*.lua")):
        group, kind = script.stem.split("_", 1)
        names = [k.kind for k in V1_JOB_KINDS if k.group == group] if kind == V1_JOBS_HEALTH else [kind]
        for name in sorted(names):
            data[f"resource.customizations.health.{group}_{name}"] = script.read_text()
    patch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}, "data": data}
    return HEADER + yaml.dump(patch, Dumper=_BlockDumper, sort_keys=False, width=120)


def render_helm_rbac(root: Path) -> str:
    """The chart's RBAC, with the ClusterRole rules of the kustomize base: one list of verbs to review."""
    documents = list(yaml.safe_load_all((root / BASE_RBAC).read_text()))
    rules = next(doc["rules"] for doc in documents if doc["kind"] == "ClusterRole")
    rendered_rules = yaml.safe_dump(rules, sort_keys=False, width=120)
    return (
        f"{HEADER.replace('operator/ferryman/api', BASE_RBAC)}"
        "apiVersion: v1\n"
        "kind: ServiceAccount\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}\n"
        "  namespace: {{ .Release.Namespace }}\n"
        "  labels:\n"
        '    {{- include "ferryman.labels" . | nindent 4 }}\n'
        "---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        "kind: ClusterRole\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-operator\n"
        "  labels:\n"
        '    {{- include "ferryman.labels" . | nindent 4 }}\n'
        f"rules:\n{rendered_rules}"
        "---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        "kind: ClusterRoleBinding\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-operator\n"
        "  labels:\n"
        '    {{- include "ferryman.labels" . | nindent 4 }}\n'
        "roleRef:\n"
        "  apiGroup: rbac.authorization.k8s.io\n"
        "  kind: ClusterRole\n"
        "  name: {{ .Release.Name }}-operator\n"
        "subjects:\n"
        "  - kind: ServiceAccount\n"
        "    name: {{ .Release.Name }}\n"
        "    namespace: {{ .Release.Namespace }}\n"
    )


def render_base_admission(root: Path) -> str:
    """The admission policy of the kustomize base, for the ServiceAccount and namespace the base deploys."""
    account = next(
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all((root / BASE_RBAC).read_text())
        if doc["kind"] == "ServiceAccount"
    )
    namespace = yaml.safe_load((root / BASE_KUSTOMIZATION).read_text())["namespace"]
    documents = admission_policy(f"{account}{ADMISSION_POLICY_SUFFIX}", operator_username(namespace, account))
    return HEADER + "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=120) for doc in documents)


def render_helm_admission() -> str:
    """The chart's admission policy, for the release's ServiceAccount (named after the release)."""
    name, account, namespace = "@@name@@", "@@account@@", "@@namespace@@"
    text = "---\n".join(
        yaml.safe_dump(doc, sort_keys=False, width=120)
        for doc in admission_policy(name, operator_username(namespace, account))
    )
    return HEADER + (
        text.replace(name, "{{ .Release.Name }}" + ADMISSION_POLICY_SUFFIX)
        .replace(account, "{{ .Release.Name }}")
        .replace(namespace, "{{ .Release.Namespace }}")
    )


def render_generated(root: Path) -> dict[Path, str]:
    """Every generated file (relative to the repository root) and its text."""
    crds = render_crds()
    kustomization = HEADER + yaml.safe_dump({"resources": sorted(crds)}, sort_keys=False)
    files = {Path("crds") / name: text for name, text in crds.items()}
    files[Path("crds/kustomization.yaml")] = kustomization
    files.update({Path("deploy/helm/ferryman/crds") / name: text for name, text in crds.items()})
    files[Path(ARGOCD_PATCH)] = render_argocd_patch(root)
    files[Path(HELM_RBAC)] = render_helm_rbac(root)
    files[Path(BASE_ADMISSION)] = render_base_admission(root)
    files[Path(HELM_ADMISSION)] = render_helm_admission()
    return files


def write_generated(root: Path) -> list[Path]:
    files = render_generated(root)
    for directory in GENERATED_DIRECTORIES:
        for stale in (root / directory).glob("*.yaml"):
            if stale.relative_to(root) not in files:
                stale.unlink()
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return sorted(files)


if __name__ == "__main__":
    for written_path in write_generated(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(f"wrote {written_path}")
