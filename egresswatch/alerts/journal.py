"""The journald sink: structured fields over the native journal protocol; one escaped stderr
line per alert where there is no journal socket."""

import os
import socket
import struct
import sys
from dataclasses import dataclass

from egresswatch.model import Alert
from egresswatch.output import printable

JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}


def journal_fields(alert: Alert) -> dict[str, str]:
    fields = {
        "MESSAGE": alert.message,
        "PRIORITY": str(PRIORITY[alert.severity]),
        "SYSLOG_IDENTIFIER": "egresswatch",
        "EGRESSWATCH_ALERT_ID": str(alert.id),
        "EGRESSWATCH_RULE": alert.rule,
        "EGRESSWATCH_SEVERITY": alert.severity,
    }
    optional = {
        "EGRESSWATCH_SESSION": alert.session,
        "EGRESSWATCH_TOOL": alert.tool,
        "EGRESSWATCH_PID": alert.pid,
        "EGRESSWATCH_EXE": alert.exe,
        "EGRESSWATCH_HOST": alert.host,
        "EGRESSWATCH_CATEGORY": alert.category,
        "EGRESSWATCH_EVENT_ID": alert.event_id,
    }
    fields.update({k: str(v) for k, v in optional.items() if v is not None})
    return fields


def encode_fields(fields: dict[str, str]) -> bytes:
    """The native protocol: KEY=value lines; values with newlines as KEY\\n<le64 length>value."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "backslashreplace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


@dataclass
class JournalSink:
    """Sends to `path` (the journal's socket); falls back to stderr when it is absent."""

    path: str = JOURNAL_SOCKET
    name: str = "journald"

    def send(self, alert: Alert) -> bool:
        if not os.path.exists(self.path):
            return self._stderr(alert)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(encode_fields(journal_fields(alert)), self.path)
            except OSError:
                return self._stderr(alert)
        return True

    def _stderr(self, alert: Alert) -> bool:
        sys.stderr.write(
            f"egresswatch alert {alert.id} [{alert.severity}] {alert.rule}: "
            f"{printable(alert.message)}\n"
        )
        sys.stderr.flush()
        return True
