"""Fixtures of the corrections tests (test modules import them: a conftest.py here would shadow
tests/conftest.py, which other test modules import as `conftest`): a real PostgreSQL server
(Debian's postgresql, in a temp dir on 127.0.0.1, one per test process, stopped at exit), a
fresh database on it or a fresh SQLite file per test, one Recognizer, test images."""

from __future__ import annotations

import atexit
import glob
import io
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import weights_dir

__all__ = ["db_url", "pg_url", "postgres", "recognizer", "sqlite_url"]  # the fixtures
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (initdb, pg_ctl), if any."""
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name)
                   if Path(p).parent.name.isdigit() else 0)
    return Path(found[-1]) if found and (Path(found[-1]) / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust auth, 127.0.0.1 only); run as the `postgres` user
    when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="digitrec-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, self.user, self.user)

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=self.root)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n"
                               f"{done.stderr}")

    def start(self) -> None:
        """initdb + pg_ctl start (sockets in the temp dir; waits until it accepts)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.root} -c fsync=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """pg_ctl stop (fast), then remove the temp dir."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


_SERVER: list[PostgresServer] = []


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The PostgreSQL server of this test process (started on first use, stopped at exit);
    fails, saying so, when PostgreSQL is not installed (`make test` installs it:
    scripts/ensure-postgresql.sh): a test of the database must not pass unseen."""
    if not _SERVER:
        bin_dir = _pg_bin()
        if bin_dir is None:
            pytest.fail("PostgreSQL is not installed: run scripts/ensure-postgresql.sh")
        server = PostgresServer(bin_dir)
        server.start()
        atexit.register(server.stop)
        _SERVER.append(server)
    return _SERVER[0]


@pytest.fixture()
def pg_url(postgres) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return postgres.create_database()


@pytest.fixture()
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """A fresh database of each kind."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


_RECOGNIZER: list = []


@pytest.fixture(scope="session")
def recognizer():
    """The test weights, loaded once per process."""
    if not _RECOGNIZER:
        from digitrec.recognizer import Recognizer
        _RECOGNIZER.append(Recognizer.load(weights_dir()))
    return _RECOGNIZER[0]


def png(strokes: list[list[tuple[float, float]]], size: tuple[int, int] = (280, 280),
        width: int = 22) -> bytes:
    """A PNG of black strokes on white (points as fractions of the size), as the page draws."""
    from PIL import Image, ImageDraw
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * size[0], y * size[1]) for x, y in stroke]
        draw.line(points, fill=0, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


ONE = png([[(0.5, 0.15), (0.48, 0.85)]])
SEVEN = png([[(0.26, 0.22), (0.55, 0.21), (0.72, 0.22), (0.62, 0.42), (0.53, 0.62),
              (0.46, 0.82)]])
ELEVEN = png([[(0.25, 0.15), (0.25, 0.85)], [(0.75, 0.15), (0.75, 0.85)]], size=(560, 280))
BLANK = png([])
