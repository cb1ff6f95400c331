"""MLflow's limits, its field-like tags and accepted keys, and runs built from its fields."""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Any

from ferryman.trackers.model import DatasetInput, Run, RunStatus

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_BATCH_BYTES = 900_000  # MLflow rejects log-batch bodies above 1 MB
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250
HISTORY_PAGE = 25_000

# MLflow stores these as tags; the neutral model has fields for them.
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
_FIELD_TAGS = {RUN_NAME_TAG, USER_TAG, NOTE_TAG, PARENT_TAG}
_STATUS_BY_NUMBER = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


_BAD_KEY_CHARACTERS = re.compile(r"[^\w.\- /:]")


def valid_key(key: str) -> bool:
    """A metric, param or tag key MLflow accepts (characters, length, a path that normalises to itself)."""
    return (
        0 < len(key) <= MAX_KEY_LENGTH
        and not _BAD_KEY_CHARACTERS.search(key)
        and posixpath.normpath(key) == key
        and not key.startswith(("/", ".."))
    )


def mlflow_key(key: str) -> str:
    """The key itself if MLflow accepts it, else a readable stand-in: other characters become `_`."""
    if valid_key(key):
        return key
    cleaned = "/".join(p for p in _BAD_KEY_CHARACTERS.sub("_", key).split("/") if p not in ("", ".", ".."))
    if not valid_key(cleaned):
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        cleaned = f"{cleaned[: MAX_KEY_LENGTH - 13]}_{digest}".strip("/") or digest
    return cleaned

class MlflowError(RuntimeError):
    """An MLflow endpoint failed in a way that names the endpoint and what was asked of it."""

def run_status(value: object) -> RunStatus:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return RunStatus(_STATUS_BY_NUMBER.get(int(value), "RUNNING"))
    try:
        return RunStatus(str(value))
    except ValueError:
        return RunStatus.FINISHED


def int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    return int(value)  # type: ignore[call-overload]

def run_from_fields(
    key: str,
    experiment_key: str,
    *,
    name: str | None,
    status: object,
    start: object,
    end: object,
    user: str | None,
    tags: dict[str, str],
    params: dict[str, str],
    lifecycle_stage: str | None = None,
    inputs: list[DatasetInput] | None = None,
) -> Run:
    """A neutral run from MLflow's fields, with the field-like `mlflow.*` tags lifted out."""
    return Run(
        key=key,
        experiment_key=experiment_key,
        name=tags.get(RUN_NAME_TAG) or name or None,
        status=run_status(status),
        start_time=int_or_none(start),
        end_time=int_or_none(end),
        user=tags.get(USER_TAG) or user or None,
        tags={k: v for k, v in tags.items() if k not in _FIELD_TAGS},
        notes=tags.get(NOTE_TAG),
        parent_key=tags.get(PARENT_TAG),
        params=params,
        deleted=lifecycle_stage == "deleted",
        inputs=inputs or [],
    )


def dataset_inputs(inputs: Any) -> list[DatasetInput]:
    """The dataset inputs of an MLflow run (`Run.inputs`, None on stores without them)."""
    return [
        DatasetInput(
            found.dataset.name, found.dataset.digest, found.dataset.source_type, found.dataset.source,
            found.dataset.schema or None, found.dataset.profile or None,
            tuple(sorted((tag.key, tag.value) for tag in found.tags or [])),
        )
        for found in (getattr(inputs, "dataset_inputs", None) or [])
    ]
