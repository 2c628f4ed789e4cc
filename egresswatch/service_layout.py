"""What `egresswatch service install` lays down, and its undoing: the system user and group, the
config (only if missing), the state and runtime directories, the unit files (ExecStart= pointing
at this installation) and a network drop-in for configured alert sinks and network stores.

Every step is idempotent and reports what it did. `root` is "/" except in tests (a scratch tree).
"""

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from egresswatch.errors import ConfigError

SERVICE_USER = "egresswatch"
UNITS = ("egresswatch.service", "egresswatch-web.service")
TEMPLATE_EXEC = "/opt/egresswatch/venv/bin/egresswatch"
CONFIG = Path("etc/egresswatch/config.toml")
STATE = Path("var/lib/egresswatch")
RUNTIME = Path("run/egresswatch")
UNIT_DIR = Path("etc/systemd/system")
DROP_IN = Path("etc/systemd/system/egresswatch.service.d/network.conf")
HOME_DROP_INS = tuple(UNIT_DIR / f"{unit}.d/home.conf" for unit in UNITS)
HIDDEN_BY_PROTECT_HOME = ("/home/", "/root/", "/run/user/")
DEFAULT_CONFIG = """\
# egresswatch settings (docs/service.md). The service reads this file at start.
[store]
# url = "postgresql+psycopg://agent@db.example/egresswatch?sslmode=verify-full"
max_age_days = 90

[sinks]
journald = true
# [sinks.webhook]
# url = "https://ntfy.example/egress"   # its address is added to IPAddressAllow= on install
"""


@dataclass(frozen=True)
class Layout:
    """Where the files go: `root` joined with the standard paths."""

    root: Path = Path("/")

    def at(self, relative: Path) -> Path:
        return self.root / relative

    @property
    def real(self) -> bool:
        return self.root.resolve() == Path("/")


def unit_text(name: str, executable: str) -> str:
    """The packaged unit `name` with ExecStart= pointing at `executable`."""
    template = files("egresswatch").joinpath("data", "systemd", name).read_text()
    return template.replace(TEMPLATE_EXEC, executable)


def this_executable() -> str:
    """The `egresswatch` script beside the running interpreter (the venv's), else `python -m`."""
    script = Path(sys.executable).parent / "egresswatch"
    return str(script) if script.exists() else f"{sys.executable} -m egresswatch"


def interpreter_paths() -> list[str]:
    """The virtual environment, the interpreter it was made from and, for an editable install,
    the source tree egresswatch is imported from (it lives outside the venv); symlinks resolved."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    source = Path(__file__).resolve().parent.parent
    if not any(source.is_relative_to(path) for path in paths):
        paths.add(source)
    return sorted(str(path) for path in paths)


def home_drop_in(paths: list[str]) -> str | None:
    """ProtectHome=tmpfs plus BindReadOnlyPaths= for `paths` the units' ProtectHome=yes would hide
    (an interpreter under /root, a venv under /home); None when nothing is hidden."""
    hidden = [p for p in paths if p.startswith(HIDDEN_BY_PROTECT_HOME)]
    if not hidden:
        return None
    return (
        "# written by `egresswatch service install`: egresswatch runs from under a home directory\n"
        f"[Service]\nProtectHome=tmpfs\nBindReadOnlyPaths={' '.join(hidden)}\n"
    )


def ensure_account(layout: Layout) -> str:
    """The system group and user (no login, home = the state directory)."""
    if _account_exists(layout):
        return f"user {SERVICE_USER}: already present"
    prefix = [] if layout.real else ["--prefix", str(layout.root)]
    _run(["groupadd", "--system", *prefix, SERVICE_USER])
    _run([
        "useradd", "--system", *prefix, "--gid", SERVICE_USER, "--no-create-home",
        "--home-dir", "/var/lib/egresswatch", "--shell", "/usr/sbin/nologin",
        "--comment", "egresswatch network-egress monitor", SERVICE_USER,
    ])  # fmt: skip
    return f"user {SERVICE_USER}: created"


def remove_account(layout: Layout) -> str:
    if not _account_exists(layout):
        return f"user {SERVICE_USER}: not present"
    prefix = [] if layout.real else ["--prefix", str(layout.root)]
    _run(["userdel", *prefix, SERVICE_USER])
    if _group_exists(layout):
        _run(["groupdel", *prefix, SERVICE_USER])
    return f"user {SERVICE_USER}: removed"


def account_ids(layout: Layout) -> tuple[int, int]:
    """uid and gid of the service user in `layout`'s passwd and group files."""
    if layout.real:
        entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_uid, entry.pw_gid
    uid = _field(layout.at(Path("etc/passwd")), 2)
    gid = _field(layout.at(Path("etc/group")), 2)
    if uid is None or gid is None:
        raise ConfigError(f"{layout.root}: no {SERVICE_USER} user or group after creating them")
    return int(uid), int(gid)


def _account_exists(layout: Layout) -> bool:
    if layout.real:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return False
        return True
    return _field(layout.at(Path("etc/passwd")), 0) is not None


def _group_exists(layout: Layout) -> bool:
    if layout.real:
        try:
            grp.getgrnam(SERVICE_USER)
        except KeyError:
            return False
        return True
    return _field(layout.at(Path("etc/group")), 0) is not None


def _field(database: Path, index: int) -> str | None:
    """Field `index` of the service user's line in a passwd-style file, or None."""
    if not database.exists():
        return None
    for line in database.read_text().splitlines():
        parts = line.split(":")
        if parts[0] == SERVICE_USER:
            return parts[index]
    return None


def write_config(layout: Layout, gid: int) -> str:
    path = layout.at(CONFIG)
    if path.exists():
        return f"{path}: kept (exists)"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chown(path.parent, 0, gid)
    path.parent.chmod(0o750)
    path.write_text(DEFAULT_CONFIG)
    os.chown(path, 0, gid)
    path.chmod(0o640)
    return f"{path}: created"


def make_directories(layout: Layout, uid: int, gid: int) -> list[str]:
    """State and runtime directories, owned by the service user, mode 0750."""
    done = []
    for relative in (STATE, RUNTIME):
        path = layout.at(relative)
        existed = path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(0o750)
        done.append(f"{path}: {'kept' if existed else 'created'}")
    return done


def write_units(layout: Layout, executable: str, drop_ins: dict[Path, str | None]) -> list[str]:
    """Unit files, and each drop-in written (text) or removed (None); lists what changed."""
    done = [_write_if_changed(layout.at(UNIT_DIR / n), unit_text(n, executable)) for n in UNITS]
    for relative, text in drop_ins.items():
        path = layout.at(relative)
        if text is not None:
            done.append(_write_if_changed(path, text))
        elif path.exists():
            path.unlink()
            done.append(f"{path}: removed (not needed)")
    return done


def remove_units(layout: Layout) -> list[str]:
    done = []
    for path in (*(layout.at(UNIT_DIR / n) for n in UNITS), *drop_in_paths(layout)):
        if path.exists():
            path.unlink()
            done.append(f"{path}: removed")
        if (
            path.parent.name.endswith(".d")
            and path.parent.is_dir()
            and not any(path.parent.iterdir())
        ):
            path.parent.rmdir()
    return done


def drop_in_paths(layout: Layout) -> list[Path]:
    return [layout.at(p) for p in (DROP_IN, *HOME_DROP_INS)]


def purge_data(layout: Layout) -> list[str]:
    done = []
    for relative in (STATE, RUNTIME, CONFIG.parent):
        path = layout.at(relative)
        if path.exists():
            shutil.rmtree(path)
            done.append(f"{path}: removed")
    return done


def _write_if_changed(path: Path, text: str) -> str:
    if path.exists() and path.read_text() == text:
        return f"{path}: unchanged"
    path.parent.mkdir(parents=True, exist_ok=True)
    verb = "updated" if path.exists() else "created"
    path.write_text(text)
    path.chmod(0o644)
    return f"{path}: {verb}"


def _run(argv: list[str]) -> None:
    """Run an administration command; OSError / CalledProcessError say which one failed."""
    subprocess.run(argv, check=True, capture_output=True, text=True)
