"""The tracker registry: one classification of every URI, credentials per end, redaction."""

from __future__ import annotations

import pytest

from ferryman.trackers.registry import Credentials, Store, TrackerURIError, endpoint, open_writer, redact


def test_credentials_differ_per_end_and_fall_back_to_mlflow_variables() -> None:
    env = {
        "FERRYMAN_SOURCE_TOKEN": "s-token",
        "MLFLOW_TRACKING_USERNAME": "u",
        "MLFLOW_TRACKING_PASSWORD": "p",
    }
    assert Credentials.from_env("source", env, kind="mlflow") == Credentials("s-token", "u", "p")
    assert Credentials.from_env("destination", env, kind="mlflow") == Credentials(None, "u", "p")
    assert "s-token" not in repr(Credentials.from_env("source", env, kind="mlflow"))


def test_one_trackers_secret_never_reaches_another() -> None:
    env = {"MLFLOW_TRACKING_TOKEN": "mlflow-secret", "WANDB_API_KEY": "wandb-key"}
    assert Credentials.from_env("destination", env, kind="wandb").token == "wandb-key"
    assert Credentials.from_env("source", env, kind="mlflow").token == "mlflow-secret"
    assert Credentials.from_env("source", env, kind="neptune") == Credentials()
    given = {**env, "FERRYMAN_SOURCE_TOKEN": "given"}
    assert Credentials.from_env("source", given, kind="wandb").token == "given"


@pytest.mark.parametrize(
    ("uri", "kind", "store", "location"),
    [
        ("http://127.0.0.1:5000", "mlflow", Store.TRACKING_SERVER, "http://127.0.0.1:5000"),
        ("sqlite:///x.db", "mlflow", Store.SQLITE, "sqlite:///x.db"),
        ("postgresql+psycopg2://h/db", "mlflow", Store.DATABASE_SERVER, "postgresql+psycopg2://h/db"),
        ("mysql://h/db", "mlflow", Store.DATABASE_SERVER, "mysql://h/db"),
        ("./mlruns", "mlflow", Store.FILE_STORE, "./mlruns"),
        ("file:///data/mlruns", "mlflow", Store.FILE_STORE, "/data/mlruns"),
        ("file:mlruns", "mlflow", Store.FILE_STORE, "mlruns"),
        ("tensorboard:/logs", "tensorboard", Store.LOG_DIRECTORY, "/logs"),
        ("wandb:./wandb", "wandb", Store.RUN_DIRECTORIES, "./wandb"),
        ("wandb://acme/vision", "wandb", Store.API, "wandb://acme/vision"),
        ("neptune-export:./exports", "neptune", Store.EXPORT, "./exports"),
        ("neptune-export:///exports", "neptune", Store.EXPORT, "/exports"),
    ],
)
def test_each_uri_is_classified_once(uri: str, kind: str, store: Store, location: str) -> None:
    found = endpoint(uri)
    assert (found.tracker.kind, found.tracker.store, found.location) == (kind, store, location)


def test_uris_no_tracker_serves_in_the_role_are_refused() -> None:
    for uri in ("s3://bucket/x", "mssql+pyodbc://h/db"):
        with pytest.raises(TrackerURIError, match="no tracker serves"):
            endpoint(uri)
    with pytest.raises(TrackerURIError, match="mlflow file store, which ferryman cannot write; destinations"):
        open_writer("./mlruns")
    with pytest.raises(TrackerURIError, match="wandb API, which ferryman cannot write"):
        open_writer("wandb://acme/vision")


def test_redact_keeps_no_password() -> None:
    assert redact("https://user:secret@host/x") == "https://user:***@host/x"
    assert redact("postgresql://user@host/db") == "postgresql://user:***@host/db"
    assert redact("tensorboard:/logs") == "tensorboard:/logs"


def test_redact_clears_every_credential_from_any_text() -> None:
    text = (
        "cannot connect to 'mysql+pymysql://root:pw-1@db:3306/m' (https://alice:s3cret@mlflow.example/api "
        "and http://h/api?token=abc123&x=1): the key k-123456 was refused"
    )
    clean = redact(text, {"WANDB_API_KEY": "k-123456", "FERRYMAN_SOURCE_PASSWORD": "unused-elsewhere"})
    for secret in ("pw-1", "s3cret", "abc123", "k-123456"):
        assert secret not in clean
    assert "mysql+pymysql://root:***@db:3306/m" in clean and "https://alice:***@mlflow.example/api" in clean
    assert "?token=***&x=1" in clean
    assert redact("mail user@example.com, scp git@host:x") == "mail user@example.com, scp git@host:x"
