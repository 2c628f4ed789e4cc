"""`service install` and `service uninstall` as ordered steps over a Layout; each returns the
lines it reports. systemctl runs only on the real root and only when systemd is PID 1.
"""

from pathlib import Path

from egresswatch.config import load_settings
from egresswatch.service_layout import (
    CONFIG,
    DROP_IN,
    HOME_DROP_INS,
    UNITS,
    Layout,
    account_ids,
    ensure_account,
    home_drop_in,
    interpreter_paths,
    make_directories,
    purge_data,
    remove_account,
    remove_units,
    this_executable,
    write_config,
    write_units,
)
from egresswatch.service_network import network_drop_in
from egresswatch.service_systemd import NOT_RUNNING, systemctl, systemd_running


def install_service(layout: Layout, *, start: bool = True) -> tuple[list[str], bool]:
    """Lay everything down; start the units if asked and possible. Returns (report, started)."""
    lines = [ensure_account(layout)]
    uid, gid = account_ids(layout)
    lines.append(write_config(layout, gid))
    lines += make_directories(layout, uid, gid)
    settings = load_settings(layout.at(CONFIG), environ={})
    home = home_drop_in(interpreter_paths())
    drop_ins = {
        DROP_IN: network_drop_in(settings, layout.at(Path("etc/resolv.conf"))),
        **dict.fromkeys(HOME_DROP_INS, home),
    }
    lines += write_units(layout, this_executable(), drop_ins)
    if not start:
        return [*lines, "units not started (--no-start)"], False
    if not (layout.real and systemd_running()):
        return [*lines, NOT_RUNNING], False
    systemctl("daemon-reload")
    systemctl("enable", "--now", *UNITS)
    return [*lines, f"started: {' '.join(UNITS)}"], True


def uninstall_service(layout: Layout, *, purge: bool) -> list[str]:
    """Stop and remove the units; with `purge` also the data, config and the user."""
    lines = []
    active = layout.real and systemd_running()
    if active:
        systemctl("disable", "--now", *UNITS)
        lines.append(f"stopped and disabled: {' '.join(UNITS)}")
    lines += remove_units(layout)
    if active:
        systemctl("daemon-reload")
    if not purge:
        return [*lines, "kept the stored events, the config and the user (--purge removes them)"]
    return [*lines, *purge_data(layout), remove_account(layout)]
