"""Alert latency: a ClientHello on the wire -> the alert stored and received by a webhook, for
`egresswatch run` during a strict session, against `tcpdump -l` printing the same hellos (the
peer: the time a packet tool needs just to notice them) in the same run. Needs root.

    sudo python3 bench/alerts.py [--count 50] [--gap 0.2]
"""

import argparse
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.alerts.receiver import Received, receiver  # noqa: E402
from tests.lab import Lab, lab  # noqa: E402

HELLO_FILTER = "tcp dst port 443 and tcp[((tcp[12] & 0xf0) >> 2):2] = 0x1603"
TOKEN = re.compile(r"b\d{4}x")  # the unique first label of each bench host name


def egresswatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "egresswatch", *args]


def hello(net: Lab, name: str) -> None:
    """One TLS handshake to the lab server with SNI `name` (a new destination each time)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((net.server_ip, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name),
    ):
        pass


class TcpdumpWatch:
    """`tcpdump -l -A` on the hellos; when the line carrying each bench name arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.proc = subprocess.Popen(
            ["tcpdump", "-l", "-n", "-A", "-i", "any", HELLO_FILTER],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seen = time.time()
            for token in TOKEN.findall(line):
                self.arrivals.setdefault(token, seen)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run(net: Lab, hook: Received, count: int, gap: float, workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'events.db'}"
    config = workdir / "config.toml"
    config.write_text(f"[sinks]\njournald = false\n[sinks.webhook]\nurl = '{hook.url}'\n")
    service = subprocess.Popen(
        egresswatch("run", "--db", db, "--config", str(config)), stderr=subprocess.PIPE, text=True
    )
    assert service.stderr is not None and "recording to" in service.stderr.readline()
    subprocess.run(
        egresswatch("session", "start", "--strict", "--db", db), check=True, capture_output=True
    )
    names: dict[str, float] = {}
    dump = TcpdumpWatch()
    time.sleep(2.0)  # the session is picked up, tcpdump is listening
    for i in range(count):
        name = f"b{i:04d}x.bench.example"
        names[name] = time.time()
        hello(net, name)
        time.sleep(gap)
    hook.wait(count, timeout=30)
    time.sleep(1.0)
    dump.stop()
    service.send_signal(signal.SIGINT)
    service.communicate(timeout=60)
    report(names, hook, dump.arrivals, count)


def report(names: dict[str, float], hook: Received, dumped: dict[str, float], count: int) -> None:
    ours: list[float] = []
    peer: list[float] = []
    arrived = {
        b["host"]: (b["time"], at) for b, at in zip(hook.json_bodies(), hook.times, strict=True)
    }
    for name in names:
        if name in arrived:
            wire, at = arrived[name]
            ours.append(at - wire)
            token = name.split(".")[0]
            if token in dumped:
                peer.append(dumped[token] - wire)
    print(
        f"hellos sent: {count}; alerts received by the webhook: {len(ours)}; "
        f"tcpdump lines: {len(peer)}"
    )
    if not ours:
        print("no alerts received: latency not measured")
        return
    p50, p95 = percentile(ours, 0.5), percentile(ours, 0.95)
    print(
        f"egresswatch wire -> alert stored + webhook received: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms (target p95 < 500 ms)"
    )
    if peer:
        q50, q95 = percentile(peer, 0.5), percentile(peer, 0.95)
        print(f"tcpdump -l wire -> line printed: p50 {q50 * 1000:.1f} ms, p95 {q95 * 1000:.1f} ms")
        print(
            f"egresswatch/tcpdump p95: {p95 / q95:.0f}x" if q95 > 0 else "ratio: tcpdump p95 is 0"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/alerts.py needs root (live capture and the lab)")
    with lab() as net, receiver() as hook, tempfile.TemporaryDirectory() as tmp:
        run(net, hook, args.count, args.gap, Path(tmp))


if __name__ == "__main__":
    main()
