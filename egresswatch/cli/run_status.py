"""What `egresswatch run` tells the person who started it: a live one-line status on a terminal,
a short summary at the end, and the exact command that shows what was recorded."""

import os
import shlex
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from egresswatch.model import Event
from egresswatch.output import printable

STATUS_EVERY = 1.0
SHOWN_TOOLS = 3


class Tally:
    """Wraps the agent's sink: counts events, processes and LLM tools as they pass."""

    def __init__(self, sink: Callable[[Event], None]) -> None:
        self.sink = sink
        self.events = 0
        self.flows = 0
        self.pids: set[int] = set()
        self.hosts: set[str] = set()
        self.tools: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        self.events += 1
        if event.observation.kind != "dns":
            self.flows += event.observation.kind == "flow"
            if event.host:
                self.hosts.add(event.host)
        process = event.attribution.process
        if process is not None:
            self.pids.add(process.pid)
        if event.tool:
            self.tools[event.tool] += 1
        self.sink(event)

    def tool_names(self) -> str:
        names = [printable(name) for name, _ in self.tools.most_common(SHOWN_TOOLS)]
        more = len(self.tools) - SHOWN_TOOLS
        return (", ".join(names) + (f" +{more}" if more > 0 else "")) or "none"


def dropped(counters: Mapping[str, int]) -> int:
    """Everything lost on the way: kernel and queue drops, recorder and store drops."""
    return sum(
        value
        for name, value in counters.items()
        if ".dropped" in name or name.startswith("capture.dropped")
    )


def status_line(tally: Tally, counters: Mapping[str, int], rate: float) -> str:
    """`1,234 events (12.0/s) | 56 flows | 7 processes | LLM tools: Ollama | 0 dropped`."""
    return (
        f"{tally.events:,} events ({rate:.1f}/s) | {tally.flows:,} flows | "
        f"{len(tally.pids):,} processes | LLM tools: {tally.tool_names()} | "
        f"{dropped(counters):,} dropped"
    )


def end_summary(tally: Tally, counters: Mapping[str, int], elapsed: float) -> str:
    """A few lines for people: how long, how much, which tools, what was lost."""
    lost = dropped(counters)
    lines = [
        f"egresswatch stopped after {_duration(elapsed)}: {tally.events:,} events from "
        f"{len(tally.pids):,} processes, {tally.flows:,} flows to {len(tally.hosts):,} hosts.",
        f"LLM tools seen: {tally.tool_names()}.",
        f"Dropped: {lost:,}" + (" (see `egresswatch run --verbose` or `egresswatch doctor`)."
                                if lost else "."),
    ]  # fmt: skip
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class StatusLine(threading.Thread):
    """Rewrites one line on the terminal every second until `stop` is set."""

    def __init__(
        self, tally: Tally, counters: Callable[[], Mapping[str, int]], stop: threading.Event
    ) -> None:
        super().__init__(name="egresswatch-status", daemon=True)
        self.tally, self.counters, self.stop = tally, counters, stop

    def run(self) -> None:
        last_events, last_time = 0, time.monotonic()
        while not self.stop.wait(STATUS_EVERY):
            now = time.monotonic()
            rate = (self.tally.events - last_events) / max(now - last_time, 1e-6)
            last_events, last_time = self.tally.events, now
            line = status_line(self.tally, self.counters(), rate)
            width = shutil.get_terminal_size().columns - 1
            sys.stderr.write("\r\x1b[K" + line[:width])
            sys.stderr.flush()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def follow_up_command(db: str | None) -> str:
    """The command that shows the recorded events, runnable as printed from any directory."""
    return shlex.join([*program(), "events", "--since", "10m", *(["--db", db] if db else [])])


def program() -> list[str]:
    """How to call egresswatch again: its name when PATH finds this same program."""
    argv0 = sys.argv[0]
    if argv0.endswith("__main__.py"):
        return [sys.executable, "-m", "egresswatch"]
    here = os.path.realpath(shutil.which(argv0) or argv0)
    on_path = shutil.which("egresswatch")
    if on_path and os.path.realpath(on_path) == here:
        return ["egresswatch"]
    return [os.path.abspath(shutil.which(argv0) or argv0)]
