"""The `egresswatch` command as a user runs it: help, version, replay on good and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dns.message
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from egresswatch import __version__
from egresswatch.capture.pcapwrite import PcapWriter
from egresswatch.classify.catalog import packaged_catalog_text
from egresswatch.cli.version import catalog_date


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "egresswatch", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def _hostile_capture(path: Path) -> None:
    """A DNS query whose name carries a terminal escape, rich markup and a non-ASCII byte."""
    query = dns.message.make_query("x", "A", id=4242)
    wire = bytearray(query.to_wire())
    name = b"\x12evil\x1b[31m[b]\x09\xffhost\x04test\x00"
    wire[12:15] = name  # replace the one-label question name "x"
    frame = Ether() / IP(src="10.199.1.1", dst="10.199.1.53") / UDP(sport=40000, dport=53)
    with PcapWriter(path) as out:
        out.write(1_700_000_000.25, bytes(frame / bytes(wire)))


def test_help_lists_replay() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "replay" in result.stdout


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    date = catalog_date(packaged_catalog_text())
    assert date is not None and len(date) == 10
    assert result.stdout.strip() == f"egresswatch {__version__} (catalog {date})"


def test_replay_rejects_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a capture\n" * 10)
    result = _run("replay", str(bogus))
    assert result.returncode == 2
    assert "error" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_jsonl_is_ascii_and_keeps_hostile_name_faithfully(tmp_path: Path) -> None:
    pcap = tmp_path / "hostile.pcap"
    _hostile_capture(pcap)
    result = _run("replay", "--format", "jsonl", str(pcap))
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii()
    assert "\x1b" not in result.stdout
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["kind"] == "dns" and record["id"] == 4242 and record["ts"] == 1_700_000_000.25
    assert record["qname"] == "evil\\027[31m[b]\\009\\255host.test"


def test_table_escapes_control_characters_and_markup(tmp_path: Path) -> None:
    pcap = tmp_path / "hostile.pcap"
    _hostile_capture(pcap)
    result = _run("replay", "--format", "table", str(pcap))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "[b]" in result.stdout  # markup shown literally, not interpreted
    assert "10.199.1.53:53" in result.stdout
