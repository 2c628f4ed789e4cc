"""Destination classification primitives: host-name normalisation and the compiled pattern index.

Pure and bounded: hostile names become a reason, never an exception, and a lookup walks the
host's labels once from the right (O(labels)), whatever the size of the catalog.
"""

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

MAX_NAME = 253
MAX_LABEL = 63
# Anything longer is rejected before any per-character work, which bounds time and memory.
MAX_INPUT = 1024
SHOWN_CHARS = 300

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_VALID_ASCII = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")

HostKind = Literal["dns", "ip", "bad"]


@dataclass(frozen=True, slots=True)
class Role:
    """One cited purpose a catalog pattern serves (a vendor host can serve several)."""

    category: str
    tools: tuple[str, ...]
    purpose: str
    source: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A catalog pattern with its roles, primary role first."""

    pattern: str
    roles: tuple[Role, ...]

    @property
    def category(self) -> str:
        return self.roles[0].category

    @property
    def tools(self) -> tuple[str, ...]:
        """Every tool named by any role, first-seen order (the host-level view)."""
        return tuple(dict.fromkeys(t for role in self.roles for t in role.tools))


@dataclass(frozen=True, slots=True)
class Classification:
    """What the catalog says about one destination host.

    `matched` is the catalog pattern that matched (None when nothing did); `reason` says why a
    host has no match: "no-match", "vendor-domain" (category "other": an unlisted host under a
    registrable domain the catalog knows), "ip-literal" or "bad-name:<why>".
    """

    host: str
    category: str
    tools: tuple[str, ...]
    purpose: str
    source: str
    matched: str | None
    registrable_domain: str | None
    reason: str | None = None
    roles: tuple[Role, ...] = field(default=())

    @property
    def categories(self) -> tuple[str, ...]:
        """The primary category followed by any further cited roles' categories."""
        return tuple(dict.fromkeys(r.category for r in self.roles)) or (self.category,)


@dataclass(frozen=True, slots=True)
class HostName:
    """A host after normalisation: `text` is the lookup key ("dns"/"ip") or a display copy."""

    text: str
    kind: HostKind
    reason: str | None = None


def normalise_host(raw: str) -> HostName:
    """Return the canonical lookup form of `raw`, or kind "bad" with a reason.

    Strips one trailing dot, maps U-labels to A-labels (stdlib IDNA 2003 codec), lower-cases
    ASCII and canonicalises IP literals. Never raises.
    """
    if len(raw) > MAX_INPUT:
        return HostName(raw[:SHOWN_CHARS], "bad", "bad-name:too-long")
    if _CONTROL.search(raw):
        return HostName(raw[:SHOWN_CHARS], "bad", "bad-name:control-char")
    host = raw[:-1] if raw.endswith(".") else raw
    ip = ip_literal(host)
    if ip is not None:
        return HostName(ip, "ip")
    if not host.isascii():
        ascii_host = _to_a_labels(host)
        if ascii_host is None:
            return HostName(raw[:SHOWN_CHARS], "bad", "bad-name:idna")
        host = ascii_host
    host = host.lower()
    problem = name_problem(host)
    if problem is not None:
        return HostName(raw[:SHOWN_CHARS], "bad", f"bad-name:{problem}")
    return HostName(host, "dns")


def ip_literal(text: str) -> str | None:
    """The canonical text of an IPv4/IPv6 literal (brackets, zone and v4-mapping removed)."""
    if not text or not (text[-1].isdigit() or ":" in text or text.startswith("[")):
        return None  # cheap pre-check: most names are not IPs and exceptions cost time
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        addr = ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def name_problem(host: str) -> str | None:
    """Why an ASCII lower-case name is not a usable DNS name, or None when it is."""
    if not host:
        return "empty"
    labels = host.split(".")
    if any(not label for label in labels):
        return "empty-label"
    if any(len(label) > MAX_LABEL for label in labels):
        return "label-too-long"
    if len(host) > MAX_NAME:
        return "name-too-long"
    if not _VALID_ASCII.fullmatch(host):
        return "invalid-char"
    return None


def _to_a_labels(host: str) -> str | None:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


@dataclass(frozen=True, slots=True)
class _Glob:
    regex: re.Pattern[str]
    literal_chars: int
    entry: Entry


def pattern_anchor(pattern: str) -> str:
    """The literal labels right of a pattern's rightmost wildcard (the whole pattern if none)."""
    labels = pattern.split(".")
    for i in range(len(labels) - 1, -1, -1):
        if "*" in labels[i]:
            return ".".join(labels[i + 1 :])
    return pattern


def is_subtree(pattern: str) -> bool:
    """True for "*.suffix" patterns: any depth of subdomains, never the suffix itself."""
    return pattern.startswith("*.") and "*" not in pattern[2:]


def _glob_regex(head: str) -> re.Pattern[str]:
    parts = []
    for label in head.split("."):
        if label == "*":
            parts.append(r"[^.]+")
        else:
            parts.append(r"[^.]*".join(re.escape(p) for p in label.split("*")))
    return re.compile(r"\.".join(parts))


class PatternIndex:
    """Exact hosts, "*.suffix" subtrees and label globs, keyed by their literal suffix.

    Precedence (the "longest match"): an exact host; else the match whose literal suffix has
    the most labels; at equal depth a label glob beats a subtree, and among globs the one with
    more literal characters wins.
    """

    __slots__ = ("_exact", "_globs", "_subtree")

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._exact: dict[str, Entry] = {}
        self._subtree: dict[str, Entry] = {}
        globs: dict[str, list[_Glob]] = {}
        for entry in entries:
            self._add(entry, globs)
        self._globs = {
            anchor: tuple(sorted(items, key=lambda g: -g.literal_chars))
            for anchor, items in globs.items()
        }

    def _add(self, entry: Entry, globs: dict[str, list[_Glob]]) -> None:
        pattern = entry.pattern
        if "*" not in pattern:
            self._exact[pattern] = entry
        elif is_subtree(pattern):
            self._subtree[pattern[2:]] = entry
        else:
            anchor = pattern_anchor(pattern)
            head = pattern[: len(pattern) - len(anchor) - 1]
            literal = len(pattern) - pattern.count("*")
            globs.setdefault(anchor, []).append(_Glob(_glob_regex(head), literal, entry))

    def lookup(self, host: str) -> Entry | None:
        """The most specific entry matching a normalised host, or None."""
        hit = self._exact.get(host)
        if hit is not None:
            return hit
        best: Entry | None = None
        pos = len(host)
        # Walk suffixes from the shallowest ("com") to the deepest; deeper matches overwrite.
        while (pos := host.rfind(".", 0, pos)) > 0:
            suffix, head = host[pos + 1 :], host[:pos]
            found = self._glob_match(suffix, head) or self._subtree.get(suffix)
            if found is not None:
                best = found
        return best

    def _glob_match(self, suffix: str, head: str) -> Entry | None:
        for glob in self._globs.get(suffix, ()):
            if glob.regex.fullmatch(head):
                return glob.entry
        return None
