"""A real, throwaway PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` on a free loopback port.

The server's data directory lives in a fresh temporary directory; it listens on
127.0.0.1 only (and a Unix socket in that directory), trusts local connections,
and is stopped and removed afterwards. PostgreSQL refuses to run as root, so when
the tests run as root (CI does) ``initdb``/``pg_ctl`` run as the ``postgres``
system user through ``runuser``, with the directory handed to that user.

Use the ``postgres_server`` (session) and ``postgres_url`` (a fresh, empty
database per test) fixtures: import them into a test module or a conftest::

    from tests.pg_server import postgres_server, postgres_url  # noqa: F401
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: How long initdb, a start or a stop may take.
_TIMEOUT = 120
_SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory holding ``initdb`` and ``pg_ctl``."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bin_dir = Path(initdb).parent
        version = bin_dir.parent.name
        if (bin_dir / "pg_ctl").exists() and version.replace(".", "").isdigit():
            found.append((tuple(int(p) for p in version.split(".")), bin_dir))
    if found:
        return max(found)[1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server started by :func:`start_server`."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL of ``database`` on this server."""
        return f"{driver}://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database made by :meth:`create_database` (closing its connections)."""
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={_SUPERUSER} dbname={database} connect_timeout=10"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            _run(self, ["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(_TIMEOUT), "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _argv(server: PostgresServer, argv: list[str]) -> list[str]:
    command = [str(server.bin_dir / argv[0]), *argv[1:]]
    return ["runuser", "-u", server.run_as, "--", *command] if server.run_as else command


def _run(server: PostgresServer, argv: list[str]) -> None:
    done = subprocess.run(
        _argv(server, argv), capture_output=True, text=True, timeout=_TIMEOUT, check=False, cwd=server.root
    )
    if done.returncode != 0:
        log = server.root / "server.log"
        log_tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr[-2000:]} {log_tail}")


def start_server(bin_dir: Path) -> PostgresServer:
    """``initdb`` a new cluster in a temporary directory and start it on a free loopback port."""
    run_as = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user")
        run_as = _SUPERUSER
        pwd.getpwnam(run_as)  # KeyError when the postgresql package did not create the user
    # Not under pytest's tmp_path: its parents are private to root, and the
    # server's user must reach the directory.
    root = Path(tempfile.mkdtemp(prefix="fleet-sandbox-pg-"))
    server = PostgresServer(bin_dir=bin_dir, root=root, port=0, run_as=run_as)
    try:
        if run_as:
            user = pwd.getpwnam(run_as)
            os.chown(root, user.pw_uid, user.pw_gid)
        _run(
            server,
            ["initdb", "-D", str(server.data_dir), "-A", "trust", "-U", _SUPERUSER, "-E", "UTF8", "--no-sync"],
        )
        # A port can be taken between looking and binding: try a few.
        for attempt in range(3):
            server.port = free_port()
            options = f"-p {server.port} -h 127.0.0.1 -k {root} -F -c full_page_writes=off"
            try:
                _run(
                    server,
                    [
                        "pg_ctl", "-D", str(server.data_dir), "-l", str(root / "server.log"),
                        "-w", "-t", str(_TIMEOUT), "-o", options, "start",
                    ],
                )  # fmt: skip
                return server
            except RuntimeError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the test session."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed: run `make system-deps`")
    server = start_server(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty database on the session's server; dropped afterwards."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        with contextlib.suppress(Exception):
            postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def inventory_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty inventory database: a SQLite file, and (marked integration) a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inventory.db'}"
    return str(request.getfixturevalue("postgres_url"))
