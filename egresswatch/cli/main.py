"""The `egresswatch` command: builds the typer app from each command module's `register`."""

import typer

from egresswatch import __version__
from egresswatch.cli import (
    agent_cmd,
    alerts_cmd,
    classify_cmd,
    replay_cmd,
    report_cmd,
    run_cmd,
    session_cmd,
    store_cmd,
    tools_cmd,
    web_cmd,
)

app = typer.Typer(
    name="egresswatch",
    help=(
        "Passive network-egress monitor: which process talked to which host, what kind of host "
        "that is, and did anything leave while local LLM inference ran. Reads only metadata "
        "(DNS, TLS and QUIC ClientHello names), never payloads."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"egresswatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Passive network-egress monitor for Linux."""


for _module in (run_cmd, agent_cmd, replay_cmd, classify_cmd, store_cmd, web_cmd):
    _module.register(app)
for _module in (session_cmd, alerts_cmd, report_cmd, tools_cmd):
    _module.register(app)


def main() -> None:
    app()
