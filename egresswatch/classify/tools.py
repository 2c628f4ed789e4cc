"""Recognises local-LLM tools among processes from their name, paths, command line and ancestry.

Pure: the caller (attribution) gathers the process facts; rules live in egresswatch/data/tools.csv.
"""

import functools
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import translate
from importlib import resources
from pathlib import Path
from typing import Literal

from egresswatch.classify.csvdata import data_rows
from egresswatch.errors import ConfigError
from egresswatch.model import ProcessInfo, ProcessRef

HEADER = ("tool", "kind", "pattern", "source")
RuleKind = Literal["name", "path", "command", "unit"]
KINDS: frozenset[str] = frozenset({"name", "path", "command", "unit"})
# The kernel truncates comm to 15 characters; longer names only ever appear truncated.
COMM_LEN = 15
# Hostile or huge command lines: only the head is looked at, which bounds the work per process.
MAX_ARGS = 256
MAX_ARG_CHARS = 4096
MAX_FILE_BYTES = 1024 * 1024

_INTERPRETER = re.compile(
    r"(?:python[0-9.]*[mwu]?|pypy[0-9.]*|node(?:js)?|bun|deno|(?:ba|da|z)?sh)"
)
# Interpreter options that consume the following argument.
_VALUE_OPTIONS = frozenset(
    {"-W", "-X", "--check-hash-based-pycs", "-r", "--require", "--import", "--loader", "--title"}
)
_INLINE_CODE = frozenset({"-c", "-e", "--eval", "-p", "--print"})


@dataclass(frozen=True, slots=True)
class ToolMatch:
    """A recognised tool: which rule matched, and from which ancestor when inherited."""

    tool: str
    rule: str
    source: str
    inherited_from: int | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class Launch:
    """How a process was started: the program (binary, script or -m module) and its args."""

    program: str
    paths: tuple[str, ...]
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Rule:
    tool: str
    kind: str
    pattern: str
    source: str
    first: re.Pattern[str]
    rest: tuple[re.Pattern[str] | None, ...]  # command args; None stands for "..."

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.pattern}"


def describe_launch(exe: str | None, cmdline: Sequence[str], cwd: str | None = None) -> Launch:
    """Split a command line into program, paths and args, looking through interpreters."""
    argv = tuple(a[:MAX_ARG_CHARS] for a in cmdline[:MAX_ARGS])
    argv0 = argv[0] if argv else (exe or "")
    paths = tuple(p for p in (exe, argv0 if "/" in argv0 else None) if p)
    base = posixpath.basename(argv0)
    if not _INTERPRETER.fullmatch(base):
        return Launch(base, paths, argv[1:])
    return _interpreted(base, paths, argv, cwd)


def interpreted_script(
    exe: str | None, cmdline: Sequence[str], cwd: str | None = None
) -> str | None:
    """The script an interpreter (python, node, sh...) was started with, or None."""
    argv0 = cmdline[0] if cmdline else (exe or "")
    if not _INTERPRETER.fullmatch(posixpath.basename(argv0)):
        return None
    launch = describe_launch(exe, cmdline, cwd)
    own = sum(1 for p in (exe, argv0 if "/" in argv0 else None) if p)
    return launch.paths[-1] if len(launch.paths) > own else None


def _interpreted(
    base: str, paths: tuple[str, ...], argv: tuple[str, ...], cwd: str | None
) -> Launch:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m" and i + 1 < len(argv):
            return Launch(argv[i + 1], paths, argv[i + 2 :])
        if arg in _INLINE_CODE:
            break
        if arg.startswith("-"):
            i += 2 if arg in _VALUE_OPTIONS else 1
            continue
        script = posixpath.normpath(posixpath.join(cwd, arg)) if cwd else arg
        return Launch(posixpath.basename(arg), (*paths, script), argv[i + 1 :])
    return Launch(base, paths, ())


def _compile(kind: str, pattern: str) -> tuple[re.Pattern[str], tuple[re.Pattern[str] | None, ...]]:
    words = pattern.split() if kind == "command" else [pattern]
    rest = tuple(None if w == "..." else re.compile(translate(w)) for w in words[1:])
    return re.compile(translate(words[0])), rest


def _args_match(regexes: Sequence[re.Pattern[str] | None], args: Sequence[str]) -> bool:
    if not regexes:
        return True
    head, rest = regexes[0], regexes[1:]
    if head is None:
        return any(_args_match(rest, args[i:]) for i in range(len(args) + 1))
    return bool(args) and head.match(args[0]) is not None and _args_match(rest, args[1:])


def _name_matches(regex: re.Pattern[str], pattern: str, name: str) -> bool:
    if regex.match(name):
        return True
    return len(name) == COMM_LEN and "*" not in pattern and pattern.startswith(name)


@dataclass(frozen=True, slots=True)
class _Facts:
    name: str
    launch: Launch
    unit: str | None


def _rule_matches(rule: _Rule, facts: _Facts) -> bool:
    first = rule.first
    if rule.kind == "name":
        return _name_matches(first, rule.pattern, facts.name)
    if rule.kind == "path":
        return any(first.match(p) for p in facts.launch.paths)
    if rule.kind == "unit":
        return facts.unit is not None and first.match(facts.unit) is not None
    return first.match(facts.launch.program) is not None and _args_match(
        rule.rest, facts.launch.args
    )


class ToolRules:
    """An ordered rule list; the first rule that matches a process names its tool."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[_Rule]) -> None:
        self._rules = tuple(rules)

    @property
    def tools(self) -> frozenset[str]:
        return frozenset(r.tool for r in self._rules)

    def _first(self, facts: _Facts) -> _Rule | None:
        return next((r for r in self._rules if _rule_matches(r, facts)), None)

    def recognise(
        self,
        name: str,
        exe: str | None,
        cmdline: Sequence[str],
        ancestry: Sequence[ProcessRef] = (),
        ancestry_cmdlines: Sequence[Sequence[str]] = (),
        *,
        cwd: str | None = None,
        unit: str | None = None,
    ) -> ToolMatch | None:
        """The process's own tool, else the tool of its nearest recognised ancestor.

        `ancestry` is nearest first (parent at index 0); `ancestry_cmdlines[i]`, when given,
        is the command line of `ancestry[i]`. `cwd` resolves relative script paths
        ("python main.py"); `unit` is the systemd unit or cgroup path. Never raises.
        """
        own = self._first(_Facts(name, describe_launch(exe, cmdline, cwd), unit))
        if own is not None:
            return ToolMatch(own.tool, own.label, own.source)
        for depth, ref in enumerate(ancestry, start=1):
            args = ancestry_cmdlines[depth - 1] if depth <= len(ancestry_cmdlines) else ()
            rule = self._first(_Facts(ref.name, describe_launch(ref.exe, args), None))
            if rule is not None:
                return ToolMatch(rule.tool, rule.label, rule.source, ref.pid, depth)
        return None

    def recognise_process(
        self,
        info: ProcessInfo,
        ancestry_cmdlines: Sequence[Sequence[str]] = (),
        cwd: str | None = None,
    ) -> ToolMatch | None:
        """`recognise` for a ProcessInfo (its `container` is used as the unit/cgroup)."""
        return self.recognise(
            info.name, info.exe, info.cmdline, info.ancestry, ancestry_cmdlines,
            cwd=cwd, unit=info.container,
        )  # fmt: skip


def parse_tool_rules(text: str, origin: str) -> list[_Rule]:
    """Parse tools CSV text.

    Raises:
        ConfigError: "<origin>:<line>: <problem>" for the first malformed line.
    """
    return [
        _parse_rule(fields, where) for where, fields in data_rows(text, origin, HEADER, "rule file")
    ]


def _parse_rule(fields: Sequence[str], where: str) -> _Rule:
    if len(fields) != len(HEADER):
        raise ConfigError(f"{where}: expected {len(HEADER)} fields, got {len(fields)}")
    tool, kind, pattern, source = (f.strip() for f in fields)
    if not tool:
        raise ConfigError(f"{where}: empty tool name")
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r} (one of {', '.join(sorted(KINDS))})")
    if not pattern or pattern.split()[0] == "...":
        raise ConfigError(f"{where}: pattern must start with a program, name or path glob")
    return _Rule(tool, kind, pattern, source, *_compile(kind, pattern))


def read_tool_rules_file(path: Path) -> list[_Rule]:
    """Read a user rules file; every problem is a ConfigError naming the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: tool rules file too large")
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read tool rules: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: tool rules are not UTF-8: {exc.reason}") from exc
    return parse_tool_rules(text, str(path))


def load_tool_rules(extra: Path | None = None) -> ToolRules:
    """The packaged rules, with the rules of the user file `extra` tried first."""
    text = resources.files("egresswatch").joinpath("data", "tools.csv").read_text("utf-8")
    packaged = parse_tool_rules(text, "egresswatch/data/tools.csv")
    user = read_tool_rules_file(extra) if extra is not None else []
    return ToolRules([*user, *packaged])


@functools.cache
def default_tool_rules() -> ToolRules:
    """The packaged rules, loaded on first use (never at import)."""
    return load_tool_rules()


def recognise_tool(
    name: str,
    exe: str | None,
    cmdline: Sequence[str],
    ancestry: Sequence[ProcessRef] = (),
    ancestry_cmdlines: Sequence[Sequence[str]] = (),
    *,
    cwd: str | None = None,
    unit: str | None = None,
) -> ToolMatch | None:
    """`ToolRules.recognise` with the packaged rules."""
    return default_tool_rules().recognise(
        name, exe, cmdline, ancestry, ancestry_cmdlines, cwd=cwd, unit=unit
    )
