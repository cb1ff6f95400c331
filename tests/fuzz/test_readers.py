"""The fuzz tier (issue #14): random and damaged inputs for every reader and every name a writer is handed.

Each property feeds a reader a real input (written by the real library or the hand-built export) with bytes
flipped, cut or inserted, or a random one, and asserts what ferryman promises of bad input: no exception
escapes the reader (every problem is a counted outcome, or a clear error when the whole input is unusable),
nothing is written into the source, each example finishes within the deadline and memory stays bounded.
Names handed to writers are random strings: nothing ever lands outside the destination.

Example counts are small so the tier adds well under a minute to `make test`; raise them for a longer hunt
with FERRYMAN_FUZZ_EXAMPLES (e.g. 2000).
"""

from __future__ import annotations

import io
import os
import resource
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.convert.manifests import ManifestError, convert_stream
from ferryman.convert.options import ConvertOptions
from ferryman.trackers.model import Artifact, Experiment, Run
from ferryman.trackers.neptune.export import NeptuneExportError
from ferryman.trackers.paths import UnsafePath, inside
from ferryman.trackers.registry import open_reader, open_writer
from tests.convert.test_cli import job
from tests.convert.test_hostile_manifests import alias_bomb
from tests.trackers.contract import read_all

FUZZ = settings(max_examples=int(os.environ.get("FERRYMAN_FUZZ_EXAMPLES", "12")), deadline=20_000,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MEMORY_GROWTH_LIMIT = 512 << 20  # bytes of peak resident memory one property may add
NEPTUNE = Path(__file__).parents[1] / "trackers" / "data" / "neptune_export"


@contextmanager
def bounded_memory() -> Iterator[None]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    yield
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < MEMORY_GROWTH_LIMIT, f"peak memory grew by {grown >> 20} MB"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@st.composite
def damage(draw: st.DrawFn, data: bytes) -> bytes:
    """The bytes with a few flips, a cut, an insertion or a duplicated span."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip", "cut", "insert", "repeat", "zero"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 256))]
        elif kind == "zero":
            out[at : at + 64] = bytes(len(out[at : at + 64]))
    return bytes(out)


def read_damaged(root: Path, uri: str, clear_errors: tuple[type[Exception], ...] = ()) -> None:
    """Read everything; only `clear_errors` (the whole input refused, by name) may escape. The source stays
    as it was."""
    before = snapshot(root)
    try:
        reader = open_reader(uri)
    except clear_errors as error:
        assert str(root) in str(error) or root.name in str(error), error
        return
    try:
        read_all(reader)
        for outcome in reader.outcomes():
            assert outcome.item and outcome.reason
    finally:
        reader.close()
    assert snapshot(root) == before


# --------------------------------------------------------------------------------------------- W&B


@pytest.fixture(scope="module")
def wandb_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from ferryman_dev.wandb_runs import write_synthetic_log

    log = tmp_path_factory.mktemp("wandb") / "run.wandb"
    write_synthetic_log(log, rows=40, keys=3, run_id="fuzz1")
    return log.read_bytes()


@FUZZ
@given(data=st.data())
def test_wandb_records(
    tmp_path_factory: pytest.TempPathFactory, wandb_log: bytes, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("wandb-fuzz")
    log = root / "wandb" / "offline-run-20260101_000000-fuzz1" / "run-fuzz1.wandb"
    log.parent.mkdir(parents=True)
    log.write_bytes(data.draw(st.one_of(damage(wandb_log), st.binary(max_size=4096))))
    with bounded_memory():
        read_damaged(root, f"wandb:{root}")


# ------------------------------------------------------------------------------------- TensorBoard


@pytest.fixture(scope="module")
def event_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    import numpy as np
    from tensorboardX import SummaryWriter

    logdir = tmp_path_factory.mktemp("tb")
    with SummaryWriter(str(logdir)) as events:
        for step in range(30):
            events.add_scalar("loss", 1.0 / (step + 1), step)
        events.add_text("note", "hello", 0)
        events.add_histogram("weights", np.arange(20.0), 0)
    (path,) = logdir.iterdir()
    return path.name, path.read_bytes()


@FUZZ
@given(data=st.data())
def test_tfrecord_frames(
    tmp_path_factory: pytest.TempPathFactory, event_file: tuple[str, bytes], data: st.DataObject
) -> None:
    name, content = event_file
    root = tmp_path_factory.mktemp("tb-fuzz")
    (root / "run-1").mkdir()
    (root / "run-1" / name).write_bytes(data.draw(st.one_of(damage(content), st.binary(max_size=4096))))
    with bounded_memory():
        read_damaged(root, f"tensorboard:{root}")


# ----------------------------------------------------------------------------------------- Neptune


@FUZZ
@given(data=st.data())
def test_neptune_parquet(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("neptune-fuzz") / "export"
    shutil.copytree(NEPTUNE, root, ignore=shutil.ignore_patterns("build.py"))
    parts = sorted((root / "data").rglob("*.parquet"))
    part = data.draw(st.sampled_from(parts))
    part.write_bytes(data.draw(damage(part.read_bytes())))
    with bounded_memory():
        read_damaged(root, f"neptune-export:{root}", (NeptuneExportError,))


# ---------------------------------------------------------------------------------- MLflow file stores

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
NAMES = st.text(st.characters(exclude_characters="/\x00", exclude_categories=["Cs"]), min_size=1, max_size=20)


@st.composite
def file_store(draw: st.DrawFn, root: Path) -> None:
    """An mlruns/ store whose meta.yaml files, metric lines, params, tags and file names are random."""
    experiment = root / "0"
    experiment.mkdir(parents=True)
    meta = "experiment_id: '0'\nname: fuzz\nlifecycle_stage: active\n"
    (experiment / "meta.yaml").write_text(draw(st.one_of(st.just(meta), TEXT)))
    for run_id in draw(st.lists(st.sampled_from(["aaa", "bbb", "ccc"]), max_size=3, unique=True)):
        run = experiment / run_id
        run.mkdir()
        run_meta = (f"run_id: {run_id}\nexperiment_id: '0'\nstatus: {draw(st.integers(-2, 6))}\n"
                    f"start_time: {draw(st.integers(-(2**70), 2**70))}\nlifecycle_stage: active\n")
        (run / "meta.yaml").write_text(draw(st.one_of(st.just(run_meta), TEXT)))
        for section in ("metrics", "params", "tags", "artifacts"):
            for name in draw(st.lists(NAMES, max_size=3, unique=True)):
                path = run / section / name
                if name in (".", ".."):
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    path.write_bytes(draw(st.one_of(TEXT.map(str.encode), st.binary(max_size=200))))
                except OSError:  # a name the file system refuses (too long, reserved)
                    continue


@FUZZ
@given(data=st.data())
def test_mlflow_file_stores(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("mlruns-fuzz") / "mlruns"
    data.draw(file_store(root))
    with bounded_memory():
        read_damaged(root, str(root))


# -------------------------------------------------------------------------------------------- YAML

YAML_PIECES = st.sampled_from([
    "a: 1\n", "- x\n", "  b: [1, 2]\n", "---\n", "&a x\n", "*a\n", "!!binary |\n  aGk=\n", "? k\n: v\n",
    "{a: 1, a: 2}\n", "replicas: 99999999999999999999\n", "'q': \"\\x\"\n", "%YAML 1.1\n", "...\n", "\t",
    ": :\n",
    "kind: PyTorchJob\n", "<<: *a\n", "|\n", "  - - -\n", "\xef\xbb\xbf", "\x00",
])


@FUZZ
@given(
    text=st.one_of(
        st.lists(YAML_PIECES, max_size=30).map("".join),
        st.text(max_size=400),
        st.sampled_from([job(), alias_bomb()]).flatmap(lambda t: damage(t.encode())).map(
            lambda b: b.decode("utf-8", "replace")
        ),
    )
)
def test_yaml_streams(text: str) -> None:
    with bounded_memory():
        try:
            convert_stream(text, ConvertOptions())
        except ManifestError as error:
            assert error.message


# --------------------------------------------------------------------------------- names to writers


@FUZZ
@given(name=st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "", "a", "/", "\\", "C:", "b.txt", "\x00", "~"]), max_size=6)
    .map("/".join),
))
def test_the_path_rule_keeps_every_name_inside(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    root = tmp_path_factory.mktemp("root")
    try:
        target = inside(root, name)
    except UnsafePath:
        return
    assert os.path.realpath(target).startswith(os.path.realpath(root) + os.sep)


WRITERS: dict[str, Callable[[Path], str]] = {
    "tensorboard": lambda root: f"tensorboard:{root}",
    "neptune-export": lambda root: f"neptune-export:{root}",
    "wandb": lambda root: f"wandb:{root}",
}


@FUZZ
@given(
    kind=st.sampled_from(sorted(WRITERS)),
    names=st.lists(st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(
        ["../escaped", "/tmp/escaped", "a/../../escaped", "..", "a//b", "./c", "C:\\escaped"])), max_size=4),
)
def test_writers_never_write_outside_the_destination(
    tmp_path_factory: pytest.TempPathFactory, kind: str, names: list[str]
) -> None:
    base = tmp_path_factory.mktemp("writer")
    destination = base / "destination"
    siblings = set(base.parent.iterdir())
    writer = open_writer(WRITERS[kind](destination))
    try:
        experiment = writer.ensure_experiment(Experiment("e", "fuzz"))
        run_key = writer.create_run(experiment, Run("r", "e", name="r"), "fuzz:e/r")
        for name in names:
            try:
                writer.write_artifact(run_key, Artifact(name, lambda: io.BytesIO(b"x")))
            except OSError as error:  # a name the file system refuses (too long), named
                assert "name" in str(error).lower(), error
    finally:
        writer.close()
    assert set(base.parent.iterdir()) == siblings
    assert [p.name for p in base.iterdir()] == ["destination"]
    assert not Path("/tmp/escaped").exists() and not Path("C:\\escaped").exists()
