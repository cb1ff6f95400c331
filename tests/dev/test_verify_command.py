"""`ferryman verify` reaches the ferryman CLI through the harness's entry point, and says what is missing."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ferryman.cli import cli
from ferryman_dev import cluster
from ferryman_dev.verify.command import verify

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pytorchjobs"


def test_ferryman_offers_verify_with_the_conversion_options() -> None:
    assert cli.get_command(click.Context(cli), "verify") is verify
    shown = CliRunner().invoke(cli, ["verify", "--help"])
    assert shown.exit_code == 0, shown.output
    for option in ("--report", "--launcher", "--trainer-api", "--runtime-rules", "--no-derived-runtime"):
        assert option in shown.output


def test_missing_sandbox_binaries_say_how_to_build_them(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, root: Path | None = None) -> Path:
        raise cluster.ClusterError(f".cache/bin/{name} is missing: run `make cluster-bins` to build it")

    monkeypatch.setattr(cluster, "binary", missing)
    result = CliRunner().invoke(cli, ["verify", str(EXAMPLES / "single-node-gpu.yaml")])
    assert result.exit_code == 2
    assert "cannot start the sandbox control plane" in result.output
    assert "make cluster-bins" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trainer-api", "v2.1", str(EXAMPLES)], "serves the v2.2 flavour only"),
        (["no/such/file.yaml"], "no/such/file.yaml: no such file or directory"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["verify", *args])
    assert result.exit_code == 2
    assert message in result.output
