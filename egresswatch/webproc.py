"""`egresswatch run`'s dashboard: `egresswatch web` started as a separate process that holds
neither root nor capabilities. As root it runs as a dedicated user (the first of WEB_USERS that
exists), given group read access to the SQLite store; the child refuses to serve if it still
holds any privilege.
"""

import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from egresswatch.control.protocol import ENV_PATH, socket_path

WEB_USERS = ("egresswatch-web", "egresswatch", "nobody")
STOP_TIMEOUT = 5.0


@dataclass
class WebProcess:
    process: subprocess.Popen[bytes]
    url: str
    user: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def web_user() -> pwd.struct_passwd:
    for name in WEB_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LookupError(f"none of the users {', '.join(WEB_USERS)} exists")


def start_web(db_url: str, host: str, port: int) -> WebProcess:
    """Start `egresswatch web` for the store at `db_url` (a resolved SQLAlchemy URL).

    Raises OSError or LookupError when it cannot be started as an unprivileged user.
    """
    command = [sys.executable, "-m", "egresswatch", "web", "--host", host, "--port", str(port),
               "--require-unprivileged"]  # fmt: skip
    # The URL goes in the environment, not argv, where ps(1) would show a password.
    env = {"PATH": "/usr/bin:/bin", "EGRESSWATCH_DB": db_url, "LANG": "C.UTF-8"}
    env[ENV_PATH] = str(socket_path(db_url))  # the agent's control socket (egresswatch.control)
    user = None
    if os.geteuid() == 0:
        user = web_user()
        grant_read(db_url, user.pw_gid)
        env["HOME"] = "/nonexistent"
    try:
        process = _spawn(command, env, user)
    except PermissionError as err:
        who = "this user" if user is None else f"user {user.pw_name}"
        raise PermissionError(
            f"{who} cannot run {err.filename or sys.executable}: install egresswatch where other "
            "users can read it, or start `egresswatch web` yourself"
        ) from err
    shown = f"[{host}]" if ":" in host else host
    return WebProcess(process, f"http://{shown}:{port}/", "self" if user is None else user.pw_name)


def _spawn(
    command: list[str], env: dict[str, str], user: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        user=None if user is None else user.pw_uid,
        group=None if user is None else user.pw_gid,
        extra_groups=None if user is None else [],
    )


def grant_read(db_url: str, gid: int) -> None:
    """Group read access for `gid` to a SQLite store: its directory, the file, -wal and -shm
    (SQLite gives new -wal/-shm files the database file's owner and mode).
    """
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    db = Path(url.database)
    _share(db.parent, gid, stat.S_IRGRP | stat.S_IXGRP)
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            _share(path, gid, stat.S_IRGRP)


def _share(path: Path, gid: int, bits: int) -> None:
    st = path.stat()
    if st.st_gid != gid:
        os.chown(path, -1, gid)
    os.chmod(path, stat.S_IMODE(st.st_mode) | bits)
