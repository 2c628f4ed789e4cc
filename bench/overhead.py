"""Agent overhead: CPU seconds per GB of a bulk transfer through the lab, against `tcpdump -w
/dev/null` with the same filter in the same run; then idle CPU and RSS. Needs root.
`--attribution ebpf` (default) runs the agent with its kernel hooks linked (they run in the
kernel on every packet of the transfer, so the whole machine's busy CPU is printed too);
`--attribution sock-diag` without them, for comparison.

    sudo python3 bench/overhead.py [--gb 4] [--idle 60] [--attribution ebpf|sock-diag]
"""

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from egresswatch.agent import Agent  # noqa: E402
from egresswatch.attribute.methods import build_resolver  # noqa: E402
from egresswatch.capture.bpf import FILTER_EXPRESSION  # noqa: E402
from egresswatch.capture.live import LiveCapture  # noqa: E402
from tests.lab import Lab, lab  # noqa: E402

SERVER = """
import socket, sys
size = int(sys.argv[1]); chunk = bytes(1 << 20)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8080)); srv.listen(); print("READY", flush=True)
while True:
    conn, _ = srv.accept(); left = size
    while left > 0:
        left -= conn.send(chunk[: min(left, len(chunk))])
    conn.close()
"""


def child(attribution: str) -> None:
    """The agent under test: capture -> decode -> attribute -> name, events thrown away."""
    capture = LiveCapture()
    capture.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    resolver, methods = build_resolver(use_kernel=attribution == "ebpf")
    agent = Agent(capture, resolver, lambda event: None)
    linked = "ebpf hooks linked" if methods[0].ok else f"no ebpf: {methods[0].detail}"
    print(f"READY full, {linked}", flush=True)
    agent.run(stop)
    counts = {**agent.all_counters().snapshot(), **capture.counters().snapshot()}
    capture.stop()
    print(json.dumps(counts), file=sys.stderr, flush=True)


def download(net: Lab, size: int) -> float:
    started = time.monotonic()
    buf = bytearray(1 << 20)
    got = 0
    with socket.create_connection((net.server_ip, 8080)) as conn:
        while n := conn.recv_into(buf):
            got += n
    assert got == size, (got, size)
    return time.monotonic() - started


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def busy_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (every core; softirq included)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--attribution", choices=["ebpf", "sock-diag"], default="ebpf")
    parser.add_argument("mode", nargs="?", default="bench")
    args = parser.parse_args()
    if args.mode == "child":
        child(args.attribution)
        return
    size = int(args.gb * 1e9)
    with lab() as net:
        server = subprocess.Popen(
            ["ip", "netns", "exec", net.internet_ns, sys.executable, "-c", SERVER, str(size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and "READY" in server.stdout.readline()
        agent = subprocess.Popen(
            [sys.executable, __file__, "--attribution", args.attribution, "child"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert agent.stdout is not None
        mode = agent.stdout.readline().strip()
        dump = subprocess.Popen(
            ["tcpdump", "-i", "any", "-s", "65535", "-w", "/dev/null", FILTER_EXPRESSION],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        procs = {
            "agent": psutil.Process(agent.pid),
            "tcpdump": psutil.Process(dump.pid),
            # the sender's sendmsg() runs the egress hook on each of its packets
            "sender (lab server)": psutil.Process(server.pid),  # `ip netns exec` execs it
        }
        before = {k: cpu(p) for k, p in procs.items()}
        busy_before = busy_cpu()
        seconds = download(net, size)
        busy = busy_cpu() - busy_before
        time.sleep(1)
        used = {k: cpu(p) - before[k] for k, p in procs.items()}
        gb = size / 1e9
        print(f"agent mode: {mode}")
        print(f"transfer: {gb:.1f} GB in {seconds:.1f} s ({gb * 8 / seconds:.1f} Gbit/s)")
        for name, value in used.items():
            print(f"{name}: {value:.3f} CPU-s, {value / gb:.4f} CPU-s/GB")
        print(f"whole machine during the transfer: {busy:.2f} busy CPU-s, {busy / gb:.3f} CPU-s/GB")
        if used["tcpdump"]:
            print(f"agent/tcpdump: {used['agent'] / used['tcpdump']:.2f}x")
        else:  # CPU time is counted in 10 ms clock ticks
            print("agent/tcpdump: not measurable (tcpdump used less than one 10 ms CPU tick)")
        idle_before = cpu(procs["agent"])
        time.sleep(args.idle)
        idle = cpu(procs["agent"]) - idle_before
        rss = procs["agent"].memory_info().rss / 2**20
        print(
            f"idle {args.idle:.0f} s: {idle:.3f} CPU-s ({100 * idle / args.idle:.2f}% CPU), "
            f"RSS {rss:.1f} MiB"
        )
        dump.terminate()
        agent.terminate()
        _out, err = agent.communicate(timeout=10)
        print(f"agent counters: {err.strip().splitlines()[-1] if err.strip() else '-'}")
        server.terminate()
        server.wait(5)
        dump.wait(5)


if __name__ == "__main__":
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the lab is always torn down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
