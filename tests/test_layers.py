"""The package's layers import only downward, so each can be read and extended without the ones above it.

api < trackers model < its path rule and scheme registry < pure cores (convert, migrate) < adapters (tracker
implementations, kube) < controller < cli. A module may import its own unit and the units of lower layers; the
tracker registry reaches the implementations only through import strings in its scheme table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "operator" / "ferryman"

# unit (a module or package of ferryman) -> layer; the longest matching unit names a module's place
LAYERS: dict[str, int] = {
    "ferryman": 0,  # the package's own __init__ (version)
    "ferryman.api": 0,
    "ferryman.trackers": 1,  # the package's __init__
    "ferryman.trackers.model": 1,
    "ferryman.trackers.paths": 2,  # the path-safety rule, over the model's outcomes
    "ferryman.trackers.registry": 2,  # the scheme table, over the model's reader and writer protocols
    "ferryman.convert": 3,
    "ferryman.migrate": 3,
    "ferryman.trackers.mlflow": 4,
    "ferryman.trackers.neptune": 4,
    "ferryman.trackers.tensorboard": 4,
    "ferryman.trackers.wandb": 4,
    "ferryman.kube": 4,
    "ferryman.controller": 5,
    "ferryman.cli": 6,
    "ferryman.__main__": 7,  # `python -m ferryman`: the CLI
}


def unit_of(module: str) -> str:
    """The longest LAYERS entry that is `module` or one of its parent packages."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in LAYERS:
            return candidate
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every ferryman import in the file, at any depth (imports inside functions count)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from ferryman.x import y` may name a submodule y: judge the most specific module named
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "ferryman" or name.startswith("ferryman.")]


def package_files() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", package_files(), ids=lambda path: module_name(path))
def test_imports_only_downward(path: Path) -> None:
    importer = unit_of(module_name(path))
    upward = []
    for line, imported in imported_modules(path):
        target = unit_of(imported)
        if target == importer:
            continue
        if LAYERS[target] >= LAYERS[importer] and not (target == "ferryman" and importer != "ferryman"):
            upward.append(f"{path.name}:{line} imports {imported} ({target}, layer {LAYERS[target]})")
    heading = f"{importer} (layer {LAYERS[importer]}) imports sideways or upward:"
    assert not upward, "\n".join([heading, *upward])


def test_shipped_package_never_imports_the_harness() -> None:
    offenders = []
    for path in package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.startswith("ferryman_dev") for name in names):
                offenders.append(f"{module_name(path)}:{node.lineno}")
    assert not offenders, "the shipped package imports the test harness: " + ", ".join(offenders)


def test_every_unit_exists() -> None:
    """LAYERS names only real modules, so a rename cannot leave a stale rule behind."""
    modules = {module_name(path) for path in package_files()}
    missing = [unit for unit in LAYERS if unit not in modules]
    assert not missing, f"LAYERS names modules that do not exist: {missing}"
