"""`egresswatch tools [--json]`: a report card per recognised LLM tool."""

from typing import Any

import typer

from egresswatch.cli.session_cmd import JsonOption, opened_store
from egresswatch.cli.store_cmd import DbOption
from egresswatch.output import printable, to_json_line


def register(app: typer.Typer) -> None:
    app.command("tools")(tools)


def tools(json_lines: JsonOption = False, db: DbOption = None) -> None:
    """Per tool: executables and hashes seen, destinations by category (ever / last 30 days),
    sessions, clean sessions and alerts."""
    from egresswatch.store.toolcards import tool_cards

    with opened_store(db) as store:
        cards = tool_cards(store.engine)
    for card in cards:
        typer.echo(to_json_line(card) if json_lines else card_text(card))


def card_text(card: dict[str, Any]) -> str:
    sessions = f"sessions {card['sessions']} ({card['clean_sessions']} clean)"
    lines = [f"{card['tool']}: {sessions}, alerts {card['alerts']}"]
    lines += [f"  exe {e['path']} sha256 {e['sha256'] or '-'}" for e in card["executables"]]
    for span in ("ever", "last_30_days"):
        for category, hosts in sorted(card["destinations"][span].items()):
            lines.append(f"  {span.replace('_', ' ')}: {category}: {', '.join(sorted(hosts))}")
    return "\n".join(printable(line) for line in lines)
