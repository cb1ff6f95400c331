"""A small migration into a new MLflow database starts fast: the schema head is read without Alembic, and the
bulk path imports MLflow only for what MLflow's own store must write."""

from __future__ import annotations

from ferryman.trackers.mlflow.schema import head_revision


def test_the_head_revision_is_the_one_alembic_finds() -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert head_revision() == _get_latest_schema_revision()
