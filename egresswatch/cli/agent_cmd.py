"""`egresswatch agent` (live capture -> attributed events) and `egresswatch doctor` (what works)."""

import dataclasses
import signal
import sys
import threading
from datetime import datetime
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from egresswatch.agent import Agent, Attributor, NoAttribution, latency_percentiles
from egresswatch.capture.live import LiveCapture
from egresswatch.counters import Counters
from egresswatch.doctor import print_report, run_checks
from egresswatch.errors import CaptureError, ConfigError
from egresswatch.model import Event
from egresswatch.output import event_to_dict, for_rich, printable, summary_host, to_json_line


def build_attributor(stderr: Console) -> Attributor:
    """The process resolver, or a stand-in that records why attribution is unavailable."""
    from egresswatch.attribute.methods import build_resolver

    try:
        resolver, methods = build_resolver()
        for method in methods:
            if not method.ok:  # the fallback still works; say once what is missing and why
                stderr.print(f"[yellow]note:[/] {method.name}: {for_rich(method.detail)}")
        return resolver
    except OSError as err:  # no netlink sock_diag or no /proc here: capture still works
        stderr.print(f"[yellow]warning:[/] no process attribution: {for_rich(str(err))}")
        return NoAttribution()


def _jsonl_sink(event: Event) -> None:
    sys.stdout.write(to_json_line(event_to_dict(event)) + "\n")
    sys.stdout.flush()


def clock(ts: float) -> str:
    """Local wall-clock time to the millisecond (the JSON lines keep the exact epoch)."""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def _text_sink(event: Event) -> None:
    obs, process = event.observation, event.attribution.process
    who = f"{printable(process.name)}[{process.pid}]" if process else event.attribution.status
    name = printable(event.host or summary_host(obs)) or "-"
    source = event.name_source or "none"
    conflict = " CONFLICT" if event.name_conflict else ""
    reply = obs.dns is not None and obs.dns.is_response
    arrow, peer, port = ("<-", obs.flow.src, obs.flow.sport) if reply else (
        "->", obs.flow.dst, obs.flow.dport)  # fmt: skip
    sys.stdout.write(
        f"{clock(obs.ts)} {obs.kind:<4} {who} {arrow} {peer}:{port}/"
        f"{obs.flow.transport} {name} ({source}){conflict}\n"
    )
    sys.stdout.flush()


def _summary(counters: Counters, agent: Agent, stderr: Console) -> None:
    for name, value in counters.snapshot().items():
        if value:
            stderr.print(f"  {for_rich(name)}: {value}")
    latency = latency_percentiles(agent.latencies)
    if latency is not None:
        stderr.print(f"  latency p50={latency[0] * 1000:.2f}ms p95={latency[1] * 1000:.2f}ms")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop`: the loops finish their current item and return."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def agent(
    interface: Annotated[
        list[str] | None,
        typer.Option(
            "--interface", "-i", help="Capture only here (repeatable). Default: all, incl. lo."
        ),
    ] = None,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", "--json", help="One JSON object per line.")
    ] = False,
    queue_size: Annotated[
        int, typer.Option(help="Frames buffered between capture and decode.")
    ] = 20000,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Node name in every record. Default: [agent] node."),
    ] = None,
) -> None:
    """Capture live: every DNS query, TLS/QUIC hello and new flow, with the process behind it."""
    from egresswatch.config import load_settings, with_node

    stderr = Console(stderr=True)
    try:
        node_name = with_node(load_settings(), node).agent.node
    except ConfigError as err:
        stderr.print(f"[red]error:[/] {for_rich(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from err
    capture = LiveCapture(interface or (), queue_size=queue_size)
    try:
        capture.start()
    except CaptureError as err:
        stderr.print(f"[red]error:[/] {for_rich(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from err
    stop = threading.Event()
    stop_on_signals(stop)
    from egresswatch.classify.catalog import load_catalog
    from egresswatch.fanout import FanOut

    # The same single classify step as `run`: --jsonl carries each event's category.
    sink = FanOut(load_catalog(), (_jsonl_sink if jsonl else _text_sink,), node=node_name)
    loop = Agent(capture, build_attributor(stderr), sink)
    try:
        loop.run(stop)
    finally:
        capture.stop()
        counters = loop.all_counters()
        counters.merge(capture.counters())
        stderr.print("[bold]egresswatch agent stopped[/]")
        _summary(counters, loop, stderr)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False,
) -> None:
    """Check what live capture and attribution can do on this machine; exit 1 if capture cannot."""
    from egresswatch.doctor_service import service_checks

    results = [*run_checks(), *service_checks()]
    if as_json:
        for r in results:
            typer.echo(to_json_line(dataclasses.asdict(r)))
    else:
        print_report(results, Console())
    if not all(r.ok for r in results if r.required):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(agent)
    app.command()(doctor)
