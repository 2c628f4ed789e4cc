"""The desktop sink against a real `dbus-daemon --session` owned by an unprivileged user: the
Notify call, sent by gdbus as that user, reaches the bus (seen by dbus-monitor)."""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from egresswatch.alerts.desktop import DesktopSink, UserBus, gvariant_string, logged_in_buses
from egresswatch.model import Alert

NOBODY = 65534
ALERT = Alert(
    "egress-during-session",
    "critical",
    1.0,
    "ollama (pid 812) contacted <b>evil</b>'\x1b[31m.example during session 7",
    id=5,
)


def as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[tuple[UserBus, Callable[[], str]]]:
    if os.geteuid() != 0 or not all(map(shutil.which, ("dbus-daemon", "dbus-monitor", "gdbus"))):
        pytest.skip("needs root, dbus-daemon, dbus-monitor and gdbus")
    with tempfile.TemporaryDirectory(prefix="ew-dbus-") as where:  # pytest's tmp is root-only
        Path(where).chmod(0o777)
        yield from _bus(Path(where), tmp_path / "monitor.txt")


def _bus(where: Path, log: Path) -> Iterator[tuple[UserBus, Callable[[], str]]]:
    socket_path = where / "bus"
    address = f"unix:path={socket_path}"
    daemon = subprocess.Popen(
        as_nobody(["dbus-daemon", "--session", "--nofork", f"--address={address}"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with log.open("w") as out:
        monitor = subprocess.Popen(as_nobody(["dbus-monitor", "--address", address]), stdout=out)
        time.sleep(0.5)

        def seen() -> str:  # dbus-monitor writes a file in blocks: read it after it exits
            time.sleep(0.5)
            monitor.terminate()
            monitor.wait(5)
            return log.read_text()

        try:
            yield UserBus(NOBODY, NOBODY, address), seen
        finally:
            monitor.terminate()
            monitor.wait(5)
            daemon.terminate()
            daemon.wait(5)


def test_a_notification_reaches_a_real_session_bus_as_the_user(
    session_bus: tuple[UserBus, Callable[[], str]],
) -> None:
    bus, read_monitor = session_bus
    sink = DesktopSink(buses=lambda: [bus])
    sink.send(ALERT)  # no notification daemon owns the name here: the bus answers ServiceUnknown
    seen = read_monitor()
    assert "member=Notify" in seen
    assert 'string "egresswatch: egress-during-session (critical)"' in seen
    assert "&lt;b&gt;evil&lt;/b&gt;'\\x1b[31m.example" in seen  # markup and escapes neutralised
    assert "\x1b" not in seen
    assert sink.counters.snapshot().get("sinks.desktop.refused") == 1


def test_gvariant_strings_and_logged_in_buses(tmp_path: Path) -> None:
    assert gvariant_string("it's a \\ <test>") == "'it\\'s a \\\\ &lt;test&gt;'"
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "bus").touch()
    (tmp_path / "notauid").mkdir()
    (tmp_path / "notauid" / "bus").touch()
    assert logged_in_buses(tmp_path) == [UserBus(0, 0, f"unix:path={tmp_path}/0/bus")]
