"""Benchmark: `egresswatch replay --format jsonl` against tshark extracting the same fields.

    python bench/replay.py [--size-mb 300] [--runs 3]

Builds a synthetic capture (~98% bulk TCP payload as in a model download, the rest real DNS, TLS
and QUIC handshakes), then times both tools on it in the same run and prints the medians, the
ratio, and egresswatch's peak RSS on the file and on one twice its size (constant memory).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_builder import build_capture

TSHARK_FIELDS = [
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "dns.id",
    "dns.flags.response",
    "dns.qry.name",
    "dns.qry.type",
    "dns.flags.rcode",
    "dns.a",
    "dns.aaaa",
    "dns.cname",
    "dns.resp.ttl",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "quic.version",
]


def _egresswatch_cmd(path: Path) -> list[str]:
    exe = shutil.which("egresswatch") or f"{sys.executable} -m egresswatch"
    return [*exe.split(), "replay", "--format", "jsonl", "--quiet", str(path)]


def _tshark_cmd(path: Path) -> list[str]:
    fields = [arg for field in TSHARK_FIELDS for arg in ("-e", field)]
    return [
        "tshark",
        "-n",
        "-r",
        str(path),
        "-Y",
        "dns or tls.handshake.type == 1 or quic",
        "-T",
        "fields",
        *fields,
    ]


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MiB (from wait4's rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss / 1024


def _median_run(cmd: list[str], runs: int) -> tuple[float, float]:
    results = [_timed(cmd) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        raise SystemExit("tshark is needed as the peer: apt-get install tshark")
    with tempfile.TemporaryDirectory(prefix="ew-bench-") as tmp:
        small, big = Path(tmp) / "mixed.pcap", Path(tmp) / "mixed-2x.pcap"
        frames = build_capture(small, args.size_mb * 1024 * 1024)
        size_mb = small.stat().st_size / 2**20
        print(f"capture: {size_mb:.0f} MiB, {frames} frames")
        ew_time, ew_rss = _median_run(_egresswatch_cmd(small), args.runs)
        ts_time, ts_rss = _median_run(_tshark_cmd(small), args.runs)
        print(
            f"egresswatch replay: median {ew_time:.2f} s ({size_mb / ew_time:.0f} MiB/s), "
            f"peak RSS {ew_rss:.0f} MiB"
        )
        print(
            f"tshark -T fields:   median {ts_time:.2f} s ({size_mb / ts_time:.0f} MiB/s), "
            f"peak RSS {ts_rss:.0f} MiB"
        )
        print(f"ratio: egresswatch is {ts_time / ew_time:.1f}x faster than tshark (goal >= 5x)")
        build_capture(big, 2 * args.size_mb * 1024 * 1024)
        _time2, rss2 = _timed(_egresswatch_cmd(big))
        print(
            f"memory: peak RSS {ew_rss:.0f} MiB on {size_mb:.0f} MiB, {rss2:.0f} MiB on "
            f"{2 * size_mb:.0f} MiB (constant memory: the two should be about equal)"
        )


if __name__ == "__main__":
    main()
