"""Which version of each v1 kind a cluster serves, read from the upstream CRDs at the pinned versions: the
operator watches that one (MPIJob: mpi-operator v0.8.0's kubeflow.org/v2beta1 or the Training Operator
v1.9.4's kubeflow.org/v1) and reports kinds whose CRD is absent."""

from ferryman.api import kinds
from ferryman.controller.discovery import is_v1_job_crd, served_job_kind
from ferryman_dev import controllers, upstream


def test_the_served_version_of_each_kind_is_read_from_its_crd() -> None:
    (mpi_operator,) = controllers.crds("mpi-operator")
    assert served_job_kind(mpi_operator) == kinds.MPIJOB
    for plural, kind in [
        ("mpijobs", kinds.MPIJOB_V1),
        ("pytorchjobs", kinds.PYTORCHJOB),
        ("tfjobs", kinds.TFJOB),
        ("jaxjobs", kinds.JAXJOB),
        ("xgboostjobs", kinds.XGBOOSTJOB),
        ("paddlejobs", kinds.PADDLEJOB),
    ]:
        (crd,) = upstream.load_documents(upstream.v1_crd(plural))
        assert is_v1_job_crd(crd["metadata"]["name"])
        assert served_job_kind(crd) == kind
    unserved = {
        **mpi_operator,
        "spec": {
            **mpi_operator["spec"],
            "versions": [{**v, "served": False} for v in mpi_operator["spec"]["versions"]],
        },
    }
    assert served_job_kind(unserved) is None
    assert not is_v1_job_crd(kinds.TRAINJOB.crd_name)
