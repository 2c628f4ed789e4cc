"""`egresswatch doctor`: checks what live capture and attribution can do on this machine."""

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from egresswatch.attribute.methods import probe as probe_methods
from egresswatch.capture.bpf import compile_filter
from egresswatch.capture.live import ALL_INTERFACES, PERMISSION_HINT, open_socket
from egresswatch.errors import CaptureError
from egresswatch.output import for_rich

CAPABILITIES = {
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_NICE": 23,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}


@dataclass(frozen=True, slots=True)
class Check:
    """One check: whether it passed, what was found, and what that means for the agent."""

    name: str
    ok: bool
    detail: str
    consequence: str
    required: bool = False


def effective_capabilities(status: Path = Path("/proc/self/status")) -> set[str]:
    """Names of the capabilities in this process's effective set."""
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            return {name for name, bit in CAPABILITIES.items() if mask >> bit & 1}
    return set()


def check_capabilities() -> list[Check]:
    caps = effective_capabilities()
    what = {
        "CAP_NET_RAW": ("live capture", True),
        "CAP_NET_ADMIN": ("sockets of other network namespaces (containers)", False),
        "CAP_SYS_PTRACE": ("exe/fd of other users' processes", False),
        "CAP_DAC_READ_SEARCH": ("/proc of other users' processes", False),
        "CAP_BPF": ("in-kernel attribution (eBPF cgroup hooks)", False),
        "CAP_PERFMON": ("process names in the eBPF hooks", False),
        "CAP_SYS_ADMIN": ("setns for the sock_diag fallback in containers", False),
        "CAP_SYS_NICE": ("the decode thread's raised priority", False),
    }
    return [
        Check(
            name,
            name in caps,
            "present" if name in caps else "missing",
            f"{use}: {'works' if name in caps else 'will not work'}",
            required,
        )
        for name, (use, required) in what.items()
    ]


def check_filter() -> Check:
    try:
        program = compile_filter()
    except CaptureError as err:
        return Check("BPF filter compiles", False, str(err), "no capture filter", True)
    return Check(
        "BPF filter compiles",
        True,
        f"{len(program.instructions)} instructions via {program.compiler}",
        "only packets that can matter reach Python",
        True,
    )


def check_capture() -> Check:
    try:
        open_socket(ALL_INTERFACES, compile_filter()).close()
    except CaptureError as err:
        hint = str(err) if str(err) == PERMISSION_HINT else f"{err}"
        return Check("AF_PACKET socket + filter attach", False, hint, "no live capture", True)
    return Check(
        "AF_PACKET socket + filter attach",
        True,
        "all interfaces incl. lo",
        "live capture works",
        True,
    )


def check_interfaces() -> Check:
    names = [name for _index, name in socket.if_nameindex()]
    has_lo = "lo" in names
    return Check(
        "interfaces",
        has_lo,
        ", ".join(names),
        "stub-resolver DNS on lo visible" if has_lo else "no lo: local DNS invisible",
    )


def check_proc() -> Check:
    me = os.getpid()
    total = readable = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        total += 1
        readable += _readable_fds(entry)
    ok = total > 0 and readable == total
    return Check(
        "/proc/PID/fd readable",
        ok,
        f"{readable} of {total} processes",
        # only sockets still open at lookup time: a 1 ms DNS query needs the kernel hooks
        "open sockets of every process attributable"
        if ok
        else "some processes: unknown:no-permission",
    )


def check_attribution_methods() -> list[Check]:
    """Each attribution method: whether it works here, and why not."""
    consequences = {
        "ebpf": (
            "every socket named when used, even one living < 1 ms",
            "sub-millisecond sockets (DNS queries) often unknown:closed-before-lookup",
        ),
        "exec-cache": (
            "exe and cmdline of processes that exit at once",
            "processes gone before lookup named by pid and comm only",
        ),
    }
    checks = []
    for method in probe_methods():
        good, bad = consequences[method.name]
        checks.append(
            Check(
                f"attribution: {method.name}", method.ok, method.detail, good if method.ok else bad
            )
        )
    return checks


def _readable_fds(proc: Path) -> int:
    try:
        with os.scandir(proc / "fd") as entries:
            next(entries, None)
    except OSError:
        return 0
    return 1


def check_netns() -> Check:
    own = _netns(Path("/proc/self"))
    others = readable = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ns = _netns(entry)
        if ns is None or ns == own:
            continue
        others += 1
        readable += os.access(entry / "net" / "tcp", os.R_OK)
    ok = readable == others
    detail = f"{others} processes in other namespaces, {readable} readable"
    return Check(
        "other network namespaces",
        ok,
        detail,
        "containers attributable" if ok else "some containers: other-netns-unreadable",
    )


def _netns(proc: Path) -> str | None:
    try:
        return os.readlink(proc / "ns" / "net")
    except OSError:
        return None


CHECKS: tuple[Callable[[], Check], ...] = (
    check_filter,
    check_capture,
    check_interfaces,
    check_proc,
    check_netns,
)


def run_checks() -> list[Check]:
    return [
        *check_capabilities(),
        *(check() for check in CHECKS),
        *check_attribution_methods(),
    ]


def print_report(results: list[Check], console: Console) -> None:
    table = Table("check", "", "found", "what it means", box=None)
    for r in results:
        mark = "[green]ok[/]" if r.ok else ("[red]FAIL[/]" if r.required else "[yellow]warn[/]")
        table.add_row(r.name, mark, for_rich(r.detail), for_rich(r.consequence))
    console.print(table)
    if not all(r.ok for r in results if r.required):
        console.print(f"[red]live capture will not work:[/] {for_rich(PERMISSION_HINT)}")
