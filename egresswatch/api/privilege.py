"""What privileges this process holds: root, and capabilities in any of its sets."""

import ctypes
import os
from pathlib import Path

CAP_SETS = ("CapPrm", "CapEff", "CapAmb")


def privileges(status: Path = Path("/proc/self/status")) -> list[str]:
    """["root"] and/or the capability sets that are not empty; [] for an unprivileged process."""
    held = ["root"] if os.geteuid() == 0 or os.getuid() == 0 else []
    try:
        lines = status.read_text().splitlines()
    except OSError:
        return [*held, "unknown capabilities"]
    for line in lines:
        name, _, value = line.partition(":")
        if name in CAP_SETS and int(value.strip(), 16):
            held.append(f"{name}={value.strip()}")
    return held


PR_SET_DUMPABLE = 4


def forbid_tracing() -> None:
    """Make this process non-dumpable: another process of the same user (a shared `nobody`) can
    then neither ptrace it nor read its memory, so it cannot borrow its control-channel pid."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_DUMPABLE, 0): {os.strerror(err)}")
