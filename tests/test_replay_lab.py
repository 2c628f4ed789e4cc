"""End to end without the shared corpus: real clients in a private network namespace, captured
by tcpdump, then `egresswatch replay --format jsonl` on that capture.

The namespace has only its own loopback, so nothing leaves it; it is deleted afterwards.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

DNS_SERVER = textwrap.dedent("""
    import socket, sys, dns.message, dns.rrset
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 53))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(4096)
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        name = q.question[0].name
        r.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", "edge.lab.test."))
        r.answer.append(dns.rrset.from_text("edge.lab.test.", 30, "IN", "A", "10.199.7.2"))
        s.sendto(r.to_wire(), peer)
""")

QUIC_CLIENT = textwrap.dedent("""
    import socket, sys
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sys.argv[1])
    conn = QuicConnection(configuration=cfg)
    conn.connect(("127.0.0.1", 4433), now=0.0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for data, _ in conn.datagrams_to_send(now=0.0):
        s.sendto(data, ("127.0.0.1", 4433))
""")


def _need(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and capture on it")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (installed by scripts/setup.sh test)")


@pytest.fixture
def netns() -> Iterator[list[str]]:
    _need("ip", "tcpdump", "openssl", "dig")
    name = f"ewreplay-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=lab.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def _start(ns: list[str], args: list[str], **kw: Any) -> "subprocess.Popen[str]":
    return subprocess.Popen([*ns, *args], text=True, **kw)


def _wait_line(proc: "subprocess.Popen[str]", needle: str) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return
    raise AssertionError(f"{proc.args!r} did not print {needle!r}")


def _drive_clients(ns: list[str], tmp: Path) -> None:
    key, cert = _self_signed(tmp)
    servers = [
        _start(ns, [sys.executable, "-c", DNS_SERVER, "127.0.0.1"], stdout=subprocess.PIPE),
        _start(ns, [sys.executable, "-c", DNS_SERVER, "::1"], stdout=subprocess.PIPE),
        _start(
            ns,
            [
                "openssl",
                "s_server",
                "-accept",
                "127.0.0.1:8443",
                "-key",
                str(key),
                "-cert",
                str(cert),
                "-naccept",
                "1",
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        ),
    ]
    try:
        _wait_line(servers[0], "ready")
        _wait_line(servers[1], "ready")
        _wait_line(servers[2], "ACCEPT")
        subprocess.run(
            [*ns, "dig", "@127.0.0.1", "+tries=1", "+time=2", "model.lab.test", "A"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*ns, "dig", "@::1", "+tries=1", "+time=2", "v6.lab.test", "AAAA"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *ns,
                "openssl",
                "s_client",
                "-connect",
                "127.0.0.1:8443",
                "-servername",
                "registry.lab.test",
                "-alpn",
                "h2,http/1.1",
            ],
            input="",
            text=True,
            capture_output=True,
            timeout=20,
            check=False,
        )
        subprocess.run([*ns, sys.executable, "-c", QUIC_CLIENT, "quic.lab.test"], check=True)
    finally:
        for proc in servers:
            proc.kill()
            proc.communicate()


def _capture(ns: list[str], tmp: Path) -> Path:
    pcap = tmp / "lab.pcap"
    dump = _start(
        ns,
        ["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-w", str(pcap)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert dump.stderr is not None
    assert "listening" in dump.stderr.readline()
    try:
        _drive_clients(ns, tmp)
        time.sleep(0.3)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    return pcap


def _replay_jsonl(pcap: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "egresswatch", "replay", "--format", "jsonl", str(pcap)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "observations" in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_replay_of_a_capture_made_by_real_clients(netns: list[str], tmp_path: Path) -> None:
    records = _replay_jsonl(_capture(netns, tmp_path))
    dns = [r for r in records if r["kind"] == "dns"]
    queries = {(r["qname"], r["qtype"], r["src"]) for r in dns if not r["is_response"]}
    assert ("model.lab.test", "A", "127.0.0.1") in queries
    assert ("v6.lab.test", "AAAA", "::1") in queries
    answer = next(r for r in dns if r["is_response"] and r["qname"] == "model.lab.test")
    assert answer["rcode"] == "NOERROR" and answer["proto"] == "dns"
    assert [(a["type"], a["data"]) for a in answer["answers"]] == [
        ("CNAME", "edge.lab.test"),
        ("A", "10.199.7.2"),
    ]
    tls = [r for r in records if r["kind"] == "tls"]
    assert [(r["sni"], r["dport"], r["transport"]) for r in tls] == [
        ("registry.lab.test", 8443, "tcp")
    ]
    assert tls[0]["alpn"] == ["h2", "http/1.1"]
    quic = [r for r in records if r["kind"] == "quic"]
    assert [(r["sni"], r["quic_version"], r["alpn"]) for r in quic] == [
        ("quic.lab.test", "0x00000001", ["h3"])
    ]
