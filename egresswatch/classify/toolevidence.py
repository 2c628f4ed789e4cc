"""Recognises LLM tools from what a process has loaded or open (libraries, imports, model files).

Pure: the attribution layer reads /proc (attribute/evidence.py); rules live in
egresswatch/data/tool-evidence.csv. A match carries the reason, quoting the evidence.
"""

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import translate
from importlib import resources

from egresswatch.classify.csvdata import data_rows
from egresswatch.errors import ConfigError

HEADER = ("tool", "kind", "pattern", "source")
KINDS = frozenset({"library", "import", "model-file"})
# Shown in reasons; the path itself comes from a hostile process and is escaped where shown.
MAX_SHOWN_PATH = 200
_PY_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([A-Za-z_]\w*)|import[ \t]+([^\n#;]{1,500}))", re.M)
_PY_NAME = re.compile(r"[ \t(]*([A-Za-z_]\w*)")
_JS_IMPORT = re.compile(
    r"""(?:require\(\s*|\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]{1,214})['"]"""
)


@dataclass(frozen=True, slots=True)
class ProcessEvidence:
    """What /proc showed about a process: mapped files, open files, and its script's imports."""

    mapped: tuple[str, ...] = ()
    open_files: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvidenceMatch:
    """A tool recognised from evidence, why (quoting the evidence), and the rule's citation."""

    tool: str
    reason: str
    source: str


@dataclass(frozen=True, slots=True)
class _EvidenceRule:
    tool: str
    kind: str
    pattern: str
    source: str
    regex: re.Pattern[str]

    def find(self, evidence: ProcessEvidence) -> str | None:
        """The reason this rule matches `evidence`, or None."""
        if self.kind == "import":
            hit = next((m for m in evidence.imports if self.regex.match(m)), None)
            return f"its script imports {hit}" if hit is not None else None
        if self.kind == "library":
            path = next((p for p in evidence.mapped if self.regex.match(p)), None)
            return f"has {_shown(path)} loaded" if path is not None else None
        path = next((p for p in _files(evidence) if self.regex.match(p)), None)
        return f"holds model file {_shown(path)} open" if path is not None else None


def _files(evidence: ProcessEvidence) -> Iterable[str]:
    yield from evidence.open_files
    yield from evidence.mapped


def _shown(path: str) -> str:
    return path if len(path) <= MAX_SHOWN_PATH else "..." + path[-MAX_SHOWN_PATH:]


class EvidenceRules:
    """An ordered rule list; the first rule that matches names the tool."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[_EvidenceRule]) -> None:
        self._rules = tuple(rules)

    @property
    def tools(self) -> frozenset[str]:
        return frozenset(r.tool for r in self._rules)

    def recognise(self, evidence: ProcessEvidence) -> EvidenceMatch | None:
        """The tool the first matching rule names, with why; None when nothing matches."""
        for rule in self._rules:
            reason = rule.find(evidence)
            if reason is not None:
                return EvidenceMatch(rule.tool, reason, rule.source)
        return None


def script_imports(text: str, script: str) -> tuple[str, ...]:
    """Top-level modules imported by Python or JavaScript source text (first-seen order)."""
    if script.endswith(".py"):
        found = [m for a, b in _PY_IMPORT.findall(text) for m in ([a] if a else _py_names(b))]
    else:
        found = [_js_package(spec) for spec in _JS_IMPORT.findall(text)]
    return tuple(dict.fromkeys(m for m in found if m))


def _py_names(imported: str) -> list[str]:
    """Top-level modules of `import a.b as c, d` (the text after `import`)."""
    names = (_PY_NAME.match(part) for part in imported.split(","))
    return [m.group(1) for m in names if m is not None]


def _js_package(spec: str) -> str:
    if spec.startswith((".", "/")) or ":" in spec:
        return ""  # relative files and node:/URL schemes are no library
    parts = spec.split("/")
    return "/".join(parts[:2]) if spec.startswith("@") else parts[0]


def parse_evidence_rules(text: str, origin: str) -> list[_EvidenceRule]:
    """Parse the evidence rules CSV.

    Raises:
        ConfigError: "<origin>:<line>: <problem>" for the first malformed line.
    """
    rules = []
    for where, fields in data_rows(text, origin, HEADER, "evidence rules"):
        if len(fields) != len(HEADER):
            raise ConfigError(f"{where}: expected {len(HEADER)} fields, got {len(fields)}")
        tool, kind, pattern, source = (f.strip() for f in fields)
        if not tool or not pattern:
            raise ConfigError(f"{where}: empty tool or pattern")
        if kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r} (one of {', '.join(sorted(KINDS))})")
        rules.append(_EvidenceRule(tool, kind, pattern, source, re.compile(translate(pattern))))
    return rules


@functools.cache
def default_evidence_rules() -> EvidenceRules:
    """The packaged rules, loaded on first use (never at import)."""
    text = resources.files("egresswatch").joinpath("data", "tool-evidence.csv").read_text("utf-8")
    return EvidenceRules(parse_evidence_rules(text, "egresswatch/data/tool-evidence.csv"))
