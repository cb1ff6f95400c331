"""Run the ferryman operator against a local control plane, as deployed: CRDs and RBAC from `deploy/`, a
ServiceAccount token minted through TokenRequest, the operator as a subprocess (so it can be killed and
restarted, and its memory measured). Shared by the e2e tests, the benchmark and `make demo`."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferryman_dev.cluster import ControlPlane, repo_root
from ferryman_dev.image import LOCAL_IMAGE
from ferryman_dev.lifetime import free_port

OPERATOR_NAMESPACE = "ferryman-system"
OPERATOR_ACCOUNT = "ferryman"
_TERMINATING = re.compile(r"in namespace (\S+) because it is being terminated")


def rendered_base(root: Path | None = None) -> list[dict[str, Any]]:
    """`deploy/kustomize/base` rendered by kustomize (kubectl's built-in)."""
    base = (root or repo_root()) / "deploy" / "kustomize" / "base"
    output = subprocess.run(
        ["kubectl", "kustomize", str(base)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def install_ferryman(plane: ControlPlane, *, deployment: bool = False) -> list[dict[str, Any]]:
    """Server-side apply the base: CRDs, namespace, RBAC (and the Deployment only when asked: its pod
    would land on a kwok node, which runs nothing). Waits for the CRDs to be established."""
    from lightkube import codecs
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    client = plane.client()
    documents = [d for d in rendered_base() if deployment or d["kind"] != "Deployment"]
    for document in documents:
        client.apply(codecs.from_dict(document), force=True)
    crds = [d["metadata"]["name"] for d in documents if d["kind"] == "CustomResourceDefinition"]
    deadline = time.monotonic() + 60
    for name in crds:
        while True:
            conditions = client.get(CustomResourceDefinition, name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established")
            time.sleep(0.2)
    return documents


def operator_kubeconfig(plane: ControlPlane, path: Path, server: str | None = None) -> Path:
    """A kubeconfig authenticating as the operator's ServiceAccount (token from TokenRequest), to the
    apiserver or to `server` (a relay to it)."""
    token = plane.mint_token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, expiration_seconds=24 * 3600)
    return write_token_kubeconfig(plane, token, path, server)


def write_token_kubeconfig(plane: ControlPlane, token: str, path: Path, server: str | None = None) -> Path:
    cluster = {"server": server or plane.server, "certificate-authority": str(plane.pki.ca_cert)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "local", "user": "token"}}],
        "current-context": "token",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class OperatorProcess:
    """`ferryman operator` in a subprocess; `restart()` kills it (SIGKILL, as a node failure would)."""

    kubeconfig: Path
    log: Path
    resync_seconds: float = 1.0
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    liveness_port: int = 0
    readiness_port: int = 0
    metrics_port: int = 0

    def start(self) -> OperatorProcess:
        self.liveness_port = free_port()
        self.readiness_port = free_port()
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FERRYMAN_NAMESPACE": OPERATOR_NAMESPACE,
            "FERRYMAN_RESYNC_SECONDS": str(self.resync_seconds),
            "FERRYMAN_IMAGE": LOCAL_IMAGE,  # not in a pod: no image of its own for the workers
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        command = [
            sys.executable,
            "-m",
            "ferryman",
            "operator",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            f"--readiness=http://127.0.0.1:{self.readiness_port}/readyz",
            f"--metrics=http://127.0.0.1:{self.metrics_port}/metrics",
            *(["--verbose"] if os.environ.get("FERRYMAN_OPERATOR_VERBOSE") else []),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop(kill=True)
        self.start()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def readiness(self) -> int | None:
        """The readiness endpoint's HTTP status (None while nothing answers)."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.readiness_port}/readyz", timeout=2) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of the operator's /metrics (None when it has no such series)."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def rss_bytes(self) -> int:
        """Resident memory of the operator process now."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def assert_clean(self) -> None:
        assert_clean_log(self.output())

    def forbidden(self) -> list[str]:
        return refusals(self.output())


def refusals(log: str) -> list[str]:
    """An operator log's lines reporting a refused request (its RBAC lacks a verb, or the admission policy
    denied a write). A 403 for writing into a namespace the apiserver says is being deleted (an earlier
    test's) is not one."""
    lines = log.splitlines()
    terminating = {match[1] for match in map(_TERMINATING.search, lines) if match}
    return [
        line for line in lines
        if "forbidden" in line.lower()
        and not any(f"namespaces/{ns}/" in line or f"namespace {ns} " in line for ns in terminating)
    ]


def assert_clean_log(log: str) -> None:
    """Nothing the operator asked was refused (:func:`refusals`), and it logged no traceback (shown from its
    start: a failure that passes, such as a dropped connection, is one warning line)."""
    refused = refusals(log)
    assert not refused, "the operator was refused:\n" + "\n".join(refused)
    start = log.find("Traceback")
    assert start < 0, log[max(0, start - 2000) : start + 6000]


@contextlib.contextmanager
def running_operator(plane: ControlPlane, directory: Path, **extra_env: str) -> Iterator[OperatorProcess]:
    """ferryman installed in `plane` and its operator running as its ServiceAccount; once the block ends,
    stopped, clean (OperatorProcess.assert_clean)."""
    install_ferryman(plane)
    kubeconfig = operator_kubeconfig(plane, directory / "operator.kubeconfig")
    process = OperatorProcess(kubeconfig, directory / "operator.log", extra_env=extra_env)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.assert_clean()


def run_pod_worker(plane: ControlPlane, pod: dict[str, Any], scratch: Path) -> int:
    """Run a migration pod's container in this process, as the kubelet would: its command line, its
    environment (Secret keys resolved), its mounted spec, and its ServiceAccount's token.

    kwok nodes run no containers; this is how tests and the demo execute a worker that landed on one.
    Returns the exit code of `ferryman migrate`.
    """
    from lightkube.resources.core_v1 import ConfigMap, Secret

    from ferryman.cli import cli

    admin = plane.client()
    namespace = pod["metadata"]["namespace"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    env: dict[str, str] = {}
    for variable in container.get("env", []):
        source = variable.get("valueFrom") or {}
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = admin.get(Secret, ref["name"], namespace=namespace)
            env[variable["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
        elif "fieldRef" in source and source["fieldRef"]["fieldPath"] == "metadata.name":
            env[variable["name"]] = pod["metadata"]["name"]
    annotations = pod["metadata"].get("annotations") or {}
    env["JOB_COMPLETION_INDEX"] = annotations.get("batch.kubernetes.io/job-completion-index", "0")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    args = list(container["args"])
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            config_map = admin.get(ConfigMap, volume["configMap"]["name"], namespace=namespace)
            directory = scratch / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            for key, text in (config_map.data or {}).items():
                (directory / key).write_text(text)
            args = [arg.replace(mounts[volume["name"]], str(directory)) for arg in args]
    token = plane.mint_token(namespace, spec["serviceAccountName"])
    kubeconfig = scratch / "pod.kubeconfig"
    write_token_kubeconfig(plane, token, kubeconfig)
    env["KUBECONFIG"] = str(kubeconfig)
    env["HOME"] = str(scratch)
    saved = dict(os.environ)
    previous_directory = Path.cwd()
    os.environ.update(env)
    os.chdir(scratch)
    try:
        cli.main(args=args, prog_name="ferryman", standalone_mode=False)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        os.chdir(previous_directory)
        os.environ.clear()
        os.environ.update(saved)
    return 0
