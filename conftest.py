"""Repository-wide pytest set-up: the optional corpus tier and the shared fixture plugins."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests on examples fixed by each test (a failure is the code's, not the draw's); a
# local run draws new ones (FERRYMAN_PROPERTY_EXAMPLES raises the count of the converter's properties).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

pytest_plugins: list[str] = [
    "ferryman_dev.pytest_mlflow",
    "ferryman_dev.pytest_cluster",
    "ferryman_dev.pytest_realnode",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Collect the corpus tier only when FERRYMAN_CORPUS points at a corpus."""
    if os.environ.get("FERRYMAN_CORPUS"):
        return
    kept = [item for item in items if item.get_closest_marker("corpus") is None]
    deselected = [item for item in items if item.get_closest_marker("corpus") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The corpus named by FERRYMAN_CORPUS (the tier is deselected when it is unset)."""
    path = Path(os.environ["FERRYMAN_CORPUS"]).resolve()
    if not path.is_dir():
        raise pytest.UsageError(f"FERRYMAN_CORPUS={path} is not a directory")
    return path
