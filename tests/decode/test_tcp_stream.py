"""TcpReassembler: ordering, retransmission, overlaps, sequence wrap, bounds and eviction."""

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.decode.tcp_stream import MAX_PENDING_SEGMENTS, TcpReassembler, seq_offset
from egresswatch.model import FlowKey

KEY = FlowKey("tcp", "10.199.0.2", 40000, "10.199.0.1", 443)
ISN = 1000
PROPS = settings(max_examples=200, deadline=None)


def key(n: int) -> FlowKey:
    return FlowKey("tcp", "10.199.0.2", 40000 + n, "10.199.0.1", 443)


def opened(isn: int = ISN, max_stream_bytes: int = 65536) -> TcpReassembler:
    reasm = TcpReassembler(max_stream_bytes=max_stream_bytes)
    reasm.open(KEY, isn, 0.0)
    return reasm


def test_in_order_segments_grow_the_prefix_and_the_first_is_not_copied() -> None:
    reasm = opened()
    first = b"hello "
    assert reasm.feed(KEY, ISN + 1, first, 1.0) is first
    assert reasm.feed(KEY, ISN + 7, b"world", 1.0) == b"hello world"
    assert reasm.feed(KEY, ISN + 12, b"", 1.0) is None
    assert reasm.counters.snapshot() == {}


def test_unopened_stream_starts_at_its_first_segment() -> None:
    reasm = TcpReassembler()
    assert reasm.feed(KEY, 5_000, b"abc", 0.0) == b"abc"
    assert reasm.feed(KEY, 5_003, b"def", 0.0) == b"abcdef"
    assert reasm.feed(KEY, 4_990, b"0123456789", 0.0) is None  # before the start: old data
    assert reasm.counters.get("tcp.retransmission") == 1


def test_out_of_order_is_held_until_the_gap_fills() -> None:
    reasm = opened()
    assert reasm.feed(KEY, ISN + 7, b"world", 0.0) is None
    assert reasm.feed(KEY, ISN + 13, b"!", 0.0) is None
    assert reasm.feed(KEY, ISN + 1, b"hello ", 0.0) == b"hello world"
    assert reasm.feed(KEY, ISN + 12, b"?", 0.0) == b"hello world?!"
    assert reasm.counters.get("tcp.out-of-order") == 2


def test_retransmission_is_ignored_and_a_different_copy_is_counted() -> None:
    reasm = opened()
    reasm.feed(KEY, ISN + 1, b"abcdef", 0.0)
    assert reasm.feed(KEY, ISN + 1, b"abcdef", 0.0) is None
    assert reasm.feed(KEY, ISN + 3, b"XY", 0.0) is None
    assert reasm.counters.get("tcp.retransmission") == 2
    assert reasm.counters.get("tcp.overlap-mismatch") == 1
    assert reasm.feed(KEY, ISN + 7, b"g", 0.0) == b"abcdefg"  # first copy kept


def test_partial_overlap_keeps_the_first_copy_and_appends_the_rest() -> None:
    reasm = opened()
    reasm.feed(KEY, ISN + 1, b"abcd", 0.0)
    assert reasm.feed(KEY, ISN + 3, b"cdef", 0.0) == b"abcdef"
    assert reasm.counters.get("tcp.overlap") == 1
    assert reasm.feed(KEY, ISN + 5, b"ZZgh", 0.0) == b"abcdefgh"
    assert reasm.counters.get("tcp.overlap-mismatch") == 1


def test_overlapping_held_segments_keep_the_first_copy() -> None:
    reasm = opened()
    reasm.feed(KEY, ISN + 11, b"A" * 10, 0.0)  # offsets 10-19
    reasm.feed(KEY, ISN + 6, b"B" * 10, 0.0)  # 5-14: only 5-9 is new
    reasm.feed(KEY, ISN + 13, b"C" * 4, 0.0)  # inside A: nothing new
    assert reasm.counters.get("tcp.retransmission") == 1
    assert reasm.feed(KEY, ISN + 1, b"0" * 5, 0.0) == b"00000" + b"BBBBB" + b"A" * 10


@pytest.mark.parametrize("isn", [0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFF0, 0x7FFFFFFF])
def test_sequence_numbers_wrap_around(isn: int) -> None:
    reasm = opened(isn)
    start = (isn + 1) & 0xFFFFFFFF
    data = bytes(range(40))
    assert reasm.feed(KEY, (start + 20) & 0xFFFFFFFF, data[20:], 0.0) is None
    assert reasm.feed(KEY, start, data[:25], 0.0) == data
    assert reasm.feed(KEY, (start + 5) & 0xFFFFFFFF, data[5:10], 0.0) is None


def test_seq_offset_is_signed_modulo_2_32() -> None:
    assert seq_offset(5, 0xFFFFFFFE) == 7
    assert seq_offset(0xFFFFFFFE, 5) == -7
    assert seq_offset(0x80000000, 0) == -(2**31)


def test_consume_moves_the_base_and_held_segments_with_it() -> None:
    reasm = opened()
    reasm.feed(KEY, ISN + 1, b"\x00\x03abc\x00", 0.0)
    reasm.feed(KEY, ISN + 8, b"Z", 0.0)  # held past a one-byte gap
    reasm.consume(KEY, 5)
    assert reasm.feed(KEY, ISN + 1, b"\x00\x03abc", 0.0) is None  # consumed bytes come again
    assert reasm.feed(KEY, ISN + 7, b"\x02", 0.0) == b"\x00\x02Z"
    reasm.consume(KEY, 100)  # more than held: everything goes
    assert reasm.feed(KEY, ISN + 9, b"next", 0.0) == b"next"


def test_repeated_syn_keeps_the_stream_and_a_new_isn_restarts_it() -> None:
    reasm = opened()
    reasm.feed(KEY, ISN + 1, b"abc", 0.0)
    reasm.open(KEY, ISN, 1.0)
    assert reasm.feed(KEY, ISN + 4, b"d", 1.0) == b"abcd"
    reasm.open(KEY, 9_000, 2.0)
    assert reasm.feed(KEY, 9_001, b"new", 2.0) == b"new"


def test_stream_past_its_byte_bound_is_closed() -> None:
    reasm = opened(max_stream_bytes=100)
    assert reasm.feed(KEY, ISN + 1, bytes(60), 0.0) is not None
    assert reasm.feed(KEY, ISN + 61, bytes(40), 0.0) is not None  # exactly 100: fine
    assert reasm.feed(KEY, ISN + 101, b"x", 0.0) is None
    assert KEY not in reasm and len(reasm) == 0
    assert reasm.counters.get("tcp.overflow") == 1


def test_segment_far_ahead_overflows_instead_of_being_held() -> None:
    reasm = opened(max_stream_bytes=1000)
    assert reasm.feed(KEY, ISN + 2_000, b"x", 0.0) is None
    assert reasm.counters.get("tcp.overflow") == 1 and len(reasm) == 0


def test_too_many_held_pieces_overflow() -> None:
    reasm = opened()
    for i in range(MAX_PENDING_SEGMENTS):
        reasm.feed(KEY, ISN + 2 + 2 * i, b"x", 0.0)
    assert KEY in reasm
    reasm.feed(KEY, ISN + 2 + 2 * MAX_PENDING_SEGMENTS, b"x", 0.0)
    assert KEY not in reasm and reasm.counters.get("tcp.overflow") == 1


def test_least_recently_used_stream_is_evicted() -> None:
    reasm = TcpReassembler(max_streams=2)
    reasm.open(key(1), 0, 0.0)
    reasm.open(key(2), 0, 1.0)
    reasm.feed(key(1), 1, b"a", 2.0)  # key(1) is now the most recent
    reasm.feed(key(3), 50, b"c", 3.0)
    assert key(2) not in reasm and key(1) in reasm and key(3) in reasm
    assert reasm.counters.get("tcp.evicted") == 1 and len(reasm) == 2


def test_idle_streams_expire() -> None:
    reasm = TcpReassembler(timeout=10.0)
    reasm.open(key(1), 0, 0.0)
    reasm.open(key(2), 0, 5.0)
    reasm.feed(key(1), 1, b"a", 8.0)
    assert reasm.expire(15.0) == 0
    assert reasm.expire(15.5) == 1 and key(2) not in reasm
    assert reasm.expire(100.0) == 1 and len(reasm) == 0
    assert reasm.counters.get("tcp.expired") == 2


def test_close_forgets_the_stream() -> None:
    reasm = opened()
    reasm.feed(KEY, ISN + 1, b"abc", 0.0)
    reasm.close(KEY)
    reasm.close(KEY)
    assert len(reasm) == 0 and reasm.buffered() == 0


@st.composite
def segmented(draw: st.DrawFn) -> tuple[int, bytes, list[tuple[int, bytes]]]:
    """Bytes, an ISN (often near the wrap) and overlapping segments covering them, any order."""
    data = draw(st.binary(min_size=1, max_size=400))
    isn = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 300, 2**32 - 1)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    segs = []
    for cut, hi in itertools.pairwise(bounds):
        lo = max(0, cut - draw(st.integers(0, 8)))  # overlap the previous piece a little
        if hi > lo:
            segs.append(((isn + 1 + lo) & 0xFFFFFFFF, data[lo:hi]))
    segs += draw(st.lists(st.sampled_from(segs), max_size=4))  # retransmissions
    return isn, data, draw(st.permutations(segs))


@PROPS
@given(segmented())
def test_any_order_with_duplicates_reassembles_the_bytes(
    case: tuple[int, bytes, list[tuple[int, bytes]]],
) -> None:
    isn, data, segs = case
    reasm = opened(isn)
    last = b""
    for seq, payload in segs:
        out = reasm.feed(KEY, seq, payload, 0.0)
        if out is not None:
            assert len(out) > len(last) and data.startswith(out)
            last = out
    assert last == data
    assert reasm.counters.get("tcp.overflow") == 0


@PROPS
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.one_of(st.integers(0, 1500), st.integers(0, 2**32 - 1)),
            st.binary(max_size=300),
        ),
        max_size=60,
    )
)
def test_arbitrary_segments_stay_within_bounds(ops: list[tuple[int, int, bytes]]) -> None:
    reasm = TcpReassembler(max_stream_bytes=512, max_streams=3)
    for n, seq, payload in ops:
        out = reasm.feed(key(n), seq, payload, 0.0)
        assert out is None or len(out) <= 512
        assert len(reasm) <= 3
        assert reasm.buffered() <= 3 * 512


def test_all_streams_together_stay_within_the_byte_budget() -> None:
    """8,000 flows each holding a 15 KB unfinished hello: total bytes bounded, evictions counted."""
    budget = 8 << 20
    r = TcpReassembler(max_stream_bytes=65537, max_streams=8192, max_total_bytes=budget)
    piece = bytes(range(256)) * 60  # 15,360 bytes: the start of a hello that never finishes
    tracemalloc.start()
    try:
        for n in range(8000):
            r.open(key(n), ISN, float(n))
            r.feed(key(n), ISN + 1, piece, float(n))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.buffered() <= budget
    assert r.counters.get("tcp.evicted-bytes") == 8000 - budget // len(piece)
    assert peak < 2 * budget  # the 178 MB this once reached, bounded
    # the most recent flows are the ones kept
    assert r.feed(key(7999), ISN + 1 + len(piece), b"more", 8000.0) == piece + b"more"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["open", "feed", "consume", "close", "expire"]),
            st.integers(0, 5),
            st.integers(0, 3000),
            st.integers(1, 700),
        ),
        max_size=80,
    )
)
def test_buffered_bytes_match_what_the_streams_hold(
    ops: list[tuple[str, int, int, int]],
) -> None:
    r = TcpReassembler(max_stream_bytes=4096, max_streams=4, max_total_bytes=5000)
    for ts, (op, n, offset, size) in enumerate(ops):
        if op == "open":
            r.open(key(n), ISN, float(ts))
        elif op == "feed":
            r.feed(key(n), ISN + 1 + offset, bytes([n]) * size, float(ts))
        elif op == "consume":
            r.consume(key(n), size)
        elif op == "close":
            r.close(key(n))
        else:
            r.expire(float(ts) + 30.0)
        held = sum(
            len(s.data) + sum(len(p) for _, p in s.pending)
            for _key, s in r._streams.items()  # white box: recount what the running total claims
        )
        assert r.buffered() == held <= 5000 + 4096
