"""Bytes received per TCP connection from the kernel's destroy broadcast, over real sockets."""

import socket
import threading
import time

import pytest

from egresswatch.alerts.transfers import TcpCloseWatch, parse_destroyed
from egresswatch.model import FlowKey


def test_a_closed_connection_reports_what_it_received() -> None:
    got: list[tuple[FlowKey, int]] = []
    stop = threading.Event()
    watch = TcpCloseWatch(lambda flow, n: got.append((flow, n)), stop)
    if not watch.open():
        pytest.skip(watch.error or "no sock_diag broadcast")
    watch.start()
    try:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            local, port = client.getsockname(), listener.getsockname()[1]
            server.sendall(b"x" * 300_000)
            received = 0
            while received < 300_000:
                received += len(client.recv(1 << 16))
            client.close()
            server.close()
        flow = FlowKey("tcp", "127.0.0.1", local[1], "127.0.0.1", port)
        deadline = time.monotonic() + 5
        while flow not in dict(got) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 300_000 <= dict(got)[flow] <= 300_001  # a FIN counts as one
    finally:
        stop.set()
        watch.join(2)


def test_malformed_broadcasts_yield_nothing() -> None:
    assert list(parse_destroyed(b"")) == []
    assert list(parse_destroyed(b"\xff" * 15)) == []
    assert list(parse_destroyed(b"\x10\x00\x00\x00\x14\x00" + bytes(10))) == []  # too short
    assert list(parse_destroyed(b"\xff\xff\xff\xff" + bytes(12))) == []  # length past the end
