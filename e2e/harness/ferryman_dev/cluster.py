"""A local Kubernetes control plane from binaries built by `make cluster-bins`: no Docker, loopback only.

etcd (data on tmpfs) and kube-apiserver (RBAC, client-cert admin, service-account signing keys so
TokenRequest works) always run; kube-controller-manager, kube-scheduler and kwok (fake nodes, some of them
fake GPU nodes) run on request. Every process gets its own process group and is killed on :meth:`stop`;
processes of an attached control plane also die with the Python process that started them (PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferryman.api.trainer import TrainerAPI
from ferryman_dev import upstream
from ferryman_dev.lifetime import die_with_parent, free_port
from ferryman_dev.pki import Pki, create_pki

FIELD_MANAGER = "ferryman-dev"
GPU_RESOURCE = "nvidia.com/gpu"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"
_ETCD_DIR_PREFIX = "ferryman-etcd-"
# How fake pods end: exit 0 for a Job's pods, else per the annotation KWOK_EXIT_CODE (see the file).
KWOK_STAGES = Path(__file__).with_name("kwok-pod-exit.yaml")
KWOK_EXIT_CODE = "ferryman.dev/kwok-exit-code"

# component -> (module the wrapper in e2e/bins/<component> pins, binaries it builds)
_COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "etcd": ("go.etcd.io/etcd/server/v3", ("etcd",)),
    "kubernetes": (
        "k8s.io/kubernetes",
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"),
    ),
    "coredns": ("github.com/coredns/coredns", ("coredns",)),  # the real node's DNS (ferryman_dev.realnode)
    "kwok": ("sigs.k8s.io/kwok", ("kwok",)),
    "helm": ("helm.sh/helm/v3", ("helm",)),  # not a control plane part: renders deploy/helm for the tests
    # the upstream controllers ferryman_dev.controllers runs beside the control plane
    "trainer": ("github.com/kubeflow/trainer/v2", ("trainer-controller-manager",)),
    "jobset": ("sigs.k8s.io/jobset", ("jobset",)),
    "training-operator": ("github.com/kubeflow/training-operator", ("training-operator.v1",)),
    "mpi-operator": ("github.com/kubeflow/mpi-operator", ("mpi-operator",)),
    "kueue": ("sigs.k8s.io/kueue", ("kueue",)),
    # not a control plane part: ArgoCD's Lua engine, which runs deploy/argocd's health checks in the tests
    "argocd-lua": ("github.com/argoproj/argo-cd/v3", ("argocd-lua",)),
}


class ClusterError(RuntimeError):
    """The control plane cannot be started (missing binaries, a component that does not come up)."""


class Rejected(Exception):
    """The apiserver refused a request; ``message`` is its Status message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message


def repo_root() -> Path:
    """The checkout this package runs from (the directory holding ``e2e/bins``)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "e2e" / "bins").is_dir():
            return parent
    raise ClusterError("cannot find e2e/bins above ferryman_dev: the dev cluster needs a ferryman checkout")


def pinned_version(component: str, root: Path | None = None) -> str:
    """The version of ``component`` that its wrapper module ``e2e/bins/<component>/go.mod`` pins."""
    module, _ = _COMPONENTS[component]
    gomod = (root or repo_root()) / "e2e" / "bins" / component / "go.mod"
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod.read_text(), re.MULTILINE)
    if found is None:
        raise ClusterError(f"{gomod} does not require {module}")
    return found.group(1)


def binary(name: str, root: Path | None = None) -> Path:
    """Path of a built binary (e.g. ``kube-apiserver``) in ``.cache/bin/<component>-<version>/``."""
    root = root or repo_root()
    component = next(c for c, (_, names) in _COMPONENTS.items() if name in names)
    path = root / ".cache" / "bin" / f"{component}-{pinned_version(component, root)}" / name
    if not os.access(path, os.X_OK):
        raise ClusterError(f"{path} is missing: run `make cluster-bins` to build the control plane binaries")
    return path


def component_binary(component: str, root: Path | None = None) -> Path:
    """The (first) binary ``component`` builds, e.g. ``trainer-controller-manager`` for ``trainer``."""
    _, names = _COMPONENTS[component]
    return binary(names[0], root)


def pinned_module_dir(component: str) -> Path:
    """The source of the module ``component``'s wrapper pins (manifests, CRDs, examples), fetched by Go."""
    module, _ = _COMPONENTS[component]
    return upstream.module_dir(module, pinned_version(component))


@dataclass
class Process:
    name: str
    pid: int
    started: int  # start time in clock ticks since boot: tells our process from a later one reusing the pid
    log: Path
    argv: list[str]  # how it was started, so it can be started again alone (restart_component)
    env: dict[str, str] = field(default_factory=dict)  # added to the harness's own environment
    ready: str | None = None  # URL answering 200 once the component serves
    stopped: bool = False  # stopped on purpose (stop_component), not dead

    @staticmethod
    def start_time(pid: int) -> int | None:
        """Start time of a running (not zombie) process, or None."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return None if fields[0] == "Z" else int(fields[19])

    def alive(self) -> bool:
        """Still running, and still the process we started (pids are reused)."""
        return self.start_time(self.pid) == self.started

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group, if our process still runs."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def reap(self) -> bool:
        """Collect the exit status if it is our child; True once the process is gone."""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)
        return not self.alive()


def terminate(processes: Sequence[Process], grace: float = 2.0) -> None:
    """SIGTERM every process group at once, SIGKILL whatever is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for process in processes:
            process.send(sig)
        deadline = time.monotonic() + wait
        while not all(p.reap() for p in processes):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return
    left = [f"{p.name} (pid {p.pid})" for p in processes if p.alive()]
    if left:
        raise ClusterError(f"cannot kill {', '.join(left)}")


@dataclass
class ClusterSpec:
    """What to run. ``trainer_api=None`` installs no upstream CRDs."""

    controllers: bool = True  # kube-controller-manager and kube-scheduler
    kwok: bool = True
    gpu_nodes: int = 2
    cpu_nodes: int = 1
    gpus_per_node: int = 8
    trainer_api: TrainerAPI | None = TrainerAPI.V2_2
    runtimes: bool = True  # the Trainer release's default ClusterTrainingRuntimes
    # upstream controllers to run (ferryman_dev.controllers.CONTROLLERS), in start order
    upstream_controllers: tuple[str, ...] = ()
    mpijob_v1: bool = False  # the Training Operator also serves MPIJob v1 (never beside mpi-operator)


@dataclass
class ControlPlane:
    """A control plane whose PKI, kubeconfig, logs and state file live in ``state_dir``."""

    state_dir: Path
    spec: ClusterSpec = field(default_factory=ClusterSpec)
    detach: bool = False  # processes outlive this Python process (`ferryman dev cluster up`)
    processes: list[Process] = field(default_factory=list)
    etcd_dir: Path | None = None
    apiserver_port: int = 0
    complete: bool = False  # every component started and the cluster set up
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)
    # (apiVersion, kind) -> (plural, namespaced) of the CRDs installed here: no waiting for discovery
    _custom_kinds: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def pki(self) -> Pki:
        return Pki(self.state_dir / "pki")

    # ---------------------------------------------------------------- lifecycle

    def start(self, progress: Callable[[str], None] = lambda _: None) -> ControlPlane:
        """Start every component and wait until the cluster is usable; on failure nothing is left running.

        Detached components survive this process by design, so while they start a SIGTERM or SIGHUP to
        it stops them too; only a finished start marks the state file ``complete`` (a SIGKILLed start
        leaves an incomplete record, which the next :func:`cluster_up` or :func:`cluster_down` clears).
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.detach:
            atexit.register(self.stop)
        retries = 1
        while True:
            try:
                with _signals_raise_while_detached_start(self.detach):
                    self._start(progress)
                self.complete = True
                self.save()
                return self
            except ClusterError as error:
                self.stop()
                # a free port picked here can be taken by another process before the component binds it
                if not retries or "address already in use" not in str(error):
                    raise
                retries -= 1
                progress("a port was taken meanwhile; starting again on new ports")
            except BaseException:
                self.stop()
                raise

    def _start(self, progress: Callable[[str], None]) -> None:
        started = time.monotonic()
        from ferryman_dev import controllers  # imports this module

        names = ["kube-apiserver", "etcd"]
        if self.spec.controllers:
            names += ["kube-controller-manager", "kube-scheduler"]
        if self.spec.kwok:
            names.append("kwok")
        bins = {name: binary(name) for name in names}
        for name in self.spec.upstream_controllers:  # fail before starting anything when one is not built
            controllers.CONTROLLERS[name].executable()
        create_pki(self.pki.directory)
        progress("starting etcd")
        etcd_url = self._start_etcd(bins["etcd"])
        progress("starting kube-apiserver")
        self._start_apiserver(bins["kube-apiserver"], etcd_url)
        self._write_kubeconfig()
        if self.spec.controllers:
            progress("starting kube-controller-manager and kube-scheduler")
            self._start_controllers(bins["kube-controller-manager"], bins["kube-scheduler"])
        if self.spec.kwok:
            progress("starting kwok")
            self._start_kwok(bins["kwok"])
        self.wait_ready("kube-apiserver", timeout=90)
        client = self.client()
        if self.spec.kwok:
            progress(f"adding {self.spec.gpu_nodes} fake GPU nodes and {self.spec.cpu_nodes} fake CPU nodes")
            create_fake_nodes(client, self.spec)
        try:
            if self.spec.trainer_api is not None:
                progress(f"installing upstream CRDs (Trainer {self.spec.trainer_api.value} flavour)")
                self.install_crds(upstream.upstream_crds(self.spec.trainer_api))
            if self.spec.upstream_controllers:
                progress(f"starting {', '.join(self.spec.upstream_controllers)}")
                controllers.start_controllers(
                    self, self.spec.upstream_controllers, mpijob_v1=self.spec.mpijob_v1
                )
            if self.spec.trainer_api is not None and self.spec.runtimes:
                # after the Trainer's webhooks, if it runs: they validate runtimes as they are installed
                for runtime in upstream.default_runtimes(self.spec.trainer_api):
                    self.apply(runtime)
        except Rejected as rejected:
            raise ClusterError(f"the apiserver refused an upstream manifest: {rejected}") from rejected
        if self.spec.kwok:
            wait_nodes_ready(client, self.spec.gpu_nodes + self.spec.cpu_nodes)
        if self.spec.controllers:
            wait_default_service_account(client, "default")
        progress(f"cluster ready at {self.server} in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Kill every component and remove etcd's tmpfs data (the cluster is disposable: no graceful stop)."""
        terminate(self.processes)
        self.processes.clear()
        self.complete = False
        self._ssl = None  # trusted this cluster's CA; a start again (new ports after a race) makes a new CA
        self._custom_kinds.clear()
        if self.etcd_dir is not None:
            shutil.rmtree(self.etcd_dir, ignore_errors=True)
            self.etcd_dir = None
        self.state_file.unlink(missing_ok=True)

    def running(self) -> bool:
        """Completely started, and every component still runs."""
        return self.complete and bool(self.processes) and all(p.alive() for p in self.processes)

    # ---------------------------------------------------------------- one component at a time

    def process(self, name: str) -> Process:
        """The component called ``name`` (``etcd``, ``kube-apiserver``, ``trainer``, ...)."""
        for process in self.processes:
            if process.name == name:
                return process
        raise ClusterError(
            f"no component {name!r} in this control plane ({', '.join(p.name for p in self.processes)})"
        )

    def stop_component(self, name: str) -> None:
        """Kill one component; the others and etcd's data stay (fault tests: apiserver or controller down)."""
        process = self.process(name)
        terminate([process])
        process.stopped = True
        self.save()

    def start_component(self, name: str, timeout: float = 120) -> None:
        """Start a stopped component again exactly as it was started, and wait until it serves."""
        old = self.process(name)
        if old.alive():
            raise ClusterError(f"{name} is running (pid {old.pid}); stop it first")
        self.spawn(name, old.argv, env=old.env, ready=old.ready)
        self.wait_ready(name, timeout)

    def restart_component(self, name: str, timeout: float = 120) -> None:
        self.stop_component(name)
        self.start_component(name, timeout)

    def wait_ready(self, name: str, timeout: float = 120) -> None:
        """Wait until component ``name`` answers on its readiness URL (at once if it has none)."""
        ready = self.process(name).ready
        if ready is not None:
            self._wait_http(ready, name, timeout)

    def client(self) -> Any:
        """A lightkube client with admin (system:masters) credentials."""
        from lightkube import Client, KubeConfig

        return Client(KubeConfig.from_file(self.kubeconfig), field_manager=FIELD_MANAGER)

    def token_client(self, token: str, namespace: str | None = None) -> Any:
        """A lightkube client that authenticates with a bearer token (e.g. one minted by TokenRequest)."""
        from lightkube import Client, KubeConfig
        from lightkube.config.models import Cluster, User

        config = KubeConfig.from_one(
            cluster=Cluster(server=self.server, certificate_auth=str(self.pki.ca_cert)),
            user=User(token=token),
            namespace=namespace,
        )
        return Client(config, field_manager=FIELD_MANAGER)

    def mint_token(self, namespace: str, service_account: str, expiration_seconds: int = 3600) -> str:
        """A token for ``namespace/service_account`` from the TokenRequest API."""
        from lightkube.models.authentication_v1 import TokenRequestSpec
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import ServiceAccount

        request = ServiceAccount.Token(
            metadata=ObjectMeta(name=service_account, namespace=namespace),
            spec=TokenRequestSpec(audiences=[self.server], expirationSeconds=expiration_seconds),
        )
        response = self.client().create(request, service_account, namespace=namespace)
        return str(response.status.token)

    def apply(self, obj: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        """Server-side apply ``obj`` (field manager ``ferryman-dev``, forcing conflicts); the result."""
        path = self._collection_path(obj["apiVersion"], obj["kind"], namespace)
        return self._request(
            "PATCH",
            f"{path}/{obj['metadata']['name']}?fieldManager={FIELD_MANAGER}&force=true",
            obj,
            content_type="application/apply-patch+yaml",  # JSON is YAML
        )

    def install_crds(self, paths: Sequence[Path], timeout: float = 60) -> list[str]:
        """Server-side apply CRD manifests and wait until each is Established; returns their names."""
        return self.install_crd_documents(
            [doc for path in paths for doc in upstream.load_documents(path)], timeout
        )

    def install_crd_documents(self, docs: Sequence[dict[str, Any]], timeout: float = 60) -> list[str]:
        """Server-side apply CRDs and wait until each is Established; returns their names."""
        names = []
        for doc in docs:
            names.append(self.apply(doc)["metadata"]["name"])
            spec = doc["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                self._custom_kinds[key] = (spec["names"]["plural"], spec["scope"] == "Namespaced")
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

        def established() -> bool:
            for name in names:
                # a CRD just created may have no status yet, or ``conditions: null``
                status = self._request("GET", f"{base}/{name}").get("status") or {}
                conditions = status.get("conditions") or []
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    return False
            return True

        _poll(established, f"CRDs {', '.join(names)} Established", timeout)
        return names

    def dry_run_create(self, obj: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        """Create ``obj`` with server-side dry-run and strict field validation; the object as admitted.

        Strict validation makes unknown fields an error instead of silently pruning them, so a TrainJob
        carrying a field its flavour does not know is rejected. Raises :class:`Rejected`.
        """
        path = self._collection_path(obj["apiVersion"], obj["kind"], namespace)
        return self._request("POST", f"{path}?dryRun=All&fieldValidation=Strict", obj)

    def create(self, obj: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        """Create ``obj`` (admission webhooks and all); the object as stored. Raises :class:`Rejected`."""
        return self._request("POST", self._collection_path(obj["apiVersion"], obj["kind"], namespace), obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        """The object ``kind/name``; :class:`Rejected` with code 404 when there is none."""
        return self._request("GET", f"{self._collection_path(api_version, kind, namespace)}/{name}")

    def find(
        self, api_version: str, kind: str, name: str, namespace: str = "default"
    ) -> dict[str, Any] | None:
        """The object ``kind/name``, or None when there is none."""
        try:
            return self.get(api_version, kind, name, namespace)
        except Rejected as rejected:
            if rejected.code == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str = "default", label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """The ``kind`` objects of ``namespace`` (of the cluster, for cluster-scoped kinds)."""
        query = f"?labelSelector={urllib.parse.quote(label_selector)}" if label_selector else ""
        items = self._request("GET", self._collection_path(api_version, kind, namespace) + query)["items"]
        return list(items)

    def merge_patch(
        self, api_version: str, kind: str, name: str, patch: dict[str, Any], namespace: str = "default"
    ) -> dict[str, Any]:
        """JSON-merge-patch the object ``kind/name``; the patched object."""
        path = f"{self._collection_path(api_version, kind, namespace)}/{name}"
        return self._request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "default") -> None:
        """Delete the object ``kind/name`` (in the background: dependents are garbage-collected later)."""
        self._request("DELETE", f"{self._collection_path(api_version, kind, namespace)}/{name}")

    def wait_condition(
        self,
        api_version: str,
        kind: str,
        name: str,
        condition: str,
        namespace: str = "default",
        *,
        status: str = "True",
        timeout: float = 120,
    ) -> dict[str, Any]:
        """Wait until ``kind/name`` has condition ``condition`` with ``status``; the object then.

        For the statuses the real controllers write (TrainJob ``Complete``, JobSet ``Completed``,
        PyTorchJob ``Succeeded``, ...); the error names the conditions the object had at the deadline.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                obj = self.get(api_version, kind, name, namespace)
            except Rejected as rejected:
                if rejected.code != 404:
                    raise
                obj = {}
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("type") == condition and c.get("status") == status for c in conditions):
                return obj
            if time.monotonic() > deadline:
                seen = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions) or "none"
                raise ClusterError(
                    f"{kind} {namespace}/{name} has no condition {condition}={status} after {timeout:g}s"
                    f" (conditions: {seen})"
                )
            time.sleep(0.3)

    def _collection_path(self, api_version: str, kind: str, namespace: str, timeout: float = 10) -> str:
        """The collection URL path of ``kind``; waits ``timeout`` for discovery to list a new resource."""
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if (api_version, kind) in self._custom_kinds:
            plural, namespaced = self._custom_kinds[api_version, kind]
            return f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                resources = self._request("GET", base)["resources"]
            except Rejected as rejected:
                if rejected.code != 404:
                    raise
                resources = []
            for resource in resources:
                if resource["kind"] == kind and "/" not in resource["name"]:
                    scope = f"/namespaces/{namespace}" if resource["namespaced"] else ""
                    return f"{base}{scope}/{resource['name']}"
            if time.monotonic() > deadline:
                raise Rejected(404, "NotFound", f"the server does not serve {kind} in {api_version}")
            time.sleep(0.2)

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            self.server + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        if self._ssl is None:
            self._ssl = self.ssl_context()
        try:
            with urllib.request.urlopen(request, timeout=30, context=self._ssl) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            status = json.loads(error.read() or b"{}")
            raise Rejected(error.code, status.get("reason", ""), status.get("message", str(error))) from None

    # ---------------------------------------------------------------- state file (detached clusters)

    def save(self) -> None:
        state = {
            "server": self.server,
            "apiserver_port": self.apiserver_port,
            "etcd_dir": str(self.etcd_dir) if self.etcd_dir else None,
            "complete": self.complete,
            "processes": [{**p.__dict__, "log": str(p.log)} for p in self.processes],
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> ControlPlane:
        """The control plane recorded in ``state_dir`` (no processes if there is none)."""
        plane = cls(state_dir)
        if plane.state_file.exists():
            state = json.loads(plane.state_file.read_text())
            plane.apiserver_port = state["apiserver_port"]
            plane.etcd_dir = Path(state["etcd_dir"]) if state["etcd_dir"] else None
            plane.complete = state.get("complete", False)
            plane.processes = [Process(**{**p, "log": Path(p["log"])}) for p in state["processes"]]
        return plane

    # ---------------------------------------------------------------- components

    def spawn(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        ready: str | None = None,
    ) -> Process:
        """Start component ``name`` (log: ``<state_dir>/<name>.log``, appended to on a restart), record it.

        ``env`` is added to this process's environment; ``ready`` is the URL :meth:`wait_ready` polls.
        """
        log = self.state_dir / f"{name}.log"
        args = [str(a) for a in argv]
        env = dict(env or {})
        with log.open("ab") as out:
            popen = subprocess.Popen(
                args,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                preexec_fn=None if self.detach else die_with_parent(),
                start_new_session=self.detach,
            )
        started = Process.start_time(popen.pid)
        if started is None:
            raise ClusterError(
                f"{name} exited at once; its log ends with:\n{log.read_text(errors='replace')}"
            )
        process = Process(name, popen.pid, started, log, args, env, ready)
        # a restarted component keeps its place: the order is the start order, stop() kills all at once
        self.processes = [process if p.name == name else p for p in self.processes]
        if process not in self.processes:
            self.processes.append(process)
        self.save()
        return process

    def _start_etcd(self, etcd: Path) -> str:
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() else Path(tempfile.gettempdir())
        _sweep_stale_etcd_dirs(parent)
        self.etcd_dir = Path(tempfile.mkdtemp(prefix=f"{_ETCD_DIR_PREFIX}{os.getpid()}-", dir=parent))
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        self.spawn(
            "etcd",
            [
                etcd,
                "--name=ferryman-dev",
                f"--data-dir={self.etcd_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=ferryman-dev={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            ready=f"{client_url}/health",
        )
        self.wait_ready("etcd", timeout=30)
        return client_url

    def _start_apiserver(self, apiserver: Path, etcd_url: str) -> None:
        pki = self.pki
        self.apiserver_port = free_port()
        admission = [] if self.spec.controllers else ["--disable-admission-plugins=ServiceAccount"]
        self.spawn(
            "kube-apiserver",
            [
                apiserver,
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=0",
                "--max-mutating-requests-inflight=0",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *admission,
            ],
            ready=f"{self.server}/readyz",
        )

    def _start_controllers(self, kcm: Path, scheduler: Path) -> None:
        pki = self.pki
        self.spawn(
            "kube-controller-manager",
            [
                kcm,
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_private_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-gc-syncs=5",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--profiling=false",
            ],
        )
        self.spawn(
            "kube-scheduler",
            [
                scheduler,
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--profiling=false",
            ],
        )

    def _start_kwok(self, kwok: Path) -> None:
        """kwok with its fast node and pod stages, but pods end as :data:`KWOK_STAGES` says (exit codes)."""
        stages = upstream.module_dir("sigs.k8s.io/kwok", pinned_version("kwok")) / "kustomize" / "stage"
        configs = [
            stages / "node" / "fast" / "node-initialize.yaml",
            stages / "node" / "heartbeat" / "node-heartbeat.yaml",
            stages / "pod" / "fast" / "pod-ready.yaml",
            KWOK_STAGES,
            stages / "pod" / "fast" / "pod-delete.yaml",
        ]
        self.spawn(
            "kwok",
            [
                kwok,
                f"--config={','.join(str(c) for c in configs)}",
                f"--kubeconfig={self.kubeconfig}",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.244.0.1",
            ],
        )

    def _write_kubeconfig(self) -> None:
        pki = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ferryman-dev",
                    "cluster": {"server": self.server, "certificate-authority": str(pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "ferryman-admin",
                    "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)},
                }
            ],
            "contexts": [
                {"name": "ferryman-dev", "context": {"cluster": "ferryman-dev", "user": "ferryman-admin"}}
            ],
            "current-context": "ferryman-dev",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _wait_http(self, url: str, what: str, timeout: float) -> None:
        context = self.ssl_context() if url.startswith("https:") else None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            dead = [p for p in self.processes if not p.stopped and not p.alive()]
            if dead:
                name, tail = dead[0].name, dead[0].log_tail()
                raise ClusterError(f"{name} exited while waiting for {what}; its log ends with:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last = str(error)
            time.sleep(0.2)
        tail = next((p.log_tail() for p in self.processes if p.name == what), "")
        raise ClusterError(f"{what} not ready at {url} after {timeout}s ({last}); log ends with:\n{tail}")


# -------------------------------------------------------------------- cluster contents


def fake_node(name: str, *, gpus: int) -> dict[str, Any]:
    """A kwok-managed Node; GPU nodes advertise ``nvidia.com/gpu`` and carry the usual NoSchedule taint."""
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}
    taints = []
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
        labels["nvidia.com/gpu.present"] = "true"
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {FAKE_NODE_ANNOTATION: "fake"}},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def create_fake_nodes(client: Any, spec: ClusterSpec) -> None:
    from lightkube import codecs

    nodes = [fake_node(f"gpu-node-{i}", gpus=spec.gpus_per_node) for i in range(spec.gpu_nodes)]
    nodes += [fake_node(f"cpu-node-{i}", gpus=0) for i in range(spec.cpu_nodes)]
    for node in nodes:
        client.apply(codecs.from_dict(node), force=True)


def wait_nodes_ready(client: Any, count: int, timeout: float = 60) -> None:
    from lightkube.resources.core_v1 import Node

    def ready() -> bool:
        nodes = list(client.list(Node))
        return len(nodes) >= count and all(
            any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])) for n in nodes
        )

    _poll(ready, f"{count} fake nodes Ready", timeout)


def wait_default_service_account(client: Any, namespace: str, timeout: float = 60) -> None:
    """Wait until kube-controller-manager has created the namespace's ``default`` ServiceAccount."""
    from lightkube import ApiError
    from lightkube.resources.core_v1 import ServiceAccount

    def exists() -> bool:
        try:
            client.get(ServiceAccount, "default", namespace=namespace)
        except ApiError as error:
            if error.status.code == 404:
                return False
            raise
        return True

    _poll(exists, f"ServiceAccount {namespace}/default", timeout)


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived while a detached control plane was starting."""


@contextlib.contextmanager
def _signals_raise_while_detached_start(detached: bool) -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception for the block, so a detached start cleans up after itself.

    Attached components die with this process anyway (PDEATHSIG); signal handlers live in the main thread.
    """
    if not detached or threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, _: Any) -> None:
        raise _Terminated(f"{signal.Signals(signum).name} while the control plane was starting")

    previous = {sig: signal.signal(sig, raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sweep_stale_etcd_dirs(parent: Path) -> None:
    """Remove etcd data dirs left on tmpfs by killed runs: their creator is gone and no etcd uses them."""
    in_use: set[str] = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            in_use.update(
                arg.removeprefix(b"--data-dir=").decode()
                for arg in cmdline.read_bytes().split(b"\0")
                if arg.startswith(b"--data-dir=")
            )
    for directory in parent.glob(f"{_ETCD_DIR_PREFIX}*"):
        creator = directory.name.removeprefix(_ETCD_DIR_PREFIX).split("-", 1)[0]
        if creator.isdigit() and not Path(f"/proc/{creator}").exists() and str(directory) not in in_use:
            shutil.rmtree(directory, ignore_errors=True)


def _poll(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def dev_state_dir() -> Path:
    """Where `ferryman dev cluster` keeps its PKI, kubeconfig, logs and state ($FERRYMAN_DEV_CLUSTER_DIR)."""
    override = os.environ.get("FERRYMAN_DEV_CLUSTER_DIR")
    return Path(override).resolve() if override else repo_root() / ".cache" / "dev-cluster"


def cluster_up(state_dir: Path, spec: ClusterSpec, progress: Callable[[str], None]) -> ControlPlane:
    """Start a detached control plane in ``state_dir``, or return the one already running there."""
    plane = ControlPlane.load(state_dir)
    if plane.running():
        progress(f"already running at {plane.server}")
        return plane
    plane.stop()  # whatever is left of a previous, half-dead cluster
    return ControlPlane(state_dir, spec, detach=True).start(progress)


def cluster_down(state_dir: Path) -> bool:
    """Stop the control plane recorded in ``state_dir``; False when there was none."""
    plane = ControlPlane.load(state_dir)
    found = bool(plane.processes)
    plane.stop()
    return found


@contextlib.contextmanager
def running_cluster(state_dir: Path, spec: ClusterSpec | None = None) -> Iterator[ControlPlane]:
    """A control plane for the duration of the block; it is torn down even when the block fails."""
    plane = ControlPlane(state_dir, spec or ClusterSpec())
    try:
        yield plane.start()
    finally:
        plane.stop()
