"""The ferryman wheel holds no test harness and depends on nothing only the harness needs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
TEST_ONLY_MODULES = {"ferryman_dev", "pytest", "cryptography"}  # the harness and what only it needs
TEST_ONLY_DISTRIBUTIONS = {"ferryman-dev", "pytest", "cryptography"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """`pip wheel . --no-deps` of a copy of the sources (so the build leaves nothing in the work tree)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(REPO / "operator", source / "operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--quiet", "-w", str(out)],
                   cwd=source, check=True, timeout=300)
    (path,) = out.glob("ferryman-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_only_the_ferryman_package(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/")[0] for name in wheel.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"ferryman"}
    assert not [name for name in wheel.namelist() if name.startswith("ferryman/dev/")]


def test_no_shipped_module_imports_the_harness_or_its_tools(wheel: zipfile.ZipFile) -> None:
    offenders = []
    for name in wheel.namelist():
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(wheel.read(name), filename=name)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            offenders += [f"{name}:{node.lineno} {module}" for module in modules
                          if module.split(".")[0] in TEST_ONLY_MODULES]
    assert not offenders, "the wheel imports the test harness or its tools: " + ", ".join(offenders)


def test_runtime_requirements_leave_out_the_harness_dependencies(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    lines = wheel.read(metadata).decode().splitlines()
    requirements = [Requirement(line.removeprefix("Requires-Dist:")) for line in lines
                    if line.startswith("Requires-Dist:")]
    runtime = {requirement.name.lower() for requirement in requirements if requirement.marker is None}
    assert "click" in runtime  # the metadata was read
    assert not runtime & TEST_ONLY_DISTRIBUTIONS
    assert "cryptography" not in {requirement.name.lower() for requirement in requirements}  # nor an extra
