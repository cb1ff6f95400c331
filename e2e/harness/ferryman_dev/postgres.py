"""A real PostgreSQL server from Debian's packages, in a temporary directory on a loopback port.

`initdb` and `postgres` of the newest installed major version run as the `postgres` system user when the
caller is root (PostgreSQL refuses to run as root), the data directory handed over to it. The server runs in
the foreground under `lifetime`'s supervisor, so it stops with the process that started it even when that is
killed. Durability is traded for speed (`fsync=off`): the cluster lives as long as a test session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ferryman_dev.lifetime import die_with_parent, free_port, supervised

SUPERUSER = "ferryman"
SERVICE_USER = "postgres"  # the Debian packages' system user


def binaries() -> Path:
    """The bin directory of the newest installed PostgreSQL (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql (or make db-packages)")
    return found[-1].parent


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster; `uri(name)` names one of its databases."""

    root: Path
    port: int
    bin: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _command(self, *argv: str) -> list[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._command(*argv), check=True, capture_output=True, text=True, cwd=self.root)

    def uri(self, database: str = "postgres", driver: str = "") -> str:
        """A SQLAlchemy URI of the database (`driver` e.g. "+psycopg2")."""
        return f"postgresql{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URI."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.uri(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_postgres(timeout: float = 120) -> PostgresServer:
    """initdb into a new temporary directory and start the server on 127.0.0.1 (trust authentication)."""
    root = Path(tempfile.mkdtemp(prefix="ferryman-postgres-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVICE_USER)
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PostgresServer(root, free_port(), binaries())
    try:
        server._run("initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                    "--locale=C.UTF-8")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {error.stderr[-3000:]}") from None
    log = root / "server.log"
    command = server._command("postgres", "-D", str(server.data), "-p", str(server.port), "-k", str(root),
                              "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
    with log.open("wb") as out:
        server.process = subprocess.Popen(
            supervised(command), stdout=out, stderr=subprocess.STDOUT, cwd=root,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    ready = [str(server.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port), "-U", SUPERUSER]
    deadline = time.monotonic() + timeout
    while subprocess.run(ready).returncode != 0:
        if server.process.poll() is not None or time.monotonic() > deadline:
            detail = log.read_text()[-3000:]
            server.stop()
            raise RuntimeError(f"PostgreSQL on port {server.port} did not start:\n{detail}")
        time.sleep(0.2)
    return server
