"""The desktop sink: org.freedesktop.Notifications.Notify on each logged-in user's session bus,
sent by `gdbus` running as that user (setpriv drops root first): no privileged process talks
to a user's bus, and the user's notification daemon sees an ordinary client."""

import html
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from egresswatch.counters import Counters
from egresswatch.model import Alert
from egresswatch.output import printable

RUNTIME = Path("/run/user")
URGENCY = {"info": 0, "low": 0, "medium": 1, "high": 2, "critical": 2}


@dataclass(frozen=True, slots=True)
class UserBus:
    uid: int
    gid: int
    address: str


def logged_in_buses(runtime: Path = RUNTIME) -> list[UserBus]:
    """Every /run/user/UID/bus socket whose UID is a known user."""
    found = []
    for bus in sorted(runtime.glob("*/bus")):
        try:
            user = pwd.getpwuid(int(bus.parent.name))
        except (ValueError, KeyError):
            continue
        found.append(UserBus(user.pw_uid, user.pw_gid, f"unix:path={bus}"))
    return found


def gvariant_string(text: str) -> str:
    """A GVariant text-format string literal; the content is escaped for notification markup."""
    safe = html.escape(printable(text), quote=False)
    return "'" + safe.replace("\\", "\\\\").replace("'", "\\'") + "'"


def notify_argv(bus: UserBus, alert: Alert) -> list[str]:
    call = [
        "gdbus", "call", "--session",
        "--dest", "org.freedesktop.Notifications",
        "--object-path", "/org/freedesktop/Notifications",
        "--method", "org.freedesktop.Notifications.Notify",
        "'egresswatch'", "@u 0", "'dialog-warning'",
        gvariant_string(f"egresswatch: {alert.rule} ({alert.severity})"),
        gvariant_string(alert.message),
        "@as []",
        f"{{'urgency': <@y {URGENCY[alert.severity]}>}}",
        "@i 10000",
    ]  # fmt: skip
    env = ["env", "-i", f"DBUS_SESSION_BUS_ADDRESS={bus.address}"]
    if os.geteuid() == 0:
        drop = ["setpriv", f"--reuid={bus.uid}", f"--regid={bus.gid}", "--clear-groups"]
        return [*drop, *env, *call]
    return [*env, *call]


@dataclass
class DesktopSink:
    """Notifies every logged-in user (`buses`); True when at least one notification was sent."""

    buses: Callable[[], list[UserBus]] = logged_in_buses
    timeout: float = 5.0
    name: str = "desktop"
    counters: Counters = field(default_factory=Counters)

    def send(self, alert: Alert) -> bool:
        if shutil.which("gdbus") is None:
            self.counters.add("sinks.desktop.no_gdbus")
            return False
        sent = False
        for bus in self.buses():
            sent = self._notify(bus, alert) or sent
        return sent

    def _notify(self, bus: UserBus, alert: Alert) -> bool:
        try:
            done = subprocess.run(
                notify_argv(bus, alert), capture_output=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            self.counters.add(f"sinks.desktop.error.{type(err).__name__}")
            return False
        if done.returncode != 0:
            self.counters.add("sinks.desktop.refused")
        return done.returncode == 0
