"""The sd_notify datagram protocol: READY=1, WATCHDOG=1, STATUS= and STOPPING=1 sent to the socket
named by $NOTIFY_SOCKET (a path, or an abstract name starting with '@'). Without the variable
every call is a no-op, so the agent runs the same outside systemd.
"""

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends state lines to systemd; counts the datagrams that could not be sent."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_usec = _watchdog_usec(env)
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **state: str) -> bool:
        """Send `KEY=value` lines in one datagram; False (and counted) if it could not be sent."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in state.items())
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(payload.encode("utf-8", "backslashreplace"), self.address)
            except OSError:
                self.failures += 1
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY="1", STATUS=_one_line(status))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG="1")

    def stopping(self) -> bool:
        return self.notify(STOPPING="1")

    def heartbeat_interval(self) -> float | None:
        """Half the watchdog period in seconds (as sd_watchdog_enabled advises), or None."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6


def _address(value: str) -> str | bytes | None:
    if not value or value[0] not in "/@":
        return None
    return b"\0" + value[1:].encode() if value[0] == "@" else value


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """$WATCHDOG_USEC when it is meant for this process ($WATCHDOG_PID unset or ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec)


def _one_line(text: str) -> str:
    return text.replace("\n", " ")
