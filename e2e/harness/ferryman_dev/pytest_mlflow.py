"""Pytest fixtures for real MLflow servers: `mlflow_server_factory` starts as many as a test needs.

Servers started through the session-scoped factory live until the end of the session, so modules share them
by asking for them in their own module- or session-scoped fixtures. MLflow's database destinations get one
real PostgreSQL and one MariaDB server per session (`postgres_server`, `mariadb_server`) and a fresh
database of one per test (`postgres_database`, `mariadb_database`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from ferryman_dev.mariadb import MariadbServer, start_mariadb
from ferryman_dev.mlflow import MlflowServer, start_mlflow_server
from ferryman_dev.postgres import PostgresServer, start_postgres

MlflowServerFactory = Callable[..., MlflowServer]


@pytest.fixture(scope="session")
def mlflow_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServerFactory]:
    """`factory(name, workers=1, basic_auth_password=None)` starts a server; all stop at session end."""
    servers: list[MlflowServer] = []

    def start(name: str = "mlflow", **options: object) -> MlflowServer:
        server = start_mlflow_server(tmp_path_factory.mktemp(name), **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_source(mlflow_server_factory: MlflowServerFactory) -> MlflowServer:
    """A shared MLflow server to hold source data."""
    return mlflow_server_factory("source")


@pytest.fixture(scope="session")
def mlflow_destination(mlflow_server_factory: MlflowServerFactory) -> MlflowServer:
    """A shared MLflow server to migrate into (tests use fresh experiment names to stay independent)."""
    return mlflow_server_factory("destination")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server (Debian's packages) for the session."""
    with start_postgres() as server:
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URI of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariadbServer]:
    """One MariaDB server (Debian's packages) for the session."""
    with start_mariadb() as server:
        yield server


@pytest.fixture
def mariadb_database(mariadb_server: MariadbServer) -> str:
    """The SQLAlchemy URI of a new, empty database on the session's MariaDB server."""
    return mariadb_server.create_database(f"test_{uuid.uuid4().hex[:12]}")
