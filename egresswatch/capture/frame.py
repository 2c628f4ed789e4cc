"""The one captured-frame record shared by live capture and capture files."""

from typing import NamedTuple


class Frame(NamedTuple):
    """One captured frame: capture time, link type, the bytes, and the interface ("" from a file).

    A tuple so the file reader's hot path can build it with `tuple.__new__` (always pass all four).
    """

    ts: float
    linktype: int
    data: bytes
    interface: str = ""
