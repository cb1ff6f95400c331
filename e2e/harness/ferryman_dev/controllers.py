"""The real controllers of both migration sides, run as local processes beside the test control plane.

Each controller is built by `make cluster-bins` from its pinned wrapper module in ``e2e/bins/<name>`` and
started the way its own manifests deploy it, only outside a pod:

* it authenticates with a TokenRequest token of its own ServiceAccount, bound to the ClusterRoles its
  release ships (so a missing permission fails here as it would in a cluster);
* its admission webhooks are the release's webhook configurations (kustomized as its manifests are),
  with each ``service`` client config turned into a ``url`` on 127.0.0.1 and the harness CA as
  ``caBundle``; the webhook server serves a certificate from the harness PKI (upstream certificate
  rotation is turned off, or for the Training Operator, whose rotation cannot be turned off, satisfied by
  a Secret the harness writes);
* leader election and metrics are off, health probes listen on a free loopback port, and the
  controller counts as started once its ``/readyz`` (``/healthz`` for mpi-operator) answers.

The controllers (``CONTROLLERS``): ``trainer`` (Kubeflow Trainer v2 controller manager), ``jobset``,
``training-operator`` (Training Operator v1, every scheme but MPIJob unless ``mpijob_v1`` is asked for, since
mpi-operator serves ``mpijobs.kubeflow.org`` at v2beta1), ``mpi-operator`` and ``kueue`` (the batch Job,
JobSet, TrainJob and v1 integrations on).

From a test: the fixtures of :mod:`ferryman_dev.pytest_cluster` (``upstream_cluster``,
``mpijob_v1_cluster``), or a plane of your own,
``ControlPlane(directory, ClusterSpec(upstream_controllers=("trainer", "jobset"))).start()``;
kwok ends their pods as ``cluster.KWOK_EXIT_CODE`` says.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from ferryman.api.trainer import RUNTIME_NOT_FOUND_DENIAL, TrainerAPI
from ferryman_dev import upstream
from ferryman_dev.pki import rotator_certificates

if TYPE_CHECKING:
    from ferryman_dev.cluster import ControlPlane

WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
TOKEN_SECONDS = 7 * 24 * 3600  # a dev cluster may run for days; the apiserver sets no maximum
# Training Operator v1.9.4's certificate rotator checks that this (hard-coded) file exists before it lets
# the controllers start; only its existence counts, the webhook server reads its certificate from $TMPDIR.
TRAINING_OPERATOR_CERT_PROBE = Path("/tmp/k8s-webhook-server/serving-certs/tls.crt")
# Kueue v0.17.0 without its internal certificate management loads a metrics serving certificate from this
# (hard-coded) directory at start, even with metrics off; any valid pair does.
KUEUE_METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
# mpi-operator v0.8.0 serves its health check on this port on every interface, hard-coded.
MPI_OPERATOR_HEALTH_PORT = 8080
RUNTIME_CACHE_SECONDS = 10.0  # how long Trainer's webhook may take to see a runtime created a moment before
T = TypeVar("T")


@dataclass(frozen=True)
class Ports:
    webhook: int
    health: int


@dataclass(frozen=True)
class Controller:
    """One upstream controller: its binary, and where its release keeps the manifests it is deployed with."""

    name: str  # its component in e2e/bins and .cache/bin (whose module zip also holds its manifests)
    namespace: str  # where its manifests deploy it (its ServiceAccount, leases, Secrets)
    service_account: str
    cluster_roles: tuple[str, ...]  # manifest files with its (Cluster)Roles, relative to the module
    # the namePrefix its default overlay gives its ClusterRoles and webhook configurations (JobSet and Kueue
    # both call theirs ``manager-role`` and ``mutating-webhook-configuration``)
    name_prefix: str
    webhooks: str | None  # its webhook kustomization directory, relative to the module
    ready_path: str
    argv: Callable[[ControlPlane, Controller, Path, Ports, bool], list[str]]

    def module_dir(self) -> Path:
        """Its release's source: the module its wrapper in ``e2e/bins`` pins, from the Go module cache."""
        from ferryman_dev.cluster import pinned_module_dir

        return pinned_module_dir(self.name)

    def executable(self) -> Path:
        from ferryman_dev.cluster import component_binary

        return component_binary(self.name)


def _trainer_argv(
    plane: ControlPlane, controller: Controller, home: Path, ports: Ports, _: bool
) -> list[str]:
    config = {
        "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook},
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
        "clientConnection": {"qps": 100, "burst": 200},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    return [f"--config={home / 'config.yaml'}", f"--kubeconfig={home / 'kubeconfig'}"]


def _jobset_argv(plane: ControlPlane, controller: Controller, home: Path, ports: Ports, _: bool) -> list[str]:
    config = {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(_cert_dir(home))},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    return [
        f"--config={home / 'config.yaml'}",
        f"--kubeconfig={home / 'kubeconfig'}",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{ports.health}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]


# Kueue integrations enabled: batch Jobs, JobSets, TrainJobs and every Training Operator v1 kind
KUEUE_FRAMEWORKS = (
    "batch/job",
    "jobset.x-k8s.io/jobset",
    "trainer.kubeflow.org/trainjob",
    "kubeflow.org/pytorchjob",
    "kubeflow.org/tfjob",
    "kubeflow.org/xgboostjob",
    "kubeflow.org/paddlejob",
    "kubeflow.org/jaxjob",
    "kubeflow.org/mpijob",
)


def _kueue_argv(plane: ControlPlane, controller: Controller, home: Path, ports: Ports, _: bool) -> list[str]:
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": controller.namespace,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(_cert_dir(home))},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        # its pending-workloads API server wants a certificate in /visibility (fixed) and an APIService
        "featureGates": {"VisibilityOnDemand": False},
        "clientConnection": {"qps": 100, "burst": 200},
        "integrations": {"frameworks": list(KUEUE_FRAMEWORKS)},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    return [f"--config={home / 'config.yaml'}", f"--kubeconfig={home / 'kubeconfig'}"]


# Training Operator v1 schemes (its --enable-scheme values); MPIJob only where mpi-operator does not run
TRAINING_OPERATOR_SCHEMES = ("pytorchjob", "tfjob", "xgboostjob", "paddlejob", "jaxjob")


# The Training Operator's PyTorchJob workers wait in an init container until the master's name resolves; its
# default image (alpine:3.10) cannot be pulled here, so the harness's template (the operator's own
# --pytorch-init-container-template-file, filled in with the same fields) does the same wait in the
# ferryman image, which a real node has imported.
PYTORCH_INIT_CONTAINER = """
- name: init-pytorch
  image: {image}
  imagePullPolicy: IfNotPresent
  resources:
    limits: {{cpu: 100m, memory: 64Mi}}
    requests: {{cpu: 50m, memory: 32Mi}}
  command:
    - python3
    - -c
    - |
      import socket, sys, time
      for _ in range({{{{.MaxTries}}}}):
          try:
              socket.getaddrinfo("{{{{.MasterAddr}}}}", None)
              sys.exit(0)
          except OSError:
              print("waiting for master", flush=True)
              time.sleep(2)
      sys.exit(1)
"""


def _training_operator_argv(
    plane: ControlPlane, controller: Controller, home: Path, ports: Ports, mpijob_v1: bool
) -> list[str]:
    from ferryman_dev.image import LOCAL_IMAGE

    schemes = (*TRAINING_OPERATOR_SCHEMES, "mpijob") if mpijob_v1 else TRAINING_OPERATOR_SCHEMES
    init_container = home / "init-container.yaml"
    init_container.write_text(PYTORCH_INIT_CONTAINER.format(image=LOCAL_IMAGE))
    return [
        f"--pytorch-init-container-template-file={init_container}",
        f"--kubeconfig={home / 'kubeconfig'}",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{ports.health}",
        f"--webhook-server-port={ports.webhook}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        *(f"--enable-scheme={scheme}" for scheme in schemes),
    ]


def _mpi_operator_argv(
    plane: ControlPlane, controller: Controller, home: Path, ports: Ports, _: bool
) -> list[str]:
    return [
        f"--kubeConfig={home / 'kubeconfig'}",
        f"--lock-namespace={controller.namespace}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]


CONTROLLERS: dict[str, Controller] = {
    c.name: c
    for c in (
        Controller(
            name="trainer",
            namespace="kubeflow-system",
            service_account="kubeflow-trainer-controller-manager",
            cluster_roles=("manifests/base/rbac/role.yaml",),
            name_prefix="",
            webhooks="manifests/base/webhook",
            ready_path="/readyz",
            argv=_trainer_argv,
        ),
        Controller(
            name="jobset",
            namespace="jobset-system",
            service_account="jobset-controller-manager",
            cluster_roles=("config/components/rbac/role.yaml",),
            name_prefix="jobset-",
            webhooks="config/components/webhook",
            ready_path="/readyz",
            argv=_jobset_argv,
        ),
        Controller(
            name="training-operator",
            namespace="kubeflow",
            service_account="training-operator",
            cluster_roles=("manifests/base/rbac/role.yaml",),
            name_prefix="",
            webhooks="manifests/base/webhook",
            ready_path="/readyz",
            argv=_training_operator_argv,
        ),
        Controller(
            name="mpi-operator",
            namespace="mpi-operator",
            service_account="mpi-operator",
            cluster_roles=("manifests/base/cluster-role.yaml",),
            name_prefix="",
            webhooks=None,
            ready_path="/healthz",
            argv=_mpi_operator_argv,
        ),
        Controller(
            name="kueue",
            namespace="kueue-system",
            service_account="kueue-controller-manager",
            cluster_roles=(
                "config/components/rbac/role.yaml",
                "config/components/rbac/manager_secrets_role.yaml",
            ),
            name_prefix="kueue-",
            webhooks="config/components/webhook",
            ready_path="/readyz",
            argv=_kueue_argv,
        ),
    )
}


def crds(name: str, *, mpijob_v1: bool = False) -> list[dict[str, Any]]:
    """The CRDs controller ``name`` serves, from its release (the Training Operator: the kinds it runs).

    Kueue's come as its manifests install them, with conversion webhooks (still calling a Service).
    """
    if name == "kueue":
        return upstream.kustomize(CONTROLLERS[name].module_dir() / "config" / "components" / "crd")
    if name == "trainer":
        paths = upstream.trainer_crds(TrainerAPI.V2_2)
    elif name == "jobset":
        paths = [upstream.jobset_crd()]
    elif name == "training-operator":
        schemes = (*TRAINING_OPERATOR_SCHEMES, "mpijob") if mpijob_v1 else TRAINING_OPERATOR_SCHEMES
        paths = [upstream.v1_crd(f"{scheme}s") for scheme in schemes]
    elif name == "mpi-operator":
        paths = [CONTROLLERS[name].module_dir() / "manifests" / "base" / "kubeflow.org_mpijobs.yaml"]
    else:
        raise KeyError(name)
    return [doc for path in paths for doc in upstream.load_documents(path)]


def _cert_dir(home: Path) -> Path:
    """controller-runtime's default webhook certificate directory under ``$TMPDIR`` (``home/tmp``)."""
    return home / "tmp" / "k8s-webhook-server" / "serving-certs"


def start_controllers(plane: ControlPlane, names: Sequence[str], *, mpijob_v1: bool = False) -> None:
    """Start the controllers ``names`` side by side; return once each serves and its webhooks are registered.

    Each gets its identity, certificates, configuration and CRDs, then starts; its webhook configurations
    are registered only once it serves them, so no request meets a webhook that is not there yet.
    """
    for finish in [_launch(plane, name, mpijob_v1) for name in names]:
        finish()


def _launch(plane: ControlPlane, name: str, mpijob_v1: bool) -> Callable[[], None]:
    """Set up and start controller ``name``; the function that waits for it and registers its webhooks."""
    from ferryman_dev.cluster import ClusterError
    from ferryman_dev.lifetime import free_port

    controller = CONTROLLERS[name]
    executable = controller.executable()
    home = plane.state_dir / name
    _cert_dir(home).mkdir(parents=True, exist_ok=True)
    _grant_cluster_roles(plane, controller)
    _write_token_kubeconfig(plane, controller, home / "kubeconfig")
    ports = Ports(webhook=free_port(), health=free_port())
    ca_bundle = _serving_certificate(plane, controller, home)
    definitions = crds(name, mpijob_v1=mpijob_v1)
    for crd in definitions:  # conversion webhooks, like admission ones, are called on 127.0.0.1
        conversion = crd["spec"].get("conversion", {}).get("webhook")
        if conversion is not None:
            conversion["clientConfig"] = _local_client_config(
                conversion["clientConfig"], ports.webhook, ca_bundle
            )
    plane.install_crd_documents(definitions)
    env = {"TMPDIR": str(home / "tmp")}
    if name == "training-operator":
        env["MY_POD_NAMESPACE"] = controller.namespace
    if name == "mpi-operator":
        health = f"http://127.0.0.1:{MPI_OPERATOR_HEALTH_PORT}{controller.ready_path}"
        if not _port_free(MPI_OPERATOR_HEALTH_PORT):
            raise ClusterError(
                f"mpi-operator cannot start: port {MPI_OPERATOR_HEALTH_PORT}, where mpi-operator v0.8.0 "
                "always serves its health check, is taken (another test cluster running mpi-operator?)"
            )
    else:
        health = f"http://127.0.0.1:{ports.health}{controller.ready_path}"
    plane.spawn(
        name, [executable, *controller.argv(plane, controller, home, ports, mpijob_v1)], env=env, ready=health
    )

    def finish() -> None:
        plane.wait_ready(name, timeout=180)
        if controller.webhooks is not None:
            docs = upstream.kustomize(controller.module_dir() / controller.webhooks)
            for doc in local_webhooks(docs, ports.webhook, ca_bundle):
                doc["metadata"]["name"] = controller.name_prefix + doc["metadata"]["name"]
                plane.apply(doc)

    return finish


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _grant_cluster_roles(plane: ControlPlane, controller: Controller) -> None:
    """The controller's namespace and ServiceAccount, and its release's (Cluster)Roles bound to it.

    A Role goes to the controller's namespace, as its overlay puts it there.
    """
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": controller.namespace}})
    account = {"name": controller.service_account, "namespace": controller.namespace}
    plane.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account}, controller.namespace)
    for path in controller.cluster_roles:
        for role in upstream.load_documents(controller.module_dir() / path):
            if role["kind"] not in ("ClusterRole", "Role"):
                continue
            metadata = {**role["metadata"], "name": controller.name_prefix + role["metadata"]["name"]}
            if role["kind"] == "Role":
                metadata["namespace"] = controller.namespace
            plane.apply({**role, "metadata": metadata}, controller.namespace)
            plane.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": f"{role['kind']}Binding",
                    "metadata": metadata,
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": role["kind"],
                        "name": metadata["name"],
                    },
                    "subjects": [{"kind": "ServiceAccount", **account}],
                },
                controller.namespace,
            )


def _write_token_kubeconfig(plane: ControlPlane, controller: Controller, path: Path) -> None:
    token = plane.mint_token(
        controller.namespace, controller.service_account, expiration_seconds=TOKEN_SECONDS
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ferryman-dev",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.pki.ca_cert)},
            }
        ],
        "users": [{"name": controller.service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "ferryman-dev",
                "context": {"cluster": "ferryman-dev", "user": controller.service_account},
            }
        ],
        "current-context": "ferryman-dev",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _serving_certificate(plane: ControlPlane, controller: Controller, home: Path) -> str:
    """Write the webhook server's certificate into its certificate directory; the CA bundle (base64 PEM)."""
    cert_dir = _cert_dir(home)
    if controller.name != "training-operator":
        pki = plane.pki
        targets = [cert_dir]
        if controller.name == "kueue" and not (KUEUE_METRICS_CERT_DIR / "tls.key").exists():
            targets.append(KUEUE_METRICS_CERT_DIR)
        for directory in targets:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "tls.crt").write_bytes(pki.webhook_cert.read_bytes())
            (directory / "tls.key").write_bytes(pki.webhook_key.read_bytes())
        return base64.b64encode(pki.ca_cert.read_bytes()).decode()
    # Its rotator keeps a CA and serving certificate in a Secret and replaces them unless the CA is valid
    # for the name "training-operator-ca" and the certificate for "training-operator.<namespace>.svc": give
    # it such a pair (the certificate also names 127.0.0.1), so it rotates nothing and serves what we wrote.
    secret = rotator_certificates("training-operator-ca", f"training-operator.{controller.namespace}.svc")
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "training-operator-webhook-cert", "namespace": controller.namespace},
            "data": {key: base64.b64encode(value).decode() for key, value in secret.items()},
        },
        controller.namespace,
    )
    (cert_dir / "tls.crt").write_bytes(secret["tls.crt"])
    (cert_dir / "tls.key").write_bytes(secret["tls.key"])
    if not TRAINING_OPERATOR_CERT_PROBE.exists():
        TRAINING_OPERATOR_CERT_PROBE.parent.mkdir(parents=True, exist_ok=True)
        TRAINING_OPERATOR_CERT_PROBE.write_bytes(secret["tls.crt"])
    return base64.b64encode(secret["ca.crt"]).decode()


def local_webhooks(docs: list[dict[str, Any]], port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """The webhook configurations among ``docs``, calling ``https://127.0.0.1:<port><path>`` (no Service)."""
    configurations = []
    for doc in docs:
        if doc.get("kind") not in WEBHOOK_KINDS:
            continue
        for webhook in doc["webhooks"]:
            webhook["clientConfig"] = _local_client_config(webhook["clientConfig"], port, ca_bundle)
        configurations.append(doc)
    return configurations


def _local_client_config(client_config: dict[str, Any], port: int, ca_bundle: str) -> dict[str, Any]:
    """A webhook client config calling ``https://127.0.0.1:<port>`` at the path of its Service."""
    path = client_config.get("service", {}).get("path", "/")
    return {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}


def create_trainjob(create: Callable[[], T], *, derived_runtime: bool) -> T:
    """``create()`` a TrainJob. Trainer's webhook (v2.0-v2.3) looks runtimes up through its manager's cache,
    so it can deny a TrainJob whose derived runtime was created a moment before ("must be created before
    ..."): created again for up to 10 s, as the operator does; a missing cluster runtime is a rejection."""
    from ferryman_dev.cluster import Rejected

    deadline = time.monotonic() + RUNTIME_CACHE_SECONDS
    while True:
        try:
            return create()
        except Rejected as rejected:
            cache_lag = derived_runtime and RUNTIME_NOT_FOUND_DENIAL in rejected.message
            if not cache_lag or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
