"""ferryman-dev's commands reach the ferryman CLI through the `ferryman.commands` entry points."""

import click
from click.testing import CliRunner

from ferryman.cli import cli
from ferryman_dev.commands import dev


def test_ferryman_offers_the_dev_group_registered_by_the_harness() -> None:
    assert cli.get_command(click.Context(cli), "dev") is dev
    runner = CliRunner()
    listed = runner.invoke(cli, ["--help"])
    assert listed.exit_code == 0
    assert "dev" in listed.output.split("Commands:")[1].split()
    shown = runner.invoke(cli, ["dev", "cluster", "--help"])
    assert shown.exit_code == 0, shown.output
    assert {"up", "down", "env"} <= set(shown.output.split("Commands:")[1].split())


def test_an_unknown_command_is_still_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output
