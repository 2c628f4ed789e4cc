"""Automatic sessions through the real pipeline (`egresswatch run`): a session lasts while its
client connection streams, and ends `idle_seconds` after that connection closed."""

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.receiver import receiver
from tests.test_alerts_lab import Monitor, StandIn, json_lines, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]
STREAM = 7.0
IDLE = 2.0


def test_a_streaming_generation_keeps_its_session_open_until_the_connection_closes(
    tmp_path: Path,
) -> None:
    with receiver() as hook:
        mon = Monitor(tmp_path, hook, idle=IDLE)
        standin = StandIn(tmp_path, "--stream", str(STREAM))

        def ours() -> list[dict[str, Any]]:
            sessions = json_lines("sessions", "--db", mon.db)
            return [s for s in sessions if standin.proc.pid in [p["pid"] for p in s["serving"]]]

        try:
            time.sleep(2.5)  # the listener scan has seen the stand-in
            url = f"http://127.0.0.1:{standin.port}/api/generate"
            client = subprocess.Popen(["curl", "-sN", "-o", "/dev/null", "-d", "{}", url])
            assert wait_for(lambda: len(ours()) == 1), json_lines("sessions", "--db", mon.db)
            time.sleep(IDLE * 2 + 1.5)  # past idle_seconds, the generation still streaming
            assert client.poll() is None
            assert ours()[0]["end"] is None
            client.wait(timeout=30)
            closed_at = time.time()
            assert wait_for(lambda: ours()[0]["end"] is not None)
            (session,) = ours()
            assert session["end"] - session["start"] >= STREAM - 1.0
            assert session["end"] == pytest.approx(closed_at, abs=1.5)
        finally:
            standin.close()
            print(mon.stop())


# Sends one inference request and exits at once, without waiting for the answer: its socket
# is gone before the monitor handles the request.
ONE_SHOT = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as conn:
    conn.sendall(b"POST /api/generate HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
"""


def test_a_client_that_lives_a_few_ms_is_the_sessions_client(tmp_path: Path) -> None:
    with receiver() as hook:
        mon = Monitor(tmp_path, hook, idle=IDLE)
        standin = StandIn(tmp_path)

        def ours() -> list[dict[str, Any]]:
            sessions = json_lines("sessions", "--db", mon.db)
            return [s for s in sessions if standin.proc.pid in [p["pid"] for p in s["serving"]]]

        try:
            time.sleep(2.5)  # the listener scan has seen the stand-in
            client = subprocess.Popen([sys.executable, "-c", ONE_SHOT, str(standin.port)])
            assert client.wait(timeout=10) == 0
            assert wait_for(lambda: len(ours()) == 1)
            (session,) = ours()
            assert session["client"] is not None, session
            assert session["client"]["pid"] == client.pid
        finally:
            standin.close()
            print(mon.stop())


def test_the_model_named_in_the_request_line_is_the_sessions_model(tmp_path: Path) -> None:
    with receiver() as hook:
        mon = Monitor(tmp_path, hook, idle=IDLE)
        standin = StandIn(tmp_path)

        def ours() -> list[dict[str, Any]]:
            sessions = json_lines("sessions", "--db", mon.db)
            return [s for s in sessions if standin.proc.pid in [p["pid"] for p in s["serving"]]]

        try:
            time.sleep(2.5)  # the listener scan has seen the stand-in
            standin.request("POST", "/v2/models/llama3-8b/infer")
            assert wait_for(lambda: len(ours()) == 1)
            assert ours()[0]["model"] == "llama3-8b"
        finally:
            standin.close()
            print(mon.stop())


def test_a_tool_serving_on_an_ephemeral_port_opens_a_session(tmp_path: Path) -> None:
    """Tools started with a random free port (>= 32768) serve inference too."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert port >= 32768
    with receiver() as hook:
        mon = Monitor(tmp_path, hook, idle=IDLE)
        standin = StandIn(tmp_path, port=port)

        def ours() -> list[dict[str, Any]]:
            sessions = json_lines("sessions", "--db", mon.db)
            return [s for s in sessions if standin.proc.pid in [p["pid"] for p in s["serving"]]]

        try:
            time.sleep(2.5)  # the listener scan has seen the stand-in
            standin.request("POST", "/api/generate")
            assert wait_for(lambda: len(ours()) == 1), json_lines("sessions", "--db", mon.db)
        finally:
            standin.close()
            print(mon.stop())
