"""The agent's end of the control channel: a listening AF_UNIX socket (mode 0660), peers
checked with SO_PEERCRED, one request line and one answer line per connection, each change
run through the store's single writer.

A dashboard running as a shared account (`nobody`) is not trusted by uid, since any process of
that account would be: its uid is accepted only from the pid of the dashboard the agent started
(`pin_web`), while that child is unreaped (so its pid cannot name another process).
"""

import contextlib
import logging
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from egresswatch.control.jobs import WriterJob, answer_of
from egresswatch.control.protocol import (
    MAX_LINE,
    SUN_PATH_MAX,
    TIMEOUT,
    BadRequest,
    ControlError,
    SignReport,
    encode,
    error,
    parse_request,
    socket_path,
)
from egresswatch.control.reports import sign_answer
from egresswatch.counters import Counters
from egresswatch.store.writer import EventWriter
from egresswatch.webproc import web_user

log = logging.getLogger(__name__)
MAX_CLIENTS = 8
SHARED_USERS = frozenset({"nobody"})  # accounts other services run as too: pid-pinned
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_cred(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process that connected `conn`."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, _gid = _UCRED.unpack(raw)
    return int(pid), int(uid)


def read_line(conn: socket.socket, limit: int = MAX_LINE) -> bytes:
    """One newline-terminated line of at most `limit` bytes; BadRequest otherwise."""
    data = bytearray()
    while b"\n" not in data:
        chunk = conn.recv(limit + 1 - len(data))
        if not chunk:
            raise BadRequest("bad_request", "the request ended without a newline")
        data += chunk
        if len(data) > limit and b"\n" not in data[:limit]:
            raise BadRequest("too_large", f"a request line is at most {limit} bytes")
    return bytes(data[: data.index(b"\n")])


class ControlServer(threading.Thread):
    """Serves the control socket at `path` until `close`; only `allowed_uids` may talk to it,
    and `pinned_uid` only from the process given to `pin_web`. `reader` (an engine on the same
    store) builds the reports `report.sign` asks for.
    """

    def __init__(
        self,
        path: Path,
        writer: EventWriter,
        allowed_uids: Collection[int],
        group: int | None,
        *,
        reader: Engine | None = None,
        pinned_uid: int | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(name="egresswatch-control", daemon=True)
        self.path, self.writer, self.reader = path, writer, reader
        self.allowed_uids = frozenset(allowed_uids)
        self.group = group
        self.pinned_uid = pinned_uid
        self.node = node  # the agent's `[agent] node`: what its manual sessions carry
        self._web: subprocess.Popen[bytes] | None = None
        self.timeout = TIMEOUT  # for reading a request and for the writer to take it
        self._counters = Counters()
        self._counted = threading.Lock()  # client threads count; the heartbeat reads
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._closing = threading.Event()
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Bind and listen; OSError (or ValueError for a too long path) when it cannot."""
        if len(os.fsencode(self.path)) > SUN_PATH_MAX:
            raise ValueError(f"control socket path too long for AF_UNIX: {self.path}")
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # never reachable by others, even for a moment
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        if self.group is not None:
            os.chown(self.path, -1, self.group)
        os.chmod(self.path, 0o660)
        sock.listen(MAX_CLIENTS)
        sock.settimeout(0.2)
        self._sock = sock

    def pin_web(self, process: subprocess.Popen[bytes]) -> None:
        """The dashboard this agent started: the one process `pinned_uid` is accepted from."""
        self._web = process

    def _refusal(self, pid: int, uid: int) -> str | None:
        """Why the peer (pid, uid) may not ask; None when it may."""
        if uid in self.allowed_uids:
            return None
        if uid != self.pinned_uid:
            return f"uid {uid} may not control this agent"
        web = self._web
        # returncode stays None until the child is reaped: until then no process reuses its pid.
        if web is not None and web.returncode is None and web.pid == pid:
            return None
        return f"uid {uid} is a shared account: only the dashboard this agent started may ask"

    def _remove_stale(self) -> None:
        """A socket file left by an agent that is gone; a live one is an error."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            self.path.unlink(missing_ok=True)
            return
        except OSError as exc:
            raise OSError(f"{self.path} exists and is not a stale control socket: {exc}") from exc
        finally:
            probe.close()
        raise OSError(f"another agent already listens on {self.path}")

    def run(self) -> None:
        assert self._sock is not None, "open() first"
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closing.is_set():
                    return
                raise
            self._start_client(conn)

    def _start_client(self, conn: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            self._count("control.busy")
            self._answer(conn, error("busy", "too many control connections; try again"))
            conn.close()
            return
        threading.Thread(target=self._client, args=(conn,), daemon=True,
                         name="egresswatch-control-client").start()  # fmt: skip

    def _client(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(self.timeout)
                self._answer(conn, self.handle(conn))
        finally:
            self._slots.release()

    def handle(self, conn: socket.socket) -> dict[str, Any]:
        """The answer for the one request on `conn` (every failure is an answer)."""
        refused = self._refusal(*peer_cred(conn))
        if refused is not None:
            self._count("control.refused.peer")
            return error("forbidden", refused)
        try:
            request = parse_request(read_line(conn))
            if isinstance(request, SignReport):
                answer = sign_answer(self.reader, request)
            else:
                job = WriterJob(answer_of(request, self.node))
                job.post(self.writer)
                answer = job.wait(self.timeout)
        except BadRequest as exc:
            self._count(f"control.refused.{exc.code}")
            return error(exc.code, str(exc))
        except ControlError as exc:
            self._count(f"control.failed.{exc.code}")
            return error(exc.code, str(exc))
        except TimeoutError:
            self._count("control.refused.timeout")
            return error("timeout", f"no complete request line within {self.timeout:g} s")
        self._count("control.done")
        return answer

    def _count(self, name: str) -> None:
        with self._counted:
            self._counters.add(name)

    def counters(self) -> Counters:
        """A copy of this server's counters (`control.*`)."""
        copy = Counters()
        with self._counted:
            copy.merge(self._counters)
        return copy

    def _answer(self, conn: socket.socket, answer: dict[str, Any]) -> None:
        try:
            conn.sendall(encode(answer))
        except OSError as exc:  # the peer left; nothing else to tell it
            self._count("control.send_failed")
            log.debug("control answer not sent: %s", exc)

    def close(self) -> None:
        self._closing.set()
        if self._sock is not None:
            self._sock.close()
        if self.is_alive():
            self.join(1.0)
        with contextlib.suppress(OSError):
            self.path.unlink()


def for_agent(
    db_url: str, writer: EventWriter, reader: Engine | None = None, node: str | None = None
) -> ControlServer:
    """The control server of an agent writing the store at `db_url`: its own uid and root may
    ask, and as root also the dashboard's user (webproc), whose group owns the socket: a
    dedicated user by uid, a shared one (`nobody`) only from the pid given to `pin_web`.
    """
    uids, group, pinned = {0, os.geteuid()}, None, None
    if os.geteuid() == 0:
        with contextlib.suppress(LookupError):
            user = web_user()
            group = user.pw_gid
            if user.pw_name in SHARED_USERS:
                pinned = user.pw_uid
            else:
                uids.add(user.pw_uid)
    return ControlServer(
        socket_path(db_url), writer, uids, group, reader=reader, pinned_uid=pinned, node=node
    )
