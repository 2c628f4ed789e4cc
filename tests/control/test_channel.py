"""The control channel end to end: a real socket, the real control server and the store's
single writer; hostile and malformed input get one clear JSON answer each.
"""

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from egresswatch.control.client import ControlClient, ControlUnavailable
from egresswatch.control.protocol import MAX_LINE, ControlError
from egresswatch.control.server import ControlServer
from egresswatch.report.signed import verify_report
from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import get_session
from tests.control.agent import Agent, ask_as


def client(agent: Agent) -> ControlClient:
    return ControlClient(agent.control.path)


def answer(raw: bytes) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(raw)
    return decoded


def test_socket_is_group_only_beside_the_store(agent: Agent) -> None:
    st = agent.control.path.stat()
    assert agent.control.path == agent.db.with_name("events.db.control")
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == 65534  # the dashboard user's (nobody's) group, as `run` makes it


def test_acknowledge_goes_through_the_single_writer(agent: Agent) -> None:
    open_alerts = list_alerts(agent.store.engine, AlertFilter(only_open=True))
    first = open_alerts[0].id
    assert first is not None
    before = agent.jobs_done()
    done = client(agent).acknowledge([first, 987654])
    still_open = list_alerts(agent.store.engine, AlertFilter(only_open=True))
    assert done == [first]
    assert [a.id for a in still_open] == [a.id for a in open_alerts[1:]]
    assert agent.jobs_done() == before + 1


def test_start_and_stop_a_session(agent: Agent) -> None:
    channel = client(agent)
    sid = channel.start_session("bench <b>", True, ("ollama",))
    started = get_session(agent.store.engine, sid)
    first = channel.stop_session(sid)
    again = channel.stop_session(sid)
    assert started is not None and started.label == "bench <b>" and started.strict
    assert started.tools == ("ollama",) and started.trigger == "manual" and started.end is None
    assert first == (sid, "clean") and again == (sid, None)


def test_stop_without_id_ends_the_newest_manual_session(agent: Agent) -> None:
    channel = client(agent)
    sid = channel.start_session(None, False, ())
    assert channel.stop_session(None) == (sid, "clean")
    assert channel.stop_session(None) == (None, None)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json\n", "bad_json"),
        (b"\xff\xfe\n", "bad_json"),
        (b"[1, 2]\n", "bad_json"),
        (b'{"cmd": "drop_tables"}\n', "unknown_command"),
        (b'{"cmd": "ack", "ids": []}\n', "bad_request"),
        (b'{"cmd": "ack", "ids": [true]}\n', "bad_request"),
        (b'{"cmd": "ack", "ids": ["1"]}\n', "bad_request"),
        (b'{"cmd": "ack", "ids": [0]}\n', "bad_request"),
        (b'{"cmd": "session_start", "label": 5}\n', "bad_request"),
        (b'{"cmd": "session_start", "tools": "ollama"}\n', "bad_request"),
        (b'{"cmd": "session_stop", "session": 1.5}\n', "bad_request"),
        (b'{"cmd": "ack", "ids": [' + b"1," * 2000 + b"1]}\n", "bad_request"),
        (b'{"cmd": "session_start", "label": "' + b"a" * MAX_LINE + b'"}\n', "too_large"),
        (b"x" * (MAX_LINE * 4), "too_large"),
    ],
)
def test_malformed_requests_get_a_clear_error(agent: Agent, raw: bytes, code: str) -> None:
    before = agent.jobs_done()
    got = answer(agent.send(raw))
    assert got["ok"] is False and got["error"] == code and got["detail"]
    assert agent.jobs_done() == before  # nothing reached the store


def test_a_request_without_newline_is_refused(agent: Agent) -> None:
    got = answer(agent.send(b'{"cmd": "session_stop"}', shut=True))
    assert got["error"] == "bad_request"


def test_a_silent_client_times_out(agent: Agent) -> None:
    agent.control.timeout = 0.3
    got = answer(agent.send(b""))
    assert got["error"] == "timeout"


def test_the_agent_keeps_serving_after_hostile_input(agent: Agent) -> None:
    for raw in (b"\x00" * 100 + b"\n", b"}" * (MAX_LINE + 10)):
        agent.send(raw)
    assert client(agent).start_session("after", False, ()) > 0


def test_a_peer_with_another_uid_is_refused(agent: Agent) -> None:
    # uid 65000 is in the socket's group (so it may connect) but is not an allowed peer.
    done = ask_as(agent.control.path, "--reuid=65000", "--regid=65534")
    assert done.returncode == 0, done.stderr
    got = answer(done.stdout.encode())
    assert got["error"] == "forbidden" and "65000" in str(got["detail"])
    assert agent.control.counters().snapshot()["control.refused.peer"] == 1


def test_others_cannot_even_connect(agent: Agent) -> None:
    code = "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    done = subprocess.run(
        ["setpriv", "--reuid=65000", "--regid=65000", "--clear-groups", "/usr/bin/python3",
         "-c", code, str(agent.control.path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "PermissionError" in done.stderr


def test_no_agent_is_unavailable_and_a_stale_socket_is_replaced(agent: Agent) -> None:
    path = agent.control.path
    agent.control.close()
    with pytest.raises(ControlUnavailable):
        client(agent).acknowledge([1])
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a killed agent leaves it
    again = ControlServer(path, agent.store.writer(), {os.geteuid()}, None)
    again.open()
    again.start()
    try:
        assert client(agent).start_session(None, False, ()) > 0
    finally:
        again.close()


def test_a_second_agent_on_the_same_socket_is_refused(agent: Agent) -> None:
    second = ControlServer(agent.control.path, agent.store.writer(), {0}, None)
    with pytest.raises(OSError, match="already listens"):
        second.open()


def test_store_failures_are_answers(agent: Agent) -> None:
    agent.store.writer().close()  # the writer takes no more jobs
    with pytest.raises(ControlError) as caught:
        client(agent).start_session(None, False, ())
    assert caught.value.code == "busy"


def test_a_refused_peer_counts_as_no_agent(agent: Agent) -> None:
    # The caller then writes directly if it may (e.g. the store's owner running `egresswatch web`).
    agent.control.allowed_uids = frozenset({12345})
    with pytest.raises(ControlUnavailable, match="may not control this agent"):
        client(agent).start_session(None, False, ())


def test_report_sign_builds_and_signs_without_the_writer(
    agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESSWATCH_REPORT_KEY", str(tmp_path / "key.pem"))
    sid = client(agent).start_session("to report", False, ())
    before = agent.jobs_done()
    data = client(agent).sign_report(sid, "json")
    unknown = agent.send(b'{"cmd":"report.sign","session":987654,"format":"md"}\n')
    bad_format = agent.send(b'{"cmd":"report.sign","session":1,"format":"pdf"}\n')
    bad_id = agent.send(b'{"cmd":"report.sign","session":"1"}\n')
    assert agent.jobs_done() == before  # a read: the single writer is not used
    verdict = verify_report(data, agent.store.engine)
    assert verdict.ok and verdict.session == sid, verdict.problems
    assert answer(unknown)["error"] == "not_found"
    assert answer(bad_format)["error"] == "bad_request" and "format" in str(answer(bad_format))
    assert answer(bad_id)["error"] == "bad_request"
