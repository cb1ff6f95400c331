"""Real MLflow tracking servers on loopback (SQLite backend, proxied artifacts) for tests and benches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ferryman_dev.lifetime import die_with_parent, free_port, supervised

ADMIN_USER = "admin"


@dataclass
class MlflowServer:
    """A running `mlflow server`; `url` is its tracking URI."""

    url: str
    root: Path
    backend_uri: str
    process: subprocess.Popen[bytes]
    log: Path
    credentials: dict[str, str] = field(default_factory=dict)  # basic-auth admin user and password, if any

    def stop(self, timeout: float = 15) -> None:
        """Stop the server and its workers (it runs in its own process group, under `lifetime`'s supervisor,
        so it also stops when this process dies)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.process.wait(timeout)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_mlflow_server(
    root: Path, *, workers: int = 1, basic_auth_password: str | None = None, timeout: float = 300
) -> MlflowServer:
    """Start `mlflow server` with its SQLite store and artifacts under `root`; wait until it is healthy.

    With `basic_auth_password` the server runs the `basic-auth` app with user `admin` and that password.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend_uri = f"sqlite:///{root / 'mlflow.db'}"
    log = root / "server.log"
    env = {
        **os.environ,
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no background job runner process: tracking only
        "PYTHONUNBUFFERED": "1",
    }
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        env.pop(name, None)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    credentials: dict[str, str] = {}
    if basic_auth_password is not None:
        config = root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            f"admin_username = {ADMIN_USER}\nadmin_password = {basic_auth_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 60\n"
        )
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_FLASK_SERVER_SECRET_KEY="ferryman-dev-secret")
        cmd += ["--app-name", "basic-auth"]
        credentials = {"username": ADMIN_USER, "password": basic_auth_password}
    with log.open("wb") as out:
        process = subprocess.Popen(
            supervised(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", root, backend_uri, process, log, credentials)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(
        f"mlflow server on {server.url} not healthy after {timeout}s:\n{log.read_text()[-3000:]}"
    )
