"""Corpus tier: every MLflow (file store and SQLite) and TensorBoard dataset of `corpus/trackers` migrates
into one real MLflow server, and through the bulk path into one new PostgreSQL database, and verifies point by
point, or reports exactly what it could not read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import OutcomeKind

pytestmark = [pytest.mark.corpus, pytest.mark.mlflow]


def sources(corpus: Path) -> list[str]:
    trackers = corpus / "trackers"
    found = [str(p) for p in sorted((trackers / "mlflow").rglob("mlruns")) if p.is_dir()]
    found += [f"sqlite:///{p}" for p in sorted((trackers / "mlflow-sqlite").rglob("*.db"))]
    found += [f"tensorboard:{p}" for p in sorted((trackers / "tensorboard").iterdir()) if p.is_dir()]
    return found


def fingerprint(root: Path) -> dict[str, str]:
    """Every source file's SHA-256 (sources are read, never written: SQLite stores are read from copies)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_every_mlflow_and_tensorboard_dataset_migrates_and_verifies(
    corpus_dir: Path, corpus_destination: str
) -> None:
    found = sources(corpus_dir)
    before = fingerprint(corpus_dir / "trackers")
    assert sum(s.startswith("tensorboard:") for s in found) >= 3 and sum("sqlite" in s for s in found) >= 1
    summaries = []
    for source in found:
        # some real stores hold experiments but no runs (zoomcamp-2024-week02): migrated, not an error here
        request = MigrationRequest(source, corpus_destination, workers=2, allow_empty=True)
        report = migrate(request)
        summaries.append(report.summary())
        assert report.ok, report.summary()
        assert report.verified and report.source_totals == report.destination_totals, report.summary()
        for outcome in report.outcomes:  # whatever was not copied exactly is named, with its reason
            assert outcome.item and outcome.reason
            assert outcome.kind in set(OutcomeKind)
        request.verify = False
        again = migrate(request)
        assert again.ok and again.points_written == 0, again.summary()
    print("\n".join(summaries))
    assert fingerprint(corpus_dir / "trackers") == before, "a migration wrote to its source"
