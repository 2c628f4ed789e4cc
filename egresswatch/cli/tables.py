"""Terminal tables that fit the window: columns dropped by priority when narrow, hosts never cut
(folded instead), long text wrapped at word boundaries, every cell escaped (output.printable).
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console, OverflowMethod
from rich.table import Table
from rich.text import Text

from egresswatch.output import printable

GAP = 1  # columns between cells


@dataclass(frozen=True, slots=True)
class Column:
    """A column: `keep` orders what goes first when narrow (0: never dropped)."""

    title: str
    keep: int
    min_width: int
    fold: bool = False  # shares the spare width; long words wrap (hosts, purposes), never cut
    no_wrap: bool = False  # short fixed-form values (time, counts)
    max_width: int | None = None  # when short of room, a fixed column shrinks to this first
    whole: bool = False  # shown only when it fits at its natural width (nice-to-have columns)


def fitting(columns: Sequence[Column], width: int, natural: Sequence[int]) -> list[int]:
    """Indexes of the columns that fit in `width`, dropping the least kept first."""
    needs = [n if c.whole else c.min_width for c, n in zip(columns, natural, strict=True)]
    kept = list(range(len(columns)))
    by_drop_order = sorted(kept, key=lambda i: (-columns[i].keep, -i))
    for index in by_drop_order:
        if _needed(needs, kept) <= width or columns[index].keep == 0:
            break
        kept.remove(index)
    return kept


def _needed(needs: Sequence[int], kept: Sequence[int]) -> int:
    return sum(needs[i] for i in kept) + GAP * max(len(kept) - 1, 0)


def render(
    columns: Sequence[Column], rows: Sequence[Sequence[str | None]], console: Console
) -> None:
    """Print `rows` under `columns`, fitted to the console's width."""
    texts = [[cell(value) for value in row] for row in rows]
    every = [
        max([len(c.title)] + [r[i].cell_len for r in texts]) for i, c in enumerate(columns)
    ]
    kept = fitting(columns, console.width, every)
    widths = widths_within(
        [columns[i] for i in kept], [every[i] for i in kept], console.width - GAP * (len(kept) - 1)
    )
    table = Table(box=None, pad_edge=False, padding=(0, GAP, 0, 0), header_style="bold")
    for i, width in zip(kept, widths, strict=True):
        c = columns[i]
        overflow: OverflowMethod = "ellipsis" if c.no_wrap else "fold"
        table.add_column(c.title, width=width, overflow=overflow, no_wrap=c.no_wrap)
    for row_texts in texts:
        table.add_row(*(row_texts[i] for i in kept))
    console.print(table)


def widths_within(columns: Sequence[Column], natural: Sequence[int], room: int) -> list[int]:
    """Column widths that fit `room`: fixed columns start at their natural width, foldable
    ones at min_width; when short, outsized columns shrink to max_width, then less kept
    columns give way, never below min_width; foldable ones then grow into what is left, the
    most kept first."""
    widths = [c.min_width if c.fold else n for c, n in zip(columns, natural, strict=True)]
    order = sorted(range(len(columns)), key=lambda i: columns[i].keep)
    for i, c in enumerate(columns):  # an outsized fixed cell (a hostile name) gives way first
        if c.max_width and widths[i] > c.max_width and sum(widths) > room:
            widths[i] = max(c.max_width, widths[i] - (sum(widths) - room))
    _give_way(columns, widths, reversed(order), sum(widths) - room)
    for i in order:
        if not columns[i].fold:
            continue
        spare = room - sum(widths)
        widths[i] += max(min(natural[i] - widths[i], spare), 0)
    return widths


def _give_way(
    columns: Sequence[Column], widths: list[int], donors: Iterable[int], need: int
) -> int:
    """Shrink fixed `donors` (in order) toward their min_width by up to `need`; returns how much."""
    taken = 0
    for d in donors:
        if taken >= need:
            break
        if columns[d].fold or columns[d].no_wrap:
            continue
        give = min(widths[d] - columns[d].min_width, need - taken)
        if give > 0:
            widths[d] -= give
            taken += give
    return taken


def cell(value: str | None) -> Text:
    """A table cell: attacker-controlled text escaped, never parsed as markup; None as `-`."""
    return Text(printable(value) if value else "-")


def short_time(ts: float, now: float | None = None) -> str:
    """Local time as HH:MM:SS today, `MM-DD HH:MM` on other days of this year, else the date."""
    when = datetime.fromtimestamp(ts)
    today = datetime.fromtimestamp(time.time() if now is None else now)
    if when.date() == today.date():
        return when.strftime("%H:%M:%S")
    if when.year == today.year:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%Y-%m-%d")
