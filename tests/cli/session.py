"""Stored events of a realistic short session for the CLI tests: a process resolves a name (A and
AAAA, two queries, two responses), opens a TCP flow to the answer and sends a TLS hello."""

import os
import subprocess
import sys
import time
from pathlib import Path

from egresswatch.model import (
    Attribution,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ProcessInfo,
)
from egresswatch.store import open_store

CLIENT, RESOLVER = "10.199.7.3", "10.199.7.1"
HOSTILE_PROCESS = "\x1b[31mevil[/]\u202e"


def proc(name: str = "curl", pid: int = 4321, tool: str | None = None) -> ProcessInfo:
    return ProcessInfo(
        pid=pid, name=name, exe=f"/usr/bin/{name}", exe_sha256=None, cmdline=(name,),
        user="root", ppid=1, start_time=0.0, ancestry=(), netns=None, container=None, tool=tool,
    )  # fmt: skip


def lookup_and_connect(
    ts: float, host: str, address: str, process: ProcessInfo, sport: int, category: str
) -> list[Event]:
    """The 6 events one `curl https://host` makes: 2 queries, 2 responses, a flow, a hello."""
    who = Attribution("exact", process)
    dns_flow = FlowKey("udp", CLIENT, sport, RESOLVER, 53)
    reply_flow = FlowKey("udp", RESOLVER, 53, CLIENT, sport)
    events = []
    for offset, qtype, answers in (
        (0.000, "A", (DnsAnswer(host, "A", address, 60),)),
        (0.001, "AAAA", ()),
    ):
        query = DnsMessage(sport, False, 0, host, qtype, None, False, ())
        reply = DnsMessage(sport, True, 0, host, qtype, "NOERROR", False, answers)
        events.append(Event(Observation(ts + offset, "dns", dns_flow, dns=query), who,
                            host=host, tool=process.tool))  # fmt: skip
        events.append(Event(Observation(ts + offset + 0.01, "dns", reply_flow, dns=reply), who,
                            host=host, tool=process.tool))  # fmt: skip
    tcp = FlowKey("tcp", CLIENT, sport + 1, address, 443)
    hello = ClientHello(host, ("h2",), 0x0303, (0x0304,), False)
    events.append(Event(Observation(ts + 0.02, "flow", tcp), who, host=host,
                        name_source="dns-same-pid", category=category,
                        tool=process.tool))  # fmt: skip
    events.append(Event(Observation(ts + 0.03, "tls", tcp, hello=hello), who, host=host,
                        name_source="sni", category=category, tool=process.tool))  # fmt: skip
    return events


def store_events(path: Path, events: list[Event]) -> str:
    store = open_store(str(path))
    writer = store.writer(batch_interval=0.01)
    for event in events:
        assert writer.submit(event)
    assert writer.flush(10)
    store.close()
    return str(path)


def session(path: Path, now: float | None = None) -> str:
    """A store with three tools' lookups and connections in the last minutes."""
    now = time.time() if now is None else now
    events = [
        *lookup_and_connect(now - 120, "registry.ollama.ai", "10.199.7.20",
                            proc("ollama", 812, "Ollama"), 41000, "model-registry"),
        *lookup_and_connect(now - 90, "huggingface.co", "10.199.7.21",
                            proc("hf", 913, "huggingface_hub / transformers"), 41010,
                            "model-registry"),
        *lookup_and_connect(now - 60, "api.openai.com", "10.199.7.22",
                            proc(HOSTILE_PROCESS, 1014, "Open WebUI"), 41020, "cloud-llm-api"),
    ]  # fmt: skip
    return store_events(path, events)


def egresswatch(
    *args: str, columns: int = 80, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, not on a terminal (output captured), COLUMNS wide."""
    return subprocess.run(
        [sys.executable, "-m", "egresswatch", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "COLUMNS": str(columns), **(env or {})},
    )
