"""`egresswatch service install | uninstall`: the hardened systemd service in one step.

Exit codes: 0 installed and started (or removed), 1 failed (one line says which step),
2 usage, 3 installed but not started because systemd is not running on this machine.
"""

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from egresswatch.errors import EgressWatchError
from egresswatch.output import printable

if TYPE_CHECKING:
    from egresswatch.service_layout import Layout

EXIT_NOT_STARTED = 3
ROOT_ENV = "EGRESSWATCH_SERVICE_ROOT"  # a scratch tree for tests; "/" otherwise

service_app = typer.Typer(
    name="service",
    help="Install or remove the hardened systemd service (agent + dashboard). Needs root.",
    no_args_is_help=True,
)
RootOption = Annotated[
    Path | None, typer.Option("--root", hidden=True, help="Install under this tree (tests).")
]


@service_app.command()
def install(
    root: RootOption = None,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Lay everything down but do not start the units.")
    ] = False,
) -> None:
    """Create the egresswatch user, /etc/egresswatch/config.toml (if missing), the state and
    runtime directories and the units, then enable and start them. Safe to run again.

    Exit 0: installed and started; 3: installed, not started (systemd is not running); 1: failed.
    """
    from egresswatch.service_install import install_service

    layout = _layout(root)
    try:
        lines, started = install_service(layout, start=not no_start)
    except (EgressWatchError, OSError, subprocess.CalledProcessError) as err:
        _fail(err)
    for line in lines:
        typer.echo(printable(line))
    if not started and not no_start:
        raise typer.Exit(EXIT_NOT_STARTED)


@service_app.command()
def uninstall(
    root: RootOption = None,
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Also delete the stored events, the config and the user."),
    ] = False,
) -> None:
    """Stop and disable the units and remove them; keeps data, config and user unless --purge."""
    from egresswatch.service_install import uninstall_service

    try:
        lines = uninstall_service(_layout(root), purge=purge)
    except (EgressWatchError, OSError, subprocess.CalledProcessError) as err:
        _fail(err)
    for line in lines:
        typer.echo(printable(line))


def _layout(root: Path | None) -> "Layout":
    from egresswatch.service_layout import Layout

    chosen = root or Path(os.environ.get(ROOT_ENV) or "/")
    if os.geteuid() != 0:
        typer.echo("error: service install needs root: sudo egresswatch service ...", err=True)
        raise typer.Exit(1)
    return Layout(chosen)


def _fail(err: BaseException) -> NoReturn:
    detail = err.stderr.strip() if isinstance(err, subprocess.CalledProcessError) else ""
    typer.echo(f"error: {printable(str(err))} {printable(detail)}".rstrip(), err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(service_app)
