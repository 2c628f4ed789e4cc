"""Observations as the replay JSONL contract (docs/replay-jsonl.md) and as safe text for people."""

import unicodedata

from rich.markup import escape as rich_escape

from egresswatch.model import Observation

# The record builders moved to egresswatch.record (no rich); re-exported for existing callers.
from egresswatch.record import event_to_dict, observation_to_dict, to_json_line, write_jsonl

__all__ = [
    "event_to_dict",
    "for_rich",
    "observation_to_dict",
    "printable",
    "summary_host",
    "to_json_line",
    "write_jsonl",
]

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str | None) -> str:
    """Attacker-controlled text made safe for a terminal.

    Control, format (bidi overrides, zero-width), private-use, surrogate, unassigned and
    line/paragraph-separator characters are shown as \\xHH, \\uHHHH or \\UHHHHHHHH.
    """
    if text is None:
        return ""
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    if unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def for_rich(text: str | None) -> str:
    """`printable` text with rich markup neutralised, for rich tables."""
    return rich_escape(printable(text))


def summary_host(obs: Observation) -> str:
    """The name an observation is about: the SNI, or the DNS question."""
    if obs.hello is not None:
        return obs.hello.sni or ""
    if obs.dns is not None:
        return obs.dns.qname or ""
    return ""
