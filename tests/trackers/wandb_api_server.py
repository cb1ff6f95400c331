"""A mock of the W&B cloud API on 127.0.0.1, because the real one cannot be reached from the build machines.

It answers the GraphQL operations that wandb 0.31's public API and its wandb-core sidecar actually send (their
shapes were captured by running `wandb.Api` against this server and reading `wandb/apis/public/*.py` and
wandb-core's `runhistoryreader`), from the recorded project in `data/wandb_api/project.json`:

- `Viewer`/`GetDefaultEntity` (a wrong API key gets no viewer: wandb's own "invalid credentials" path),
- `FerrymanProject`/`FerrymanProjects` (ferryman's own small queries), `Runs` (paged, with a small subset of
  W&B's run filters), `Run`, `RunHistoryKeys`,
- `RunParquetHistory` + `HistoryPage` (the history scan: no parquet exports, every row served as live data),
- `RunFullHistory` (`events`: system metrics), `RunFiles`, `RunOutputArtifacts`, `ArtifactMembershipFiles`,
- `GET /files/...` for file bytes.

`rate_limits` makes the first N calls of an operation (or of `download`) answer 429 with `Retry-After`.
Every request is logged (`requests`) with its time so tests can check retries and pagination.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

PROJECT_FILE = Path(__file__).parent / "data" / "wandb_api" / "project.json"


@dataclass
class Logged:
    op: str
    at: float
    variables: dict[str, Any] = field(default_factory=dict)
    status: int = 200


class WandbApiFixtureServer:
    def __init__(self, rate_limits: dict[str, int] | None = None, retry_after: float = 1.0) -> None:
        self.data = json.loads(PROJECT_FILE.read_text())
        self.rate_limits = dict(rate_limits or {})
        self.retry_after = retry_after
        self.requests: list[Logged] = []
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WandbApiFixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ops(self, name: str) -> list[Logged]:
        with self._lock:
            return [r for r in self.requests if r.op == name]

    def _limited(self, op: str) -> bool:
        with self._lock:
            if self.rate_limits.get(op, 0) > 0:
                self.rate_limits[op] -= 1
                return True
            return False

    def _log(self, entry: Logged) -> None:
        with self._lock:
            self.requests.append(entry)

    # --- data --------------------------------------------------------------------------------------------

    def run(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.data["runs"] if r["id"] == name), None)

    def _project_ok(self, variables: dict[str, Any], *, empty_too: bool = False) -> bool:
        entity = variables.get("entity") or variables.get("entityName")
        project = variables.get("project") or variables.get("projectName")
        known = [self.data["project"], *(self.data["other_projects"] if empty_too else [])]
        return entity == self.data["entity"] and project in known

    def _run_node(self, run: dict[str, Any], full: bool) -> dict[str, Any]:
        node = {
            "projectId": "1",
            "id": base64.b64encode(f"Run:{run['id']}".encode()).decode(),
            "name": run["id"],
            "displayName": run["displayName"],
            "tags": run["tags"],
            "sweepName": None,
            "state": run["state"],
            "group": run["group"],
            "jobType": run["jobType"],
            "commit": run["commit"],
            "readOnly": False,
            "createdAt": run["createdAt"],
            "heartbeatAt": run["heartbeatAt"],
            "description": None,
            "notes": run["notes"],
            "historyLineCount": len(run["history"]),
            "user": run["user"],
        }
        if full:
            node |= {
                "config": json.dumps(run["config"]),
                "summaryMetrics": json.dumps(run["summary"]),
                "systemMetrics": "{}",
                "historyKeys": {
                    "lastStep": max((r["_step"] for r in run["history"]), default=-1),
                    "keys": {},
                },
            }
        return node

    def _file_node(self, path: str, item: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.url}/files/{quote(path)}"
        return {
            "__typename": "File",
            "id": base64.b64encode(path.encode()).decode(),
            "name": item["name"],
            "url": url,
            "directUrl": url,
            "sizeBytes": item["size"],
            "mimetype": "application/octet-stream",
            "updatedAt": "2025-06-15T15:11:49",
            "md5": item["md5"],
            "digest": item["md5"],
            "storagePath": None,
        }

    def content(self, path: str) -> bytes | None:
        parts = path.split("/")
        run = self.run(parts[0]) if parts else None
        if run is None:
            return None
        if parts[1] == "run":
            items = run["files"]
        else:
            items = next(
                (a["files"] for a in run["artifacts"] if f"{a['name']}:{a['version']}" == parts[2]), []
            )
        name = "/".join(parts[3:] if parts[1] == "artifact" else parts[2:])
        found = next((f for f in items if f["name"] == name), None)
        return None if found is None else found["content"].encode()

    def answer(self, op: str, variables: dict[str, Any], api_key: str | None) -> dict[str, Any] | None:
        viewer = {
            "id": "VXNlcjox",
            "entity": "acme",
            "username": "alice",
            "email": "a@example.com",
            "flags": "{}",
            "teams": {"edges": []},
        }
        authorized = api_key == self.data["api_key"]
        if op in ("Viewer", "GetDefaultEntity"):
            return {"viewer": viewer if authorized else None}
        if op == "ServerFeaturesQuery":
            return {"serverInfo": {"features": []}}
        projects = [
            {
                "id": f"UHJvamVjdDo{i}",
                "name": name,
                "entityName": self.data["entity"],
                "description": self.data["description"] if i == 0 else None,
            }
            for i, name in enumerate([self.data["project"], *self.data["other_projects"]])
        ]
        if op == "FerrymanProject":
            found = [p for p in projects if p["name"] == variables["project"]]
            return {"project": found[0] if found and variables["entity"] == self.data["entity"] else None}
        if op == "FerrymanProjects":
            if variables["entity"] != self.data["entity"]:
                return {"models": None}
            info = {"endCursor": None, "hasNextPage": False}
            return {"models": {"pageInfo": info, "edges": [{"node": p} for p in projects]}}
        if op == "Runs":
            if not self._project_ok(variables, empty_too=True):
                return {"project": None}
            runs = [r for r in self.data["runs"] if _matches(r, json.loads(variables.get("filters") or "{}"))]
            if variables["project"] != self.data["project"]:
                runs = []
            start = int(variables.get("cursor") or 0)
            per_page = int(variables.get("perPage") or 50)
            page = runs[start : start + per_page]
            edges = [
                {"node": self._run_node(r, False), "cursor": str(start + i + 1)} for i, r in enumerate(page)
            ]
            info = {"endCursor": str(start + len(page)), "hasNextPage": start + per_page < len(runs)}
            return {
                "project": {
                    "internalId": "1",
                    "runCount": len(runs),
                    "readOnly": False,
                    "runs": {"edges": edges, "pageInfo": info},
                }
            }
        run = self.run(variables.get("name") or variables.get("runName") or variables.get("run") or "")
        if op in (
            "Run",
            "RunHistoryKeys",
            "RunParquetHistory",
            "HistoryPage",
            "RunFullHistory",
            "RunFiles",
            "RunOutputArtifacts",
        ) and (run is None or not self._project_ok(variables)):
            return {"project": None}
        assert run is not None or op not in ("Run",)
        if op == "Run":
            return {"project": {"run": self._run_node(run, True)}}  # type: ignore[arg-type]
        if op == "RunHistoryKeys":
            return {"project": {"run": {"historyKeys": self._run_node(run, True)["historyKeys"]}}}  # type: ignore[arg-type]
        if op == "RunParquetHistory":
            live = [{"_step": r["_step"]} for r in run["history"]]  # type: ignore[index]
            return {"project": {"run": {"parquetHistory": {"parquetUrls": [], "liveData": live}}}}
        if op == "HistoryPage":
            lo, hi = int(variables["minStep"]), int(variables["maxStep"])
            rows = [json.dumps(r) for r in run["history"] if lo <= r["_step"] < hi]  # type: ignore[index]
            return {"project": {"run": {"history": rows}}}
        if op == "RunFullHistory":
            return {"project": {"run": {"events": [json.dumps(e) for e in run["events"]]}}}  # type: ignore[index]
        if op == "RunFiles":
            nodes = [self._file_node(f"{run['id']}/run/{f['name']}", f) for f in run["files"]]  # type: ignore[index]
            return {
                "project": {
                    "internalId": "1",
                    "run": {
                        "fileCount": len(nodes),
                        "files": {
                            "edges": [{"node": n, "cursor": str(i)} for i, n in enumerate(nodes)],
                            "pageInfo": {"endCursor": None, "hasNextPage": False},
                        },
                    },
                }
            }
        if op == "RunOutputArtifacts":
            edges = [{"node": self._artifact_node(run, a)} for a in run["artifacts"]]  # type: ignore[index]
            return {
                "project": {
                    "run": {
                        "artifacts": {
                            "totalCount": len(edges),
                            "edges": edges,
                            "pageInfo": {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False},
                        }
                    }
                }
            }
        if op == "ArtifactMembershipFiles":
            return self._artifact_files(variables)
        return None

    def _artifact_node(self, run: dict[str, Any], artifact: dict[str, Any]) -> dict[str, Any]:
        ident = base64.b64encode(
            f"Artifact:{run['id']}:{artifact['name']}:{artifact['version']}".encode()
        ).decode()
        project = {
            "id": "UHJvamVjdDox",
            "internalId": "1",
            "name": self.data["project"],
            "entity": {"id": "RW50aXR5OjE=", "name": self.data["entity"]},
        }
        collection = {
            "__typename": "ArtifactSequence",
            "id": "QXJ0aWZhY3RTZXF1ZW5jZTox",
            "name": artifact["name"],
            "project": project,
        }
        return {
            "__typename": "Artifact",
            "id": ident,
            "artifactSequence": collection,
            "versionIndex": int(artifact["version"].lstrip("v")),
            "artifactType": {"name": artifact["type"]},
            "description": None,
            "metadata": "{}",
            "ttlDurationSeconds": -2,
            "ttlIsInherited": True,
            "tags": [],
            "historyStep": None,
            "state": "COMMITTED",
            "size": sum(f["size"] for f in artifact["files"]),
            "digest": "0" * 32,
            "commitHash": "0" * 12,
            "fileCount": len(artifact["files"]),
            "createdAt": "2025-06-15T15:11:49",
            "updatedAt": "2025-06-15T15:11:49",
            "aliases": [
                {
                    "__typename": "ArtifactAlias",
                    "id": "QWxpYXM6MQ==",
                    "alias": "latest",
                    "artifactCollection": {
                        "__typename": "ArtifactSequence",
                        "name": artifact["name"],
                        "project": project,
                    },
                }
            ],
        }

    def _artifact_files(self, variables: dict[str, Any]) -> dict[str, Any] | None:
        for run in self.data["runs"]:
            for artifact in run["artifacts"]:
                if (artifact["name"], artifact["version"]) == (
                    variables.get("collection"),
                    variables.get("alias"),
                ):
                    nodes = [
                        self._file_node(
                            f"{run['id']}/artifact/{artifact['name']}:{artifact['version']}/{f['name']}", f
                        )
                        for f in artifact["files"]
                    ]
                    return {
                        "project": {
                            "artifactCollection": {
                                "__typename": "ArtifactSequence",
                                "artifactMembership": {
                                    "files": {
                                        "pageInfo": {
                                            "__typename": "PageInfo",
                                            "endCursor": None,
                                            "hasNextPage": False,
                                        },
                                        "edges": [{"node": n, "cursor": str(i)} for i, n in enumerate(nodes)],
                                    }
                                },
                            }
                        }
                    }
        return None


def _matches(run: dict[str, Any], filters: dict[str, Any]) -> bool:
    """The subset of W&B's MongoDB-style run filters the tests use: $and, $or, $in, $gte and equality."""
    for key, condition in filters.items():
        if key == "$and":
            if not all(_matches(run, part) for part in condition):
                return False
        elif key == "$or":
            if not any(_matches(run, part) for part in condition):
                return False
        else:
            value = run.get({"display_name": "displayName"}.get(key, key))
            if isinstance(condition, dict):
                for operator, expected in condition.items():
                    if operator == "$in" and not (
                        set(value if isinstance(value, list) else [value]) & set(expected)
                    ):
                        return False
                    if operator == "$gte" and not (value is not None and value >= expected):
                        return False
            elif value != condition:
                return False
    return True


def _handler(server: WandbApiFixtureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 429:
                self.send_header("Retry-After", f"{server.retry_after:g}")
            self.end_headers()
            self.wfile.write(body)

        def _api_key(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                return base64.b64decode(header[6:]).decode().partition(":")[2]
            return None

        def do_GET(self) -> None:
            if not self.path.startswith("/files/"):
                self._send(404, b"{}")
                return
            limited = server._limited("download")
            server._log(Logged("download", time.monotonic(), {"path": self.path}, 429 if limited else 200))
            if limited:
                self._send(429, b"")
                return
            content = server.content(unquote(self.path[len("/files/") :]))
            self._send(404, b"") if content is None else self._send(200, content, "application/octet-stream")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.startswith("/graphql"):
                self._send(200, b"{}")  # wandb-core's telemetry (/sdk/otel/...)
                return
            request = json.loads(body)
            match = re.search(r"\b(?:query|mutation)\s+(\w+)", request["query"])
            op = match.group(1) if match else "anonymous"
            variables = request.get("variables") or {}
            if server._limited(op):
                server._log(Logged(op, time.monotonic(), variables, 429))
                self._send(429, b"")
                return
            server._log(Logged(op, time.monotonic(), variables))
            data = server.answer(op, variables, self._api_key())
            if data is None:
                server.unknown.append(request["query"])
                self._send(
                    200, json.dumps({"errors": [{"message": f"fixture server: no answer for {op}"}]}).encode()
                )
                return
            self._send(200, json.dumps({"data": data}).encode())

        def log_message(self, *_: object) -> None:
            pass

    return Handler
