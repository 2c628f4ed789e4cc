"""The recently-closed socket memory: time and size bounds, checked with hypothesis."""

from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.attribute.recent import RecentSockets, SocketKey
from egresswatch.model import ProcessInfo


def _info(pid: int) -> ProcessInfo:
    return ProcessInfo(pid, "p", None, None, (), None, None, None, (), None, None)


KEY: SocketKey = ("udp", "127.0.0.1", 5000, "127.0.0.53", 53)


def test_recall_within_ttl_only() -> None:
    recent = RecentSockets(ttl=5.0)
    recent.remember(KEY, _info(1), 100.0)
    assert recent.recall(KEY, 104.9) == _info(1)
    assert recent.recall(("udp", "127.0.0.1", 5000, "", 0), 104.9) is None
    assert recent.recall(KEY, 105.1) is None
    assert len(recent) == 0  # expired entries are dropped, not just hidden


def test_latest_owner_wins() -> None:
    recent = RecentSockets(ttl=5.0)
    recent.remember(KEY, _info(1), 100.0)
    recent.remember(KEY, _info(2), 101.0)
    assert recent.recall(KEY, 102.0) == _info(2)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 30), st.floats(0, 100, allow_nan=False)), min_size=1, max_size=80
    ),
    st.integers(1, 10),
)
def test_bounded_and_never_older_than_ttl(events: list[tuple[int, float]], cap: int) -> None:
    recent = RecentSockets(ttl=2.0, max_entries=cap)
    for port, ts in events:
        recent.remember(("tcp", "10.0.0.1", port, "10.0.0.2", 443), _info(port), ts)
        assert len(recent) <= cap
    now = max(ts for _, ts in events)
    for port in range(1, 31):
        got = recent.recall(("tcp", "10.0.0.1", port, "10.0.0.2", 443), now)
        if got is not None:
            seen = [ts for p, ts in events if p == port]
            assert got.pid == port and now - max(seen) <= 2.0


def test_an_entry_for_another_socket_is_not_recalled() -> None:
    recent = RecentSockets(ttl=5.0)
    recent.remember(KEY, _info(1), 100.0, inode=111)
    assert recent.recall(KEY, 101.0, inode=111) == _info(1)
    assert recent.recall(KEY, 101.0) == _info(1)  # no socket open now: the memory answers
    assert recent.recall(KEY, 101.0, inode=222) is None  # a new socket on the same 5-tuple


def test_forget_drops_the_earlier_connection() -> None:
    recent = RecentSockets(ttl=5.0)
    recent.remember(KEY, _info(1), 100.0, inode=111)
    recent.forget(KEY)
    recent.forget(KEY)  # idempotent
    assert recent.recall(KEY, 100.5) is None and len(recent) == 0
