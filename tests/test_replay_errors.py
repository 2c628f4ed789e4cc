"""`egresswatch replay` on broken capture files: one line naming the file, exit 2, no traceback."""

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import pytest

FRAME = bytes(60)


def _pcap(count: int) -> bytes:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    return header + b"".join(struct.pack("<IIII", i, 0, 60, 60) + FRAME for i in range(count))


def _corrupt_deflate() -> bytes:
    content = bytearray(gzip.compress(_pcap(500)))
    content[12:20] = bytes(b ^ 0xFF for b in content[12:20])
    return bytes(content)


def _corrupt_record() -> bytes:
    return _pcap(3) + struct.pack("<IIII", 9, 0, 1 << 30, 1 << 30) + b"x" * 64


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("deflate.pcap.gz", _corrupt_deflate(), "corrupt gzip data"),
        ("record.pcap", _corrupt_record(), "corrupt pcap record"),
    ],
)
def test_corrupt_capture_is_one_line_naming_the_file(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "egresswatch", "replay", "--format", "jsonl", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: {reason}")
