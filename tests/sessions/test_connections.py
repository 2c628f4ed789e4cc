"""An automatic session's client connections on real loopback sockets: open while the kernel
has them, closed by the TCP-destroy broadcast or, when that was missed, by the kernel table."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.model import FlowKey, ProcessRef
from egresswatch.sessions.connections import OpenConnections, is_open, live_tcp
from egresswatch.sessions.tracker import SessionTracker
from egresswatch.store import open_store
from egresswatch.store.sessions import get_session

SERVER = ProcessRef(812, "ollama", "/usr/bin/ollama")


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket, FlowKey]]:
    """A real loopback TCP connection and its client -> server flow."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        src, sport = client.getsockname()
        dst, dport = listener.getsockname()
        yield client, accepted, FlowKey("tcp", src, sport, dst, dport)
        client.close()
        accepted.close()


def test_the_kernel_table_knows_an_open_connection_from_either_end(
    connection: tuple[socket.socket, socket.socket, FlowKey],
) -> None:
    client, accepted, flow = connection
    assert is_open(flow, live_tcp()) and is_open(flow.reversed(), live_tcp())
    client.close()
    accepted.close()
    assert not is_open(flow, live_tcp())


def test_a_close_seen_from_the_server_end_closes_the_clients_connection() -> None:
    conns = OpenConnections(live=set)
    flow = FlowKey("tcp", "127.0.0.1", 40000, "127.0.0.1", 11434)
    assert conns.opened(7, flow, 10.0) is None
    assert conns.counts_open(7)
    assert conns.closed(flow.reversed(), 12.0) == 7
    assert not conns.counts_open(7)
    assert conns.closed(flow, 12.1) is None  # the other end's close: already settled


def test_a_close_that_arrives_before_its_request_is_remembered() -> None:
    conns = OpenConnections(live=set)
    flow = FlowKey("tcp", "127.0.0.1", 40001, "127.0.0.1", 11434)
    assert conns.closed(flow.reversed(), 5.0) is None
    assert conns.opened(3, flow, 4.9) == 5.0
    assert not conns.counts_open(3)
    conns.closed(flow, 6.0)  # an old connection of the same 5-tuple: not the new one's close
    assert conns.opened(3, flow, 9.0) is None
    assert conns.counts_open(3)


def test_a_session_lasts_while_its_connection_streams_then_idles_from_the_close(
    tmp_path: Path, connection: tuple[socket.socket, socket.socket, FlowKey]
) -> None:
    _client, _accepted, flow = connection
    store = open_store(str(tmp_path / "events.db"))
    clock = [time.time()]
    tracker = SessionTracker(store.writer(), store.engine, 10.0, clock=lambda: clock[0])
    opened = tracker.inference("Ollama", SERVER, None, None, clock[0], flow=flow)
    assert opened is not None
    clock[0] += 60
    assert tracker.expire() == []  # a long generation: the connection is still open
    tracker.connection_closed(flow, clock[0])
    assert tracker.expire() == []  # idle counts from the close
    clock[0] += 11
    assert tracker.expire() == [opened.id]
    store.writer().flush()
    closed = get_session(store.engine, opened.id)
    assert closed is not None and closed.end == pytest.approx(opened.start + 60)
    store.close()


def test_a_close_the_broadcast_missed_is_found_in_the_kernel_table(
    tmp_path: Path, connection: tuple[socket.socket, socket.socket, FlowKey]
) -> None:
    client, accepted, flow = connection
    store = open_store(str(tmp_path / "events.db"))
    clock = [time.time()]
    tracker = SessionTracker(store.writer(), store.engine, 10.0, clock=lambda: clock[0])
    opened = tracker.inference("Ollama", SERVER, None, None, clock[0], flow=flow)
    assert opened is not None
    clock[0] += 30
    assert tracker.expire() == []  # seen open at +30
    client.close()
    accepted.close()
    clock[0] += 1
    assert tracker.expire() == []  # gone, last seen open at +30: idle until +40
    clock[0] += 10
    assert tracker.expire() == [opened.id]
    store.writer().flush()
    closed = get_session(store.engine, opened.id)
    assert closed is not None and closed.end == pytest.approx(opened.start + 30)
    store.close()
