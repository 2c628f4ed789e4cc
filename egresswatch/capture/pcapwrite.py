"""Writes classic pcap files (microsecond timestamps): test captures, benchmark inputs, evidence."""

import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
_MAGIC = 0xA1B2C3D4
_SNAPLEN = 262144


class PcapWriter:
    """A pcap file opened for writing; use as a context manager."""

    def __init__(self, path: Path, linktype: int = LINKTYPE_ETHERNET) -> None:
        self._fh: BinaryIO = path.open("wb")
        self._fh.write(struct.pack("<IHHiIII", _MAGIC, 2, 4, 0, 0, _SNAPLEN, linktype))
        self.bytes_written = 24

    def write(self, ts: float, frame: bytes) -> None:
        seconds = int(ts)
        micros = round((ts - seconds) * 1_000_000)
        if micros == 1_000_000:
            seconds, micros = seconds + 1, 0
        self._fh.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)))
        self._fh.write(frame)
        self.bytes_written += 16 + len(frame)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
