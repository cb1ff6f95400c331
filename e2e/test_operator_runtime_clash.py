"""A derived TrainingRuntime someone else holds under ferryman's content-hash name is never used or
overwritten (issue #14): the job it would serve is a conflict (one TrainJobConflict event), and is served
once the name is free."""

from __future__ import annotations

import pytest
from lightkube import Client, codecs

from e2e.test_operator_cutover import (  # noqa: F401  (fixtures)
    conflict_events,
    example_jobs,
    ferryman_installed,
    make_policy,
    operator,
    policy_status,
    trainjobs,
)
from ferryman.controller.cutover import first_difference
from ferryman.convert.registry import convert_job
from ferryman.kube.resources import CutoverPolicy, TrainingRuntime
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.usefixtures("operator")
def test_other_content_under_a_derived_runtimes_name_is_never_used(kube: Client, namespace: str) -> None:
    job = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "gpt-rdma-hostnet")
    kube.create(codecs.from_dict(job))
    runtime = convert_job(job).runtime
    assert runtime is not None
    sidecar = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    sidecar["containers"][1]["image"] = "registry.example.com/not-fluent-bit:latest"  # the name's hash lies
    name = runtime["metadata"]["name"]
    before = kube.create(codecs.from_dict(runtime)).to_dict()
    policy = "runtime-clash"
    kube.create(codecs.from_dict(make_policy(policy, namespace, mode="Mirror", mirror={"suspend": True})))
    try:
        counts = wait_for(
            lambda: (c := policy_status(kube, policy).get("trainJobs")) and c.get("conflicts") == 1 and c,
            "the conflict to be counted",
        )
        assert counts["present"] == 0 and not trainjobs(kube, namespace)
        wait_for(lambda: conflict_events(kube, namespace), "the TrainJobConflict event")
        (event,) = conflict_events(kube, namespace)
        assert f"TrainingRuntime {namespace}/{name} exists with other content" in event.message
        after = kube.get(TrainingRuntime, name, namespace=namespace).to_dict()
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

        kube.delete(TrainingRuntime, name, namespace=namespace)  # the name is free: served on its own runtime
        wait_for(lambda: trainjobs(kube, namespace), "the mirror TrainJob")
        served = kube.get(TrainingRuntime, name, namespace=namespace).to_dict()
        assert first_difference(served["spec"], convert_job(job).runtime["spec"], "spec") is None  # type: ignore[index]
        assert len(conflict_events(kube, namespace)) == 1
    finally:
        kube.delete(CutoverPolicy, policy)
    wait_for(lambda: not any(p.metadata.name == policy for p in kube.list(CutoverPolicy)), "the policy to go")
