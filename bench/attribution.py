"""Attribution completeness for short-lived clients: 40 curl (a DNS lookup through the lab resolver,
then one HTTPS request) and 10 dig, each living a few ms, watched in the same run by the agent with
the kernel hooks (eBPF), by the agent without them (sock_diag + /proc, its peer) and by
`nethogs -t` when installed. % of TLS hellos and DNS messages each names with the right pid, and
wrong pids. Needs root.

    sudo python3 bench/attribution.py [--curl 40] [--dig 10] [--hf PATH/TO/hf --hf-runs 3]

`--hf` adds a real tool: `hf download` of huggingface_hub (install it in a scratch venv), with
HF_ENDPOINT pointing at a lab host (the lab's DNS answers every name with the lab server, so
nothing leaves the lab); its retries make several lookups and hellos per run. Each run is
stopped after 10 s.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from egresswatch.agent import Agent, Attributor, latency_percentiles  # noqa: E402
from egresswatch.attribute.methods import build_resolver  # noqa: E402
from egresswatch.attribute.resolver import ProcessResolver  # noqa: E402
from egresswatch.capture.live import LiveCapture  # noqa: E402
from egresswatch.model import Event  # noqa: E402
from tests.lab import Lab, lab  # noqa: E402


@dataclass
class Watcher:
    """One agent (its own capture) and what it emitted."""

    name: str
    attributor: Attributor
    events: list[Event] = field(default_factory=list)
    capture: LiveCapture = field(default_factory=LiveCapture)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Agent:
        self.capture.start()
        agent = Agent(self.capture, self.attributor, self.events.append)
        threading.Thread(target=agent.run, args=(self.stop,), daemon=True).start()
        return agent

    def finish(self) -> None:
        self.stop.set()
        time.sleep(0.5)
        self.capture.stop()


def clients(net: Lab, curls: int, digs: int) -> list[tuple[str, list[str]]]:
    """(marker host name, argv): curl resolves its name through the lab's DNS, dig asks it."""
    out = []
    for i in range(curls):
        host = f"c{i}.lab"
        argv = ["curl", "-sk", "-4", "--max-time", "10", "-o", "/dev/null", f"https://{host}/"]
        out.append((host, net.with_dns(argv)))
    for i in range(digs):
        host = f"d{i}.lab"
        out.append((host, net.with_dns(["dig", "+short", "+tries=1", host])))
    return out


def outcome(events: list[Event], host: str, pid: int, kinds: tuple[str, ...]) -> str:
    """ "wrong" if any event names another pid, "right" if one names `pid`, else the reason."""
    mine = [e for e in events if e.observation.kind in kinds and e.host == host]
    got = {e.attribution.process.pid for e in mine if e.attribution.process is not None}
    if got - {pid}:
        return "wrong"
    if pid in got and all(e.attribution.process is not None for e in mine):
        return "right"
    reasons = sorted({e.attribution.status for e in mine if e.attribution.process is None})
    return ",".join(reasons) or "not captured"


def report(watcher: Watcher, pids: dict[str, int], agent: Agent, lost: int | None) -> None:
    print(f"== {watcher.name}")
    for label, kinds, hosts in (
        ("TLS (curl)", ("tls",), [h for h in pids if h.startswith("c")]),
        ("DNS (curl+dig)", ("dns",), list(pids)),
    ):
        counts = Counter(outcome(watcher.events, h, pids[h], kinds) for h in hosts)
        n = len(hosts)
        misses = {k: v for k, v in counts.items() if k not in ("right", "wrong")}
        print(
            f"  {label}: {counts['right']}/{n} right ({100 * counts['right'] / n:.1f}%), "
            f"{counts['wrong']} wrong; misses {misses or '-'}"
        )
    methods = Counter(e.attribution.method for e in watcher.events if e.host in pids)
    print(f"  methods: {dict(methods)}")
    latency = latency_percentiles(agent.latencies)
    if latency:
        print(
            f"  packet->event latency p50 {latency[0] * 1e3:.2f} ms, p95 {latency[1] * 1e3:.2f} ms"
        )
    if lost is not None:
        print(f"  ring buffer records lost: {lost}")


def run_hf(net: Lab, hf: str, runs: int) -> dict[str, int]:
    """Runs `hf download` against lab hosts hf<i>.lab; {host: pid}."""
    pids = {}
    for i in range(runs):
        host = f"hf{i}.lab"
        env = dict(
            os.environ,
            HF_ENDPOINT=f"https://{host}",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HOME=str(net.workdir / "hf-home"),
            SSL_CERT_FILE=str(net.cert),
        )
        argv = net.with_dns([hf, "download", "lab-org/lab-model", "config.json"])
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        pids[host] = proc.pid
    return pids


def report_tool(watcher: Watcher, pids: dict[str, int]) -> None:
    mine = [e for e in watcher.events if e.host in pids and e.observation.kind in ("dns", "tls")]
    for kind in ("dns", "tls"):
        events = [e for e in mine if e.observation.kind == kind]
        right = sum(
            1
            for e in events
            if e.attribution.process is not None and e.attribution.process.pid == pids[e.host or ""]
        )
        wrong = sum(
            1
            for e in events
            if e.attribution.process is not None and e.attribution.process.pid != pids[e.host or ""]
        )
        share = 100 * right / len(events) if events else 0.0
        label = f"  hf download {kind.upper()}"
        print(f"{label}: {right}/{len(events)} right ({share:.1f}%), {wrong} wrong")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--curl", type=int, default=40)
    parser.add_argument("--dig", type=int, default=10)
    parser.add_argument("--hf", help="path of huggingface_hub's `hf` command (a scratch venv)")
    parser.add_argument("--hf-runs", type=int, default=3)
    args = parser.parse_args()
    with lab() as net:
        resolver, methods = build_resolver()
        print("methods:", ", ".join(f"{m.name}={'ok' if m.ok else m.detail}" for m in methods))
        kernel = Watcher("egresswatch, kernel hooks (ebpf) + sock_diag fallback", resolver)
        peer = Watcher("egresswatch, sock_diag + /proc only (peer)", ProcessResolver())
        agents = [kernel.start(), peer.start()]
        hogs = _nethogs(net)
        time.sleep(2)
        pids: dict[str, int] = {}
        for host, argv in clients(net, args.curl, args.dig):
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proc.wait(30)
            pids[host] = proc.pid
            time.sleep(0.05)
        tool_pids = run_hf(net, args.hf, args.hf_runs) if args.hf else {}
        time.sleep(2)
        for watcher in (kernel, peer):
            watcher.finish()
        lost = resolver.kernel.lost() if resolver.kernel is not None else None
        report(kernel, pids, agents[0], lost)
        if tool_pids:
            report_tool(kernel, tool_pids)
        report(peer, pids, agents[1], None)
        if tool_pids:
            report_tool(peer, tool_pids)
        if hogs is not None:
            hogs[0].terminate()
            hogs[0].wait(5)
            right = len(set(pids.values()) & hogs[1])
            print(f"== nethogs -t: {right}/{len(pids)} processes with their pid")
        resolver.close()


def _nethogs(net: Lab) -> "tuple[subprocess.Popen[str], set[int]] | None":
    if shutil.which("nethogs") is None:
        print("nethogs not installed: its column is skipped")
        return None
    proc = subprocess.Popen(
        ["nethogs", "-t", "-d", "0", net.bridge],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    seen: set[int] = set()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split("\t")[0].rsplit("/", 2)
            if len(parts) == 3 and parts[1].isdigit():
                seen.add(int(parts[1]))

    threading.Thread(target=read, daemon=True).start()
    return proc, seen


if __name__ == "__main__":
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the lab is always torn down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
