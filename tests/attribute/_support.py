"""Real client processes and sockets for the attribution tests (no conftest: helpers are local)."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from egresswatch.model import FlowKey, Transport

# argv: kind (tcp | udp | udp-connected), host, port, hold ("stdin" or seconds), marker
CLIENT = r"""
import socket, sys, time
kind, host, port, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
if kind == "tcp":
    s = socket.create_connection((host, port))
else:
    s = socket.socket(family, socket.SOCK_DGRAM)
    if kind == "udp-connected":
        s.connect((host, port))
        s.send(b"x")
    else:
        s.sendto(b"x", (host, port))
print(s.getsockname()[0], s.getsockname()[1], flush=True)
if hold == "stdin":
    sys.stdin.read()
else:
    time.sleep(float(hold))
"""


@dataclass
class Client:
    """A child process holding one socket; `flow` is its packet as seen on the wire."""

    proc: subprocess.Popen[str]
    flow: FlowKey

    def finish(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_client(
    kind: str,
    host: str,
    port: int,
    hold: str = "stdin",
    marker: str = "m",
    prefix: tuple[str, ...] = (),
    executable: str = sys.executable,
    script: bool = False,
) -> Client:
    """Start a client and wait until its socket exists (it prints its local address).

    `script`: `executable` is a copy of CLIENT with a shebang, so no `-c CLIENT` is passed.
    """
    code = () if script else ("-c", CLIENT)
    proc = subprocess.Popen(
        [*prefix, executable, *code, kind, host, str(port), hold, marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line:
        proc.kill()
        proc.communicate()
        raise RuntimeError("client did not start")
    src = line[0]
    if src in ("0.0.0.0", "::"):  # unconnected UDP: the kernel picks the loopback source
        src = "::1" if ":" in host else "127.0.0.1"
    transport: Transport = "tcp" if kind == "tcp" else "udp"
    return Client(proc, FlowKey(transport, src, int(line[1]), host, port))


@contextmanager
def tcp_listener(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        sock.listen(256)
        yield sock


@contextmanager
def udp_sink(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        yield sock


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for network namespaces)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip`")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Netns:
    """A test network namespace joined to the root one by a veth pair (10.199.N.1 <-> .2)."""

    name: str
    host_addr: str
    ns_addr: str


@contextmanager
def veth_netns() -> Iterator[Netns]:
    """Create ewtest-<random> with a /30 veth link to the root namespace; always torn down."""
    need_root()
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"ewtest-{tag}", f"ewh{tag}", f"ewn{tag}"
    octet = 1 + secrets.randbelow(250)
    host_addr, ns_addr = f"10.199.{octet}.1", f"10.199.{octet}.2"
    try:
        _ip("netns", "add", name)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield Netns(name, host_addr, ns_addr)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
