"""Helpers for the store tests: realistic events of every kind, backends, tmpfs mounts."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import MetaData, create_engine

from egresswatch.model import (
    Attribution,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ProcessInfo,
    ProcessRef,
    Transport,
)

PG_ENV = "EGRESSWATCH_TEST_PG_URL"
HOSTILE = (
    "[bold red]x[/]",
    "\x1b[31mred\x1b[0m",
    "a\x00b",
    "\u202egnp.exe",
    "é\u0301\U0001f600",
    "line\nbreak\ttab",
    "' OR 1=1 --",
    "=cmd|' /C calc'!A0",
    ":smile: %s %d {0}",
    "x" * 300,
)


def process(pid: int = 4242, tool: str | None = "ollama", **changes: object) -> ProcessInfo:
    fields: dict[str, object] = {
        "pid": pid,
        "name": "ollama",
        "exe": "/usr/local/bin/ollama",
        "exe_sha256": "0f" * 32,
        "cmdline": ("/usr/local/bin/ollama", "serve"),
        "user": "ollama",
        "ppid": 1,
        "start_time": 1_763_900_000.25,
        "ancestry": (ProcessRef(1, "systemd", "/usr/lib/systemd/systemd"),),
        "netns": 4026531840,
        "container": None,
        "tool": tool,
    }
    fields.update(changes)
    return ProcessInfo(**fields)  # type: ignore[arg-type]


def dns_response(
    ts: float,
    qname: str = "registry.ollama.ai",
    proc: ProcessInfo | None = None,
    *,
    addr: str = "104.21.75.20",
) -> Event:
    message = DnsMessage(
        id=0x1234,
        is_response=True,
        opcode=0,
        qname=qname,
        qtype="A",
        rcode="NOERROR",
        truncated=False,
        answers=(
            DnsAnswer(qname, "CNAME", "edge.example-cdn.net", 300),
            DnsAnswer("edge.example-cdn.net", "A", addr, 60),
            DnsAnswer("edge.example-cdn.net", "HTTPS", None, 60),
        ),
    )
    obs = Observation(
        ts,
        "dns",
        FlowKey("udp", "127.0.0.53", 53, "127.0.0.1", 41000),
        dns=message,
        dns_proto="dns",
    )
    status = "exact" if proc else "unknown:no-socket"
    return Event(
        obs,
        Attribution(status, proc),
        host=qname,
        name_source=None,
        category="model-registry",
        catalog_entry="registry.ollama.ai",
        tool=proc.tool if proc else None,
    )


def dns_query(ts: float, qname: str, proc: ProcessInfo | None = None) -> Event:
    message = DnsMessage(0x4321, False, 0, qname, "AAAA", "NOERROR", False, ())
    flow = FlowKey("udp", "10.0.0.2", 40000 + int(ts) % 20000, "10.0.0.1", 53)
    obs = Observation(ts, "dns", flow, dns=message, dns_proto="dns")
    return Event(obs, Attribution("exact" if proc else "unknown:no-socket", proc))


def tls_hello(
    ts: float,
    sni: str | None = "huggingface.co",
    proc: ProcessInfo | None = None,
    *,
    kind: Literal["tls", "quic"] = "tls",
    category: str | None = "model-registry",
) -> Event:
    hello = ClientHello(sni, ("h2", "http/1.1"), 0x0303, (0x0304, 0x0303), False)
    transport: Transport = "udp" if kind == "quic" else "tcp"
    flow = FlowKey(transport, "10.0.0.2", 50000, "2001:db8::5", 443)
    obs = Observation(
        ts,
        kind,
        flow,
        hello=hello,
        quic_version=1 if kind == "quic" else None,
    )
    return Event(
        obs,
        Attribution("exact" if proc else "unknown:no-socket", proc),
        host=sni,
        name_source="sni" if kind == "tls" else "quic-sni",
        category=category,
        catalog_entry=None if category is None else "huggingface.co",
        tool=proc.tool if proc else None,
    )


def flow_start(ts: float, proc: ProcessInfo | None = None) -> Event:
    obs = Observation(
        ts, "flow", FlowKey("tcp", "10.0.0.2", 50001, "192.0.2.7", 8443), tunneled=True
    )
    return Event(
        obs,
        Attribution("exact" if proc else "unknown:gone", proc),
        host="api.example",
        name_source="dns-any",
        name_conflict=True,
        category="unknown",
    )


def mixed(n: int, start: float = 1_763_900_000.0, step: float = 0.01) -> list[Event]:
    """n events cycling through the kinds, some attributed, with distinct hosts."""
    proc = process()
    out: list[Event] = []
    for i in range(n):
        ts = start + i * step
        pick = i % 4
        if pick == 0:
            out.append(dns_response(ts, f"h{i % 50}.example.org", proc if i % 8 == 0 else None))
        elif pick == 1:
            out.append(tls_hello(ts, f"h{i % 50}.example.org", proc))
        elif pick == 2:
            out.append(dns_query(ts, f"q{i % 30}.example.net"))
        else:
            out.append(tls_hello(ts, "cdn.example.com", None, kind="quic", category="model-cdn"))
    return out


def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server to test against")
    return url


def need_root_mount() -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a size-limited tmpfs")


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs at `path`, unmounted afterwards."""
    need_root_mount()
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def reset_pg(url: str) -> None:
    """Drop every table, so each PostgreSQL test starts from an empty database.

    Reflected rather than taken from the models, so tables of an older schema go too.
    """
    engine = create_engine(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        tables.drop_all(engine)
    finally:
        engine.dispose()


def backend_url(backend: str, tmp_path: Path) -> str:
    """A fresh, empty database of `backend` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        return str(tmp_path / "events.db")
    url = pg_url()
    reset_pg(url)
    return url
