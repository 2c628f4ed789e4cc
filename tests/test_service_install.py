"""`egresswatch service install | uninstall` against a scratch root (real useradd --prefix,
real files and modes), and once for real on this machine when that is safe."""

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from egresswatch.service_layout import interpreter_paths

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None, reason="needs root and useradd"
)
EXIT_NOT_STARTED = 3


def _service(*args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    where = ["--root", str(root)] if root is not None else []
    argv = [sys.executable, "-m", "egresswatch", "service", *args, *where]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    return tmp_path


def _uid_gid(root: Path) -> tuple[int, int]:
    line = next(
        x for x in (root / "etc/passwd").read_text().splitlines() if x.startswith("egresswatch:")
    )
    fields = line.split(":")
    return int(fields[2]), int(fields[3])


def test_install_lays_everything_down(root: Path) -> None:
    done = _service("install", root=root)
    assert done.returncode == EXIT_NOT_STARTED, done.stderr
    assert "systemd is not running" in done.stdout.splitlines()[-1]
    uid, gid = _uid_gid(root)
    assert 0 < uid < 1000  # a system user
    for state in (root / "var/lib/egresswatch", root / "run/egresswatch"):
        info = state.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (uid, gid, 0o750)
    config = (root / "etc/egresswatch/config.toml").stat()
    assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, gid, 0o640)
    unit = (root / "etc/systemd/system/egresswatch.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent / 'egresswatch'} run --no-web" in unit
    web = (root / "etc/systemd/system/egresswatch-web.service").read_text()
    assert "web --require-unprivileged" in web
    assert not (root / "etc/systemd/system/egresswatch.service.d/network.conf").exists()
    home = root / "etc/systemd/system/egresswatch-web.service.d/home.conf"
    under_home = any(p.startswith(("/root/", "/home/")) for p in interpreter_paths())
    assert home.exists() == under_home
    if under_home:
        assert f"BindReadOnlyPaths={Path(sys.base_prefix).resolve()}" in home.read_text()


def test_install_is_idempotent_and_keeps_an_edited_config(root: Path) -> None:
    assert _service("install", root=root).returncode == EXIT_NOT_STARTED
    config = root / "etc/egresswatch/config.toml"
    config.write_text("[store]\nmax_age_days = 7\n")
    again = _service("install", root=root)
    assert again.returncode == EXIT_NOT_STARTED, again.stderr
    assert "user egresswatch: already present" in again.stdout
    assert "config.toml: kept (exists)" in again.stdout
    units = [line for line in again.stdout.splitlines() if "/etc/systemd/system/" in line]
    assert units and all(line.endswith(": unchanged") for line in units), again.stdout
    assert config.read_text() == "[store]\nmax_age_days = 7\n"
    assert _users(root / "etc/passwd").count("egresswatch") == 1


def test_webhook_sink_opens_exactly_its_address(root: Path) -> None:
    _service("install", "--no-start", root=root)
    config = root / "etc/egresswatch/config.toml"
    config.write_text('[sinks.webhook]\nurl = "http://127.0.0.1:9/hook"\n')
    assert _service("install", "--no-start", root=root).returncode == 0
    drop_in = root / "etc/systemd/system/egresswatch.service.d/network.conf"
    assert "IPAddressAllow=127.0.0.1\n" in drop_in.read_text()
    assert "RestrictAddressFamilies=AF_INET AF_INET6" in drop_in.read_text()
    config.write_text("")
    assert "network.conf: removed" in _service("install", "--no-start", root=root).stdout
    assert not drop_in.exists()


def test_corrupt_config_fails_in_one_line(root: Path) -> None:
    _service("install", "--no-start", root=root)
    (root / "etc/egresswatch/config.toml").write_text("[store\n")
    done = _service("install", root=root)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "not valid TOML" in done.stderr


def test_uninstall_keeps_data_unless_purge(root: Path) -> None:
    _service("install", root=root)
    (root / "var/lib/egresswatch/events.db").write_text("kept")
    done = _service("uninstall", root=root)
    assert done.returncode == 0, done.stderr
    assert not (root / "etc/systemd/system/egresswatch.service").exists()
    assert (root / "var/lib/egresswatch/events.db").read_text() == "kept"
    assert "egresswatch" in _users(root / "etc/passwd")
    purged = _service("uninstall", "--purge", root=root)
    assert purged.returncode == 0, purged.stderr
    assert not (root / "var/lib/egresswatch").exists()
    assert not (root / "etc/egresswatch").exists()
    assert "egresswatch" not in _users(root / "etc/passwd")
    assert "egresswatch" not in _users(root / "etc/group")


def _users(database: Path) -> list[str]:
    return [line.split(":")[0] for line in database.read_text().splitlines()]


def _real_box_is_clean() -> bool:
    try:
        pwd.getpwnam("egresswatch")
    except KeyError:
        paths = (
            "/etc/egresswatch",
            "/var/lib/egresswatch",
            "/etc/systemd/system/egresswatch.service",
        )
        return not any(Path(p).exists() for p in paths)
    return False


@pytest.mark.skipif(not _real_box_is_clean(), reason="egresswatch is installed here already")
def test_install_for_real_then_purge() -> None:
    try:
        done = _service("install")
        assert done.returncode == EXIT_NOT_STARTED, done.stderr
        entry = pwd.getpwnam("egresswatch")
        assert entry.pw_shell == "/usr/sbin/nologin"
        assert Path("/var/lib/egresswatch").stat().st_uid == entry.pw_uid
        assert Path("/etc/systemd/system/egresswatch.service").exists()
        check = subprocess.run(
            ["systemd-analyze", "verify", "/etc/systemd/system/egresswatch.service"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
    finally:
        purged = _service("uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert _real_box_is_clean()
