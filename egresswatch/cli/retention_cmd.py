"""`egresswatch db retention`: the owner trims a store (a shared PostgreSQL one, whose agents
may not delete) by age and size, keeping the side rows running agents may have cached."""

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from egresswatch.cli.store_cmd import DbOption, fail
from egresswatch.errors import StoreError

AGENT_FRESH = 60.0  # seconds: an agent whose status is younger than this is taken as running

SIDE_ROWS_HELP = (
    "Also delete the hosts, addresses, processes, labels... no event refers to any more. "
    "Only with every agent of the store stopped: a running agent may have just interned such a "
    "row and would write events that refer to it (refused while an agent's status is fresh)."
)


def db_retention(
    *,
    db: DbOption = None,
    max_age_days: Annotated[
        float | None, typer.Option("--max-age-days", min=0.0, help="Delete older events.")
    ] = None,
    max_bytes: Annotated[
        int | None,
        typer.Option("--max-bytes", min=1, help="Delete the oldest events until under this size."),
    ] = None,
    side_rows: Annotated[bool, typer.Option("--side-rows", help=SIDE_ROWS_HELP)] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Trim the store's events and blocks by age and/or size (run as the store's owner)."""
    from egresswatch.store.database import check_at_head, open_store
    from egresswatch.store.engine import resolve_url

    if max_age_days is None and max_bytes is None:
        raise typer.BadParameter("give --max-age-days, --max-bytes or both")
    try:
        store = open_store(resolve_url(db), upgrade=False)  # the owner migrates with db upgrade
    except StoreError as exc:
        fail(str(exc))
    try:
        check_at_head(store.engine)
        if side_rows and not dry_run:
            _refuse_if_agents_run(store.engine)
        report = _run(store.engine, max_age_days, max_bytes, side_rows=side_rows, dry_run=dry_run)
    except StoreError as exc:
        fail(str(exc))
    finally:
        store.close()
    report = {"url": store.url, **report}
    typer.echo(json.dumps(report) if as_json else _text(report))


def _run(
    engine: Any, max_age_days: float | None, max_bytes: int | None, *, side_rows: bool,
    dry_run: bool,
) -> dict[str, Any]:  # fmt: skip
    from sqlalchemy.exc import SQLAlchemyError

    from egresswatch.store.retention import apply_retention, plan_retention

    limits = {"max_age_days": max_age_days, "max_bytes": max_bytes, "dry_run": dry_run}
    try:
        if dry_run:
            plan = plan_retention(engine, max_age_days=max_age_days, max_bytes=max_bytes)
            return {**limits, "cutoff": plan.cutoff, "events_deleted": plan.events,
                    "blocks_deleted": plan.blocks, "batches_deleted": plan.batches,
                    "side_rows_deleted": None, "size_before": plan.size,
                    "size_after": None}  # fmt: skip
        done = apply_retention(
            engine, max_age_days=max_age_days, max_bytes=max_bytes, side_rows=side_rows
        )
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StoreError(f"retention failed: {reason}") from exc
    return {**limits, "cutoff": None, "events_deleted": done.events_deleted,
            "blocks_deleted": done.blocks_deleted, "batches_deleted": done.batches_deleted,
            "side_rows_deleted": done.side_rows_deleted if side_rows else None,
            "size_before": done.size_before, "size_after": done.size_after}  # fmt: skip


def _refuse_if_agents_run(engine: Any) -> None:
    from egresswatch.output import printable
    from egresswatch.store.status import read_statuses

    now = time.time()
    statuses = read_statuses(engine)
    running = [s.node or "(unnamed)" for s in statuses if now - s.updated < AGENT_FRESH]
    if running:
        nodes = ", ".join(printable(n) for n in running)
        fail(
            f"--side-rows needs every agent of the store stopped, but these wrote their status "
            f"within {AGENT_FRESH:g} s: {nodes} (stop them, or trim without --side-rows)"
        )


def _text(report: dict[str, Any]) -> str:
    verb = "would delete" if report["dry_run"] else "deleted"
    lines = [
        f"{verb} {report['events_deleted']} events, {report['blocks_deleted']} event blocks, "
        f"{report['batches_deleted']} batch ids"
    ]
    if report["dry_run"]:
        cutoff = report["cutoff"]
        older = "-" if cutoff is None else datetime.fromtimestamp(cutoff, UTC).isoformat()
        lines.append(f"events older than {older} (dry run: nothing deleted)")
    elif report["side_rows_deleted"] is None:
        lines.append("side rows kept (running agents may have cached them; see --side-rows)")
    else:
        lines.append(f"deleted {report['side_rows_deleted']} side rows no event refers to")
    lines.append(f"size {_mb(report['size_before'])} -> {_mb(report['size_after'])}")
    return "\n".join(lines)


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.2f} MB"
