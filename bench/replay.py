"""Benchmark: `egresswatch replay --format jsonl` against tshark extracting the same fields.

    python bench/replay.py [--mix bulk|handshake|both] [--size-mb 300] [--handshake-mb 200]
                           [--runs 3]

Two synthetic captures: "bulk" (~98% of the bytes bulk TCP payload as in a model download, the
rest real DNS, TLS and QUIC handshakes) and "handshake" (2% of the frames real DNS, TLS and QUIC
handshakes, the rest those connections' traffic, a third of all frames QUIC 1-RTT datagrams).
For each, times both tools in the same run and prints the medians, the ratio, how many of
tshark's records (DNS messages, TLS and QUIC ClientHellos, matched by timestamp) egresswatch
also reports, and egresswatch's peak RSS on the file and on one twice its size (constant memory).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_builder import build_capture, build_handshake_mix

BUILDERS = {"bulk": build_capture, "handshake": build_handshake_mix}

SNI_FIELD = "tls.handshake.extensions_server_name"
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
    SNI_FIELD,
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


def _timed(cmd: list[str], out: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS in MiB of the child (from wait4's
    rusage); its stdout goes to `out`."""
    with out.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _median_runs(
    cmds: tuple[list[str], list[str]], runs: int, outs: tuple[Path, Path]
) -> list[tuple[float, float, float]]:
    """(median wall seconds, median CPU seconds, peak RSS) of each command; runs alternate, so
    a load change on this shared machine hits both tools alike."""
    results: list[list[tuple[float, float, float]]] = [[], []]
    for _ in range(runs):
        for i, cmd in enumerate(cmds):
            results[i].append(_timed(cmd, outs[i]))
    return [
        (
            statistics.median(r[0] for r in rs),
            statistics.median(r[1] for r in rs),
            max(r[2] for r in rs),
        )
        for rs in results
    ]


def _tshark_records(out: Path) -> set[tuple[int, str]]:
    """(timestamp in microseconds, "dns" or the SNI) of each DNS message or ClientHello row."""
    dns_id, sni = TSHARK_FIELDS.index("dns.id"), TSHARK_FIELDS.index(SNI_FIELD)
    records = set()
    for line in out.read_text().splitlines():
        cols = line.split("\t")
        us = round(float(cols[0]) * 1e6)
        if cols[dns_id]:
            records.add((us, "dns"))
        if cols[sni]:
            records.add((us, cols[sni].split(",")[0]))
    return records


def _egresswatch_records(out: Path) -> set[tuple[int, str]]:
    records = set()
    for line in out.read_text().splitlines():
        obs = json.loads(line)
        name = "dns" if obs["kind"] == "dns" else obs.get("sni") or ""
        records.add((round(obs["ts"] * 1e6), name))
    return records


def _compare(mix: str, size_mb: int, runs: int, tmp: Path) -> None:
    path = tmp / f"{mix}.pcap"
    frames = BUILDERS[mix](path, size_mb * 1024 * 1024)
    mib = path.stat().st_size / 2**20
    print(f"[{mix}] capture: {mib:.0f} MiB, {frames} frames")
    ew_out, ts_out = tmp / "ew.jsonl", tmp / "tshark.tsv"
    cmds = (_egresswatch_cmd(path), _tshark_cmd(path))
    ew, ts = _median_runs(cmds, runs, (ew_out, ts_out))
    _print_time(mix, "egresswatch replay", mib, ew)
    _print_time(mix, "tshark -T fields", mib, ts)
    theirs, ours = _tshark_records(ts_out), _egresswatch_records(ew_out)
    share = len(theirs & ours) / max(len(theirs), 1)
    print(
        f"[{mix}] records: tshark {len(theirs)}, egresswatch {len(ours)}, "
        f"{100 * share:.2f}% of tshark's also in egresswatch's (goal >= 99%)"
    )
    print(
        f"[{mix}] ratio: egresswatch is {ts[0] / ew[0]:.1f}x faster than tshark in wall time "
        f"(goal >= 5x), {ts[1] / ew[1]:.1f}x in CPU time (steadier when the machine is shared)"
    )
    path.unlink()
    _memory(mix, size_mb, ew[2], tmp)


def _print_time(mix: str, name: str, mib: float, figures: tuple[float, float, float]) -> None:
    took, cpu, rss = figures
    print(
        f"[{mix}] {name:18}: median {took:.2f} s ({mib / took:.0f} MiB/s), "
        f"CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB"
    )


def _memory(mix: str, size_mb: int, rss: float, tmp: Path) -> None:
    big = tmp / f"{mix}-2x.pcap"
    BUILDERS[mix](big, 2 * size_mb * 1024 * 1024)
    _time2, _cpu2, rss2 = _timed(_egresswatch_cmd(big), tmp / "ew.jsonl")
    print(
        f"[{mix}] memory: peak RSS {rss:.0f} MiB on {size_mb} MiB, {rss2:.0f} MiB on "
        f"{2 * size_mb} MiB (constant memory: the two should be about equal)"
    )
    big.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", choices=("bulk", "handshake", "both"), default="both")
    parser.add_argument("--size-mb", type=int, default=300, help="size of the bulk capture")
    parser.add_argument("--handshake-mb", type=int, default=200, help="size of the handshake mix")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        raise SystemExit("tshark is needed as the peer: apt-get install tshark")
    sizes = {"bulk": args.size_mb, "handshake": args.handshake_mb}
    mixes = ("bulk", "handshake") if args.mix == "both" else (args.mix,)
    with tempfile.TemporaryDirectory(prefix="ew-bench-") as tmp:
        for mix in mixes:
            _compare(mix, sizes[mix], args.runs, Path(tmp))


if __name__ == "__main__":
    main()
