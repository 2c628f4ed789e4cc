"""Sessions and alerts through `egresswatch run` in the lab: real clients (curl), a stand-in
Ollama (a real HTTP server process named ollama), a real webhook receiver on loopback."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.receiver import Received, receiver
from tests.lab import Lab
from tests.standin_ollama import install

pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]


def egresswatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "egresswatch", *args]


def cli(*args: str) -> str:
    result = subprocess.run(egresswatch(*args), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def json_lines(*args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli(*args, "--json").splitlines()]


class Monitor:
    """`egresswatch run` with a webhook sink to `hook`, stopped with SIGINT."""

    def __init__(self, tmp_path: Path, hook: Received, idle: float = 120.0) -> None:
        self.db = f"sqlite:///{tmp_path / 'events.db'}"
        config = tmp_path / "config.toml"
        config.write_text(
            f"[sessions]\nidle_seconds = {idle}\n[sinks]\njournald = false\n"
            f"[sinks.webhook]\nurl = '{hook.url}'\nmin_severity = 'info'\n"
        )
        self.proc = subprocess.Popen(
            egresswatch("run", "--db", self.db, "--config", str(config)),
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "recording to" in line, line + self.proc.stderr.read()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return err

    def alerts(self, want: Callable[[dict[str, Any]], bool], timeout: float = 15) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [a for a in json_lines("alerts", "--db", self.db) if want(a)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.3)


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[tuple[Monitor, Received]]:
    with receiver() as hook:
        running = Monitor(tmp_path, hook)
        try:
            yield running, hook
        finally:
            if running.proc.poll() is None:
                running.stop()


def curl(net: Lab, host: str) -> int:
    argv = net.with_dns(["curl", "-4sk", "--max-time", "10", "-o", "/dev/null", f"https://{host}/"])
    proc = subprocess.Popen(argv)
    proc.wait(timeout=30)
    return proc.pid


def test_strict_manual_session_alerts_on_curl_and_ends_with_egress(
    net: Lab, monitor: tuple[Monitor, Received]
) -> None:
    mon, hook = monitor
    curl(net, "api.openai.com")  # before the session: no session alert
    time.sleep(1.0)
    sid = int(cli("session", "start", "--strict", "--label", "lab", "--db", mon.db))
    time.sleep(1.5)  # the service picks open sessions up from the store every second
    curl(net, "api.openai.com")

    def during(alert: dict[str, Any]) -> bool:
        return bool(alert["rule"] == "egress-during-session" and alert["process"] == "curl")

    found = mon.alerts(during)
    assert len(found) == 1, found
    alert = found[0]
    assert alert["session"] == sid and alert["severity"] == "critical"
    assert alert["host"] == "api.openai.com" and alert["category"] == "cloud-llm-api"
    assert alert["exe"].endswith("/curl") and alert["pid"] > 0 and alert["event_id"]
    assert f"during session {sid}" in alert["message"]
    assert {"id", "time", "tool", "count"} <= set(alert)
    assert hook.wait(1)
    assert any(b.get("rule") == "egress-during-session" for b in hook.json_bodies())
    assert cli("session", "stop", str(sid), "--db", mon.db).strip() == f"session {sid}: egress"
    (session,) = [s for s in json_lines("sessions", "--db", mon.db) if s["id"] == sid]
    assert session["verdict"] == "egress" and session["egress"] >= 1 and session["alerts"] >= 1
    assert session["trigger"] == "manual" and session["strict"] is True
    mon.stop()
    outside = [
        a for a in json_lines("alerts", "--db", mon.db) if a["rule"] == "egress-during-session"
    ]
    assert all(a["session"] == sid for a in outside)


def test_exposed_api_and_remote_client(
    net: Lab, monitor: tuple[Monitor, Received], tmp_path: Path
) -> None:
    mon, _hook = monitor
    ollama = install(tmp_path)
    server = subprocess.Popen(
        [str(ollama), "serve", "--listen", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        exposed = mon.alerts(lambda a: a["rule"] == "exposed-api" and a["pid"] == server.pid)
        assert exposed and exposed[0]["tool"] == "Ollama" and exposed[0]["severity"] == "high"
        assert exposed[0]["host"] == f"0.0.0.0:{port}"
        time.sleep(2.5)  # the listener scan runs every 2 s
        url = f"http://{net.host_ip}:{port}/api/tags"
        subprocess.run(net.in_client_ns(["curl", "-s", "-o", "/dev/null", url]), check=True)
        remote = mon.alerts(lambda a: a["rule"] == "remote-client")
        assert remote and remote[0]["host"] == net.client_ip and remote[0]["pid"] == server.pid
    finally:
        server.terminate()
        server.communicate(timeout=10)


def free_port(preferred: int = 11434) -> int:
    """11434 (Ollama's port) unless another test holds it; then a free port below 32768, where
    servers usually listen (tests/test_sessions_lab.py covers a server on an ephemeral port)."""
    for port in (preferred, *random.sample(range(20000, 32768), 50)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port below 32768")


class StandIn:
    """The stand-in Ollama serving on 127.0.0.1; POSTs make its egress (if any)."""

    def __init__(self, tmp_path: Path, *extra: str, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        argv = [str(install(tmp_path)), "serve", "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().startswith("READY")

    def request(self, method: str, path: str) -> None:
        url = f"http://127.0.0.1:{self.port}{path}"
        body = ["-d", '{"model": "llama3", "prompt": "hi"}'] if method == "POST" else []
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", method, *body, url], check=True)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def test_automatic_session_from_an_inference_request(net: Lab, tmp_path: Path) -> None:
    with receiver() as hook:
        mon = Monitor(tmp_path, hook, idle=3.0)
        standin = StandIn(tmp_path, "--egress-host", "api.openai.com", "--connect", net.server_ip)

        def ours() -> list[dict[str, Any]]:
            # Other tests on this machine may run LLM-tool stand-ins too: only the sessions
            # this stand-in serves are this test's.
            sessions = json_lines("sessions", "--db", mon.db)
            return [s for s in sessions if standin.proc.pid in [p["pid"] for p in s["serving"]]]

        try:
            time.sleep(2.5)  # the listener scan has seen the stand-in
            standin.request("GET", "/api/tags")
            time.sleep(1.5)
            assert ours() == []  # housekeeping opens no session
            # The same egress outside a session (the lab's HTTPS client named ollama): no alert.
            outside = subprocess.Popen(
                [
                    str(net.tool_script("ollama")),
                    "https",
                    "api.openai.com",
                    "--connect",
                    net.server_ip,
                ]
            )
            outside.wait(timeout=30)
            standin.request("POST", "/api/generate")
            found = mon.alerts(
                lambda a: a["rule"] == "egress-during-session" and a["pid"] == standin.proc.pid
            )
            alerts = json_lines("alerts", "--db", mon.db)
            assert len(found) == 1, (
                found,
                ours(),
                [(a["pid"], a["rule"], a["host"], a["session"]) for a in alerts],
            )
            alert = found[0]
            (session,) = ours()
            assert session["trigger"] == "auto" and session["tools"] == ["Ollama"]
            assert alert["session"] == session["id"] and alert["tool"] == "Ollama"
            assert alert["host"] == "api.openai.com" and alert["category"] == "cloud-llm-api"
            assert alert["severity"] == "critical"
            assert hook.wait(1) and any(
                b.get("session") == session["id"] for b in hook.json_bodies()
            )
            if len(json_lines("sessions", "--db", mon.db)) == 1:  # no other test's session
                assert not [
                    a for a in alerts if a["pid"] == outside.pid and a["session"] is not None
                ]
            assert wait_for(lambda: ours()[0]["end"] is not None)  # idle_seconds = 3
            (closed,) = ours()
            assert closed["verdict"] == "egress" and closed["egress"] >= 1
        finally:
            standin.close()
            mon.stop()


def test_a_session_with_only_loopback_traffic_ends_clean(tmp_path: Path) -> None:
    with receiver() as hook:
        mon = Monitor(tmp_path, hook, idle=2.0)
        standin = StandIn(tmp_path)
        try:
            time.sleep(2.5)
            standin.request("POST", "/api/chat")
            assert wait_for(lambda: len(json_lines("sessions", "--db", mon.db)) == 1)
            assert wait_for(lambda: json_lines("sessions", "--db", mon.db)[0]["end"] is not None)
            (session,) = json_lines("sessions", "--db", mon.db)
            assert session["verdict"] == "clean" and session["egress"] == 0
            assert session["serving"][0]["pid"] == standin.proc.pid
        finally:
            standin.close()
            mon.stop()


BIG_FILE_SERVER = """
import http.server, sys
size = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(size)); self.end_headers()
        chunk = bytes(1 << 20); left = size
        while left > 0:
            self.wfile.write(chunk[: min(left, len(chunk))]); left -= len(chunk)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("0.0.0.0", 8080), H); print("READY", flush=True); srv.serve_forever()
"""


def test_untrusted_model_source_for_a_60_mb_download(net: Lab, tmp_path: Path) -> None:
    files = subprocess.Popen(
        ["ip", "netns", "exec", net.internet_ns, sys.executable, "-c", BIG_FILE_SERVER, "60000000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert files.stdout is not None and files.stdout.readline().startswith("READY")
    url = f"http://{net.server_ip}:8080/model.gguf"
    with receiver() as hook:
        mon = Monitor(tmp_path, hook)
        standin = StandIn(tmp_path, "--download", url)
        try:
            time.sleep(2.5)
            standin.request("POST", "/api/pull")  # not an inference route: no session
            found = mon.alerts(lambda a: a["rule"] == "untrusted-model-source")
            assert len(found) == 1, found
            alert = found[0]
            assert alert["pid"] == standin.proc.pid and alert["tool"] == "Ollama"
            assert alert["host"] == net.server_ip and alert["severity"] == "high"
            assert "received 60.0 MB" in alert["message"]
            assert json_lines("sessions", "--db", mon.db) == []
        finally:
            standin.close()
            mon.stop()
            files.terminate()
            files.communicate(timeout=10)


def test_agent_jsonl_carries_the_category_from_the_same_classify_step(net: Lab) -> None:
    agent = subprocess.Popen(
        egresswatch("agent", "--jsonl"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(2.0)  # capture is open
        pid = curl(net, "api.openai.com")
        time.sleep(1.0)
    finally:
        agent.send_signal(signal.SIGINT)
        out, _err = agent.communicate(timeout=30)
    mine = [json.loads(line) for line in out.splitlines() if f'"pid":{pid},' in line]
    hellos = [e for e in mine if e["kind"] == "tls"]
    assert hellos and hellos[0]["category"] == "cloud-llm-api", mine
    lookups = [e for e in mine if e["kind"] == "dns" and not e["is_response"]]
    assert all(e["category"] == "cloud-llm-api" for e in lookups)
