"""Live capture on real sockets: the kernel filter passes what can matter and nothing bulky, lo
copies are dropped, overflow is counted, a vanished interface comes back, no permission is clear.
"""

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from egresswatch.capture import bpf
from egresswatch.capture.live import (
    LINKTYPE_RAW,
    PERMISSION_HINT,
    Frame,
    LiveCapture,
    open_socket,
)
from egresswatch.errors import CaptureError
from tests.lab import lab_unavailable

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _needs_capture() -> None:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)


def test_both_compilers_agree_and_cap_the_snap_length() -> None:
    libpcap = bpf.compile_filter()
    tcpdump = bpf._compile_tcpdump(bpf.FILTER_EXPRESSION)
    assert libpcap.instructions == tcpdump
    returns = [k for code, _jt, _jf, k in tcpdump if code == 0x06]
    assert set(returns) == {0, bpf.SNAPLEN}


def test_malformed_ddd_is_rejected() -> None:
    with pytest.raises(ValueError, match="malformed"):
        bpf.parse_ddd("3\n6 0 0 0\n")
    with pytest.raises(CaptureError):
        bpf.compile_filter("tcp[[[")


@pytest.fixture
def lo_capture() -> Iterator[LiveCapture]:
    capture = LiveCapture(["lo"])
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()


def drain(
    capture: LiveCapture, wanted: Callable[[Frame], bool], settle: float = 0.3
) -> list[Frame]:
    """Frames matching `wanted` (other tests may share lo), until `settle` s without one."""
    out: list[Frame] = []
    while (frame := capture.get(timeout=settle)) is not None:
        if wanted(frame):
            out.append(frame)
    return out


def ports_of(frame: Frame) -> tuple[int, int]:
    """(sport, dport) of a raw IPv4/IPv6 frame."""
    data = frame.data
    offset = (data[0] & 0x0F) * 4 if data[0] >> 4 == 4 else 40
    return int.from_bytes(data[offset : offset + 2], "big"), int.from_bytes(
        data[offset + 2 : offset + 4], "big"
    )


def payload_of(frame: Frame) -> bytes:
    data = frame.data
    offset = (data[0] & 0x0F) * 4 if data[0] >> 4 == 4 else 40
    proto = data[9] if data[0] >> 4 == 4 else data[6]
    if proto == 17:
        return data[offset + 8 :]
    return data[offset + (data[offset + 12] >> 4) * 4 :]


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_udp_filter(lo_capture: LiveCapture, family: int, host: str) -> None:
    port = 20000 + secrets.randbelow(10000)
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"\x12\x34" + bytes(10), (host, 53))  # DNS: pass
        udp.sendto(b"\xc3" + b"Q" * 1200, (host, port))  # QUIC long header: pass
        udp.sendto(b"\x43" + b"q" * 1200, (host, port))  # QUIC short header: drop
        udp.sendto(b"\x00" * 100, (host, port))  # anything else: drop
        sport = udp.getsockname()[1]
    frames = drain(lo_capture, lambda f: ports_of(f)[0] == sport)
    assert [(ports_of(f)[1], payload_of(f)[:1]) for f in frames] == [(53, b"\x12"), (port, b"\xc3")]
    assert all(f.linktype == LINKTYPE_RAW and f.interface == "lo" for f in frames)
    assert all(abs(f.ts - time.time()) < 5 for f in frames)


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_filter_passes_syn_and_hello_records_but_not_bulk(
    lo_capture: LiveCapture, family: int, host: str
) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 20000 + secrets.randbelow(10000)))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection((host, port))
        server, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cport = client.getsockname()[1]
        sends = [
            (client, b"\x16\x03\x01" + bytes(300)),  # ClientHello record: pass
            (client, b"\x9a" + bytes(200)),  # continuation (small, to server): pass
            (client, b"\x17\x9a" + bytes(200)),  # continuation that starts with 0x17: pass
            (client, b"\x17\x03\x03" + bytes(200)),  # application data: drop
            (client, b"\x9b" + bytes(30000)),  # bulk upload: drop
            (server, b"\x16\x03\x03" + bytes(100)),  # ServerHello: pass (cheap, decoder skips)
            (server, b"\x9c" + bytes(200)),  # small segment to an ephemeral port: drop
            (server, b"\x9d" + bytes(50000)),  # bulk download: drop
        ]
        for sock, data in sends:
            sock.sendall(data)
            time.sleep(0.05)
        client.close()
        server.close()
    frames = drain(lo_capture, lambda f: cport in ports_of(f))
    seen = [(ports_of(f)[0] == cport, payload_of(f)[:1]) for f in frames]
    assert seen == [
        (True, b""),
        (True, b"\x16"),
        (True, b"\x9a"),
        (True, b"\x17"),
        (False, b"\x16"),
    ]


def test_lo_copies_are_counted_once(lo_capture: LiveCapture) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(5):
            udp.sendto(b"\x00\x01" + bytes(10), ("127.0.0.1", 53))
        sport = udp.getsockname()[1]
    assert len(drain(lo_capture, lambda f: ports_of(f)[0] == sport)) == 5
    # The kernel filter drops the outgoing copies: none reach Python.
    assert lo_capture.counters().get("capture.skipped.lo_outgoing") == 0


def test_overflow_drops_and_counts_without_blocking() -> None:
    capture = LiveCapture(["lo"], queue_size=10)
    capture.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(300):
                udp.sendto(b"\x00\x02" + bytes(10), ("127.0.0.1", 53))
        time.sleep(0.5)
        counts = capture.counters()
        assert capture.queue.qsize() == 10
        assert counts.get("capture.dropped.queue_full") >= 290 - 10
        assert counts.get("capture.packets") == counts.get("capture.queued") + counts.get(
            "capture.dropped.queue_full"
        )
    finally:
        capture.stop()


def _dummy(name: str, address: str) -> None:
    """A veth pair whose far end drops everything; a static neighbour avoids waiting for ARP."""
    run = ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"]
    subprocess.run(run, check=True)
    subprocess.run(["ip", "addr", "add", address, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", f"{name}p", "up"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    peer = address.rsplit(".", 1)[0] + ".2"
    subprocess.run(
        [
            "ip",
            "neigh",
            "replace",
            peer,
            "lladdr",
            "02:00:00:00:01:99",
            "dev",
            name,
            "nud",
            "permanent",
        ],
        check=True,
    )


def _send_until_seen(capture: LiveCapture, dst: str, deadline: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        while time.monotonic() < deadline:
            udp.sendto(b"\x00\x03" + bytes(10), (dst, 53))
            frame = capture.get(timeout=0.2)
            if frame is not None:
                return True
    return False


def test_named_interface_that_disappears_is_reopened() -> None:
    n = 10 + secrets.randbelow(240)
    name = f"ewd{secrets.token_hex(3)}"
    _dummy(name, f"10.199.{n}.1/24")
    capture = LiveCapture([name])
    try:
        capture.start()
        assert _send_until_seen(capture, f"10.199.{n}.2", time.monotonic() + 5)
        subprocess.run(["ip", "link", "del", name], check=True)
        time.sleep(0.5)
        _dummy(name, f"10.199.{n}.1/24")
        assert _send_until_seen(capture, f"10.199.{n}.2", time.monotonic() + 10)
        counts = capture.counters()
        assert counts.get("capture.errors.netdown") >= 1
        assert counts.get("capture.reopened") >= 1
    finally:
        capture.stop()
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


def test_any_keeps_working_while_an_interface_goes() -> None:
    capture = LiveCapture()
    capture.start()
    name = f"ewd{secrets.token_hex(3)}"
    try:
        _dummy(name, f"10.199.{10 + secrets.randbelow(240)}.1/24")
        subprocess.run(["ip", "link", "del", name], check=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"\x00\x04" + bytes(10), ("127.0.0.1", 53))
            sport = udp.getsockname()[1]
        assert drain(capture, lambda f: ports_of(f)[0] == sport)
        assert capture.counters().get("capture.errors.other") == 0
    finally:
        capture.stop()
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


def test_missing_cap_net_raw_is_one_clear_line() -> None:
    code = (
        "from egresswatch.capture.live import open_socket\n"
        "from egresswatch.capture.bpf import compile_filter\n"
        "from egresswatch.errors import CaptureError\n"
        "try:\n    open_socket('any', compile_filter())\n"
        "except CaptureError as err:\n    print(err)\n"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=os.getcwd(),
    )
    assert done.stdout.strip() == PERMISSION_HINT
    assert "CAP_NET_RAW" in PERMISSION_HINT and "egresswatch service install" in PERMISSION_HINT


def test_stop_is_prompt_with_no_traffic() -> None:
    capture = LiveCapture(["lo"])
    capture.start()
    started = time.monotonic()
    capture.stop()
    assert time.monotonic() - started < 1.0
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "capture-lo")
    open_socket("lo", capture.program).close()


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_filter_passes_a_large_first_post_to_a_server_port(
    lo_capture: LiveCapture, family: int, host: str
) -> None:
    """Inference sessions need the request line of a big POST (a long prompt in one segment)."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 20000 + secrets.randbelow(10000)))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection((host, port))
        server, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cport = client.getsockname()[1]
        for data in (
            b"POST /api/generate HTTP/1.1\r\n" + b"x" * 20000,  # pass: large, starts with POST
            b"\x9b" + bytes(30000),  # bulk upload: drop
            b"POSTPOSTPOST",  # small: passes as a continuation-sized segment anyway
        ):
            client.sendall(data)
            time.sleep(0.05)
        server.sendall(b"POST" + bytes(30000))  # bulk that starts with "POST" but no space: drop
        time.sleep(0.05)
        client.close()
        server.close()
    frames = drain(lo_capture, lambda f: cport in ports_of(f) and bool(payload_of(f)))
    seen = [(ports_of(f)[0] == cport, payload_of(f)[:6]) for f in frames]
    assert seen == [(True, b"POST /"), (True, b"POSTPO")]


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_filter_passes_a_post_to_a_server_on_an_ephemeral_port(
    lo_capture: LiveCapture, family: int, host: str
) -> None:
    """A tool may listen on a port >= 32768 (a random free port): its requests start sessions."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))  # the kernel picks from the ephemeral range
        listener.listen()
        port = listener.getsockname()[1]
        assert port >= bpf.EPHEMERAL_MIN
        client = socket.create_connection((host, port))
        server, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cport = client.getsockname()[1]
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n" + b"x" * 20000)
        time.sleep(0.05)
        client.sendall(b"\x9b" + bytes(30000))  # bulk upload: drop
        time.sleep(0.05)
        client.close()
        server.close()
    frames = drain(lo_capture, lambda f: cport in ports_of(f) and bool(payload_of(f)))
    assert [(ports_of(f)[1], payload_of(f)[:6]) for f in frames] == [(port, b"POST /")]
