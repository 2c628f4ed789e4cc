"""`egresswatch report SESSION [--format md|json|html] [--output FILE]` and
`egresswatch report verify FILE`."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from egresswatch.cli.session_cmd import fail, opened_store
from egresswatch.cli.store_cmd import DbOption
from egresswatch.errors import ConfigError, StoreError
from egresswatch.output import printable


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    target: Annotated[
        str, typer.Argument(metavar="SESSION|verify", help="A session id, or verify.")
    ],
    file: Annotated[
        Path | None, typer.Argument(metavar="[FILE]", help="With verify: the report.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, json or html.")] = "md",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write here, not to stdout.")
    ] = None,
    db: DbOption = None,
) -> None:
    """A session's signed report (verdict, egress by tool, alerts, evidence, remediation), or
    `report verify FILE`: check its signature and its evidence against the store."""
    if target == "verify":
        if file is None:
            raise typer.BadParameter("report verify needs the report FILE")
        _verify(file, db)
        return
    if not target.isdigit():
        raise typer.BadParameter(f"not a session id or verify: {target!r}")
    if fmt not in ("md", "json", "html"):
        raise typer.BadParameter("md, json or html", param_hint="--format")
    _write(int(target), fmt, output, db)


def _write(session_id: int, fmt: str, output: Path | None, db: str | None) -> None:
    from egresswatch.report.document import build_report
    from egresswatch.report.signed import signed_report
    from egresswatch.report.signing import machine_key

    try:
        key = machine_key()
    except ConfigError as err:
        fail(str(err))
    with opened_store(db) as store:
        data = signed_report(build_report(store.engine, session_id), fmt, key)
    if output is None:
        sys.stdout.buffer.write(data)
        return
    try:
        output.write_bytes(data)
    except OSError as err:
        fail(f"{output}: cannot write: {err.strerror}")


def _verify(file: Path, db: str | None) -> None:
    from egresswatch.report.signed import verify_report

    try:
        data = file.read_bytes()
    except OSError as err:
        fail(f"{file}: cannot read: {err.strerror}")
    try:
        with opened_store(db) as store:
            verdict = verify_report(data, store.engine)
    except StoreError as err:
        fail(str(err))
    if not verdict.ok:
        for problem in verdict.problems:
            typer.echo(f"FAILED: {printable(problem)}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"OK: signed by ed25519 key {printable(verdict.public_key)}; the evidence of session "
        f"{verdict.session} matches the store"
    )
