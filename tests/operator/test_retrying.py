"""A moment without the API server is retried with one line, never a traceback: by kopf for the handlers kopf
retries, in place for event handlers and the Takeover tasks. Other failures pass through unchanged."""

import asyncio
import dataclasses
import logging
from typing import Any

import httpx2
import kopf
import pytest
from lightkube import ApiError

from ferryman.controller import policy, retrying
from ferryman.controller.context import OperatorContext
from ferryman.controller.cutover import JobPlan
from ferryman.controller.retrying import api_handler, retried_in_place
from ferryman.controller.run import RetriedAsWarnings
from ferryman.kube import lease
from ferryman.kube.client import describe_api_failure, tolerate_gone_or_conflict, transient


def api_error(code: int, message: str = "refused", cause: str | None = None) -> ApiError:
    request = httpx2.Request("GET", "https://apiserver.example/api/v1/pods")
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message}
    if cause is not None:
        status["details"] = {"causes": [{"reason": cause}]}
    return ApiError(request=request, response=httpx2.Response(code, json=status, request=request))


def test_what_passes_and_what_does_not() -> None:
    passing = [httpx2.ReadError(""), httpx2.ConnectError("refused"), ConnectionResetError(), api_error(503)]
    assert all(transient(error) for error in [*passing, api_error(429), api_error(500)])
    lasting = [api_error(404), api_error(409), api_error(422), ValueError()]
    assert not any(transient(error) for error in lasting)
    assert describe_api_failure(httpx2.ReadError("")) == "lost the connection to the API server (ReadError)"
    assert describe_api_failure(api_error(503, "etcd down")) == "the API server answered 503: etcd down"
    assert describe_api_failure(KeyError("spec")) == "KeyError: 'spec'"


def test_gone_already_there_or_in_a_namespace_being_deleted_is_passed_over() -> None:
    terminating = api_error(403, "namespace ml is being terminated", cause="NamespaceTerminating")
    for passed in (api_error(404), api_error(409), terminating):
        with tolerate_gone_or_conflict():
            raise passed
    with pytest.raises(ApiError), tolerate_gone_or_conflict():  # RBAC's 403: the operator must hear of it
        raise api_error(403, 'trainjobs.trainer.kubeflow.org is forbidden: User "x" cannot create')


def test_kopf_retries_a_lost_connection_as_a_temporary_error() -> None:
    ctx = OperatorContext(client=None, namespace="ferryman-system", image=None)  # type: ignore[arg-type]
    memo = kopf.Memo(ferryman=ctx)
    seen: list[set[asyncio.Task[Any]]] = []

    @api_handler
    async def reconcile(body: dict[str, Any], memo: kopf.Memo, **_: Any) -> str:
        seen.append(set(ctx.handling))
        raise body["error"]

    with pytest.raises(kopf.TemporaryError, match=r"the API server \(ReadError\); retrying"):
        asyncio.run(reconcile(body={"error": httpx2.ReadError("")}, memo=memo, logger=None))
    with pytest.raises(kopf.TemporaryError, match="answered 429"):
        asyncio.run(reconcile(body={"error": api_error(429)}, memo=memo))
    for lasting in (api_error(403), KeyError("spec")):  # not transient: kopf sees the error itself
        with pytest.raises(type(lasting)):
            asyncio.run(reconcile(body={"error": lasting}, memo=memo))
    assert all(len(running) == 1 for running in seen) and ctx.handling == set()  # listed while it ran
    assert reconcile.__name__ == "reconcile"  # kopf's handler id


def failing(errors: list[Exception]) -> Any:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "mirrored"

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


def test_in_place_a_lost_connection_is_tried_again_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(retrying, "RETRY_DELAY", 0.0)
    logger = logging.getLogger("ferryman.test")
    attempt = failing([httpx2.ReadError(""), api_error(503)])
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(retried_in_place(attempt, "mirroring TrainJob ml/a", logger)) == "mirrored"
    assert len(attempt.calls) == 3
    assert [record.getMessage() for record in caplog.records] == [
        "mirroring TrainJob ml/a: lost the connection to the API server (ReadError); retrying in 0 s",
        "mirroring TrainJob ml/a: the API server answered 503: refused; retrying in 0 s",
    ]
    assert not any(record.exc_info for record in caplog.records)


def test_in_place_other_failures_and_an_outage_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "RETRY_DELAY", 0.0)
    logger = logging.getLogger("ferryman.test")
    attempt = failing([api_error(404)])
    with pytest.raises(ApiError):
        asyncio.run(retried_in_place(attempt, "x", logger))
    assert len(attempt.calls) == 1
    outage = failing([httpx2.ConnectError("refused") for _ in range(retrying.ATTEMPTS_IN_PLACE)])
    with pytest.raises(httpx2.ConnectError):
        asyncio.run(retried_in_place(outage, "x", logger))
    assert len(outage.calls) == retrying.ATTEMPTS_IN_PLACE


class Unreachable:
    """An AsyncClient whose reads fail with `failures`, one each, before the Lease is found absent."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)

    async def get(self, *_: Any, **__: Any) -> Any:
        raise self.failures.pop(0) if self.failures else api_error(404)

    async def create(self, *_: Any, **__: Any) -> None:
        return None


def test_the_lease_is_taken_and_kept_through_a_dropped_connection(caplog: pytest.LogCaptureFixture) -> None:
    config = lease.LeaseConfig(namespace="ferryman-system", name="ferryman", identity="a", retry=0.01)
    with caplog.at_level(logging.WARNING):
        asyncio.run(lease.acquire(Unreachable(httpx2.ReadError(""), api_error(503)), config))  # type: ignore[arg-type]
    assert "cannot read Lease ferryman-system/ferryman: lost the connection to the API server" in caplog.text
    assert "cannot read Lease ferryman-system/ferryman: the API server answered 503" in caplog.text
    with pytest.raises(ApiError):  # refused by RBAC: a standby that can never lead says so at once
        asyncio.run(lease.acquire(Unreachable(api_error(403)), config))  # type: ignore[arg-type]

    async def keep_briefly() -> None:
        drops = [httpx2.ReadError("") for _ in range(3)]
        keeper = asyncio.create_task(lease.keep(Unreachable(*drops), config))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not keeper.done()  # renewed after the drops: still leading
        keeper.cancel()

    asyncio.run(keep_briefly())
    assert "cannot renew Lease ferryman-system/ferryman: lost the connection to the API server" in caplog.text


class Creating:
    """An AsyncClient whose TrainJob creation is denied with `denial`."""

    def __init__(self, denial: ApiError) -> None:
        self.denial = denial

    async def create(self, *_: Any, **__: Any) -> None:
        raise self.denial


def test_a_trainjob_denied_while_its_new_runtime_is_unseen_is_created_at_the_next_try() -> None:
    """Trainer's webhook reads runtimes from a cache: a derived runtime created a moment before is not found
    there yet."""
    plan = JobPlan(
        kind="PyTorchJob",
        api_version="kubeflow.org/v1",
        namespace="ml",
        name="bert",
        uid="uid-bert",
        resource_version="1",
        findings=(),
        trainjob={},
        runtime={"kind": "TrainingRuntime"},
        finished=False,
        started_elsewhere=False,
    )
    desired = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "bert", "namespace": "ml"},
        "spec": {"runtimeRef": {"name": "torch-distributed-d457d50283"}},
    }
    denied = api_error(
        403,
        'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: spec.runtimeRef: '
        'TrainingRuntime "torch-distributed-d457d50283" not found: specified trainingRuntime must be created '
        "before the TrainJob is created",
    )
    ctx = OperatorContext(client=Creating(denied), namespace="ferryman-system", image=None)  # type: ignore[arg-type]
    unseen = "does not see TrainingRuntime ml/torch-distributed-d457d50283 yet"
    with pytest.raises(kopf.TemporaryError, match=unseen):
        asyncio.run(policy._create_trainjob(ctx, plan, desired))
    cluster_runtime = dataclasses.replace(plan, runtime=None)  # not ferryman's: its absence is the user's
    with pytest.raises(ApiError):
        asyncio.run(policy._create_trainjob(ctx, cluster_runtime, desired))


def test_kopf_logs_a_retried_handler_as_a_warning() -> None:
    def record(message: str, *args: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, message, args, None)

    retried = record("Timer %r failed temporarily: %s", "reconcile", "6 TrainJobs wait")
    failed = record("Timer 'reconcile' failed with an exception. Will retry.")
    assert RetriedAsWarnings().filter(retried) and RetriedAsWarnings().filter(failed)
    assert (retried.levelno, retried.levelname) == (logging.WARNING, "WARNING")
    assert (failed.levelno, failed.levelname) == (logging.ERROR, "ERROR")
