"""The agent's own log records as structured journal entries (PRIORITY, CODE_*, LOGGER, THREAD)
over the native protocol, reusing the alert sink's encoder, when systemd connected stderr to
the journal ($JOURNAL_STREAM); elsewhere logging is left as it is (stderr).
"""

import logging
import os
import socket
from collections.abc import Mapping

from egresswatch.alerts.journal import JOURNAL_SOCKET, encode_fields

SYSLOG_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    return {
        "MESSAGE": record.getMessage(),
        "PRIORITY": str(SYSLOG_PRIORITY.get(record.levelname, 6)),
        "SYSLOG_IDENTIFIER": "egresswatch",
        "CODE_FILE": str(record.pathname or ""),
        "CODE_LINE": str(record.lineno or ""),
        "CODE_FUNC": str(record.funcName or ""),
        "EGRESSWATCH_LOGGER": str(record.name or ""),
        "EGRESSWATCH_THREAD": record.threadName or "",
    }


class JournalHandler(logging.Handler):
    """Sends each record as one datagram to the journal socket; a failed send is counted."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.path = path
        self.failures = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = encode_fields(record_fields(record))
        except (TypeError, ValueError):  # a bad format string: logging's own reporting
            self.handleError(record)
            return
        try:
            self._sock.sendto(payload, self.path)
        except OSError:
            self.failures += 1

    def close(self) -> None:
        self._sock.close()
        super().close()


def stderr_is_journal(environ: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """$JOURNAL_STREAM ("device:inode") names the stream stderr is connected to."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stderr_fd)
    except OSError:
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def configure_logging(environ: Mapping[str, str] | None = None) -> JournalHandler | None:
    """Route the `egresswatch` loggers to the journal when running under systemd."""
    env = os.environ if environ is None else environ
    if not stderr_is_journal(env):
        return None
    handler = JournalHandler(env.get("EGRESSWATCH_JOURNAL_SOCKET", JOURNAL_SOCKET))
    logger = logging.getLogger("egresswatch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
