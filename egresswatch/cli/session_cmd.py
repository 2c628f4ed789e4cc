"""`egresswatch session start|stop` (manual inference sessions) and `egresswatch sessions`."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from egresswatch.cli.filters import parse_when
from egresswatch.cli.store_cmd import DbOption, NodeOption
from egresswatch.errors import StoreError
from egresswatch.output import printable, to_json_line

if TYPE_CHECKING:
    from egresswatch.control.client import ControlClient
    from egresswatch.model import InferenceSession
    from egresswatch.store import Store

T = TypeVar("T")
SinceOption = Annotated[
    str | None, typer.Option(help="Only since: 10m, 2h, 1d, epoch seconds or ISO time.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def register(app: typer.Typer) -> None:
    session = typer.Typer(help="Start and stop manual inference sessions.", no_args_is_help=True)
    session.command("start")(session_start)
    session.command("stop")(session_stop)
    app.add_typer(session, name="session")
    app.command("sessions")(sessions)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(1)


@contextmanager
def opened_store(url: str | None) -> Iterator["Store"]:
    """The store at `url` (migrated), with store errors as one `error:` line and exit 1."""
    from egresswatch.store import open_store

    try:
        store = open_store(url)
    except StoreError as exc:
        fail(str(exc))
    try:
        yield store
    except StoreError as exc:
        fail(str(exc))
    finally:
        store.close()


def agent_channel(url: str | None) -> "ControlClient | None":
    """The running agent's control channel for the store at `url`, when it listens."""
    from egresswatch.control.client import ControlClient
    from egresswatch.control.protocol import socket_path
    from egresswatch.store.engine import resolve_url

    client = ControlClient(socket_path(resolve_url(url)))
    return client if client.available() else None


def by_agent(url: str | None, ask: "Callable[[ControlClient], T]") -> "T | None":
    """`ask` the running agent; None when none listens (the caller then writes directly)."""
    from egresswatch.control.client import ControlUnavailable

    client = agent_channel(url)
    if client is None:
        return None
    try:
        return ask(client)
    except ControlUnavailable:
        return None
    except StoreError as exc:
        fail(str(exc))


def session_start(
    label: Annotated[str | None, typer.Option(help="A note kept with the session.")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Every process is in scope, not only LLM tools.")
    ] = False,
    tool: Annotated[
        list[str] | None,
        typer.Option("--tool", help="Only this LLM tool is in scope (repeatable)."),
    ] = None,
    db: DbOption = None,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="The agent whose egress the session watches (default: the running agent's "
            "node, else the settings' [agent] node).",
        ),
    ] = None,
) -> None:
    """Open a manual session now and print its id; `egresswatch run` picks it up within 1 s."""
    from egresswatch.store.sessions import NewSession, open_session, writing

    tools = tuple(tool or ())
    node = _checked_node(node)
    sid = by_agent(db, lambda agent: agent.start_session(label, strict, tools, node))
    if sid is not None:
        typer.echo(str(sid))
        return
    node = node if node is not None else settings_node()
    new = NewSession(time.time(), "manual", label=label, strict=strict, tools=tools, node=node)
    with opened_store(db) as store:
        sid = writing(store.engine, lambda conn: open_session(conn, new))
    typer.echo(str(sid))


def _checked_node(node: str | None) -> str | None:
    from egresswatch.config import check_node

    if node is None:
        return None
    try:
        return check_node(node)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--node") from None


def settings_node() -> str:
    """The settings' `[agent] node` (config file, EGRESSWATCH_NODE, else the hostname)."""
    from egresswatch.config import load_settings
    from egresswatch.errors import ConfigError

    try:
        return load_settings().agent.node
    except ConfigError as exc:
        fail(str(exc))


def session_stop(
    session_id: Annotated[
        int | None,
        typer.Argument(
            metavar="[ID]",
            help="Default: the newest open manual session of this node (or without a node).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """End a session and print its verdict (clean or egress)."""
    from egresswatch.store.sessions import close_session, latest_open, writing

    stopped = by_agent(db, lambda agent: agent.stop_session(session_id))
    if stopped is not None:
        _stopped(*stopped, session_id)
        return
    with opened_store(db) as store:
        sid = session_id
        if sid is None:
            own = settings_node()
            sid = writing(store.engine, lambda conn: latest_open(conn, "manual", adopted_by=own))
            if sid is None:
                fail("no open manual session")
        verdict = writing(store.engine, lambda conn: close_session(conn, sid, time.time()))
    if verdict is None:
        fail(f"session {sid} is not open")
    typer.echo(f"session {sid}: {verdict}")


def _stopped(sid: int | None, verdict: str | None, asked: int | None) -> None:
    if sid is None:
        fail("no open manual session")
    if verdict is None:
        fail(f"session {sid if asked is None else asked} is not open")
    typer.echo(f"session {sid}: {verdict}")


def sessions(
    since: SinceOption = "1d",
    json_lines: JsonOption = False,
    db: DbOption = None,
    node: NodeOption = None,
) -> None:
    """List sessions (started since --since, or still open) with their verdicts."""
    from egresswatch.alerts.render import session_to_dict
    from egresswatch.store.sessions import list_sessions

    start = None if since is None else parse_when(since, time.time())
    with opened_store(db) as store:
        found = list_sessions(store.engine, start, node=node)
    for session in found:
        if json_lines:
            typer.echo(to_json_line(session_to_dict(session)))
        else:
            typer.echo(session_line(session))


def _clock(ts: float | None) -> str:
    return "open" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def session_line(session: "InferenceSession") -> str:
    tools = ",".join(session.tools) or ("all processes" if session.strict else "LLM tools")
    label = f" {session.label!r}" if session.label else ""
    return printable(
        f"{session.id:>5} {_clock(session.start)} -> {_clock(session.end)} {session.trigger:<6} "
        f"{session.verdict:<6} egress={session.egress} alerts={session.alerts} [{tools}]{label}"
    )
