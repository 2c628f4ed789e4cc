"""`egresswatch alerts` (list, filtered) and `egresswatch alerts ack ID...`."""

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from egresswatch.cli.filters import parse_when
from egresswatch.cli.session_cmd import JsonOption, SinceOption, by_agent, fail, opened_store
from egresswatch.cli.store_cmd import DbOption, NodeOption
from egresswatch.model import SEVERITIES
from egresswatch.output import printable, to_json_line

if TYPE_CHECKING:
    from egresswatch.model import Alert


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="List alerts (`alerts --since 1d --json`) or acknowledge them (`alerts ack ID...`).",
        invoke_without_command=True,
    )
    group.callback()(alerts)
    group.command("ack")(ack)
    app.add_typer(group, name="alerts")


def alerts(
    ctx: typer.Context,
    *,
    since: SinceOption = None,
    severity: Annotated[
        str | None, typer.Option(help="Lowest severity: info, low, medium, high, critical.")
    ] = None,
    session: Annotated[int | None, typer.Option(help="Only alerts of this session.")] = None,
    only_open: Annotated[bool, typer.Option("--open", help="Only unacknowledged alerts.")] = False,
    json_lines: JsonOption = False,
    db: DbOption = None,
    node: NodeOption = None,
) -> None:
    """List alerts, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    from egresswatch.alerts.render import alert_to_dict
    from egresswatch.store.alerts import AlertFilter, list_alerts

    if severity is not None and severity not in SEVERITIES:
        raise typer.BadParameter(f"one of {', '.join(SEVERITIES)}", param_hint="--severity")
    flt = AlertFilter(
        since=None if since is None else parse_when(since, time.time()),
        severity=severity,
        session=session,
        only_open=only_open,
        node=node,
    )
    with opened_store(db) as store:
        found = list_alerts(store.engine, flt)
    for alert in found:
        typer.echo(to_json_line(alert_to_dict(alert)) if json_lines else alert_line(alert))


def ack(
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Alert ids.")],
    db: DbOption = None,
) -> None:
    """Acknowledge alerts: they leave `alerts --open`."""
    from egresswatch.store.alerts import acknowledge

    done = by_agent(db, lambda agent: agent.acknowledge(ids))
    if done is None:
        with opened_store(db) as store:
            done = acknowledge(store.engine, ids)
    for alert_id in done:
        typer.echo(f"acknowledged {alert_id}")
    missing = sorted(set(ids) - set(done))
    if missing:
        fail(f"no such alert: {', '.join(map(str, missing))}")


def alert_line(alert: "Alert") -> str:
    when = datetime.fromtimestamp(alert.time).strftime("%Y-%m-%d %H:%M:%S")
    ack_mark = " (acked)" if alert.acknowledged else ""
    return printable(
        f"{alert.id:>5} {when} {alert.severity:<8} {alert.rule} x{alert.count}: "
        f"{alert.message}{ack_mark}"
    )
