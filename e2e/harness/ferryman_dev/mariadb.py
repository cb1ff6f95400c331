"""A real MariaDB server from Debian's packages, in a temporary directory on a loopback port.

`mariadb-install-db` and `mariadbd` run as the `mysql` system user when the caller is root, without grant
tables (any user, no password: the server only listens on 127.0.0.1 for the length of a test session) and
without flushing the log at every commit.
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

SERVICE_USER = "mysql"  # the Debian packages' system user


@dataclass
class MariadbServer:
    """A running MariaDB server; `create_database(name)` returns the URI of a new database."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def uri(self, database: str) -> str:
        """A SQLAlchemy URI of the database (PyMySQL driver)."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def _connect(self) -> object:
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)

    def create_database(self, name: str) -> str:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        finally:
            connection.close()  # type: ignore[attr-defined]
        return self.uri(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> MariadbServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_mariadb(timeout: float = 120) -> MariadbServer:
    """Initialise a data directory in a new temporary directory and start the server on 127.0.0.1."""
    if shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None:
        raise RuntimeError("MariaDB is not installed: apt-get install mariadb-server (or make db-packages)")
    root = Path(tempfile.mkdtemp(prefix="ferryman-mariadb-"))
    user = ["--user=" + SERVICE_USER] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVICE_USER)
        os.chown(root, account.pw_uid, account.pw_gid)
    data = root / "data"
    try:
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", *user, "--skip-test-db",
             "--auth-root-authentication-method=normal"],
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed: {error.stderr[-3000:]}") from None
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            supervised(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", *user, f"--port={port}",
             "--bind-address=127.0.0.1", f"--socket={root / 'mariadb.sock'}", f"--pid-file={root / 'pid'}",
             "--skip-grant-tables", "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin"]),
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(signal.SIGTERM),
        )
    server = MariadbServer(root, port, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text()[-3000:]
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"mariadbd exited with {process.returncode}:\n{detail}")
        try:
            server._connect().close()  # type: ignore[attr-defined]
            return server
        except Exception:
            time.sleep(0.3)
    detail = log.read_text()[-3000:]
    server.stop()
    raise RuntimeError(f"MariaDB on port {port} not ready after {timeout}s:\n{detail}")
