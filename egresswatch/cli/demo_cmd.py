"""`egresswatch demo`: fills a scratch store with a scripted local-LLM session and shows it, so a
newcomer sees what tools' egress looks like before capturing anything live."""

import shlex
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from egresswatch.cli.store_cmd import fail

SESSION_AGO = 300.0  # the session "happened" five minutes ago, so `--since 10m` shows it


class _NoFrames:
    def get(self, timeout: float | None = None) -> None:
        return None


def demo(
    db: Annotated[
        Path | None,
        typer.Option("--db", help="SQLite file to fill (default: a new scratch file in /tmp)."),
    ] = None,
) -> None:
    """Record a scripted session of Ollama, the hf CLI, Jan and Open WebUI into a scratch store
    (real DNS and TLS bytes through the real decoder, classifier and store; nothing is sent),
    then show it."""
    path = db or Path(tempfile.mkdtemp(prefix="egresswatch-demo-")) / "events.db"
    stored = _record(str(path))
    typer.echo(f"egresswatch demo: recorded {stored} events into {path}", err=True)
    from egresswatch.cli.events_cmd import events

    events(db=str(path))
    from egresswatch.cli.run_status import program

    me, db_args = shlex.join(program()), shlex.join(["--db", str(path)])
    typer.echo(
        "\nTry next:\n"
        f"  {me} summary {db_args} --by tool\n"
        f"  {me} events {db_args} --category cloud-llm-api\n"
        f"  {me} events {db_args} --raw --json",
        err=True,
    )


def _record(url: str) -> int:
    from egresswatch.agent import Agent
    from egresswatch.classify.catalog import load_catalog
    from egresswatch.daemon import Recorder
    from egresswatch.demo import ScriptedProcesses, session_frames
    from egresswatch.errors import StoreError
    from egresswatch.fanout import FanOut
    from egresswatch.store import open_store

    try:
        store = open_store(url)
    except StoreError as exc:
        fail(str(exc))
    owners = ScriptedProcesses()
    recorder = FanOut(load_catalog(None), (Recorder(store.writer()),))
    agent = Agent(_NoFrames(), owners, recorder)
    count = 0
    try:
        for frame in session_frames(time.time() - SESSION_AGO, owners):
            count += len(agent.handle(frame))
    finally:
        store.close()
    return count


def register(app: typer.Typer) -> None:
    """Add `demo` to the main CLI."""
    app.command("demo")(demo)
