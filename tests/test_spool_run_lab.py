"""`egresswatch run` against a shared PostgreSQL that is down when it starts (issue #9): it says
so, captures into its spool, and stores everything once the server is back."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from egresswatch.store import open_store
from tests.lab import Lab
from tests.store.pg_cluster import throwaway_cluster

pytestmark = [pytest.mark.lab, pytest.mark.postgres]


def _egresswatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "egresswatch", *args]


def _events(db: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        _egresswatch("events", "--db", db, "--json", "--host", "registry.ollama.ai"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _stored(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


def test_run_starts_while_the_shared_store_is_down_and_drains_later(
    net: Lab, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nspool_dir = "{tmp_path / "state"}"\n')
    with throwaway_cluster() as cluster:
        open_store(cluster.url).close()  # the owner's `db upgrade`
        cluster.stop()
        proc = subprocess.Popen(
            _egresswatch("run", "--db", cluster.url, "--no-web", "--verbose", "--config",
                         str(config)),
            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "300"},
        )  # fmt: skip
        assert proc.stderr is not None
        try:
            head = ""
            while "recording to" not in head:
                line = proc.stderr.readline()
                assert line, head + proc.stderr.read()
                head += line
            assert "unreachable" in head and "spool" in head, head
            for _ in range(3):
                client = subprocess.run(
                    [str(net.tool_script("ollama")), "https", "registry.ollama.ai",
                     "--connect", net.server_ip, "--linger", "0.2"],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                assert client.returncode == 0, client.stderr
            time.sleep(1.0)  # committed to the spool by now (the writer batches every 0.2 s)
            spooled = list((tmp_path / "state" / "spool").glob("*.spool"))
            assert len(spooled) == 1 and spooled[0].stat().st_size > 0
            cluster.start()
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and _stored(cluster.url) < 3:
                time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        hellos = [e for e in _events(cluster.url) if e["kind"] == "tls"]
        engine = create_engine(cluster.url)
        with engine.connect() as conn:
            batches = conn.execute(text("SELECT count(*) FROM ingest_batches")).scalar_one()
        engine.dispose()
    assert len(hellos) >= 3 and all(h["tool"] == "Ollama" for h in hellos)
    assert batches >= 1
    assert "spool.drained" in err and "spool.spooled" in err and "writer.retries" in err, err
