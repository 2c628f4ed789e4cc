"""The agent's log records as structured journal entries, to a real AF_UNIX datagram socket
standing in for journald; $JOURNAL_STREAM decides whether they go there."""

import logging
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.journal_logging import JournalHandler, configure_logging, stderr_is_journal


def parse_fields(data: bytes) -> dict[str, str]:
    """The native protocol read back: KEY=value lines and KEY\\n<le64>binary\\n entries."""
    fields, at = {}, 0
    while at < len(data):
        line_end = data.index(b"\n", at)
        line = data[at:line_end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            at = line_end + 1
        else:
            (size,) = struct.unpack_from("<Q", data, line_end + 1)
            key, value = line, data[line_end + 9 : line_end + 9 + size]
            at = line_end + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "journal")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def test_a_record_becomes_structured_fields(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    handler = JournalHandler(path)
    logger = logging.getLogger("egresswatch.test-journal")
    logger.addHandler(handler)
    try:
        logger.warning("cannot write the agent status: %s", "evil\nPRIORITY=0")
    finally:
        logger.removeHandler(handler)
        handler.close()
    fields = parse_fields(sock.recv(65536))
    assert fields["MESSAGE"] == "cannot write the agent status: evil\nPRIORITY=0"
    assert fields["PRIORITY"] == "4"  # the injected line stayed inside MESSAGE
    assert fields["EGRESSWATCH_LOGGER"] == "egresswatch.test-journal"
    assert fields["CODE_FUNC"] == "test_a_record_becomes_structured_fields"
    assert fields["SYSLOG_IDENTIFIER"] == "egresswatch"


def test_a_vanished_journal_is_counted(tmp_path: Path) -> None:
    handler = JournalHandler(str(tmp_path / "gone"))
    handler.emit(logging.makeLogRecord({"msg": "x", "levelname": "INFO"}))
    handler.close()
    assert handler.failures == 1


def test_journal_stream_must_name_stderr(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        info = os.fstat(stream.fileno())
        named = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert stderr_is_journal(named, stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "1:2"}, stream.fileno())
    assert configure_logging({}) is None
