"""`ferryman convert`: inputs, outputs, reports and exit codes, through click's runner and the real script."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from ferryman.api.trainer import TrainerAPI
from ferryman.cli import cli
from ferryman.convert.manifests import ManifestError, convert_stream
from ferryman.convert.options import ConvertOptions

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "pytorchjobs"

JOB = """\
# a comment that stays
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: {name}
  namespace: team-a
spec:
  pytorchReplicaSpecs:
    Worker:
      replicas: 2
      template:
        spec:{extra}
          containers:
          - name: pytorch
            image: docker.io/example/train:1.0
            command: [torchrun, /opt/train.py]
            resources:
              limits: {{nvidia.com/gpu: 2}}
"""
SERVICE = """\
apiVersion: v1
kind: Service   # unrelated, kept byte for byte
metadata: {name: etcd}
spec:
  ports: [{port: 2379}]
"""


def job(name: str = "train", extra: str = "") -> str:
    return JOB.format(name=name, extra=extra)


BLOCKED = job("invalid", "\n          nodeSelector: {pool: 1}")  # v1 rejects a number there
HOSTNET = job("hostnet", "\n          hostNetwork: true")  # only a derived runtime can carry it


def run(*args: str | Path, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["convert", *map(str, args)], input=stdin, catch_exceptions=False)


def docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    (root / "team-a").mkdir(parents=True)
    (root / "team-a" / "train.yaml").write_text(f"{SERVICE}---\n{job()}")
    (root / "team-a" / "blocked.yml").write_text(BLOCKED)
    (root / "service.yaml").write_text(SERVICE)
    (root / "notes.txt").write_text("kind: PyTorchJob is mentioned here but this is not a manifest\n")
    return root


def test_single_file_to_stdout_with_report_on_stderr(tmp_path: Path) -> None:
    source = tmp_path / "train.yaml"
    source.write_text(job())
    result = run(source)
    assert result.exit_code == 0, result.output
    (trainjob,) = docs(result.stdout)
    assert trainjob["kind"] == "TrainJob" and trainjob["metadata"]["name"] == "train"
    assert result.stdout.startswith("# a comment that stays\n")
    assert f"{source}\n  PyTorchJob team-a/train [doc 0]: converted -> TrainJob train" in result.stderr
    assert "1 PyTorchJob in 1 file(s): 1 converted" in result.stderr
    assert source.read_text() == job()  # the source is never touched without --in-place


def test_stdin(tmp_path: Path) -> None:
    result = run("-", stdin=f"{SERVICE}---\n{job()}")
    assert result.exit_code == 0
    assert [d["kind"] for d in docs(result.stdout)] == ["Service", "TrainJob"]
    assert "<stdin>" in result.stderr


def test_directory_to_output_directory_mirrors_the_tree(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(tree, "-o", out)
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["service.yaml", "team-a/blocked.yml", "team-a/train.yaml"]
    assert (out / "service.yaml").read_text() == SERVICE
    assert (out / "team-a" / "blocked.yml").read_text() == BLOCKED  # blocked: left as it was
    train = (out / "team-a" / "train.yaml").read_text()
    assert train.startswith(SERVICE + "---\n# a comment that stays\n")
    assert [d["kind"] for d in docs(train)] == ["Service", "TrainJob"]
    assert "NOT converted: blocked" in result.stdout  # the report goes to stdout when manifests go to files


def test_single_file_to_output_file(tmp_path: Path) -> None:
    source, target = tmp_path / "train.yaml", tmp_path / "converted" / "trainjob.yaml"
    source.write_text(job())
    assert run(source, "-o", target).exit_code == 0
    assert docs(target.read_text())[0]["kind"] == "TrainJob"


def test_in_place_changes_only_converted_jobs(tree: Path) -> None:
    train, blocked, service = (
        tree / "team-a" / "train.yaml",
        tree / "team-a" / "blocked.yml",
        tree / "service.yaml",
    )
    os.chmod(train, 0o640)
    result = run(tree, "--in-place")
    assert result.exit_code == 0, result.output
    text = train.read_text()
    assert text.startswith(
        SERVICE + "---\n# a comment that stays\napiVersion: trainer.kubeflow.org/v1alpha1\n"
    )
    assert oct(train.stat().st_mode & 0o777) == "0o640"
    assert blocked.read_text() == BLOCKED and service.read_text() == SERVICE
    assert not [p for p in tree.rglob("*") if p.name.startswith(".")]  # no temporary files left behind
    again = run(tree, "--in-place")
    assert again.exit_code == 0 and train.read_text() == text


def test_json_report(tree: Path, tmp_path: Path) -> None:
    result = run(tree, "-o", tmp_path / "out", "--report", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    records = {r["name"]: r for r in report["jobs"]}
    assert set(records) == {"train", "invalid"}
    train, invalid = records["train"], records["invalid"]
    assert train["file"].endswith("team-a/train.yaml") and train["document"] == 1
    assert (train["namespace"], train["status"], train["trainjob"]) == ("team-a", "converted", "train")
    assert (invalid["status"], invalid["trainjob"]) == ("blocked", None)
    blocker = next(f for f in invalid["findings"] if f["severity"] == "blocker")
    assert set(blocker) == {"severity", "code", "path", "message"} and "nodeSelector" in blocker["path"]
    assert report["summary"]["jobs"] == 2 and report["summary"]["blocked"] == 1
    assert report["errors"] == []


def test_strict_exits_1_on_blockers_and_force_emits(tmp_path: Path) -> None:
    source = tmp_path / "blocked.yaml"
    source.write_text(BLOCKED)
    assert run(source).exit_code == 0
    assert run(source, "--strict").exit_code == 1
    forced = run(source, "--force", "--strict")
    assert forced.exit_code == 1  # still a blocker, even though emitted
    assert docs(forced.stdout)[0]["kind"] == "TrainJob"
    source.write_text(HOSTNET)
    emitted = run(source, "--strict")
    assert emitted.exit_code == 0, emitted.stderr
    assert [d["kind"] for d in docs(emitted.stdout)] == ["TrainingRuntime", "TrainJob"]
    assert run(source, "--no-derived-runtime", "--strict").exit_code == 1


def test_parse_error_names_file_and_line_and_other_files_still_convert(tmp_path: Path) -> None:
    helm = tmp_path / "in" / "chart.yaml"
    helm.parent.mkdir()
    helm.write_text("apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata:\n  name: {{ .Values.name }}\n")
    good = tmp_path / "in" / "good.yaml"
    good.write_text(job())
    out = tmp_path / "out"
    result = run(tmp_path / "in", "-o", out)
    assert result.exit_code == 2
    assert f"{helm}:4:" in result.stdout and "Helm" in result.stdout
    assert docs((out / "good.yaml").read_text())[0]["kind"] == "TrainJob"
    assert not (out / "chart.yaml").exists()  # nothing written for the broken file


def test_missing_path_is_an_error_but_others_convert(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(job())
    result = run(tmp_path / "missing.yaml", good)
    assert result.exit_code == 2
    assert "missing.yaml: error: no such file or directory" in result.stderr
    assert docs(result.stdout)[0]["kind"] == "TrainJob"


@pytest.mark.parametrize(
    "args",
    [
        ["--in-place", "-o", "out"],
        ["--trainer-api", "v3"],
        ["--launcher", "mpirun"],
        ["--report", "xml"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    source = tmp_path / "train.yaml"
    source.write_text(job())
    result = CliRunner().invoke(cli, ["convert", str(source), *args])
    assert result.exit_code == 2
    assert source.read_text() == job()


def test_in_place_refuses_stdin() -> None:
    result = CliRunner().invoke(cli, ["convert", "-", "--in-place"], input=job())
    assert result.exit_code == 2 and "standard input" in result.output


def test_runtime_rules_file(tmp_path: Path) -> None:
    source, rules = tmp_path / "train.yaml", tmp_path / "rules.yaml"
    source.write_text(job())
    rules.write_text("rules:\n- resource: nvidia.com/*\n  runtime: torch-cuda\ndefault: torch-cpu\n")
    result = run(source, "--runtime-rules", rules)
    assert result.exit_code == 0, result.output
    assert docs(result.stdout)[0]["spec"]["runtimeRef"]["name"] == "torch-cuda"
    rules.write_text("rules: [{resource: 3}]\n")
    bad = CliRunner().invoke(cli, ["convert", str(source), "--runtime-rules", str(rules)])
    assert bad.exit_code == 2 and "rules.yaml" in bad.output and "rules.0" in bad.output


def test_trainer_api_and_launcher_options(tmp_path: Path) -> None:
    source = tmp_path / "train.yaml"
    source.write_text(job(extra="\n          nodeSelector: {pool: a100}").replace("[torchrun, ", "[python, "))
    v20 = docs(run(source, "--trainer-api", "v2.0").stdout)[0]
    assert "podSpecOverrides" in v20["spec"] and "runtimePatches" not in v20["spec"]
    v22 = docs(run(source, "--launcher", "env").stdout)[0]
    assert "runtimePatches" in v22["spec"]
    assert v22["spec"]["trainer"]["command"][0] == "python"


def test_directory_walk_honours_gitignore_and_skips_git(tree: Path, tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    (tree / ".gitignore").write_text("ignored/\n")
    (tree / "ignored").mkdir()
    (tree / "ignored" / "job.yaml").write_text(job("ignored"))
    (tree / ".git" / "hooks-job.yaml").write_text(job("in-git-dir"))
    result = run(tree, "--report", "json", "-o", tmp_path / "out")
    names = {r["name"] for r in json.loads(result.stdout)["jobs"]}
    assert names == {"train", "invalid"}


def test_examples_convert_and_the_report_reads_well() -> None:
    result = run(EXAMPLES)
    assert result.exit_code == 0, result.output
    assert "5 PyTorchJob in 5 file(s): 5 converted; 0 blocked" in result.stderr
    kinds = [d["kind"] for d in docs(result.stdout)]
    assert kinds.count("TrainJob") == 5 and kinds.count("TrainingRuntime") == 1 and "ConfigMap" in kinds


def test_real_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ferryman"
    done = subprocess.run(
        [str(script), "convert", str(EXAMPLES), "-o", str(tmp_path), "--report", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["converted"] == 5 and report["summary"]["blocked"] == 0
    assert {r["file"].rsplit("/", 1)[1] for r in report["jobs"]} == {p.name for p in EXAMPLES.glob("*.yaml")}


def test_a_file_named_twice_is_converted_once(tree: Path) -> None:
    result = run(tree, tree / "team-a" / "train.yaml", "--report", "json", "--in-place")
    assert result.exit_code == 0
    assert [r["name"] for r in json.loads(result.stdout)["jobs"]].count("train") == 1


def test_symlinked_files_are_not_followed_by_directory_walks(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(job("outside"))
    (tree / "link.yaml").symlink_to(outside)
    result = run(tree, "--in-place", "--report", "json")
    assert "outside" not in {r["name"] for r in json.loads(result.stdout)["jobs"]}
    assert outside.read_text() == job("outside") and (tree / "link.yaml").is_symlink()


def test_an_unwritable_target_is_an_error_and_the_others_are_written(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "team-a" / "train.yaml").mkdir(parents=True)  # a directory where the file should go
    result = run(tree, "-o", out)
    assert result.exit_code == 2
    assert "cannot write" in result.stdout and "team-a/train.yaml" in result.stdout
    assert (out / "service.yaml").read_text() == SERVICE


def test_converting_creates_no_reference_cycles(tmp_path: Path) -> None:
    """The premise of pausing the cycle collector during conversion (cyclic_gc_paused)."""
    texts = [p.read_text() for p in EXAMPLES.glob("*.yaml")] + [BLOCKED, HOSTNET, "a: [1, 2\n"]
    gc.collect()
    gc.disable()
    try:
        for api in TrainerAPI:
            for text in texts:
                with contextlib.suppress(ManifestError):
                    convert_stream(text, ConvertOptions(trainer_api=api, derived_runtime=True))
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_in_place_through_a_named_symlink_rewrites_its_target(tmp_path: Path) -> None:
    target, link = tmp_path / "real.yaml", tmp_path / "link.yaml"
    target.write_text(job())
    link.symlink_to(target)
    assert run(link, "--in-place").exit_code == 0
    assert link.is_symlink() and docs(target.read_text())[0]["kind"] == "TrainJob"


def test_output_path_ending_in_a_slash_is_a_new_directory(tmp_path: Path) -> None:
    source = tmp_path / "train.yaml"
    source.write_text(job())
    result = run(source, "-o", f"{tmp_path / 'newdir'}/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "newdir").is_dir()
    assert docs((tmp_path / "newdir" / "train.yaml").read_text())[0]["kind"] == "TrainJob"


def test_written_files_keep_the_sources_mode_and_a_blocked_file_says_it_is_unchanged(tmp_path: Path) -> None:
    source, blocked = tmp_path / "train.yaml", tmp_path / "blocked.yaml"
    source.write_text(job())
    blocked.write_text(BLOCKED)
    source.chmod(0o644)
    blocked.chmod(0o640)
    result = run(source, blocked, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "train.yaml").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out" / "blocked.yaml").stat().st_mode & 0o777 == 0o640
    assert f"{source}  -> {tmp_path / 'out' / 'train.yaml'}" in result.stdout
    assert f"{blocked}  (nothing converted; copied unchanged to " in result.stdout


def test_block_style_scripts_stay_block_style(tmp_path: Path) -> None:
    script = "\n".join(f"              echo step {i}" for i in range(40))
    source = tmp_path / "train.yaml"
    source.write_text(
        job().replace(
            "command: [torchrun, /opt/train.py]",
            f"command: [bash, -c]\n            args:\n            - |2-\n                cd /work\n{script}\n"
            "              torchrun /opt/train.py",
        )
    )
    result = run(source)
    assert result.exit_code == 0, result.stderr
    (trainjob,) = docs(result.stdout)
    assert trainjob["spec"]["trainer"]["args"][0].startswith("  cd /work\necho step 0")
    assert "- |2-\n" in result.stdout and '"  cd /work' not in result.stdout
