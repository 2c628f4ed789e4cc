"""The options that select stored events (--since, --until, --tool, --category, --host, --node),
checked and turned into an EventFilter; a bad value names its option.
"""

import dataclasses
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import typer

import egresswatch.when

if TYPE_CHECKING:
    from egresswatch.store import EventFilter, Store

_PARENTHETICAL = re.compile(r"\s*\([^)]*\)\s*")
_GLOB = re.compile(r"[*?\[\]]")


def parse_when(text: str, now: float, option: str = "--since") -> float:
    """`10m` (ago), epoch seconds, or an ISO-8601 time; a usage error naming `option` if not."""
    try:
        return egresswatch.when.parse_when(text, now)
    except ValueError:
        raise typer.BadParameter(
            f"not a duration, epoch or ISO time: {text!r} (try 10m, 2h, 7d or 2026-12-04T09:00)",
            param_hint=option,
        ) from None


def known_categories() -> list[str]:
    """Every destination category the catalog can give."""
    from egresswatch.classify.catalog import CATEGORIES

    return sorted(CATEGORIES)


def check_category(category: str | None) -> str | None:
    """`category` lower-cased, or a usage error naming the known categories."""
    if category is None:
        return None
    wanted = category.strip().lower()
    if wanted not in known_categories():
        raise typer.BadParameter(
            f"no events match: {category!r} is not a category "
            f"(known: {', '.join(known_categories())})",
            param_hint="--category",
        )
    return wanted


def tool_aliases() -> dict[str, set[str]]:
    """Each tool label of the packaged rules -> the lower-case names it answers to.

    A label answers to itself, to each part of "a / b" labels, to itself without a
    parenthetical ("Gradio apps (library)" -> "gradio apps") and to the literal process
    names and programs its rules look for ("gradio", "hf", "gpt4all").
    """
    from importlib import resources

    from egresswatch.classify.tools import parse_tool_rules

    text = resources.files("egresswatch").joinpath("data", "tools.csv").read_text("utf-8")
    aliases: dict[str, set[str]] = {}
    for rule in parse_tool_rules(text, "tools.csv"):
        names = aliases.setdefault(rule.tool, _label_names(rule.tool))
        if rule.kind in ("name", "command"):
            program = rule.pattern.split()[0]
            if not _GLOB.search(program):
                names.add(program.lower())
    return aliases


def _label_names(label: str) -> set[str]:
    names = {label.lower(), _PARENTHETICAL.sub(" ", label).strip().lower()}
    names.update(part.strip().lower() for part in label.split("/"))
    return {n for n in names if n}


def resolve_tool(wanted: str | None, stored: Iterable[str]) -> str | None:
    """The stored tool label that `wanted` names (case-insensitive, by label or alias).

    Falls back to `wanted` itself when nothing matches (the query then finds nothing, and
    the caller says so).
    """
    if wanted is None:
        return None
    key = wanted.strip().lower()
    stored = list(stored)
    exact = [s for s in stored if s.lower() == key]
    if exact:
        return exact[0]
    labels = [label for label, names in tool_aliases().items() if key in names]
    for label in labels:
        found = [s for s in stored if s.lower() == label.lower()]
        if found:
            return found[0]
    return labels[0] if labels else wanted


def with_stored_tool(store: "Store", flt: "EventFilter") -> "EventFilter":
    """`flt` with its --tool matched to a tool label the store holds (by name or alias).

    Raises:
        StoreError: the store cannot be read.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from egresswatch.errors import StoreError
    from egresswatch.store.views import tool_labels

    if flt.tool is None:
        return flt
    try:
        stored = tool_labels(store.engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the event store: {exc}") from exc
    return dataclasses.replace(flt, tool=resolve_tool(flt.tool, stored))


def event_filter(
    since: str | None,
    until: str | None,
    tool: str | None,
    category: str | None,
    host: str | None,
    *,
    node: str | None = None,
) -> "EventFilter":
    """The EventFilter for the options (the tool still as typed: see `resolve_tool`)."""
    from egresswatch.store import EventFilter

    now = time.time()
    return EventFilter(
        since=None if since is None else parse_when(since, now, "--since"),
        until=None if until is None else parse_when(until, now, "--until"),
        tool=tool,
        category=check_category(category),
        host=host,
        node=node,
    )
