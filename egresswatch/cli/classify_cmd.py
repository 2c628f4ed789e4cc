"""`egresswatch classify HOST...`: shows how the destination catalog classifies host names."""

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console

from egresswatch.classify.catalog import load_catalog
from egresswatch.classify.destinations import Classification
from egresswatch.classify.verdict import Verdict
from egresswatch.cli.tables import Column, render
from egresswatch.errors import ConfigError
from egresswatch.output import printable, to_json_line


def host_of(text: str) -> str:
    """The host in what a user pastes: a URL (`https://hf.co/x`), `host/path` or `host:port`."""
    text = text.strip()
    if "://" in text:
        return urlsplit(text).hostname or ""
    head = text.split("/", 1)[0]
    if head.count(":") == 1:  # host:port (an IPv6 literal has more colons)
        head = head.split(":", 1)[0]
    return head


def as_json(result: Classification, verdict: Verdict | None = None) -> dict[str, Any]:
    """The JSON object printed per host by `classify --json` (`category` from the verdict)."""
    decided = {} if verdict is None else {
        "category": verdict.category,
        "category_source": verdict.source,
        "category_confidence": verdict.confidence,
        "evidence": verdict.matched,
        "decided_purpose": verdict.purpose,
    }  # fmt: skip
    return {
        "host": result.host,
        "category": result.category,
        "categories": list(result.categories),
        "tools": list(result.tools),
        "purpose": result.purpose,
        "source": result.source,
        "matched": result.matched,
        "registrable_domain": result.registrable_domain,
        "reason": result.reason,
        "roles": [
            {
                "category": r.category,
                "tools": list(r.tools),
                "purpose": r.purpose,
                "source": r.source,
            }
            for r in result.roles
        ],
        **decided,
    }


SHOWN_TOOLS = 3
COLUMNS = (
    Column("host", keep=0, min_width=24, fold=True),
    Column("category", keep=0, min_width=14),
    Column("decided by", keep=2, min_width=10),
    Column("matched", keep=3, min_width=12, fold=True),
    Column("registrable domain", keep=4, min_width=12, fold=True),
    Column("tools", keep=2, min_width=16, fold=True),
    Column("purpose", keep=1, min_width=20, fold=True),
)


def _brief_tools(tools: tuple[str, ...]) -> str:
    shown = "; ".join(tools[:SHOWN_TOOLS]) or "-"
    return f"{shown} (+{len(tools) - SHOWN_TOOLS})" if len(tools) > SHOWN_TOOLS else shown


def _cells(r: Classification, v: Verdict) -> tuple[str | None, ...]:
    others = [c for c in r.categories if c != v.category] if r.roles else []
    category = ", ".join([v.category, *others])
    purpose = v.purpose or r.purpose or r.reason
    decided = f"{v.source} {v.confidence:.2f}"
    tools = _brief_tools(r.tools)
    return (r.host, category, decided, v.matched, r.registrable_domain, tools, purpose)


def classify_command(
    hosts: Annotated[
        list[str], typer.Argument(help="Host names, IP literals or URLs to classify.")
    ],
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per host and line.")
    ] = False,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="User catalog CSV merged over the packaged one."),
    ] = None,
    tool: Annotated[
        str | None,
        typer.Option("--tool", help="The LLM tool that reached the hosts (picks its role)."),
    ] = None,
) -> None:
    """Show the category, tools, purpose and source the catalog gives each HOST.

    A name that is not a valid host name is shown with the reason; an empty one is a usage
    error (exit 2).
    """
    try:
        compiled = load_catalog(catalog)
    except ConfigError as exc:
        typer.echo(f"egresswatch: {printable(str(exc))}", err=True)
        raise typer.Exit(2) from exc
    names = [host_of(h) for h in hosts]
    if not all(names):
        raise typer.BadParameter("empty host name", param_hint="HOSTS")
    results = [(compiled.classify(h), compiled.classify_destination(h, tool=tool)) for h in names]
    if json_lines:
        for result, verdict in results:
            sys.stdout.write(to_json_line(as_json(result, verdict)) + "\n")
    else:
        render(COLUMNS, [_cells(r, v) for r, v in results], Console(highlight=False))



def register(app: typer.Typer) -> None:
    """Add the `classify` command to the egresswatch CLI."""
    app.command("classify")(classify_command)
