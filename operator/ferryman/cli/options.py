"""The options that shape a conversion, shared by `ferryman convert` and commands built on it (`ferryman
verify`): one decorator declares them, one function turns their values into :class:`ConvertOptions`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ferryman.convert.options import ConvertOptions

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--trainer-api", type=click.Choice(["v2.0", "v2.1", "v2.2"]), default="v2.2",
                 show_default=True,
                 help="TrainJob flavour: v2.0 podSpecOverrides, v2.1 podTemplateOverrides, "
                      "v2.2 runtimePatches."),
    click.option("--no-derived-runtime", is_flag=True,
                 help="Block jobs whose settings only a derived TrainingRuntime can carry instead of "
                      "deriving one."),
    click.option("--strict-elastic", is_flag=True,
                 help="Block elastic jobs instead of converting them to a fixed node count."),
    click.option("--force", is_flag=True, help="Emit TrainJobs even for blocked jobs."),
    click.option("--launcher", type=click.Choice(["torchrun", "env"]), default="torchrun", show_default=True,
                 help="How plain `python train.py` entrypoints stay distributed."),
    click.option("--runtime-rules", type=click.Path(path_type=Path, dir_okay=False),
                 help="YAML file mapping accelerator resources to runtimes."),
    click.option("--template/--no-template", default=None,
                 help="Treat inputs as envsubst templates (default: detected from $VAR placeholders)."),
)


def conversion_options(command: F) -> F:
    """Add the conversion options; the command gets them as keyword arguments (see :func:`options_from`)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def options_from(
    *,
    trainer_api: str,
    no_derived_runtime: bool,
    strict_elastic: bool,
    force: bool,
    launcher: str,
    runtime_rules: Path | None,
) -> ConvertOptions:
    """The :class:`ConvertOptions` the conversion options ask for; ``click.UsageError`` for bad rules."""
    from ferryman.api.trainer import LauncherStrategy, RuntimeRules, TrainerAPI
    from ferryman.cli.convert import UsageError, load_runtime_rules
    from ferryman.convert.options import ConvertOptions

    try:
        rules = load_runtime_rules(runtime_rules) if runtime_rules else RuntimeRules()
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    return ConvertOptions(
        trainer_api=TrainerAPI(trainer_api),
        launcher=LauncherStrategy(launcher),
        runtime_rules=rules,
        derived_runtime=not no_derived_runtime,
        strict_elastic=strict_elastic,
        force=force,
    )
