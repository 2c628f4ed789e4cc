"""`egresswatch doctor`, the service half: unit states, the store and the agent's heartbeat in it,
the web endpoint, and the kernel paths the agent itself uses (its own sock_diag client; setns,
which needs CAP_SYS_ADMIN).
"""

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from egresswatch.attribute.netns import run_in_netns
from egresswatch.attribute.sockets import SockDiag
from egresswatch.config import load_settings
from egresswatch.doctor import Check
from egresswatch.errors import ConfigError, StoreError
from egresswatch.service_layout import UNITS
from egresswatch.service_systemd import unit_state

WEB_URL = "http://127.0.0.1:8765/api/health"  # loopback: the web unit's address
STALE_HEARTBEAT = 30.0


def check_units() -> list[Check]:
    checks = []
    for unit in UNITS:
        state = unit_state(unit)
        checks.append(
            Check(f"service: {unit}", state == "active", state, _unit_meaning(unit, state))
        )
    return checks


def _unit_meaning(unit: str, state: str) -> str:
    if state == "active":
        return "running under systemd"
    if state == "systemd not running":
        return "no systemd here: run `egresswatch run` yourself"
    return f"`sudo egresswatch service install`, or `systemctl start {unit}`"


def check_store() -> Check:
    """The configured store opens for reading at the newest schema; the agent's last heartbeat."""
    from egresswatch.store.database import open_reader  # noqa: PLC0415 (SQLAlchemy is slow)
    from egresswatch.store.status import read_status  # noqa: PLC0415

    try:
        store = open_reader(load_settings().store.url)
    except (ConfigError, StoreError) as err:
        return Check("store", False, str(err), "events cannot be read or written")
    try:
        status = read_status(store.engine)
    finally:
        store.close()
    if status is None:
        return Check("store", True, "readable, at schema head", "no agent has written to it yet")
    age = time.time() - status.updated
    fresh = age <= STALE_HEARTBEAT
    meaning = "the agent is recording" if fresh else "the agent has stopped writing"
    return Check("store", fresh, f"agent heartbeat {age:.0f}s ago (pid {status.pid})", meaning)


def check_web(url: str = WEB_URL) -> Check:
    """GET the web unit's health route; doctor only ever asks loopback."""
    if not url.startswith(("http://127.", "http://[::1]")):
        return Check("web endpoint", False, f"{url}: not loopback", "not asked")
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (checked above)
            code = response.status
    except urllib.error.HTTPError as err:
        code = err.code
    except OSError as err:
        return Check("web endpoint", False, f"{url}: {err}", "no dashboard on the default port")
    return Check("web endpoint", code == 200, f"{url}: HTTP {code}", "dashboard reachable")


def check_own_sock_diag() -> Check:
    """The agent's own sock_diag client finds a real loopback connection made here."""
    try:
        found = _lookup_own_connection()
    except OSError as err:
        return Check("sock_diag (agent's client)", False, str(err), "slower /proc lookups")
    ok = found is not None
    detail = "found a loopback connection" if ok else "a known connection was not found"
    return Check("sock_diag (agent's client)", ok, detail, "socket lookups at packet time")


def _lookup_own_connection() -> object:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname(), timeout=2) as client,
    ):
        local, remote = client.getsockname(), client.getpeername()
        diag = SockDiag()
        try:
            return diag.lookup("tcp", local, remote)
        finally:
            diag.close()


def check_setns(ns_path: Path = Path("/proc/self/ns/net")) -> Check:
    """setns() into a network namespace (our own: harmless) with the agent's helper."""
    try:
        run_in_netns(ns_path, lambda: None)
    except OSError as err:
        return Check(
            "setns (CAP_SYS_ADMIN)",
            False,
            err.strerror or str(err),
            "no sock_diag fallback in containers (the eBPF hooks need no setns)",
        )
    return Check("setns (CAP_SYS_ADMIN)", True, "works", "sock_diag fallback reaches containers")


def service_checks() -> list[Check]:
    return [
        *check_units(),
        check_store(),
        check_web(),
        check_own_sock_diag(),
        check_setns(),
    ]
