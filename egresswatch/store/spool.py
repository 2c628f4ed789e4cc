"""The writer's local spool: batches the store could not take, on disk, bounded, drained in order.

File format (docs/fleet.md, "Spool"): a sequence of records, each
`MAGIC (4 bytes) | payload length (u32 BE) | CRC-32 of the payload (u32 BE) | payload`, the payload
a pickle of `(batch_id, events)`. Records are only appended; drained ones are skipped by an
in-memory head and the file is truncated to zero once all are drained (or compacted when the
drained prefix grows large). On open the file is scanned: a torn tail (a record cut short by
`kill -9` or power loss) is counted as `spool.torn` and truncated; a record whose checksum or
payload is bad is counted as `spool.corrupt` and skipped (the scan resynchronises on the next
MAGIC). Neither ever stops the agent.

The bound is on live bytes: an append that would exceed `max_bytes` is refused and its events
counted as `spool.dropped` -- the NEWEST are dropped, so what is kept is an unbroken stretch of
the oldest events, drained oldest first.

Payloads are unpickled with an allow-list of egresswatch.model classes only: the file lives in
the agent's own state directory (mode 0750), and even a tampered file cannot name any other code.
"""

import hashlib
import io
import mmap
import os
import pickle
import struct
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egresswatch import model
from egresswatch.counters import Counters
from egresswatch.model import Event

MAGIC = b"EWSP"
HEADER = struct.Struct(">4sII")
DEFAULT_MAX_BYTES = 256 << 20
FSYNC_INTERVAL = 1.0
_ALLOWED = frozenset(
    name for name, value in vars(model).items() if isinstance(value, type) and name[0].isupper()
)


def spool_path(directory: Path, url: str) -> Path:
    """The spool of the store at `url`: one file per store, so two stores never mix."""
    tag = hashlib.sha256(url.encode()).hexdigest()[:16]
    return directory / "spool" / f"{tag}.spool"


class SpoolError(ValueError):
    """A record's payload is not a spooled batch."""


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "egresswatch.model" and name in _ALLOWED:
            return getattr(model, name)
        raise SpoolError(f"spool record names {module}.{name}, not an event class")


def encode(batch_id: str, events: Sequence[Event]) -> bytes:
    """One record: header and payload."""
    payload = pickle.dumps((batch_id, list(events)), protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> tuple[str, list[Event]]:
    """`(batch_id, events)` from a payload; SpoolError when it is not one."""
    try:
        value = _ModelUnpickler(io.BytesIO(payload)).load()
    except SpoolError:
        raise
    except Exception as exc:  # any unpickling failure of a damaged record is the same to us
        raise SpoolError(f"unreadable spool record: {exc!r}") from exc
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], list)
        or not all(isinstance(e, Event) for e in value[1])
    ):
        raise SpoolError("spool record is not (batch id, [Event, ...])")
    return value[0], value[1]


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    size: int  # header + payload
    events: int  # -1 when unknown (found on open; decoded when drained)


@dataclass
class ScanResult:
    records: list[tuple[int, int]]  # (offset, size)
    corrupt: int
    torn: int
    end: int  # where the valid data ends (the file is truncated here)


def scan(data: bytes | mmap.mmap) -> ScanResult:
    """The valid records of a spool image, and what was wrong with the rest."""
    records: list[tuple[int, int]] = []
    corrupt = torn = 0
    pos, size = 0, len(data)
    while pos < size:
        if size - pos < HEADER.size:
            torn += 1
            break
        magic, length, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if magic == MAGIC and end <= size and zlib.crc32(data[pos + HEADER.size : end]) == crc:
            records.append((pos, end - pos))
            pos = end
            continue
        following = data.find(MAGIC, pos + 1)
        if following < 0:
            # nothing valid after it: the last append was cut short
            torn += 1
            break
        corrupt += 1
        pos = following
    else:
        return ScanResult(records, corrupt, torn, size)
    return ScanResult(records, corrupt, torn, pos)


class Spool:
    """Append-only batches on disk; not thread-safe (the writer thread owns it)."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.counters = Counters()
        self._records: deque[_Record] = deque()
        self._live = 0
        self._head = 0  # bytes of drained records at the start of the file
        self._synced_at = 0.0
        self._dirty = False
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._recover()

    def _recover(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with mmap.mmap(self._fd, size, access=mmap.ACCESS_READ) as data:
            found = scan(data)
        self.counters.add("spool.corrupt", found.corrupt)
        self.counters.add("spool.torn", found.torn)
        if found.corrupt or found.torn:
            # rewrite only the good records, so a bad one is reported once, not at every start
            self._rewrite([(off, n) for off, n in found.records])
        else:
            self._records.extend(_Record(off, n, -1) for off, n in found.records)
            self._live = sum(n for _, n in found.records)

    # -- producer --------------------------------------------------------------------------

    def append(self, batch_id: str, events: Sequence[Event]) -> bool:
        """Spool one batch; False (its events counted in spool.dropped) when over the bound
        or when the disk refuses it."""
        record = encode(batch_id, events)
        if self._live + len(record) > self.max_bytes:
            self.counters.add("spool.dropped", len(events))
            return False
        if self._head and self._head >= self._live and self._head > self.max_bytes // 4:
            try:
                self._compact()
            except OSError:  # the old file is intact: carry on appending to it
                self.counters.add("spool.write_errors")
        offset = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            _write_all(self._fd, record)
        except OSError:
            os.ftruncate(self._fd, offset)  # never leave half a record behind us
            self.counters.add("spool.dropped", len(events))
            self.counters.add("spool.write_errors")
            return False
        self._records.append(_Record(offset, len(record), len(events)))
        self._live += len(record)
        self._dirty = True
        self.counters.add("spool.spooled", len(events))
        self.sync(force=False)
        return True

    def sync(self, force: bool = True) -> None:
        """fsync what was appended (at most once a FSYNC_INTERVAL unless forced)."""
        now = time.monotonic()
        if self._dirty and (force or now - self._synced_at >= FSYNC_INTERVAL):
            os.fsync(self._fd)
            self._synced_at, self._dirty = now, False

    # -- consumer --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    @property
    def live_bytes(self) -> int:
        return self._live

    def peek(self) -> tuple[str, list[Event]] | None:
        """The oldest spooled batch, or None when empty. A record that cannot be decoded is
        counted as spool.corrupt, removed, and the next one returned."""
        while self._records:
            record = self._records[0]
            payload = os.pread(self._fd, record.size, record.offset)[HEADER.size :]
            try:
                return decode_payload(payload)
            except SpoolError:
                self.counters.add("spool.corrupt")
                self._consume()
        return None

    def pop(self, events: int) -> None:
        """The oldest batch (`events` long) was stored: forget it."""
        self._consume()
        self.counters.add("spool.drained", events)

    def _consume(self) -> None:
        record = self._records.popleft()
        self._live -= record.size
        self._head = record.offset + record.size
        if not self._records:
            os.ftruncate(self._fd, 0)
            self._head = 0

    def snapshot(self) -> dict[str, int]:
        """Counters plus the spool.bytes and spool.batches gauges."""
        values = dict(self.counters.snapshot())
        values["spool.bytes"] = self._live
        values["spool.batches"] = len(self._records)
        return values

    def close(self) -> None:
        self.sync()
        os.close(self._fd)

    # -- maintenance -----------------------------------------------------------------------

    def _compact(self) -> None:
        self._rewrite([(r.offset, r.size) for r in self._records])

    def _rewrite(self, keep: list[tuple[int, int]]) -> None:
        """Replace the file with the records `keep` (offset, size), atomically."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        records: deque[_Record] = deque()
        pos = 0
        try:
            for offset, size in keep:
                _write_all(fd, os.pread(self._fd, size, offset))
                records.append(_Record(pos, size, -1))
                pos += size
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = fd
        self._records, self._live, self._head = records, pos, 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
