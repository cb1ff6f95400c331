"""Every kind ferryman reads or writes, every name it puts on objects, and what a copy never inherits.

One table each: the other modules name these constants instead of spelling group, version, kind or label
strings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "ferryman.dev"  # ferryman's CRD group, and the prefix of its labels, annotations and finalizer
VERSION = "v1alpha1"


@dataclass(frozen=True)
class Kind:
    """A Kubernetes kind: its group (empty for the core group), version, name and plural resource."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def type_meta(self) -> dict[str, str]:
        """`apiVersion` and `kind`, the head of every object of this kind."""
        return {"apiVersion": self.api_version, "kind": self.kind}

    def matches(self, api_version: object, kind: object) -> bool:
        """Whether an object's (or reference's) apiVersion and kind name this kind, in any version."""
        group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
        return kind == self.kind and group == self.group

    @property
    def resource(self) -> tuple[str, str, str]:
        """(group, version, plural), as kopf's handler decorators take them."""
        return self.group, self.version, self.plural

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


# ferryman's own kinds
CUTOVER_POLICY = Kind(GROUP, VERSION, "CutoverPolicy", "cutoverpolicies", namespaced=False)
EXPERIMENT_MIGRATION = Kind(GROUP, VERSION, "ExperimentMigration", "experimentmigrations")

# Training Operator v1, Kubeflow Trainer v2 and JobSet
PYTORCHJOB = Kind("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs")
JAXJOB = Kind("kubeflow.org", "v1", "JAXJob", "jaxjobs")
XGBOOSTJOB = Kind("kubeflow.org", "v1", "XGBoostJob", "xgboostjobs")
TFJOB = Kind("kubeflow.org", "v1", "TFJob", "tfjobs")
PADDLEJOB = Kind("kubeflow.org", "v1", "PaddleJob", "paddlejobs")
MPIJOB = Kind("kubeflow.org", "v2beta1", "MPIJob", "mpijobs")  # mpi-operator; Training Operator serves v1
MPIJOB_V1 = Kind("kubeflow.org", "v1", "MPIJob", "mpijobs")
TRAINJOB = Kind("trainer.kubeflow.org", "v1alpha1", "TrainJob", "trainjobs")
TRAINING_RUNTIME = Kind("trainer.kubeflow.org", "v1alpha1", "TrainingRuntime", "trainingruntimes")
CLUSTER_TRAINING_RUNTIME = Kind(
    "trainer.kubeflow.org", "v1alpha1", "ClusterTrainingRuntime", "clustertrainingruntimes", namespaced=False
)
JOBSET = Kind("jobset.x-k8s.io", "v1alpha2", "JobSet", "jobsets")

# Kubernetes kinds ferryman creates or watches
JOB = Kind("batch", "v1", "Job", "jobs")
CONFIG_MAP = Kind("", "v1", "ConfigMap", "configmaps")
SERVICE_ACCOUNT = Kind("", "v1", "ServiceAccount", "serviceaccounts")
NAMESPACE = Kind("", "v1", "Namespace", "namespaces", namespaced=False)
PERSISTENT_VOLUME_CLAIM = Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
ROLE = Kind("rbac.authorization.k8s.io", "v1", "Role", "roles")
ROLE_BINDING = Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")
CUSTOM_RESOURCE_DEFINITION = Kind(
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
)

# Labels, annotations and the finalizer ferryman puts on objects
LABEL_VALUE_MAX_LENGTH = 63  # Kubernetes label values; ferryman's kinds are named within it (api.crd)
MANAGED_BY = {"app.kubernetes.io/managed-by": "ferryman"}
POLICY_LABEL = f"{GROUP}/policy"  # the CutoverPolicy a TrainJob serves
MODE_LABEL = f"{GROUP}/mode"  # mirror or takeover
SOURCE_UID_LABEL = f"{GROUP}/source-uid"  # the v1 job a TrainJob was converted from
MIGRATION_LABEL = f"{GROUP}/experimentmigration"  # the ExperimentMigration a worker, Job or ConfigMap serves
SPEC_HASH_LABEL = f"{GROUP}/spec-hash"  # what a migration Job or a TrainJob was built from (suspension aside)
SOURCE_ANNOTATION = f"{GROUP}/source"  # namespace/name of the object a converted one came from
DERIVED_FROM_ANNOTATION = f"{GROUP}/derived-from"  # the runtime a derived TrainingRuntime copies
FINALIZER = f"{GROUP}/finalizer"  # kopf's, on ferryman's own kinds only
CONVERTER_MANAGER = f"{GROUP}/converter"  # the runtimePatches manager of converted TrainJobs
HELD_LABELS_ANNOTATION = f"{GROUP}/held-labels"  # JSON: the admission labels a suspended mirror holds back

# Labels by which a queueing system takes charge of a workload object and admits (unsuspends) it. A
# suspended mirror must not carry them, or the queue would run the job a second time beside v1: they move
# to HELD_LABELS_ANNOTATION and come back at Takeover. Keys seen in real manifests (/work/shared/corpus)
# and those the schedulers document for whole workloads; pod-level keys (YuniKorn's applicationId and queue,
# a schedulerName) act only on pods, which a suspended TrainJob never has.
ADMISSION_LABELS = {
    "kueue.x-k8s.io/queue-name": "Kueue: the LocalQueue that admits the workload (Kueue manages TrainJobs)",
    "kai.scheduler/queue": "KAI Scheduler: the queue of the workload's pod group (seen in the corpus)",
    "volcano.sh/queue-name": "Volcano: the queue of the workload's PodGroup",
    "yunikorn.apache.org/queue": "YuniKorn: the queue of the application",
}

# Pod-template labels and annotations Kueue writes into a job it admits (and takes out when it suspends the
# job again): its Workload's bookkeeping, never carried into a conversion, which would otherwise change with
# each admission and name the v1 job's Workload on the TrainJob's pods. Seen on the real Kueue (v0.17.0).
KUEUE_ADMISSION_POD_METADATA = {
    "kueue.x-k8s.io/workload": "the admitted Workload's name",
    "kueue.x-k8s.io/podset": "the Workload's pod set the pods belong to",
    "kueue.x-k8s.io/cluster-queue-name": "the ClusterQueue that admitted the Workload",
    "kueue.x-k8s.io/local-queue-name": "the LocalQueue the Workload was queued in",
}

# Metadata a copy never inherits from the object it was made from: server-populated or owner-specific
# fields, and labels or annotations of the tools managing the source (GitOps tracking would make ArgoCD
# prune the copy; kopf's and kubectl's bookkeeping belongs to the source only).
DROPPED_METADATA_FIELDS = {
    "uid": "assigned by the API server",
    "resourceVersion": "assigned by the API server",
    "generation": "assigned by the API server",
    "creationTimestamp": "assigned by the API server",
    "deletionTimestamp": "assigned by the API server",
    "deletionGracePeriodSeconds": "assigned by the API server",
    "managedFields": "server-side apply bookkeeping of the source",
    "selfLink": "assigned by the API server",
    "clusterName": "obsolete server field",
    "ownerReferences": "the owners of the source do not own the converted object",
    "finalizers": "the source's finalizers belong to its controllers and would block deletion",
}
FOREIGN_METADATA_PREFIXES = (
    "argocd.argoproj.io/",
    "kopf.zalando.org/",
    "kopf.dev/",
    "kubectl.kubernetes.io/",
)
FOREIGN_METADATA_KEYS = frozenset({"app.kubernetes.io/instance"})
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"  # a whole copy of the object


def is_foreign_metadata(key: str) -> bool:
    """Whether a label or annotation key belongs to a tool managing the source, so a copy drops it."""
    return key in FOREIGN_METADATA_KEYS or key.startswith(FOREIGN_METADATA_PREFIXES)
