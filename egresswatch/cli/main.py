"""The `egresswatch` command: builds the typer app from each command module's `register`.

Exit codes: 0 ok, 1 found nothing / failed (a store, capture or check that did not work),
2 usage (a bad option, argument or settings file). Errors are one line on stderr.
"""

import sys

import typer

try:  # typer >= 0.26 vendors click; older releases use the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors  # type: ignore[no-redef]

from egresswatch.cli import (
    agent_cmd,
    alerts_cmd,
    classify_cmd,
    demo_cmd,
    events_cmd,
    replay_cmd,
    report_cmd,
    run_cmd,
    service_cmd,
    session_cmd,
    store_cmd,
    tools_cmd,
    web_cmd,
)
from egresswatch.cli.version import version_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    name="egresswatch",
    help=(
        "Passive network-egress monitor: which process talked to which host, what kind of host "
        "that is, and did anything leave while local LLM inference ran. Reads only metadata "
        "(DNS, TLS and QUIC ClientHello names), never payloads.\n\n"
        "Exit codes: 0 ok, 1 nothing found or failed, 2 usage error."
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and the destination catalog's date, and exit.",
    ),
) -> None:
    """Passive network-egress monitor for Linux."""


for _module in (
    run_cmd, agent_cmd, replay_cmd, classify_cmd, events_cmd, store_cmd, demo_cmd,
    session_cmd, alerts_cmd, report_cmd, tools_cmd, web_cmd,
    service_cmd,
):  # fmt: skip
    _module.register(app)


def usage_line(err: click_errors.UsageError) -> str:
    """A usage error as one line: `egresswatch replay: <problem> (see --help)`."""
    where = err.ctx.command_path if err.ctx is not None else "egresswatch"
    return f"{where}: {err.format_message()} (see `{where} --help`)"


def main() -> None:
    """Run the CLI; usage errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as err:
        err.show()
        code = EXIT_USAGE
    except click_errors.UsageError as err:
        typer.echo(usage_line(err), err=True)
        code = EXIT_USAGE
    except click_errors.ClickException as err:
        typer.echo(f"egresswatch: {err.format_message()}", err=True)
        code = err.exit_code
    except typer.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else EXIT_OK)
