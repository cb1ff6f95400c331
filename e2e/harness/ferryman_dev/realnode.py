"""One real node for the local control plane: containerd, kubelet, kube-proxy and CoreDNS on this host.

Pods scheduled to it really run (Debian's containerd, runc and CNI plugins; kubelet and kube-proxy from the
pinned ``k8s.io/kubernetes`` module; CoreDNS from its own module, all built by ``make cluster-bins``). The
settings are the ones this kind of host needs (``shared/notes/real-node.md``): containerd's CRI restricts
``oom_score_adj`` (no ``CAP_SYS_RESOURCE``), the kubelet runs on cgroup v1 (``failCgroupV1: false``) with the
cgroupfs driver, and images come from local archives (no registry), the pause image included.

Everything the node writes lives in ``<state_dir>/node/``; what it changes on the host (sysctls, the pod
bridge, iptables chains, ``kubepods`` cgroups, network namespaces, ``/var/log/containers`` links, kubelet
mounts) is undone by :meth:`RealNode.stop`, which also clears what a killed run left. One real node runs on
a machine at a time (a lock file); pods get a route to the pod network and the Service range only.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferryman_dev.cluster import SERVICE_CIDR, ClusterError, ControlPlane, binary
from ferryman_dev.lifetime import free_port
from ferryman_dev.pki import client_certificate
from ferryman_dev.waiting import wait_for

NODE_NAME = "localhost"  # the apiserver reaches the kubelet (logs, exec) at the node's hostname: loopback
POD_SUBNET = "10.88.0.0/16"
BRIDGE = "ferryman0"
GATEWAY = "10.88.0.1"  # the bridge's address on the host: CoreDNS answers here
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "localhost/pause:local"
CNI_BIN_DIR = Path("/usr/lib/cni")
LOCK_FILE = Path("/run/lock/ferryman-realnode.lock")
# The host's own sysctl values, kept until a node restores them: a killed run's are restored by the next one.
SYSCTL_BACKUP = Path("/run/lock/ferryman-realnode.sysctls.json")
KUBEPODS = "kubepods"  # the kubelet's cgroup under every v1 hierarchy (cgroupfs driver)
# Commands the node runs, from the Debian packages `make host-packages` installs.
HOST_COMMANDS = ("containerd", "runc", "ctr", f"{CNI_BIN_DIR}/bridge", "iptables", "ip", "busybox", "socat")
# Host settings the kubelet, kube-proxy or the bridge plugin change; restored on stop.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
)
_CNI_NETWORK = "ferryman"
_SOCKET = Path("node") / "containerd" / "containerd.sock"  # under a control plane's state directory
# in the paths of the mounts a real node makes: its kubelet's root directory and containerd's
_MOUNT_MARKS = ("/node/kubelet/", "/node/containerd/")
_NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
_RELAY = "relay-"  # relays from the bridge address to loopback ports (host_port_for_pods): node components


def _node_component(name: str) -> bool:
    return name in _NODE_COMPONENTS or name.startswith(_RELAY)


def missing_prerequisites() -> list[str]:
    """What this host lacks to run a real node (empty when it can): root, Debian packages, binaries."""
    missing = [] if os.geteuid() == 0 else ["root (containerd and the kubelet manage mounts and cgroups)"]
    missing += [
        f"{command} (make host-packages)" for command in HOST_COMMANDS if shutil.which(command) is None
    ]
    for name in ("kubelet", "kube-proxy", "coredns"):
        try:
            binary(name)
        except ClusterError as error:
            missing.append(str(error))
    return missing


@dataclass
class RealNode:
    """The node ``NODE_NAME`` of ``plane``: :meth:`start` it after the plane, :meth:`stop` it before."""

    plane: ControlPlane
    sysctls: dict[str, str] = field(default_factory=dict)
    _lock: Any = field(default=None, repr=False)

    @property
    def directory(self) -> Path:
        return self.plane.state_dir / "node"

    @property
    def socket(self) -> Path:
        return self.plane.state_dir / _SOCKET

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 120) -> RealNode:
        """Start containerd, the kubelet, kube-proxy and CoreDNS; return once the node is Ready."""
        missing = missing_prerequisites()
        if missing:
            raise ClusterError("this host cannot run a real node; missing: " + "; ".join(missing))
        self._acquire_lock()
        try:
            sweep_host()  # whatever a killed run left
            if SYSCTL_BACKUP.exists():
                self.sysctls = json.loads(SYSCTL_BACKUP.read_text())
            else:
                self.sysctls = read_sysctls()
                SYSCTL_BACKUP.write_text(json.dumps(self.sysctls))
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")  # Services between pods of one bridge
            _create_bridge()
            self._start_containerd()
            self.import_archive(write_pause_image(self.directory / "pause.oci.tar"))
            self._authorize_node_components()
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_coredns()
            self._start_apiserver_relay()
            wait_for(self._node_ready, f"node {NODE_NAME} Ready", timeout, details=self._component_logs)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the node's pods and components and undo every change to the host; safe to call twice."""
        if self._lock is None:
            return
        try:
            self._delete_pods()
            for process in self.plane.processes:
                if _node_component(process.name) and not process.stopped:
                    self.plane.stop_component(process.name)
            sweep_host()
            write_sysctls(self.sysctls)
            SYSCTL_BACKUP.unlink(missing_ok=True)
        finally:
            self._release_lock()

    # ---------------------------------------------------------------- images and containers

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the kubelet's namespace ``k8s.io``."""
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def import_archive(self, archive: Path) -> None:
        """Import an OCI or docker archive; its pods use it without a registry (it names its image)."""
        result = self.ctr("images", "import", "--no-unpack=false", str(archive), check=False)
        if result.returncode != 0:
            raise ClusterError(f"ctr images import {archive} failed: {result.stderr.strip()}")

    # ---------------------------------------------------------------- components

    def _start_containerd(self) -> None:
        home = self.directory / "containerd"
        cni = self.directory / "cni"
        for path in (home, cni):
            path.mkdir(parents=True, exist_ok=True)
        (cni / "10-ferryman.conflist").write_text(
            json.dumps(cni_config(self.directory / "cni-ipam"), indent=2)
        )
        config = home / "config.toml"
        config.write_text(containerd_config(home, cni))
        self.plane.spawn("containerd", ["containerd", f"--config={config}"])
        wait_for(
            lambda: self.socket.exists() and self.ctr("version", check=False).returncode == 0,
            "containerd",
            30,
            details=self._component_logs,
        )

    def _authorize_node_components(self) -> None:
        """Credentials for the kubelet (group ``system:nodes``), kube-proxy and CoreDNS, and their RBAC.

        The test apiserver runs RBAC only (no Node authorizer), and the default ``system:node`` binding has
        no subjects, so the group is bound to that ClusterRole here.
        """
        pki = self.plane.pki
        users = {
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", None),  # bound to system:node-proxier by default
            "coredns": ("ferryman-dev:coredns", None),
        }
        for name, (user, group) in users.items():
            cert, key = client_certificate(pki, self.directory / "pki" / name, user, group)
            self._write_kubeconfig(self.directory / f"{name}.kubeconfig", cert, key)
        self.plane.apply(
            _cluster_role_binding(
                "ferryman-dev:nodes", "system:node", {"kind": "Group", "name": "system:nodes"}
            )
        )
        self.plane.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "ferryman-dev:coredns"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            }
        )
        self.plane.apply(
            _cluster_role_binding(
                "ferryman-dev:coredns",
                "ferryman-dev:coredns",
                {"kind": "User", "name": "ferryman-dev:coredns"},
            )
        )

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ferryman-dev",
                    "cluster": {
                        "server": self.plane.server,
                        "certificate-authority": str(self.plane.pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "ferryman-dev", "context": {"cluster": "ferryman-dev", "user": "node"}}],
            "current-context": "ferryman-dev",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _start_kubelet(self) -> None:
        healthz = free_port()
        config = self.directory / "kubelet.yaml"
        config.write_text(
            yaml.safe_dump(kubelet_config(self.directory, self.socket, self.plane.pki.ca_cert, healthz))
        )
        self.plane.spawn(
            "kubelet",
            [
                binary("kubelet"),
                f"--config={config}",
                f"--kubeconfig={self.directory / 'kubelet.kubeconfig'}",
                f"--root-dir={self.directory / 'kubelet'}",
                f"--cert-dir={self.directory / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
            ready=f"http://127.0.0.1:{healthz}/healthz",
        )

    def _start_kube_proxy(self) -> None:
        healthz = free_port()
        config = self.directory / "kube-proxy.yaml"
        config.write_text(
            yaml.safe_dump(kube_proxy_config(self.directory / "kube-proxy.kubeconfig", healthz, free_port()))
        )
        self.plane.spawn(
            "kube-proxy",
            [binary("kube-proxy"), f"--config={config}", "--v=1"],
            ready=f"http://127.0.0.1:{healthz}/healthz",
        )

    def _start_coredns(self) -> None:
        ready = free_port()
        corefile = self.directory / "Corefile"
        corefile.write_text(coredns_corefile(self.directory / "coredns.kubeconfig", free_port(), ready))
        self.plane.spawn(
            "coredns", [binary("coredns"), "-conf", str(corefile)], ready=f"http://127.0.0.1:{ready}/ready"
        )
        self.plane.wait_ready("coredns", timeout=60)

    def _start_apiserver_relay(self) -> None:
        """Pods reach the apiserver through the ``kubernetes`` Service, as in any cluster.

        The apiserver listens on loopback only, so socat relays the bridge address (same port) to it, and
        the Service's EndpointSlice (the test apiserver reconciles none) names that address.
        """
        port = self.plane.apiserver_port
        self.host_port_for_pods(port)
        self.plane.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kubernetes",
                    "labels": {
                        "kubernetes.io/service-name": "kubernetes",
                        "endpointslice.kubernetes.io/managed-by": "ferryman-dev",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [GATEWAY], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        )

    def host_port_for_pods(self, port: int) -> str:
        """``host:port`` where pods reach a server listening on this host's loopback ``port`` (a socat relay
        on the bridge address, started once for each port and stopped with the control plane)."""
        name = f"{_RELAY}{port}"
        if not any(p.name == name and p.alive() for p in self.plane.processes):
            relay = ["socat", f"TCP-LISTEN:{port},bind={GATEWAY},fork,reuseaddr", f"TCP:127.0.0.1:{port}"]
            self.plane.spawn(name, relay)
        return f"{GATEWAY}:{port}"

    def host_path_claim(self, namespace: str, name: str, path: Path, timeout: float = 60) -> str:
        """PersistentVolumeClaim `namespace/name`, bound to a hostPath PersistentVolume at `path` on this host
        (pods under PodSecurity ``restricted`` may mount the claim, not the hostPath); the volume's name.
        Delete the volume when done: it is cluster-scoped and kept (Retain)."""
        volume = f"{namespace}-{name}"[:63]
        self.plane.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(path), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": name},
                },
            }
        )
        self.plane.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
            namespace,
        )
        from lightkube.resources.core_v1 import PersistentVolumeClaim

        client = self.plane.client()
        deadline = time.monotonic() + timeout
        while client.get(PersistentVolumeClaim, name, namespace=namespace).status.phase != "Bound":
            if time.monotonic() > deadline:
                raise ClusterError(f"claim {namespace}/{name} not bound to {volume} within {timeout:g}s")
            time.sleep(0.3)
        return volume

    def _node_ready(self) -> bool:
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Node

        try:
            node = self.plane.client().get(Node, NODE_NAME)
        except ApiError:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))

    def _component_logs(self) -> str:
        return "\n".join(
            f"--- {p.name} log ends with:\n{p.log_tail(1500)}"
            for p in self.plane.processes
            if _node_component(p.name)
        )

    def _delete_pods(self, timeout: float = 60) -> None:
        """Delete every pod bound to this node at once and wait for containerd to run no task (containers and
        sandboxes stopped; the kubelet removes exited containers only at its next garbage collection, up to
        a minute later, and `sweep_host` removes what they leave)."""
        if not any(p.name == "kubelet" and p.alive() for p in self.plane.processes):
            return
        from lightkube.resources.core_v1 import Pod

        client = self.plane.client()
        with contextlib.suppress(Exception):
            for pod in client.list(Pod, namespace="*", fields={"spec.nodeName": NODE_NAME}):
                client.delete(Pod, pod.metadata.name, namespace=pod.metadata.namespace, grace_period=0)
        with contextlib.suppress(TimeoutError):
            wait_for(
                lambda: not self.ctr("tasks", "list", "-q", check=False).stdout.strip(),
                "pods stopped",
                timeout,
            )

    # ---------------------------------------------------------------- machine-wide lock

    def _acquire_lock(self, timeout: float = 1800) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        lock = LOCK_FILE.open("a")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise ClusterError(f"another real node has held {LOCK_FILE} for {timeout:g}s") from None
                time.sleep(1)
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


# -------------------------------------------------------------------- configuration


def containerd_config(home: Path, cni_conf_dir: Path) -> str:
    """containerd 1.6's config: own root, state and socket; CRI with the host's required settings."""
    return f"""version = 2
root = "{home / "root"}"
state = "{home / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{home / "containerd.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{home / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true  # no CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
"""


def cni_config(ipam_dir: Path) -> dict[str, Any]:
    """A bridge with host-local addresses; pods are routed to each other and to Services, nowhere else."""
    return {
        "cniVersion": "1.0.0",
        "name": _CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                    "routes": [{"dst": SERVICE_CIDR}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(directory: Path, socket: Path, ca_cert: Path, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # the host's cgroups are a v1/v2 hybrid
        "cgroupDriver": "cgroupfs",  # containerd 1.6 lacks the CRI RuntimeConfig call
        "containerRuntimeEndpoint": f"unix://{socket}",
        "failSwapOn": False,
        "address": "127.0.0.1",
        "port": free_port(),
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "readOnlyPort": 0,
        "evictionHard": {},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "clusterDNS": [GATEWAY],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",  # pods see CoreDNS only: no name leaves the cluster
        "podLogsDir": str(directory / "pod-logs"),
        # the apiserver calls the kubelet (logs, exec) without a client certificate; loopback only
        "authentication": {
            "anonymous": {"enabled": True},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "serializeImagePulls": False,
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_SUBNET,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # leave the host's conntrack settings alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def coredns_corefile(kubeconfig: Path, health_port: int, ready_port: int) -> str:
    """Answers cluster names from the API on the bridge address; no forwarding, so nothing leaves the host."""
    return f""". {{
    bind {GATEWAY}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} ferryman-dev
        pods insecure
    }}
    cache 30
}}
"""


def _cluster_role_binding(name: str, role: str, subject: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
    }


# -------------------------------------------------------------------- the pause image


def write_pause_image(path: Path) -> Path:
    """An OCI archive of ``PAUSE_IMAGE``: Debian's static busybox sleeping for ever (pod sandboxes)."""
    busybox = Path(shutil.which("busybox") or "busybox").resolve()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = busybox.stat().st_size, 0o755
        with busybox.open("rb") as source:
            tar.addfile(info, source)
    diff = layer.getvalue()
    compressed = gzip.compress(diff, mtime=0)
    config = _json_blob(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(diff).hexdigest()}"]},
        }
    )
    manifest = _json_blob(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", compressed)],
        }
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest),
                "annotations": {"org.opencontainers.image.ref.name": PAUSE_IMAGE},
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
        **{f"blobs/sha256/{hashlib.sha256(b).hexdigest()}": b for b in (config, manifest, compressed)},
    }
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _json_blob(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
    }


# -------------------------------------------------------------------- host side effects


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def write_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        _write_sysctl(name, value)


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        _sysctl_path(name).write_text(value)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _create_bridge() -> None:
    """The pod bridge with the gateway address up front, so CoreDNS can bind it before the first pod."""
    for argv in (
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{GATEWAY}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def sweep_host() -> None:
    """Remove what real nodes leave on the host (this one's, or a killed run's): their containers' processes
    and shims, ``kubepods`` cgroups, kubelet and containerd mounts, pod network namespaces and log links, the
    bridge, ``KUBE-*`` iptables chains."""
    for pid in _cgroup_pids(KUBEPODS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in _shim_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (_cgroup_pids(KUBEPODS) or _shim_pids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    _remove_cgroups(KUBEPODS)
    _unmount_node_mounts()
    for netns in Path("/run/netns").glob("cni-*"):
        _run(["ip", "netns", "delete", netns.name])
    for link in Path("/var/log/containers").glob("*.log"):
        if link.is_symlink() and not link.exists():
            link.unlink()
    _run(["ip", "link", "delete", BRIDGE])
    _remove_kube_chains()
    for cached in Path("/var/lib/cni/results").glob(f"{_CNI_NETWORK}-*"):
        cached.unlink()


def _remove_kube_chains() -> None:
    """Remove the ``KUBE-*`` iptables chains the kubelet and kube-proxy add, and the rules jumping to them."""
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            iptables = [command, "-w", "-t", table]
            rules = [shlex.split(rule) for rule in _run([*iptables, "-S"]).splitlines()]
            for words in rules:
                jumps = words[words.index("-j") + 1] if "-j" in words else ""
                if words[0] == "-A" and not words[1].startswith("KUBE-") and jumps.startswith("KUBE-"):
                    _run([*iptables, "-D", *words[1:]])
            chains = [words[1] for words in rules if words[0] == "-N" and words[1].startswith("KUBE-")]
            for flag in ("-F", "-X"):
                for chain in chains:
                    _run([*iptables, flag, chain])


def _run(argv: list[str]) -> str:
    """Run a host command whose failure is no error (cleaning up what may not be there); its output."""
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for procs in (hierarchy / name).glob("**/cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _remove_cgroups(name: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if top.is_dir():
            for directory in sorted((p for p in top.glob("**/") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    directory.rmdir()


def _shim_pids() -> set[int]:
    """The containerd shims of real nodes (``-address <state_dir>/node/containerd/containerd.sock``)."""
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if b"-address" in argv[:-1] and argv[argv.index(b"-address") + 1].endswith(bytes(_SOCKET)):
                pids.add(int(cmdline.parent.name))
    return pids


def _unmount_node_mounts() -> None:
    """Unmount, deepest first, the mounts of real nodes' kubelets and containerds (volumes, rootfs, shm)."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    ours = [p for p in points if any(mark in p + "/" for mark in _MOUNT_MARKS)]
    for point in sorted(ours, key=len, reverse=True):
        _run(["umount", "--lazy", point])
