"""Benchmark fleet mode: agents writing to one PostgreSQL through the real agent write path.

Each agent is a process that opens the store as `egresswatch run` does (`open_agent_store`,
never migrating), starts the store's writer thread (`Store.writer()`, defaults: batches of 500
or 0.2 s) and submits generated events of a busy box: per connection a DNS query, its response
(CNAME + A answers), a TLS or QUIC hello and a flow start; a quarter of the lookups are for names
never seen before (and their new addresses), the rest split between names every agent shares and
the agent's own earlier ones; 150 processes, a new one every 400 events. Each agent's events
carry its own local address (10.0.N.2), so the rows each agent stored are counted in the
database afterwards.

Phases, each on a fresh database (`egresswatch_fleet_bench`, migrated once as the owner):

  saturate x1   one agent, submitting as fast as the writer commits (backlog kept < 20,000)
  saturate xN   N agents at once, the same way
  rate xN       N agents each offered --rate events/s (the goal: no loss, bounded lag)
  peer          one agent, saturating, the same events into SQLite: the single-box store with
                the identical write path, so the ratio is what sharing a PostgreSQL costs

Printed per agent: sustained events/s (committed in the window after a 1 s warm-up), events
offered, stored (rows counted) and lost (offered - stored), the largest backlog (events waiting
in the writer, and that in seconds at the agent's rate), the drain time after the window, and
RSS (peak, at mid-run, at the end).

Usage: python bench/fleet.py [--seconds 20] [--agents 3] [--rate 2000] [--url URL]
The URL defaults to $EGRESSWATCH_TEST_PG_URL (as the tests find PostgreSQL) or the role and
server scripts/setup.sh makes; the role needs CREATEDB. The database is dropped at the end.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
)
from egresswatch.store import open_store
from egresswatch.store.shared import open_agent_store

DEFAULT_URL = "postgresql+psycopg://egresswatch:egresswatch@127.0.0.1:5432/egresswatch_test"
DATABASE = "egresswatch_fleet_bench"
BACKLOG_LIMIT = 20_000  # saturating agents keep the writer's queue below its 50,000 bound
WARMUP = 1.0
SHARED = [f"pop{i}.cdn{i % 17}.example.com" for i in range(3000)]
TOOLS = ("ollama", "lm-studio", "jan", None, None, None)


def address_of(name: str) -> str:
    h = zlib.crc32(name.encode())
    return f"{23 + h % 200}.{(h >> 8) % 256}.{(h >> 16) % 256}.{1 + (h >> 24) % 254}"


class Feed:
    """An endless stream of one busy box's events (see the module docstring)."""

    def __init__(self, agent: int) -> None:
        self.agent = agent
        self.rng = random.Random(agent)
        self.local, self.resolver = f"10.0.{agent}.2", f"10.0.{agent}.1"
        self.own: list[str] = []
        self.new_names = 0
        self.procs = [self._process(i) for i in range(150)]
        self.next_pid = 150
        self.made = 0

    def _process(self, i: int) -> ProcessInfo:
        tool = TOOLS[i % len(TOOLS)]
        exe = f"/usr/bin/prog{i % 60}"
        return ProcessInfo(
            10_000 + i, f"prog{i % 60}", exe, f"{zlib.crc32(exe.encode()):064x}",
            (exe, "--worker", str(i)), "user", 1, 1_763_900_000.0 + i,
            (ProcessRef(1, "systemd", "/usr/lib/systemd/systemd"),), 4026531840, None, tool,
        )  # fmt: skip

    def _name(self) -> str:
        pick = self.rng.random()
        if pick < 0.25 or not self.own:
            self.new_names += 1
            n = self.new_names
            name = f"a{self.agent}-{n}.svc{n % 113}.example{n % 29}.net"
            self.own.append(name)
            if len(self.own) > 20_000:
                del self.own[:10_000]
            return name
        pool = SHARED if pick < 0.625 else self.own
        # Zipf-like popularity: a few names are most of the lookups.
        return pool[min(int(self.rng.paretovariate(1.1)) - 1, len(pool) - 1)]

    def __iter__(self) -> Iterator[Event]:
        rng = self.rng
        while True:
            if self.made % 400 == 399:  # a new process now and then; an old one goes
                self.procs[rng.randrange(len(self.procs))] = self._process(self.next_pid)
                self.next_pid += 1
            proc = self.procs[rng.randrange(len(self.procs))]
            name, sport = self._name(), rng.randrange(32768, 60999)
            addr, now = address_of(name), time.time()
            status = Attribution("exact", proc)
            q = DnsMessage(rng.randrange(65536), False, 0, name, "A", "NOERROR", False, ())
            yield self._dns(q, now, status, response=False)
            edge = f"edge{zlib.crc32(name.encode()) % 50}.cdn.example.net"
            answers = (
                DnsAnswer(name, "CNAME", edge, 300),
                DnsAnswer(edge, "A", addr, 60),
                DnsAnswer(edge, "A", address_of(name + "2"), 60),
            )
            r = DnsMessage(q.id, True, 0, name, "A", "NOERROR", False, answers)
            yield self._dns(r, now + 0.001, status, response=True)
            quic = rng.random() < 0.25
            hello = ClientHello(name, ("h3",) if quic else ("h2", "http/1.1"), 0x0303,
                                (0x0304,), False)  # fmt: skip
            flow = FlowKey("udp" if quic else "tcp", self.local, sport, addr, 443)
            obs = Observation(now + 0.002, "quic" if quic else "tls", flow, hello=hello,
                              quic_version=1 if quic else None)  # fmt: skip
            yield Event(obs, status, host=name, name_source="quic-sni" if quic else "sni",
                        category="other", tool=proc.tool)  # fmt: skip
            flow = FlowKey("tcp", self.local, sport + 1, addr, 443)
            yield Event(Observation(now + 0.003, "flow", flow), status, host=name,
                        name_source="dns", category="other", tool=proc.tool)  # fmt: skip
            self.made += 4

    def _dns(self, msg: DnsMessage, ts: float, status: Attribution, *, response: bool) -> Event:
        flow = FlowKey("udp", self.local, 40000 + msg.id % 20000, self.resolver, 53)
        obs = Observation(ts, "dns", flow.reversed() if response else flow, dns=msg,
                          dns_proto="dns")  # fmt: skip
        tool = None if status.process is None else status.process.tool
        return Event(obs, status, host=msg.qname, category="other", tool=tool)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def agent(url: str, index: int, seconds: float, rate: int, go_at: float) -> dict[str, Any]:
    """One agent process's run; returns its figures (printed as one JSON line)."""
    store = open_agent_store(url)
    writer = store.writer()
    source = Feed(index)
    feed = iter(source)
    while time.time() < go_at:
        time.sleep(0.005)
    offered, max_backlog, rss = 0, 0, [rss_mib()]
    t0 = time.monotonic()
    warm_written: int | None = None
    next_sample = t0
    while (now := time.monotonic()) < t0 + seconds:
        counters = writer.counters()
        written = counters.get("store.written", 0)
        backlog = counters.get("store.submitted", 0) - written
        due = int((now - t0) * rate) if rate else offered + max(0, BACKLOG_LIMIT - backlog)
        due = min(due, offered + 2000)  # in slices, so sampling goes on
        while offered < due:
            writer.submit(next(feed))  # a refusal is counted by the writer as a drop
            offered += 1
        if now >= next_sample:
            max_backlog = max(max_backlog, backlog)
            rss.append(rss_mib())
            next_sample = now + 0.1
        if warm_written is None and now - t0 >= WARMUP:
            warm_written = written
        time.sleep(0.002)
    written_in_window = writer.counters().get("store.written", 0) - (warm_written or 0)
    drain_started = time.monotonic()
    writer.flush(300)
    drain = time.monotonic() - drain_started
    counters = dict(writer.counters())
    rss.append(rss_mib())
    store.close()
    sustained = written_in_window / (seconds - WARMUP)
    return {
        "agent": index,
        "local": source.local,
        "offered": offered,
        "sustained": sustained,
        "max_backlog": max_backlog,
        "lag_s": max_backlog / sustained if sustained else float("inf"),
        "drain_s": drain,
        "rss_peak": max(rss),
        "rss_mid": rss[len(rss) // 2],
        "rss_end": rss[-1],
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dropped": sum(v for k, v in counters.items() if k.startswith("store.dropped")),
        "errors": {k: v for k, v in counters.items() if k.startswith("store.error")},
        "new_names": source.new_names,
    }


def run_agents(url: str, n: int, seconds: float, rate: int) -> list[dict[str, Any]]:
    go_at = time.time() + 3.0  # every agent has opened its store by then
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps([url, i, seconds, rate, go_at])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 600)
        if child.returncode != 0:
            raise SystemExit(f"agent process failed (exit {child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def stored_per_agent(url: str) -> dict[str, int]:
    """Rows in `events` per agent, by the agent's local address (on exactly one side)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT a.addr, count(*) FROM events e JOIN addresses a "
                    "ON a.id = e.src_id OR a.id = e.dst_id "
                    "WHERE a.addr LIKE '10.0.%.2' GROUP BY a.addr"
                )
            ).all()
    finally:
        engine.dispose()
    return {str(addr): int(count) for addr, count in rows}


def drop_foreign_keys(url: str) -> None:
    """The --without-fks experiment: what PostgreSQL's per-row foreign-key checks on events
    and dns_answers cost (not what egresswatch ships)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table in ("events", "dns_answers"):
                names = conn.execute(
                    text(
                        "SELECT conname FROM pg_constraint WHERE contype = 'f' "
                        "AND conrelid = CAST(:t AS regclass)"
                    ),
                    {"t": table},
                ).scalars()
                for name in list(names):
                    conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    finally:
        engine.dispose()


def fresh_database(base: str, without_fks: bool = False) -> str:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    finally:
        admin.dispose()
    url = make_url(base).set(database=DATABASE).render_as_string(hide_password=False)
    open_store(url).close()  # `egresswatch db upgrade`, as the owner
    if without_fks:
        drop_foreign_keys(url)
    return url


def report(label: str, url: str, results: list[dict[str, Any]]) -> float:
    stored = stored_per_agent(url)
    total = float(sum(r["sustained"] for r in results))
    print(f"{label}: {total:,.0f} events/s in total")
    for r in results:
        rows = stored.get(r["local"], 0)
        print(
            f"  agent {r['agent']}: {r['sustained']:,.0f} events/s; offered {r['offered']:,}, "
            f"stored {rows:,}, lost {r['offered'] - rows:,} (writer drops {r['dropped']:,}); "
            f"max backlog {r['max_backlog']:,} events = {r['lag_s']:.2f} s, drained in "
            f"{r['drain_s']:.2f} s; RSS peak {r['rss_peak']:.0f} MiB (mid {r['rss_mid']:.0f}, "
            f"end {r['rss_end']:.0f}); {r['new_names']:,} new names"
            + (f"; errors {r['errors']}" if r["errors"] else "")
        )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2000, help="events/s per agent, rate phase")
    parser.add_argument("--url", default=os.environ.get("EGRESSWATCH_TEST_PG_URL", DEFAULT_URL))
    parser.add_argument("--phases", default="saturate1,saturateN,rateN,peer")
    parser.add_argument(
        "--without-fks",
        action="store_true",
        help="experiment: drop the foreign keys of events and dns_answers after the upgrade",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(agent(*json.loads(args.child))), flush=True)
        return
    phases = args.phases.split(",")
    secs = args.seconds
    if args.without_fks:
        print("EXPERIMENT: events and dns_answers without their foreign keys")
    print(f"{secs:.0f} s per phase, PostgreSQL {make_url(args.url).render_as_string()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    try:
        run_phases(args, phases)
    finally:
        drop_database(args.url)


def drop_database(base: str) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    finally:
        admin.dispose()


def run_phases(args: argparse.Namespace, phases: list[str]) -> None:
    n, secs = args.agents, args.seconds
    one = many = peer = None
    if "saturate1" in phases:
        url = fresh_database(args.url, args.without_fks)
        one = report("saturate x1 (PostgreSQL)", url, run_agents(url, 1, secs, 0))
    if "saturateN" in phases:
        url = fresh_database(args.url, args.without_fks)
        many = report(f"saturate x{n} (PostgreSQL)", url, run_agents(url, n, secs, 0))
    if "rateN" in phases:
        url = fresh_database(args.url, args.without_fks)
        report(f"rate x{n} at {args.rate:,}/s each (PostgreSQL)", url,
               run_agents(url, n, secs, args.rate))  # fmt: skip
    if "peer" in phases:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/peer.db"
            peer = report("peer: saturate x1 (SQLite, same events)", url,
                          run_agents(url, 1, secs, 0))  # fmt: skip
    if peer:
        if one:
            print(f"ratio 1 agent PostgreSQL / SQLite: {one / peer:.2f}")
        if many:
            print(f"ratio {n} agents PostgreSQL total / 1 agent SQLite: {many / peer:.2f}")


if __name__ == "__main__":
    main()
