"""The W&B API reader against `wandb_api_server.py`: a MOCK of the W&B cloud API, used because the real one
cannot be reached from the build machines. The mock answers the GraphQL operations that the real wandb 0.31
client and its wandb-core sidecar send (captured by running them against it), from a recorded project in
`data/wandb_api/project.json`; everything on the client side (`wandb.Api`, wandb-core's history scan,
retries, ferryman's reader) is the real code."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from ferryman.trackers.model import OutcomeKind, RunStatus
from ferryman.trackers.registry import open_reader
from ferryman.trackers.wandb.api import WandbApiError, WandbApiReader
from tests.trackers.contract import merged_series
from tests.trackers.wandb_api_server import WandbApiFixtureServer

KEY = "k" * 40
T0 = 1_750_000_000.0


@pytest.fixture(autouse=True)
def quiet_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path_factory.mktemp("wandb-cache")))


@pytest.fixture
def server() -> Iterator[WandbApiFixtureServer]:
    with WandbApiFixtureServer() as running:
        yield running


def reader(server: WandbApiFixtureServer, **options: object) -> WandbApiReader:
    return WandbApiReader("acme", "vision", api_key=KEY, base_url=server.url, **options)  # type: ignore[arg-type]


def test_every_history_row_and_run_field_arrives(server: WandbApiFixtureServer) -> None:
    recorded = {run["id"]: run for run in server.data["runs"]}
    source = reader(server)
    (experiment,) = source.experiments()
    assert (experiment.key, experiment.name, experiment.description) == (
        "acme/vision",
        "vision",
        "image models",
    )
    runs = {run.key: run for run in source.runs(experiment)}
    assert list(runs) == ["base-1", "tune-2", "old-3"]

    base = runs["base-1"]
    assert (base.name, base.user, base.notes, base.status) == (
        "baseline",
        "alice",
        "first try",
        RunStatus.FINISHED,
    )
    assert (base.start_time, base.end_time) == (1_750_000_000_000, 1_750_000_000_000 + 308_250)
    assert base.tags == {"resnet": "", "best": "", "wandb.job_type": "train", "wandb.commit": "abc123"}
    assert base.params == {"lr": "0.001", "model.depth": "50", "model.act": "relu"}  # _wandb stays in files
    series = merged_series(source.metrics(base))
    rows = recorded["base-1"]["history"]
    assert series["loss"].steps == [row["_step"] for row in rows]  # all 1,234 rows, across two pages
    assert series["loss"].values == [row["loss"] for row in rows]
    assert series["loss"].timestamps == [round(row["_timestamp"] * 1000) for row in rows]
    assert series["acc"].steps == list(range(0, 1234, 10))
    assert series["system.cpu"].system and series["system.cpu"].values == [20.0 + i for i in range(12)]
    assert not series["loss"].system
    pages = server.ops("HistoryPage")
    assert [
        (p.variables["minStep"], p.variables["maxStep"]) for p in pages if p.variables["run"] == "base-1"
    ] == [
        (0, 1000),
        (1000, 1234),
    ]

    files = {artifact.path: (artifact.size, artifact.open().read()) for artifact in source.artifacts(base)}
    assert files == {
        "config.yaml": (19, b"lr:\n  value: 0.001\n"),
        "output.log": (16, b"epoch 1\nepoch 2\n"),
        "artifacts/model/v0/weights.bin": (300, b"w" * 300),
        "artifacts/model/v0/meta/info.json": (8, b'{"a": 1}'),
    }

    tune = runs["tune-2"]
    assert (tune.status, tune.tags, tune.params) == (
        RunStatus.FAILED,
        {"wandb.group": "sweep-a"},
        {"lr": "0.1", "nested.a": "[1, 2]"},
    )
    assert merged_series(source.metrics(tune))["train.loss"].values == [1.0 - s / 30 for s in range(30)]
    assert [(o.kind, o.item) for o in source.outcomes()] == [
        (OutcomeKind.UNSUPPORTED, "run base-1/history key samples")
    ]


def test_filters_and_since_select_runs(server: WandbApiFixtureServer) -> None:
    source = reader(server, filters={"tags": {"$in": ["legacy", "best"]}})
    (experiment,) = source.experiments()
    assert [run.key for run in source.runs(experiment)] == ["base-1", "old-3"]
    since = int((T0 - 3600) * 1000)
    assert [run.key for run in source.runs(experiment, since=since)] == ["base-1"]
    assert json.loads(server.ops("Runs")[-1].variables["filters"]) == {
        "$and": [{"tags": {"$in": ["legacy", "best"]}}, {"createdAt": {"$gte": "2025-06-15T14:06:40"}}]
    }
    assert list(reader(server).experiments(["other-project"])) == []


def test_rate_limits_are_honoured_with_retry_after() -> None:
    limits = {"Runs": 2, "HistoryPage": 1, "RunFiles": 1, "download": 1}
    with WandbApiFixtureServer(rate_limits=limits, retry_after=0.5) as server:
        source = reader(server, min_wait=0.1, max_wait=5.0)
        (experiment,) = source.experiments()
        runs = list(source.runs(experiment))
        assert len(runs) == 3
        assert len(merged_series(source.metrics(runs[0]))["loss"]) == 1234
        assert len([artifact.open().read() for artifact in source.artifacts(runs[0])]) == 4
        for op in ("Runs", "HistoryPage", "RunFiles", "download"):
            calls = server.ops(op)
            refused = [call for call in calls if call.status == 429]
            assert refused, op
            retry = calls[calls.index(refused[-1]) + 1]
            assert retry.status == 200 and retry.at - refused[-1].at >= 0.45, op  # waited Retry-After


def test_retry_budget_is_bounded_and_named() -> None:
    with WandbApiFixtureServer(rate_limits={"Runs": 1000}, retry_after=0.2) as server:
        source = reader(server, retries=2, min_wait=0.1, max_wait=0.5)
        (experiment,) = source.experiments()
        started = time.monotonic()
        with pytest.raises(WandbApiError, match=r"acme/vision: listing runs: still rate limited after 2"):
            list(source.runs(experiment))
        assert len(server.ops("Runs")) == 3 and time.monotonic() - started < 10


def test_rejected_api_key_is_a_clear_error(server: WandbApiFixtureServer) -> None:
    with pytest.raises(WandbApiError, match=r"W&B project acme/vision: the API key was rejected"):
        WandbApiReader("acme", "vision", api_key="x" * 40, base_url=server.url)
    with pytest.raises(WandbApiError, match="no API key"):
        WandbApiReader("acme", "vision", api_key=None, base_url=server.url)


def test_missing_project_is_named(server: WandbApiFixtureServer) -> None:
    source = WandbApiReader("acme", "nope", api_key=KEY, base_url=server.url)
    with pytest.raises(WandbApiError, match="W&B project acme/nope does not exist"):
        list(source.experiments())


def test_checksum_mismatch_is_reported(server: WandbApiFixtureServer) -> None:
    server.data["runs"][0]["files"][1]["content"] = "tampered\n"
    source = reader(server)
    (experiment,) = source.experiments()
    base = next(iter(source.runs(experiment)))
    artifacts = {artifact.path: artifact for artifact in source.artifacts(base)}
    assert artifacts["config.yaml"].open().read()
    with pytest.raises(WandbApiError, match=r"output\.log: downloaded bytes have MD5"):
        artifacts["output.log"].open()
    assert any(
        o.item == "run base-1/file output.log" and o.kind is OutcomeKind.UNREADABLE for o in source.outcomes()
    )


def test_mlflow_token_is_not_taken_for_a_wandb_key(
    server: WandbApiFixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-secret")  # meant for an MLflow destination
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.delenv("FERRYMAN_SOURCE_TOKEN", raising=False)
    source = open_reader(f"wandb://acme/vision?base_url={quote(server.url)}")
    assert [e.name for e in source.experiments()] == ["vision"]


def test_uri_selects_project_filters_and_server(
    server: WandbApiFixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    filters = quote(json.dumps({"display_name": "tuned"}))
    source = open_reader(f"wandb://acme/vision?base_url={quote(server.url)}&filters={filters}")
    (experiment,) = source.experiments()
    assert [run.name for run in source.runs(experiment)] == ["tuned"]
    with pytest.raises(WandbApiError, match="expected wandb://ENTITY/PROJECT or wandb://ENTITY"):
        open_reader("wandb://acme/vision/extra")


def test_entity_uri_lists_every_project(
    server: WandbApiFixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    source = open_reader(f"wandb://acme?base_url={quote(server.url)}")
    assert [(e.key, e.name) for e in source.experiments()] == [
        ("acme/vision", "vision"),
        ("acme/scratch", "scratch"),
    ]
    (scratch,) = source.experiments(["scratch"])
    assert list(source.runs(scratch)) == []
    (vision,) = source.experiments(["acme/vision"])
    assert len(list(source.runs(vision))) == 3
    with pytest.raises(WandbApiError, match="W&B entity nobody does not exist"):
        list(WandbApiReader("nobody", None, api_key=KEY, base_url=server.url).experiments())


def test_system_metric_sampling_cap_is_reported(
    server: WandbApiFixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ferryman.trackers.wandb.api.SYSTEM_SAMPLES", 12)  # the recorded run has 12 rows
    source = reader(server)
    (experiment,) = source.experiments()
    base = next(iter(source.runs(experiment)))
    assert len(merged_series(source.metrics(base))["system.gpu.0.gpu"]) == 12
    assert ("run base-1/system metrics", OutcomeKind.TRUNCATED) in {
        (o.item, o.kind) for o in source.outcomes()
    }


def test_file_download_retry_budget_is_bounded() -> None:
    with WandbApiFixtureServer(rate_limits={"download": 100}, retry_after=0.1) as server:
        source = reader(server, retries=1, min_wait=0.05, max_wait=0.2)
        (experiment,) = source.experiments()
        base = next(iter(source.runs(experiment)))
        first = next(iter(source.artifacts(base)))
        with pytest.raises(WandbApiError, match=r"file config\.yaml: HTTP 429 after 1 retries"):
            first.open()
        assert len(server.ops("download")) == 2
