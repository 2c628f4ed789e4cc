"""sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.sdnotify import Notifier


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def test_ready_and_watchdog_reach_the_socket(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("capturing on all\ninterfaces")
    assert sock.recv(4096) == b"READY=1\nSTATUS=capturing on all interfaces"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_name() -> None:
    name = f"egresswatch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert notifier.failures == 0


def test_a_vanished_socket_is_counted(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.watchdog()
    assert notifier.failures == 1


def test_watchdog_interval_is_half_the_period() -> None:
    own = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": own}).heartbeat_interval() == 15
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).heartbeat_interval() is None
    assert Notifier({"WATCHDOG_USEC": "0"}).heartbeat_interval() is None
