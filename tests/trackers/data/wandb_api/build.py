"""Writes `project.json` next to this file: the recorded content of a small W&B project that the fixture
server (`tests/trackers/wandb_api_server.py`) serves in the shapes of W&B's GraphQL API. Run it to
regenerate. Entity `acme`, projects `vision` and (empty) `scratch`, API key `"k" * 40`:

- `base-1`: finished, 1,234 history rows (more than one 1,000-step page), `acc` every 10th step, an image
  (media, not a metric) at step 5, system metrics, two run files and one logged artifact with two files.
- `tune-2`: crashed run in a group, 30 rows with nested keys, no system metrics.
- `old-3`: finished long ago (filtered out by `since`), 3 rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z


def md5(text: str) -> str:
    return base64.b64encode(hashlib.md5(text.encode()).digest()).decode()


def file(name: str, content: str) -> dict[str, object]:
    return {"name": name, "content": content, "md5": md5(content), "size": len(content.encode())}


def main() -> None:
    base_rows = []
    for step in range(1234):
        row: dict[str, object] = {
            "_step": step,
            "_timestamp": T0 + step * 0.25 + 0.001,
            "_runtime": step * 0.25,
        }
        row["loss"] = round(2.0 / (step + 1), 9)
        if step % 10 == 0:
            row["acc"] = step / 1234
        if step == 5:
            row["samples"] = {"_type": "image-file", "path": "media/images/samples_5.png", "width": 2}
        base_rows.append(row)
    tune_rows = [
        {"_step": s, "_timestamp": T0 + 100 + s, "train": {"loss": 1.0 - s / 30, "lr": 0.1}, "epoch": s}
        for s in range(30)
    ]
    project = {
        "entity": "acme",
        "project": "vision",
        "description": "image models",
        "other_projects": ["scratch"],  # an empty project of the same entity
        "api_key": "k" * 40,
        "runs": [
            {
                "id": "base-1",
                "displayName": "baseline",
                "state": "finished",
                "createdAt": "2025-06-15T15:06:40",
                "heartbeatAt": "2025-06-15T15:11:49",
                "user": {"username": "alice", "name": "Alice"},
                "tags": ["resnet", "best"],
                "group": None,
                "jobType": "train",
                "notes": "first try",
                "commit": "abc123",
                "config": {
                    "lr": {"value": 0.001},
                    "model": {"value": {"depth": 50, "act": "relu"}},
                    "_wandb": {"value": {"cli_version": "0.31.0"}},
                },
                "summary": {"loss": 2.0 / 1234, "_runtime": 308.25, "_step": 1233},
                "history": base_rows,
                "events": [
                    {
                        "_timestamp": T0 + 10 * i,
                        "_runtime": 10 * i,
                        "system.cpu": 20.0 + i,
                        "system.gpu.0.gpu": 90.0 - i,
                    }
                    for i in range(12)
                ],
                "files": [
                    file("config.yaml", "lr:\n  value: 0.001\n"),
                    file("output.log", "epoch 1\nepoch 2\n"),
                ],
                "artifacts": [
                    {
                        "name": "model",
                        "version": "v0",
                        "type": "model",
                        "files": [file("weights.bin", "w" * 300), file("meta/info.json", '{"a": 1}')],
                    }
                ],
            },
            {
                "id": "tune-2",
                "displayName": "tuned",
                "state": "crashed",
                "createdAt": "2025-06-15T15:08:20",
                "heartbeatAt": "2025-06-15T15:08:50",
                "user": {"username": "bob", "name": "Bob"},
                "tags": [],
                "group": "sweep-a",
                "jobType": None,
                "notes": None,
                "commit": None,
                "config": {"lr": {"value": 0.1}, "nested": {"value": {"a": [1, 2]}}},
                "summary": {"epoch": 29},
                "history": tune_rows,
                "events": [],
                "files": [],
                "artifacts": [],
            },
            {
                "id": "old-3",
                "displayName": "old",
                "state": "finished",
                "createdAt": "2024-01-01T00:00:00",
                "heartbeatAt": "2024-01-01T00:05:00",
                "user": {"username": "alice", "name": "Alice"},
                "tags": ["legacy"],
                "group": None,
                "jobType": None,
                "notes": None,
                "commit": None,
                "config": {},
                "summary": {},
                "history": [
                    {"_step": s, "_timestamp": 1_704_067_200.0 + s, "loss": 3.0 - s} for s in range(3)
                ],
                "events": [],
                "files": [],
                "artifacts": [],
            },
        ],
    }
    target = Path(__file__).with_name("project.json")
    target.write_text(json.dumps(project, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
