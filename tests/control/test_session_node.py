"""A manual session carries the node of the agent it is for, whichever way it was started (the
control channel, `session start` without an agent, `POST /api/sessions`), and an agent's
tracker on another node does not adopt it. On SQLite and a real PostgreSQL store."""

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from egresswatch.control.client import ControlClient
from egresswatch.control.protocol import ENV_PATH
from egresswatch.control.server import ControlServer, for_agent
from egresswatch.sessions.tracker import SessionTracker
from egresswatch.store import Store, open_store
from egresswatch.store.sessions import get_session
from tests.api.server import egresswatch, web_server
from tests.store.factory import backend_url


@dataclass
class NodeAgent:
    url: str
    store: Store
    control: ControlServer

    def node_of(self, sid: int) -> str | None:
        session = get_session(self.store.engine, sid)
        assert session is not None and session.trigger == "manual" and session.end is None
        return session.node

    def adopted_by(self, node: str) -> set[int]:
        tracker = SessionTracker(self.store.writer(), self.store.engine, 60.0, node=node)
        tracker.refresh()
        return {s.id for s in tracker.open_sessions}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def box_a(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NodeAgent]:
    """The agent of node box-a on a fresh store, its control socket listening; this host's
    settings (which the CLI and the dashboard read) name another node, box-settings."""
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "control.sock"))
    monkeypatch.setenv("EGRESSWATCH_NODE", "box-settings")
    (tmp_path / "config.toml").write_text("")  # not the host's /etc/egresswatch/config.toml
    monkeypatch.setenv("EGRESSWATCH_CONFIG", str(tmp_path / "config.toml"))
    url = backend_url(request.param, tmp_path)
    store = open_store(url)
    control = for_agent(url, store.writer(batch_interval=0.02), store.engine, node="box-a")
    control.open()
    control.start()
    try:
        yield NodeAgent(url, store, control)
    finally:
        control.close()
        store.close()


def test_control_channel_sessions_carry_the_agents_node(box_a: NodeAgent) -> None:
    client = ControlClient(box_a.control.path)
    own = client.start_session("mine", False, ())
    other = client.start_session("for b", True, ("ollama",), "box-b")
    via_cli = int(egresswatch("session", "start", "--db", box_a.url).stdout)
    assert [box_a.node_of(s) for s in (own, other, via_cli)] == ["box-a", "box-b", "box-a"]
    assert box_a.adopted_by("box-a") == {own, via_cli}
    assert box_a.adopted_by("box-b") == {other}
    assert box_a.adopted_by("box-c") == set()
    # `session stop` without an id stops this agent's newest, not another node's newer one
    stopped = egresswatch("session", "stop", "--db", box_a.url).stdout
    assert stopped.strip() == f"session {via_cli}: clean" and box_a.node_of(other) == "box-b"


def test_control_channel_refuses_a_bad_node(box_a: NodeAgent) -> None:
    for bad in ("", " edge", "a\nb", "x" * 254, 7):
        line = json.dumps({"cmd": "session_start", "node": bad}) + "\n"
        answer = _send(box_a.control.path, line.encode())
        assert b'"bad_request"' in answer and b"node:" in answer, (bad, answer)


def _send(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        return sock.makefile("rb").readline()


def test_cli_without_an_agent_uses_the_settings_node(box_a: NodeAgent) -> None:
    box_a.control.close()
    plain = int(egresswatch("session", "start", "--db", box_a.url).stdout)
    named = int(egresswatch("session", "start", "--node", "box-b", "--db", box_a.url).stdout)
    bad = egresswatch("session", "start", "--node", " x", "--db", box_a.url, check=False)
    assert box_a.node_of(plain) == "box-settings" and box_a.node_of(named) == "box-b"
    assert bad.returncode == 2 and "--node" in bad.stderr
    assert box_a.adopted_by("box-a") == set()
    assert box_a.adopted_by("box-settings") == {plain}
    stopped = egresswatch("session", "stop", "--db", box_a.url).stdout
    assert stopped.strip() == f"session {plain}: clean" and box_a.node_of(named) == "box-b"


def test_dashboard_sessions_carry_the_asked_or_the_local_node(box_a: NodeAgent) -> None:
    with web_server(box_a.url) as web, web.client() as client:
        origin = {"Origin": web.url}
        by_agent = client.post("/api/sessions", json={}, headers=origin)
        for_b = client.post("/api/sessions", json={"node": "box-b"}, headers=origin)
        bad = client.post("/api/sessions", json={"node": "a\tb"}, headers=origin)
        box_a.control.close()  # the agent stops: the dashboard writes directly
        direct = client.post("/api/sessions", json={"label": "d"}, headers=origin)
        direct_b = client.post("/api/sessions", json={"node": "box-b"}, headers=origin)
    answers = [by_agent, for_b, direct, direct_b]
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert [a.json()["node"] for a in answers] == ["box-a", "box-b", "box-settings", "box-b"]
    assert [box_a.node_of(a.json()["id"]) for a in answers] == [
        "box-a", "box-b", "box-settings", "box-b"
    ]  # fmt: skip
    assert bad.status_code == 422 and "node" in bad.json()["detail"]
    assert box_a.adopted_by("box-b") == {for_b.json()["id"], direct_b.json()["id"]}
    assert box_a.adopted_by("box-a") == {by_agent.json()["id"]}
