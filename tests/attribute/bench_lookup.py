"""Attribution figures: lookup latency with ~1000 sockets open, index refresh, netns paths.

Run as root from the repo root: `python -m tests.attribute.bench_lookup` (not collected by pytest).
"""

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pyroute2 import DiagSocket

from egresswatch.attribute.netns import NetnsHandle
from egresswatch.attribute.procfs import SocketIndex
from egresswatch.attribute.resolver import ProcessResolver
from egresswatch.model import FlowKey
from tests.attribute._support import start_client, veth_netns

HOLDER = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for s in socks:
    print(s.getsockname()[1])
print("ready", flush=True)
sys.stdin.read()
"""


def _pct(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"p50 {p50:8.1f} us  p95 {p95:8.1f} us  (n={len(ordered)})"


def _time_us(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def _open_many(
    n: int,
) -> tuple[subprocess.Popen[str], socket.socket, list[socket.socket], list[int]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    ports = []
    for line in holder.stdout:
        if line.startswith("ready"):
            break
        ports.append(int(line))
    accepted = [listener.accept()[0] for _ in range(n)]
    return holder, listener, accepted, ports


def bench_resolver(n: int) -> None:
    holder, listener, accepted, ports = _open_many(n)
    lport = listener.getsockname()[1]
    flows = [FlowKey("tcp", "127.0.0.1", p, "127.0.0.1", lport) for p in ports]
    try:
        start = time.perf_counter()
        resolver = ProcessResolver(recent_ttl=0.0)
        took_ms = (time.perf_counter() - start) * 1e3
        print(f"resolver start (full /proc scan + netns): {took_ms:.1f} ms")
        print(
            f"sockets open: {2 * n + 1} TCP on loopback, pids in /proc: {len(os.listdir('/proc'))}"
        )
        first = [resolver.attribute(f, time.time()) for f in flows[:1]]
        assert first[0].process is not None and first[0].process.pid == holder.pid
        it = iter(flows * 3)
        hits = _time_us(lambda: resolver.attribute(next(it), time.time()), 2 * n)
        print(f"hit, facts cached     : {_pct(hits)}")
        cold = ProcessResolver(facts_ttl=0.0, recent_ttl=0.0)
        it = iter(flows)
        reread = _time_us(lambda: cold.attribute(next(it), time.time()), n)
        print(f"hit, facts re-read    : {_pct(reread)}")
        cold.close()
        gone = iter(FlowKey("tcp", "127.0.0.1", 1 + i, "127.0.0.1", 9) for i in range(5000))
        misses = _time_us(lambda: resolver.attribute(next(gone), time.time()), 1000)
        print(f"miss closed-before-lookup: {_pct(misses)}")
        foreign = FlowKey("tcp", "198.51.100.1", 1, "203.0.113.1", 2)
        far = _time_us(lambda: resolver.attribute(foreign, time.time()), 1000)
        print(f"miss not-local        : {_pct(far)}")
        print("counters:", dict(resolver.counters.snapshot()))
        resolver.close()
        bench_raw(flows[0])
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        for sock in accepted:
            sock.close()
        listener.close()


def bench_raw(flow: FlowKey) -> None:
    handle = NetnsHandle.open(0, None)
    local, remote = (flow.src, flow.sport), (flow.dst, flow.dport)
    ours = _time_us(lambda: handle.diag.lookup("tcp", local, remote), 2000)
    print(f"sock_diag exact lookup (ours): {_pct(ours)}")
    handle.close()

    with DiagSocket() as diag:
        diag.bind()

        def dump_and_match() -> object:
            for msg in diag.get_sock_stats(family=socket.AF_INET):
                if msg["idiag_sport"] == flow.sport and msg["idiag_dport"] == flow.dport:
                    return msg
            return None

        print(f"pyroute2 DiagSocket dump+match: {_pct(_time_us(dump_and_match, 50))}")


def bench_index() -> None:
    index = SocketIndex(Path("/proc"), full_interval=3600)
    print(f"index full scan       : {_pct(_time_us(index.full_scan, 20))}")
    print(f"index refresh (no new pid): {_pct(_time_us(index.refresh_new, 200))}")
    client = start_client("udp", "127.0.0.1", 9)
    inode = next(
        int(os.readlink(e)[8:-1])
        for e in Path(f"/proc/{client.proc.pid}/fd").iterdir()
        if os.readlink(e).startswith("socket:")
    )
    took = _time_us(lambda: index.owners(inode), 1)[0]
    print(f"index miss -> new pid found incrementally: {took:.1f} us")
    client.finish()


def bench_netns() -> None:
    with veth_netns() as ns:
        resolver = ProcessResolver()
        udp = start_client("udp", ns.host_addr, 9, prefix=("ip", "netns", "exec", ns.name))
        flow = FlowKey("udp", ns.ns_addr, udp.flow.sport, ns.host_addr, 9)
        first = _time_us(lambda: resolver.attribute(flow, time.time()), 1)[0]
        print(f"resolver, first packet from a new netns (discover + open + lookup): {first:.0f} us")
        again = _time_us(lambda: resolver.attribute(flow, time.time()), 500)
        print(f"resolver, hit in other netns (facts cached): {_pct(again)}")
        resolver.close()
        member = udp.proc
        path = Path(f"/proc/{member.pid}/ns/net")
        opened = _time_us(lambda: NetnsHandle.open(1, path).close(), 20)
        print(f"open sock_diag+rtnl in another netns (setns thread): {_pct(opened)}")
        handle = NetnsHandle.open(1, path)
        lookups = _time_us(
            lambda: handle.diag.lookup("tcp", (ns.ns_addr, 1), (ns.host_addr, 2)), 1000
        )
        print(f"sock_diag lookup inside netns (miss): {_pct(lookups)}")
        handle.close()
        tables = [Path(f"/proc/{member.pid}/net/{t}") for t in ("tcp", "tcp6", "udp", "udp6")]
        read = _time_us(lambda: [t.read_bytes() for t in tables], 100)
        print(f"read /proc/PID/net/{{tcp,tcp6,udp,udp6}} of a member (2-socket ns): {_pct(read)}")
        udp.finish()


if __name__ == "__main__":
    bench_index()
    bench_netns()
    bench_resolver(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
