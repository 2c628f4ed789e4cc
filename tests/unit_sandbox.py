"""Run a command with the file-system view the agent unit gives it, without systemd: run inside
`unshare --mount`, it makes every mount read-only (ProtectSystem=strict) except the --rw paths,
puts empty tmpfs over /tmp, /var/tmp (PrivateTmp), /home and /root (ProtectHome=tmpfs), and
binds the --ro paths back read-only (BindReadOnlyPaths=, e.g. an interpreter under /root).
Usage: python3 unit_sandbox.py [--rw PATH]... [--ro PATH]... -- COMMAND...
"""

import os
import subprocess
import sys
from pathlib import Path

KERNEL_MOUNTS = ("/proc", "/sys", "/dev")
HIDDEN = ("/tmp", "/var/tmp", "/home", "/root")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def mount_points() -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted(set(points), key=len)


def seal(writable: list[str], readonly: list[str]) -> None:
    mount("--make-rprivate", "/")
    staged = [f"/dev/shm/ew-stage-{os.getpid()}-{n}" for n in range(len(readonly))]
    for path, stage in zip(readonly, staged, strict=True):
        os.mkdir(stage)
        mount("--bind", path, stage)
    for path in writable:
        mount("--bind", path, path)
    for point in mount_points():
        if not point.startswith(KERNEL_MOUNTS) and point not in writable:
            # a mount that refuses the remount only weakens the sandbox
            subprocess.run(["mount", "-o", "remount,bind,ro", point], check=False)
    for path in HIDDEN:
        if os.path.isdir(path):
            mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", path)
    for path, stage in zip(readonly, staged, strict=True):
        os.makedirs(path, exist_ok=True)
        mount("--bind", stage, path)
        mount("-o", "remount,bind,ro", path)
        subprocess.run(["umount", stage], check=True)
        os.rmdir(stage)


def main() -> None:
    args, command = sys.argv[1 : sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1 :]
    pairs = list(zip(args[::2], args[1::2], strict=True))
    seal([p for flag, p in pairs if flag == "--rw"], [p for flag, p in pairs if flag == "--ro"])
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
