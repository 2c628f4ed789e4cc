"""Benchmark the web API on a store of 1M events (spread over --days, ending now), served by a
real `egresswatch web` process over loopback:

- p50/p95 of GET /api/events (first page of 100) and GET /api/timeline (24 h by tool), each
  against a peer measured in the same run: the CLI's in-process read (`Store.query_events`)
  and a plain SQL GROUP BY over the same 24 h (what a store without the block index does);
- SSE delivery latency (event committed -> received by an /api/stream client), against a
  client polling /api/events once a second;
- with --browser, the overview drawn (timeline bars and latest events visible) in headless
  Chromium, against the same page without its preloaded API answers (`/?preload=0`).

Usage: python bench/web.py [--events 1000000] [--days 7] [--db PATH (kept and reused)]
"""

import argparse
import json
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from egresswatch.model import Attribution, ClientHello, Event, FlowKey, Observation, ProcessInfo
from egresswatch.store import open_store
from egresswatch.store.timeline import rolled_counts, slot_counts

TOOLS = ("ollama", "llama.cpp", "lm-studio", "vllm", None, None, None, None)
CATEGORIES = ("model-registry", "model-cdn", "telemetry", "cloud-llm-api", "other", "unknown")
ROUNDS = 60
SSE_EVENTS = 30


def make_event(rng: random.Random, ts: float, procs: list[ProcessInfo], names: list[str]) -> Event:
    proc = procs[rng.randrange(len(procs))]
    name = names[min(int(rng.paretovariate(1.2)) - 1, len(names) - 1)]
    hello = ClientHello(name, ("h2",), 0x0303, (0x0304,), False)
    flow = FlowKey("tcp", "10.0.0.2", rng.randrange(32768, 60999), "93.184.216.34", 443)
    obs = Observation(ts, "tls", flow, hello=hello)
    category = CATEGORIES[hash(name) % len(CATEGORIES)]
    return Event(obs, Attribution("exact", proc), host=name, name_source="sni",
                 category=category, catalog_entry=None, tool=proc.tool)  # fmt: skip


def processes(n: int) -> list[ProcessInfo]:
    return [
        ProcessInfo(2000 + i, f"proc{i}", f"/usr/bin/proc{i}", f"{i:064x}", (f"proc{i}",), "u", 1,
                    1.0e9 + i, (), 4026531840, None, TOOLS[i % len(TOOLS)])
        for i in range(n)
    ]  # fmt: skip


def fill(db: Path, n: int, days: float) -> None:
    """n events evenly spread over the last `days`, through the real writer."""
    rng = random.Random(8)
    procs, names = processes(40), [f"h{i}.example{i % 13}.com" for i in range(5000)]
    end = time.time()
    start = end - days * 86400
    store = open_store(str(db))
    writer = store.writer()
    for i in range(n):
        while not writer.submit(make_event(rng, start + (end - start) * i / n, procs, names)):
            time.sleep(0.001)
    writer.flush(1200)
    store.close()


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def timed(action: object, rounds: int = ROUNDS) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000 if len(samples) > 1 else 0.0


def show(label: str, ours: list[float], peer: list[float], peer_label: str) -> None:
    ratio = p(ours, 95) / p(peer, 95) if p(peer, 95) else float("nan")
    print(f"{label}: p50 {p(ours, 50):.1f} ms, p95 {p(ours, 95):.1f} ms; "
          f"{peer_label}: p50 {p(peer, 50):.1f} ms, p95 {p(peer, 95):.1f} ms; "
          f"ratio p95 {ratio:.2f}")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "egresswatch", "web", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"egresswatch web exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("egresswatch web did not start")


def api_figures(db: Path, base: str) -> None:
    client = httpx.Client(base_url=base, timeout=30)
    store = open_store(str(db))
    events = timed(lambda: client.get("/api/events", params={"limit": 100}).raise_for_status())
    peer = timed(lambda: store.query_events(limit=100))
    show("GET /api/events (first page, 100)", events, peer, "in-process Store.query_events")
    params = {"since": "24h", "group": "tool"}
    cold = timed(lambda: client.get("/api/timeline", params=params).raise_for_status(), rounds=1)
    print(f"GET /api/timeline (24 h by tool) cold, nothing cached yet: {cold[0] * 1000:.1f} ms")
    line = timed(lambda: client.get("/api/timeline", params=params).raise_for_status())
    since = time.time() - 86400
    sql = (
        "SELECT CAST(ts / 3600 AS INTEGER), tool_id, count(*) FROM events WHERE ts >= ?"
        " GROUP BY 1, 2"
    )
    conn = sqlite3.connect(db)
    naive = timed(lambda: conn.execute(sql, (since,)).fetchall(), rounds=10)
    show("GET /api/timeline (24 h by tool, hourly)", line, naive, "plain SQL GROUP BY over ts")
    now = time.time()
    for group in ("tool", "category", "host", "process"):  # what a cold cache reads, in-process
        rolled = timed(lambda: rolled_counts(store.engine, now - 86400, now, 3600, group), 5)  # noqa: B023
        counted = timed(lambda: slot_counts(store.engine, now - 86400, now, 3600, group), 5)  # noqa: B023
        show(f"  24 h by {group} from the per-minute rollup", rolled, counted, "counting events")
    store.close()
    conn.close()


def sse_figures(db: Path, base: str) -> None:
    """Commit-to-arrival latency. The commit time is taken just before `submit` (an upper bound
    on how late it is), since an event can arrive before `flush` returns."""
    committed: dict[str, float] = {}
    by_sse: dict[str, float] = {}
    by_poll: dict[str, float] = {}
    done = threading.Event()
    ready = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", base + "/api/stream", timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        ready.set()
                    if line.startswith("data: "):
                        by_sse.setdefault(json.loads(line[6:]).get("host"), time.perf_counter())
                    if done.is_set() and set(committed) <= set(by_sse):
                        return
        except httpx.HTTPError:
            return

    def poll() -> None:
        while not (done.is_set() and set(committed) <= set(by_poll)):
            page = httpx.get(base + "/api/events", params={"limit": 50}).json()["events"]
            now = time.perf_counter()
            for e in page:
                by_poll.setdefault(e["host"], now)
            time.sleep(1.0)

    listener = threading.Thread(target=listen, daemon=True)
    poller = threading.Thread(target=poll, daemon=True)
    listener.start()
    ready.wait(10)
    poller.start()
    store = open_store(str(db))
    writer = store.writer(batch_interval=0.05)
    rng, procs = random.Random(3), processes(4)
    run = f"{time.time():.0f}"  # a reused store holds earlier runs' hosts
    for i in range(SSE_EVENTS):
        host = f"sse{i}-{run}.bench.example"
        event = make_event(rng, time.time(), procs, [host])
        committed[host] = time.perf_counter()
        writer.submit(event)
        writer.flush(10)
        time.sleep(0.2 + rng.random() * 0.3)
    done.set()
    listener.join(15)
    poller.join(15)
    store.close()
    sse = [by_sse[h] - t for h, t in committed.items() if h in by_sse]
    polled = [by_poll[h] - t for h, t in committed.items() if h in by_poll]
    print(f"SSE delivered {len(sse)} of {len(committed)} events; the poller saw {len(polled)}")
    show("SSE delivery after commit", sse, polled, "client polling /api/events every 1 s")


LOADS = 20


# Drawn: the timeline's bars and the latest events are in the page, and the page says every part
# of the overview has drawn. Asked with page.evaluate: Playwright's wait_for_selector first
# injects its selector engine into each fresh context, which cost 100-400 ms per load here
# (measured from goto's return to the selectors' answer, with the page long drawn).
DRAWN = ("!!document.querySelector('main[data-drawn=overview] svg.chart rect.bar')"
         " && !!document.querySelector('#latest tbody tr')")  # fmt: skip


def load_overview(browser: Any, url: str) -> tuple[float, float]:
    """(wall seconds from goto to drawn, the page's own `overview-drawn` mark in seconds)."""
    page = browser.new_page()
    started = time.perf_counter()
    page.goto(url)
    while not page.evaluate(DRAWN):
        time.sleep(0.005)
    wall = time.perf_counter() - started
    mark = page.evaluate("performance.getEntriesByName('overview-drawn')[0].startTime") / 1000
    page.close()
    return wall, mark


def browser_figure(base: str) -> None:
    """The overview drawn, as served (its API answers inside the HTML) against the same page
    told not to carry them (`/?preload=0`: each part asks the API, as before). Loads alternate;
    a fresh browser's first page (process start-up) is timed apart."""
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip
    ours: list[tuple[float, float]] = []
    peer: list[tuple[float, float]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        first = load_overview(browser, base + "/")
        for i in range(2 * LOADS):
            if i % 2 == 0:
                ours.append(load_overview(browser, base + "/"))
            else:
                peer.append(load_overview(browser, base + "/?preload=0"))
        browser.close()
    print(f"overview, a fresh browser's first load: {first[0] * 1000:.0f} ms "
          f"(page mark {first[1] * 1000:.0f} ms)")  # fmt: skip
    show(f"overview drawn in headless Chromium ({LOADS} loads)", [w for w, _ in ours],
         [w for w, _ in peer], "without preloaded answers (/?preload=0)")  # fmt: skip
    show("  the page's own overview-drawn mark", [m for _, m in ours], [m for _, m in peer],
         "without preloaded answers")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "events.db"
        if stored_count(db) < args.events:
            db.unlink(missing_ok=True)
            started = time.perf_counter()
            fill(db, args.events, args.days)
            print(f"filled {args.events:,} events over {args.days} days "
                  f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(db, port)
        try:
            api_figures(db, base)
            sse_figures(db, base)
            if args.browser:
                browser_figure(base)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
