"""Attribution completeness: N short-lived processes (20-200 ms, one HTTPS request each) in the lab,
watched at once by egresswatch and by `nethogs -t`; % of flows each names with the right pid.
Also the agent's packet-to-event latency. Needs root.

    sudo python3 bench/attribution.py [--n 100]
"""

import argparse
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from egresswatch.agent import Agent, latency_percentiles  # noqa: E402
from egresswatch.attribute.resolver import ProcessResolver  # noqa: E402
from egresswatch.capture.live import LiveCapture  # noqa: E402
from egresswatch.model import Event  # noqa: E402
from tests.lab import Lab, lab  # noqa: E402

NETHOGS_LINE = re.compile(r"^(?P<prog>\S.*)/(?P<pid>\d+)/(?P<uid>\d+)\t")


def clients(net: Lab, n: int) -> list[list[str]]:
    """Half curl (lives ~20 ms), half a Python client lingering 20-200 ms after its request."""
    script = net.tool_script("ollama")
    out = []
    for i in range(n):
        host = f"b{i}.lab"
        if i % 2:
            out.append(
                [
                    "curl",
                    "-sk",
                    "-o",
                    "/dev/null",
                    "--resolve",
                    f"{host}:443:{net.server_ip}",
                    f"https://{host}/",
                ]
            )
        else:
            linger = f"{random.uniform(0.0, 0.15):.3f}"
            out.append([str(script), "https", host, "--connect", net.server_ip, "--linger", linger])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    events: list[Event] = []
    with lab() as net:
        capture = LiveCapture()
        capture.start()
        resolver = ProcessResolver()
        agent = Agent(capture, resolver, events.append)
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        hogs = subprocess.Popen(
            ["nethogs", "-t", "-d", "0", net.bridge],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        seen_by_hogs: set[int] = set()
        reader = threading.Thread(target=_read_nethogs, args=(hogs, seen_by_hogs), daemon=True)
        reader.start()
        time.sleep(2)
        pids = {}
        for i, argv in enumerate(clients(net, args.n)):
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proc.wait(30)
            pids[f"b{i}.lab"] = proc.pid
            time.sleep(0.05)
        time.sleep(3)
        stop.set()
        thread.join(5)
        capture.stop()
        hogs.terminate()
        hogs.wait(5)
    _report(events, pids, seen_by_hogs, agent)


def _read_nethogs(proc: "subprocess.Popen[str]", seen: set[int]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        match = NETHOGS_LINE.match(line)
        if match:
            seen.add(int(match["pid"]))


def _report(events: list[Event], pids: dict[str, int], hogs: set[int], agent: Agent) -> None:
    outcomes: Counter[str] = Counter()
    for host, pid in pids.items():
        hellos = [e for e in events if e.observation.kind == "tls" and e.host == host]
        outcomes[_outcome(hellos, pid)] += 1
    n = len(pids)
    hog_right = len(set(pids.values()) & hogs)
    print(f"processes: {n}")
    print(
        f"egresswatch: {100 * outcomes['right'] / n:.1f}% right pid, "
        f"{100 * outcomes['wrong'] / n:.1f}% wrong ({outcomes['wrong']})"
    )
    for outcome, count in sorted(outcomes.items()):
        if outcome not in ("right", "wrong"):
            print(f"  {outcome}: {100 * count / n:.1f}%")
    print(f"nethogs -t:  {100 * hog_right / n:.1f}% right pid")
    latency = latency_percentiles(agent.latencies)
    if latency:
        print(f"packet->event latency p50 {latency[0] * 1e3:.2f} ms, p95 {latency[1] * 1e3:.2f} ms")
    misses = {k: v for k, v in agent.counters.snapshot().items() if "attribution" in k}
    print(f"agent attribution counters: {misses}")


def _outcome(hellos: list[Event], pid: int) -> str:
    """ "wrong" if any hello names another pid, "right" if one names `pid`, else the reason."""
    got = {e.attribution.process.pid for e in hellos if e.attribution.process}
    if got - {pid}:
        return "wrong"
    if pid in got:
        return "right"
    reasons = sorted({e.attribution.status for e in hellos}) or ["no hello captured"]
    return ",".join(reasons)


if __name__ == "__main__":
    main()
