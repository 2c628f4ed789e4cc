"""A throwaway PostgreSQL cluster on its own port, for tests that stop and start the server
(stopping the shared one would break the tests running beside them)."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Cluster:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-w", *args]
        done = subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-l", str(self.root / "log"), "-o", f"'{options}'", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """initdb + start as the postgres user (trust auth on loopback); removed afterwards."""
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or shutil.which("su") is None:
        pytest.skip("needs root and PostgreSQL 15's initdb")
    root = Path(tempfile.mkdtemp(prefix="ew-pg-"))
    shutil.chown(root, "postgres", "postgres")
    init = subprocess.run(
        ["su", "postgres", "-s", "/bin/sh", "-c",
         f"{PG_BIN / 'initdb'} -D {root / 'data'} -A trust -U postgres --no-sync"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr}")
    cluster = Cluster(root, _free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c",
             f"{PG_BIN / 'pg_ctl'} -D {root / 'data'} -m immediate stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
