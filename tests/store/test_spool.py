"""The spool file format: round trip in order, the bound, a torn tail, corrupt records."""

import os
import pickle
import socket
import time
import zlib
from pathlib import Path

import pytest

from egresswatch.store.engine import make_engine
from egresswatch.store.spool import HEADER, MAGIC, Spool, SpoolError, decode_payload, encode, scan
from egresswatch.store.writer import EventWriter
from tests.store.factory import HOSTILE, dns_query, mixed


def _drain(spool: Spool) -> list[tuple[str, int]]:
    out = []
    while (item := spool.peek()) is not None:
        out.append((item[0], len(item[1])))
        spool.pop(len(item[1]))
    return out


def test_round_trip_in_order_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    events = mixed(30)
    spool = Spool(path)
    for n in range(3):
        assert spool.append(f"b{n}", events[n * 10 : (n + 1) * 10])
    spool.close()
    again = Spool(path)
    assert len(again) == 3
    first = again.peek()
    assert first is not None and first == ("b0", events[:10])
    assert _drain(again) == [("b0", 10), ("b1", 10), ("b2", 10)]
    assert path.stat().st_size == 0  # fully drained: truncated
    assert again.snapshot()["spool.drained"] == 30


def test_hostile_text_round_trips_exactly(tmp_path: Path) -> None:
    events = [dns_query(1.0 + i, text) for i, text in enumerate(HOSTILE)]
    assert decode_payload(encode("x", events)[HEADER.size :]) == ("x", events)


def test_bound_drops_newest_and_counts_events(tmp_path: Path) -> None:
    events = mixed(10)
    size = len(encode("b0", events))
    spool = Spool(tmp_path / "s.spool", max_bytes=size * 2 + size // 2)
    assert spool.append("b0", events)
    assert spool.append("b1", events)
    assert not spool.append("b2", events)  # over the bound: the newest is refused
    assert spool.snapshot()["spool.dropped"] == 10
    assert spool.live_bytes <= spool.max_bytes
    assert [b for b, _ in _drain(spool)] == ["b0", "b1"]
    assert spool.append("b3", events)  # room again once drained


def test_torn_tail_is_counted_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path)
    spool.append("b0", mixed(5))
    spool.append("b1", mixed(5))
    spool.close()
    whole = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(whole - 7)  # kill -9 in the middle of the last append
    again = Spool(path)
    assert again.snapshot()["spool.torn"] == 1
    assert _drain(again) == [("b0", 5)]
    third = Spool(path)  # truncated on recovery: not reported twice
    assert third.snapshot().get("spool.torn", 0) == 0


def test_corrupt_record_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path)
    for n in range(3):
        spool.append(f"b{n}", mixed(4))
    spool.close()
    data = bytearray(path.read_bytes())
    second = scan(bytes(data)).records[1][0]
    data[second + HEADER.size + 20] ^= 0xFF  # a flipped bit inside the middle record
    path.write_bytes(bytes(data))
    again = Spool(path)
    assert again.snapshot()["spool.corrupt"] == 1
    assert _drain(again) == [("b0", 4), ("b2", 4)]


def test_garbage_length_resynchronises_on_next_record(tmp_path: Path) -> None:
    good = encode("b1", mixed(2))
    bad = HEADER.pack(MAGIC, 1 << 30, 0) + b"junk"  # length far beyond the file
    found = scan(bad + good)
    assert (found.corrupt, found.torn) == (1, 0)
    assert found.records == [(len(bad), len(good))]


def test_record_naming_other_code_is_refused(tmp_path: Path) -> None:
    payload = pickle.dumps(("b0", [os.system]))
    with pytest.raises(SpoolError):
        decode_payload(payload)
    path = tmp_path / "s.spool"
    path.write_bytes(HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)
    spool = Spool(path)
    assert len(spool) == 1  # checksum fine, so only the drain can tell
    assert spool.peek() is None
    assert spool.snapshot()["spool.corrupt"] == 1


def test_compaction_keeps_order(tmp_path: Path) -> None:
    events = mixed(3)
    size = len(encode("b00", events))
    spool = Spool(tmp_path / "s.spool", max_bytes=size * 8)
    names = []
    for n in range(40):
        assert spool.append(f"b{n:02d}", events)
        names.append(f"b{n:02d}")
        if len(spool) > 4:
            item = spool.peek()
            assert item is not None and item[0] == names.pop(0)
            spool.pop(3)
    assert (tmp_path / "s.spool").stat().st_size < size * 30  # the drained prefix was dropped
    assert [b for b, _ in _drain(spool)] == names


def test_shutdown_while_unreachable_keeps_events_and_counts_jobs(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    path = tmp_path / "s.spool"
    writer = EventWriter(engine, spool=Spool(path)).start()
    for event in mixed(100):
        assert writer.submit(event)
    assert writer.flush(10)  # spooled counts as settled
    assert writer.post(lambda conn: None)
    started = time.monotonic()
    writer.close()
    engine.dispose()
    assert time.monotonic() - started < 5
    counters = writer.counters()
    assert counters["store.jobs.dropped"] == 1  # jobs are not spooled: counted
    assert counters["spool.spooled"] == 100 and counters["writer.retries"] >= 1
    assert counters["store.error.unavailable"] >= 1
    assert writer.last_error is not None
    again = Spool(path)
    assert sum(n for _, n in _drain(again)) == 100  # the events wait for the next start
