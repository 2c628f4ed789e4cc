"""The agent's memory of recent frames: a copy within the window is a duplicate, bounded in size."""

from egresswatch.agent import _RecentFrames


def test_a_copy_within_the_window_is_seen_and_a_later_one_is_not() -> None:
    recent = _RecentFrames(window=0.5)
    assert not recent.seen(b"frame", 10.0)
    assert recent.seen(b"frame", 10.4)
    assert not recent.seen(b"frame", 11.0)  # 0.6 s after the copy it last saw
    assert not recent.seen(b"other", 11.0)


def test_the_oldest_frames_are_forgotten_beyond_the_limit() -> None:
    recent = _RecentFrames(window=60.0, limit=2)
    for n in range(3):
        assert not recent.seen(bytes([n]), 1.0 + n)
    assert not recent.seen(bytes([0]), 4.0)  # pushed out by the third
    assert recent.seen(bytes([2]), 4.0)
