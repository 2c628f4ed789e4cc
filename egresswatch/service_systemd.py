"""systemd on this machine: whether it runs as PID 1, and systemctl for the service's units."""

import subprocess
from pathlib import Path

from egresswatch.errors import EgressWatchError

NOT_RUNNING = (
    "systemd is not running on this machine (PID 1 is not systemd): the files are in place; "
    "start the service with `systemctl enable --now egresswatch egresswatch-web` once it is"
)


def systemd_running(marker: Path = Path("/run/systemd/system")) -> bool:
    """sd_booted(): systemd creates this directory when it runs as PID 1."""
    return marker.is_dir()


def systemctl(*args: str) -> None:
    """Run systemctl; its own message when it fails."""
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.strip() or f"exit {done.returncode}"
        raise EgressWatchError(f"systemctl {' '.join(args)}: {reason}")


def unit_state(unit: str) -> str:
    """`systemctl is-active` for `unit`, or why it cannot be asked."""
    if not systemd_running():
        return "systemd not running"
    done = subprocess.run(
        ["systemctl", "is-active", unit], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or done.stderr.strip() or "unknown"
