"""Test support: stores filled by real commands and events, and a real `egresswatch web` process."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from egresswatch.model import Alert, Event
from egresswatch.store import open_store
from egresswatch.store.alerts import record_alert
from egresswatch.store.sessions import (
    NewSession,
    add_evidence,
    close_session,
    open_session,
    writing,
)
from tests.store.factory import HOSTILE, dns_response, process, tls_hello

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def egresswatch(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "egresswatch", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def replay_into(db: Path, captures: Sequence[Path]) -> None:
    egresswatch("replay", "--quiet", "--db", str(db), *map(str, captures))


def write_events(db: Path | str, events: Sequence[Event]) -> None:
    store = open_store(str(db))
    try:
        writer = store.writer(batch_interval=0.01)
        for event in events:
            assert writer.submit(event)
        assert writer.flush(30)
    finally:
        store.close()


HOSTILE_NAMES = (
    "<img src=x onerror=\"document.title='pwned'\">.evil.example",
    '"onmouseover="alert(1)".evil.example',
    "\u202egnp.evil.example",
    ("a" * 63 + ".") * 3 + "b" * 63,  # 255 bytes
    *HOSTILE[:3],
)


def sample_events(now: float) -> list[Event]:
    """A little of everything within the last hour: two tools, hostile names, plain traffic."""
    ollama = process(4242, "ollama")
    hostile_proc = process(9001, None, name=HOSTILE_NAMES[0], cmdline=(HOSTILE_NAMES[1], "--x"))
    events = [
        tls_hello(now - 3000, "huggingface.co", ollama, category="model-registry"),
        dns_response(now - 2400, "registry.ollama.ai", ollama),
        tls_hello(
            now - 1800,
            "api.openai.com",
            process(777, "llama.cpp", name="llama-server"),
            category="cloud-llm-api",
        ),
    ]
    for i, name in enumerate(HOSTILE_NAMES):
        events.append(tls_hello(now - 1200 + i, name, hostile_proc, category="unknown"))
    return events


def write_sessions_and_alerts(db: Path | str, now: float) -> None:
    """A closed session with egress evidence and two alerts (one hostile), and an open one."""
    store = open_store(str(db))
    try:
        engine = store.engine
        events = store.query_events(limit=100)
        hostile_ids = [
            s.id
            for s in events
            if s.event.attribution.process and s.event.attribution.process.pid == 9001
        ]
        egress = NewSession(now - 1300, "manual", label=HOSTILE_NAMES[2], tools=("ollama",))
        sid = writing(engine, lambda conn: open_session(conn, egress))
        writing(engine, lambda conn: add_evidence(conn, sid, hostile_ids, now - 1100))
        for alert in (
            Alert("untrusted-destination", "high", now - 1150, HOSTILE_NAMES[0], session=sid,
                  host=HOSTILE_NAMES[0], process=HOSTILE_NAMES[0], pid=9001),
            Alert("egress-during-session", "medium", now - 1140, "egress while inference ran",
                  session=sid, host=HOSTILE_NAMES[1]),
        ):  # fmt: skip
            writing(engine, lambda conn, a=alert: record_alert(conn, a))  # type: ignore[misc]
        writing(engine, lambda conn: close_session(conn, sid, now - 1000))
        writing(
            engine, lambda conn: open_session(conn, NewSession(now - 60, "auto", tools=("ollama",)))
        )
    finally:
        store.close()


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen[str]
    port: int

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]


@contextmanager
def web_server(db: Path | str, *args: str, host: str = "127.0.0.1") -> Iterator[WebServer]:
    """`egresswatch web` on a free port, ready when its health answers; stopped by pid."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "egresswatch", "web", "--db", str(db), "--host", host,
         "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    server = WebServer(f"http://{host}:{port}", proc, port)
    try:
        _wait_ready(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_ready(server: WebServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            out = server.process.stdout.read() if server.process.stdout else ""
            raise RuntimeError(f"egresswatch web exited {server.process.returncode}: {out}")
        try:
            httpx.get(server.url + "/api/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("egresswatch web did not start")
