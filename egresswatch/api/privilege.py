"""What privileges this process holds: root, and capabilities in any of its sets."""

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
