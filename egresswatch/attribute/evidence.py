"""Reads what a process has loaded and open (/proc/PID/maps, fd, its script) to recognise its tool.

Every read goes through the pinned /proc/PID directory descriptor (never a reused pid) and is
bounded; a process that vanishes or hides its files simply gives less evidence. Used by
attribute/process.py: a process's own tools.csv rule wins, then this evidence, then an ancestor.
"""

import dataclasses
import os
import stat

from egresswatch.classify.toolevidence import (
    EvidenceRules,
    ProcessEvidence,
    default_evidence_rules,
    script_imports,
)
from egresswatch.classify.tools import ToolRules, default_tool_rules, interpreted_script
from egresswatch.model import ProcessInfo

MAX_MAPS_BYTES = 512 * 1024  # a large PyTorch process maps ~2,000 files in ~300 KiB of text
MAX_FDS = 1024
MAX_SCRIPT_BYTES = 64 * 1024  # imports sit at the top of a script
MAX_PATHS = 4096
SCRIPT_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".ts")
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def identify_tool(
    info: ProcessInfo,
    pid_dir: int,
    cwd: str | None,
    rules: ToolRules | None = None,
    evidence_rules: EvidenceRules | None = None,
) -> ProcessInfo:
    """`info` with `tool` and `tool_reason`: its own rule, else /proc evidence, else an ancestor."""
    match = (rules or default_tool_rules()).recognise_process(info, cwd=cwd)
    if match is not None and match.inherited_from is None:
        return dataclasses.replace(info, tool=match.tool, tool_reason=f"rule {match.rule}")
    script = interpreted_script(info.exe, info.cmdline, cwd)
    found = (evidence_rules or default_evidence_rules()).recognise(read_evidence(pid_dir, script))
    if found is not None:
        return dataclasses.replace(info, tool=found.tool, tool_reason=found.reason)
    if match is not None:
        reason = f"inherited from pid {match.inherited_from} (rule {match.rule})"
        return dataclasses.replace(info, tool=match.tool, tool_reason=reason)
    return info


def read_evidence(pid_dir: int, script: str | None) -> ProcessEvidence:
    """Mapped files, open files and (for an interpreted script) its imports; never raises."""
    imports: tuple[str, ...] = ()
    if script is not None and script.endswith(SCRIPT_SUFFIXES):
        text = _read_script(pid_dir, script)
        imports = script_imports(text, script) if text else ()
    return ProcessEvidence(mapped_files(pid_dir), open_files(pid_dir), imports)


def mapped_files(pid_dir: int) -> tuple[str, ...]:
    """Distinct file paths in /proc/PID/maps (needs ptrace-read access: root or the owner)."""
    text = _read_bounded(pid_dir, "maps", MAX_MAPS_BYTES).decode("utf-8", "replace")
    paths: dict[str, None] = {}
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            paths[fields[5].removesuffix(" (deleted)")] = None
            if len(paths) >= MAX_PATHS:
                break
    return tuple(paths)


def open_files(pid_dir: int) -> tuple[str, ...]:
    """Paths of the files behind the first MAX_FDS descriptors (sockets, pipes left out)."""
    try:
        fd_dir = os.open("fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pid_dir)
    except OSError:
        return ()
    try:
        names = os.listdir(fd_dir)[:MAX_FDS]
        return tuple(t for t in (_link(fd_dir, n) for n in names) if t and t.startswith("/"))
    except OSError:
        return ()
    finally:
        os.close(fd_dir)


def _link(dir_fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _read_script(pid_dir: int, script: str) -> str:
    # Through the process's own root and cwd, so a container's script is the container's file.
    relative = f"root/{script.lstrip('/')}" if script.startswith("/") else f"cwd/{script}"
    try:
        if not stat.S_ISREG(os.stat(relative, dir_fd=pid_dir).st_mode):
            return ""  # never open a device or FIFO named like a script (opening has effects)
        fd = os.open(relative, _READ_FLAGS, dir_fd=pid_dir)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""  # never block on a FIFO or device named like a script
        return os.read(fd, MAX_SCRIPT_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _read_bounded(pid_dir: int, name: str, limit: int) -> bytes:
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=pid_dir)
    except OSError:
        return b""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit and (chunk := os.read(fd, min(65536, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return b"".join(chunks)
