"""Fixtures of the migration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["mlflow-server", "postgresql"])
def corpus_destination(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Where the corpus tier migrates to: the session's MLflow server (the REST path), or a new database of
    the session's PostgreSQL server (the bulk path; the artifacts go below the working directory)."""
    if request.param == "postgresql":
        monkeypatch.chdir(tmp_path)
        return str(request.getfixturevalue("postgres_database"))
    return str(request.getfixturevalue("mlflow_destination").url)
