"""Which attribution methods this machine allows, and the resolver built from those that work.

The in-kernel source (eBPF cgroup hooks) needs kernel >= 6.1 (bpf_ktime_get_tai_ns), cgroup v2,
CAP_BPF + CAP_NET_ADMIN (+ CAP_PERFMON for comm); without it sock_diag + /proc still work.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from egresswatch.attribute.bpf.kernel import KernelOwners, cgroup2_root
from egresswatch.attribute.bpf.syscall import BpfError
from egresswatch.attribute.exec_events import ExecWatcher
from egresswatch.attribute.resolver import ProcessResolver
from egresswatch.counters import Counters


@dataclass(frozen=True, slots=True)
class Method:
    """One attribution method: whether it works here and why (not)."""

    name: str
    ok: bool
    detail: str


def open_kernel(cgroup: Path | None = None) -> tuple[KernelOwners | None, str]:
    """The in-kernel source, polling, or None and the reason it cannot run here."""
    cgroup = cgroup or cgroup2_root()
    if cgroup is None or not (cgroup / "cgroup.controllers").exists():
        return None, "no cgroup v2 hierarchy mounted (cgroup v1 only)"
    try:
        kernel = KernelOwners.open(cgroup)
    except BpfError as err:
        hint = " (needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)" if err.errno == 1 else ""
        return None, f"bpf() refused: {err.strerror}{hint}"
    except OSError as err:
        return None, f"cannot use {cgroup}: {err.strerror}"
    kernel.start()
    return kernel, f"cgroup hooks linked on {cgroup}"


def open_execs() -> tuple[ExecWatcher | None, str]:
    """The proc connector's exec watcher, running, or None and why not."""
    try:
        watcher = ExecWatcher.open()
    except OSError as err:
        return None, f"proc connector refused: {err.strerror} (needs CAP_NET_ADMIN)"
    watcher.start()
    return watcher, "exec events from the proc connector"


def build_resolver(use_kernel: bool = True) -> tuple[ProcessResolver, list[Method]]:
    """The resolver with every method that works here, and what each said.

    Raises OSError only when the sock_diag + /proc fallback itself cannot start.
    """
    kernel, kernel_detail = open_kernel() if use_kernel else (None, "not asked for")
    execs, execs_detail = open_execs() if use_kernel else (None, "not asked for")
    try:
        resolver = ProcessResolver(kernel=kernel, execs=execs)
    except OSError:
        for part in (kernel, execs):
            if part is not None:
                part.close()
        raise
    methods = [
        Method("ebpf", kernel is not None, kernel_detail),
        Method("exec-cache", execs is not None, execs_detail),
        Method("sock-diag", True, "netlink sock_diag + /proc"),
    ]
    return resolver, methods


def probe() -> list[Method]:
    """Tries each method once and lets it go again (for `doctor`)."""
    methods: list[Method] = []
    kernel, detail = open_kernel()
    methods.append(Method("ebpf", kernel is not None, detail))
    execs, execs_detail = open_execs()
    methods.append(Method("exec-cache", execs is not None, execs_detail))
    for part in (kernel, execs):
        if part is not None:
            with contextlib.suppress(OSError):
                part.close()
    return methods


def method_counters(kernel: KernelOwners | None) -> Counters:
    """The kernel source's counters with ring-buffer loss read from the kernel."""
    counters = Counters()
    if kernel is not None:
        counters.merge(kernel.counters)
        counters.add("bpf.ring.lost", kernel.lost())
    return counters
