"""`egresswatch replay`: decode capture files and print their observations."""

import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from egresswatch.capture.prefilter import candidate_frames
from egresswatch.cli.tables import Column, render
from egresswatch.counters import Counters
from egresswatch.errors import CaptureError, ConfigError, StoreError
from egresswatch.model import Observation
from egresswatch.output import for_rich, summary_host, write_jsonl
from egresswatch.pipeline import ObservationDecoder

_PROGRESS_MIN_BYTES = 64 * 1024 * 1024
_EXPIRE_EVERY = 4096
_RECORD_HEADER = 16  # a pcap record header; pcapng blocks add a little more


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    table = "table"


def replay_file(
    path: Path,
    decoder: ObservationDecoder,
    counters: Counters,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Observation]:
    """Observations of one capture file, in capture order.

    `progress`, when given, is told every few thousand frames about how many bytes of the file
    have been read (record sizes added up: exact for pcap, close for pcapng).
    """
    decode = decoder.decode_frame
    countdown = _EXPIRE_EVERY
    consumed = 0
    for ts, linktype, data, _interface in candidate_frames(path, counters):
        found = decode(ts, linktype, data)
        if found:
            yield from found
        consumed += len(data) + _RECORD_HEADER
        countdown -= 1
        if not countdown:
            decoder.expire(ts)
            countdown = _EXPIRE_EVERY
            if progress is not None:
                progress(consumed)


def _observations(
    files: Sequence[Path], counters: Counters, progress: Callable[[int], None] | None = None
) -> Iterator[Observation]:
    for path in files:
        decoder = ObservationDecoder()
        try:
            yield from replay_file(path, decoder, counters, progress)
        finally:
            counters.merge(decoder.all_counters())


def _with_progress(
    files: Sequence[Path], counters: Counters, stderr: Console
) -> Iterator[Observation]:
    """Observations of every file, with a progress bar on stderr for large inputs on a terminal."""
    total = sum(p.stat().st_size for p in files)
    if not stderr.is_terminal or total < _PROGRESS_MIN_BYTES:
        yield from _observations(files, counters)
        return
    # Imported only when shown: they add ~15 ms to every replay's start-up.
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("replay"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        done = 0
        for path in files:
            size = path.stat().st_size

            def advance(consumed: int, base: int = done, cap: int = size) -> None:
                bar.update(task, completed=base + min(consumed, cap))

            yield from _observations([path], counters, advance)
            done += size
            bar.update(task, completed=done)


TABLE_COLUMNS = (
    Column("time (UTC)", keep=0, min_width=23, no_wrap=True),
    Column("kind", keep=1, min_width=4, no_wrap=True),
    Column("source", keep=4, min_width=16, fold=True),
    Column("destination", keep=2, min_width=16, fold=True),
    Column("name", keep=0, min_width=20, fold=True),
    Column("detail", keep=3, min_width=12, fold=True),
)


def _print_table(observations: Iterator[Observation], console: Console) -> int:
    rows = [
        (
            _when(obs.ts),
            obs.kind,
            f"{obs.flow.src}:{obs.flow.sport}",
            f"{obs.flow.dst}:{obs.flow.dport}",
            summary_host(obs),
            _detail(obs),
        )
        for obs in observations
    ]
    render(TABLE_COLUMNS, rows, console)  # cells are escaped there (output.printable)
    return len(rows)


def _when(ts: float) -> str:
    """UTC wall-clock time to the millisecond (the JSONL keeps the exact epoch float)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _detail(obs: Observation) -> str:
    if obs.dns is not None:
        rcode = obs.dns.rcode or "query"
        return f"{obs.dns.qtype} {rcode} {len(obs.dns.answers)} answers"
    if obs.hello is None:
        return ""
    ech = " ECH" if obs.hello.ech else ""
    version = f" v=0x{obs.quic_version:08x}" if obs.quic_version is not None else ""
    return f"alpn={','.join(obs.hello.alpn)}{ech}{version}"


def _print_summary(counters: Counters, emitted: int, stderr: Console) -> None:
    stderr.print(f"[bold]{emitted}[/] observations")
    for name, value in counters.snapshot().items():
        stderr.print(f"  {for_rich(name)}: {value}")


def replay(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="pcap or pcapng files (gzip-compressed works too).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table for people, jsonl for programs.")
    ] = OutputFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Same as --format jsonl (docs/replay-jsonl.md).")
    ] = False,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Store the events (unknown:offline, classified) here instead."),
    ] = None,
) -> None:
    """Decode captures and print the DNS, TLS and QUIC metadata they hold (never payloads)."""
    stderr = Console(stderr=True)
    counters = Counters()
    observations = _with_progress(files, counters, stderr)
    try:
        if db is not None:
            emitted = _store_offline(observations, db, counters)
        elif fmt is OutputFormat.jsonl or as_json:
            emitted = write_jsonl(observations, sys.stdout)
        else:
            emitted = _print_table(observations, Console(highlight=False))
    except (CaptureError, StoreError, ConfigError) as err:
        stderr.print(f"[red]error:[/] {for_rich(str(err))}")
        raise typer.Exit(2) from err
    if not quiet:
        _print_summary(counters, emitted, stderr)


def _store_offline(observations: Iterator[Observation], db: str, counters: Counters) -> int:
    """Stores the observations as offline events; returns how many the store accepted."""
    from egresswatch.classify.catalog import load_catalog
    from egresswatch.offline import offline_events, record_events
    from egresswatch.store.database import open_store

    store = open_store(db)
    try:
        writer = store.writer()
        stored = record_events(offline_events(observations, load_catalog()), writer)
        for name, value in writer.counters().items():
            counters.add(name, value)
    finally:
        store.close()
    return stored


def register(app: typer.Typer) -> None:
    app.command()(replay)
