"""`egresswatch classify HOST...`: shows how the destination catalog classifies host names."""

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from egresswatch.classify.catalog import load_catalog
from egresswatch.classify.destinations import Classification
from egresswatch.classify.verdict import Verdict
from egresswatch.errors import ConfigError

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with control and bidi-override characters shown as \\xHH / \\uHHHH escapes."""
    return _UNPRINTABLE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
    } | decided


SHOWN_TOOLS = 3
SHOWN_PURPOSE = 90


def _brief_tools(tools: tuple[str, ...]) -> str:
    shown = "; ".join(tools[:SHOWN_TOOLS]) or "-"
    return f"{shown} (+{len(tools) - SHOWN_TOOLS})" if len(tools) > SHOWN_TOOLS else shown


def _table(results: list[tuple[Classification, Verdict]]) -> Table:
    table = Table(
        "host", "category", "decided by", "matched", "registrable domain", "tools", "purpose"
    )
    for column in table.columns[:5]:
        column.overflow = "fold"  # never hide part of a host or pattern behind an ellipsis
    for r, v in results:
        # Text cells are never parsed as rich markup, so "[red]"-style names stay literal.
        others = [c for c in r.categories if c != v.category] if r.roles else []
        category = ", ".join([v.category, *others])
        purpose = (v.purpose or r.purpose or r.reason or "")[:SHOWN_PURPOSE]
        decided = f"{v.source} {v.confidence:.2f}"
        cells = (r.host, category, decided, v.matched or "-", r.registrable_domain or "-")
        table.add_row(*(Text(printable(c)) for c in (*cells, _brief_tools(r.tools), purpose)))
    return table


def classify_command(
    hosts: Annotated[list[str], typer.Argument(help="Host names (or IP literals) to classify.")],
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
    """Show the category of each HOST, how it was decided, and what the catalog says of it."""
    try:
        compiled = load_catalog(catalog)
    except ConfigError as exc:
        typer.echo(f"egresswatch: {printable(str(exc))}", err=True)
        raise typer.Exit(2) from exc
    results = [(compiled.classify(h), compiled.classify_destination(h, tool=tool)) for h in hosts]
    if json_lines:
        for result, verdict in results:
            sys.stdout.write(json.dumps(as_json(result, verdict)) + "\n")
        return
    Console(soft_wrap=False).print(_table(results))


def register(app: typer.Typer) -> None:
    """Add the `classify` command to the egresswatch CLI."""
    app.command("classify")(classify_command)
