"""A throwaway "internet" for end-to-end tests: network namespaces on a host bridge, with a DNS
server answering any name, a TLS server (openssl s_server) and a QUIC server (aioquic) on 443.

Use `with lab() as net:` (or the `lab_env` helper) in tests; run as a script it is the servers
(`python3 tests/lab.py serve ...`, `python3 tests/lab.py stub ...`). Everything it creates is
removed in `finally`; it changes nothing else on the machine. Addresses: 10.199.<n>.0/24 and
fd00:199::<n>:0/112 (inside fd00:199::/64), a stub resolver on 127.199.<n>.53.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LAB_SCRIPT = Path(__file__).resolve()
TOOLS = ("ip", "unshare", "mount", "openssl", "curl", "dig")
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
TTL = 60
ANSWER_DELAY = 0.002  # seconds the lab's DNS server waits before answering


def lab_unavailable() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    status = Path("/proc/self/status").read_text()
    mask = next(
        int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:")
    )
    for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_NET_RAW", CAP_NET_RAW)):
        if not mask >> bit & 1:
            return f"lab tests need root ({name} missing): run pytest with sudo"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"lab tests need {', '.join(missing)} (apt-get install iproute2 curl dnsutils openssl)"
        )
    return None


def require_lab() -> None:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Lab:
    """Names and addresses of one lab, and helpers to run clients in it."""

    n: int
    workdir: Path
    suffix: str
    internet_ns: str = field(init=False)
    client_ns: str = field(init=False)
    bridge: str = field(init=False)

    def __post_init__(self) -> None:
        self.internet_ns = f"ew-inet-{self.suffix}"
        self.client_ns = f"ew-cli-{self.suffix}"
        self.bridge = f"ewb{self.suffix}"

    @property
    def host_ip(self) -> str:
        return f"10.199.{self.n}.1"

    @property
    def server_ip(self) -> str:
        return f"10.199.{self.n}.2"

    @property
    def client_ip(self) -> str:
        return f"10.199.{self.n}.3"

    @property
    def host_ip6(self) -> str:
        return f"fd00:199::{self.n:x}:1"

    @property
    def server_ip6(self) -> str:
        return f"fd00:199::{self.n:x}:2"

    @property
    def client_ip6(self) -> str:
        return f"fd00:199::{self.n:x}:3"

    @property
    def stub_ip(self) -> str:
        return f"127.199.{self.n}.53"

    @property
    def cert(self) -> Path:
        return self.workdir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.workdir / "key.pem"

    def resolv_conf(self, stub: bool = False) -> Path:
        return self.workdir / ("resolv-stub.conf" if stub else "resolv.conf")

    def with_dns(self, argv: Sequence[str], stub: bool = False) -> list[str]:
        """`argv` run with the lab's DNS in a private /etc/resolv.conf (own mount namespace)."""
        script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            str(self.resolv_conf(stub)),
            *argv,
        ]

    def in_client_ns(self, argv: Sequence[str]) -> list[str]:
        """`argv` run in the lab's client namespace (the container case), with the lab's DNS."""
        return ["ip", "netns", "exec", self.client_ns, *self.with_dns(argv)]

    def tool_script(self, name: str) -> Path:
        """A Python HTTPS/QUIC client installed under a tool's name (ollama, llama-server...)."""
        path = self.workdir / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0:1] = ['{LAB_SCRIPT}']\n"
            f"runpy.run_path('{LAB_SCRIPT}', run_name='__main__')\n"
        )
        path.chmod(0o755)
        return path


def _free_subnet() -> int:
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for _ in range(100):
        n = 10 + secrets.randbelow(240)
        if f"10.199.{n}." not in used:
            return n
    raise RuntimeError("no free 10.199.x.0/24 subnet")


def make_certificate(cert: Path, key: Path) -> None:
    """A throwaway self-signed certificate for *.lab names."""
    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egresswatch lab")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pkey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.lab")]), critical=False)
        .sign(pkey, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _network(net: Lab, stack: ExitStack) -> None:
    run("ip", "link", "add", net.bridge, "type", "bridge")
    stack.callback(subprocess.run, ["ip", "link", "del", net.bridge], check=False)
    run("ip", "addr", "add", f"{net.host_ip}/24", "dev", net.bridge)
    run("ip", "addr", "add", f"{net.host_ip6}/112", "dev", net.bridge, "nodad")
    run("ip", "link", "set", net.bridge, "up")
    for ns, ip4, ip6, tag in (
        (net.internet_ns, net.server_ip, net.server_ip6, "i"),
        (net.client_ns, net.client_ip, net.client_ip6, "c"),
    ):
        run("ip", "netns", "add", ns)
        stack.callback(subprocess.run, ["ip", "netns", "del", ns], check=False)
        outside, inside = f"ew{tag}{net.suffix}", f"ew{tag}{net.suffix}x"
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
        stack.callback(subprocess.run, ["ip", "link", "del", outside], check=False)
        run("ip", "link", "set", outside, "master", net.bridge, "up")
        inns = ("ip", "-n", ns)
        run(*inns, "addr", "add", f"{ip4}/24", "dev", inside)
        run(*inns, "addr", "add", f"{ip6}/112", "dev", inside, "nodad")
        run(*inns, "link", "set", inside, "up")
        run(*inns, "link", "set", "lo", "up")


def _start(stack: ExitStack, argv: list[str], ready: str | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    stack.callback(_stop, proc)
    if ready is not None:
        _wait_line(proc, ready)
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_line(proc: subprocess.Popen[str], ready: str) -> None:
    assert proc.stdout is not None
    timer = threading.Timer(20, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if ready in line:
                return
    finally:
        timer.cancel()
    raise RuntimeError(f"lab server did not start: {proc.args!r}")


def _wait_tcp(ns: str, port: int) -> None:
    for _ in range(100):
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} in {ns}")


def _servers(net: Lab, stack: ExitStack) -> None:
    serve = [
        sys.executable,
        str(LAB_SCRIPT),
        "serve",
        "--a",
        net.server_ip,
        "--aaaa",
        net.server_ip6,
        "--cert",
        str(net.cert),
        "--key",
        str(net.key),
    ]
    _start(stack, ["ip", "netns", "exec", net.internet_ns, *serve], ready="READY")
    s_server = [
        "openssl",
        "s_server",
        "-quiet",
        "-accept",
        "443",
        "-cert",
        str(net.cert),
        "-key",
        str(net.key),
        "-www",
        "-no_dhe",
    ]
    _start(stack, ["ip", "netns", "exec", net.internet_ns, *s_server])
    _wait_tcp(net.internet_ns, 443)
    stub = [
        sys.executable,
        str(LAB_SCRIPT),
        "stub",
        "--listen",
        net.stub_ip,
        "--upstream",
        net.server_ip,
    ]
    _start(stack, stub, ready="READY")


@contextmanager
def lab() -> Iterator[Lab]:
    """Builds the lab, yields it, and always tears it down."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(_tempdir()))
        suffix = secrets.token_hex(3)
        net = Lab(_free_subnet(), workdir, suffix)
        make_certificate(net.cert, net.key)
        net.resolv_conf().write_text(f"nameserver {net.server_ip}\noptions timeout:2\n")
        net.resolv_conf(stub=True).write_text(f"nameserver {net.stub_ip}\noptions timeout:2\n")
        _network(net, stack)
        _servers(net, stack)
        yield net


@contextmanager
def _tempdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="ew-lab-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- the servers and clients (this file run as a script) -------------------------------------


def dns_answer(wire: bytes, a: str, aaaa: str) -> bytes:
    """Answers any name with the lab's addresses; `alias.X` is a CNAME to `real.X`."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    for question in query.question:
        target = question.name
        if target.labels and target.labels[0].lower() == b"alias":
            target = dns.name.Name((b"real", *target.labels[1:]))
            response.answer.append(
                dns.rrset.from_text(question.name, TTL, "IN", "CNAME", target.to_text())
            )
        address = {dns.rdatatype.A: a, dns.rdatatype.AAAA: aaaa}.get(question.rdtype)
        if address is not None:
            response.answer.append(
                dns.rrset.from_text(
                    target, TTL, "IN", dns.rdatatype.to_text(question.rdtype), address
                )
            )
    wire_out: bytes = response.to_wire()
    return wire_out


class _DnsUdp(asyncio.DatagramProtocol):
    def __init__(self, a: str, aaaa: str) -> None:
        self.a, self.aaaa = a, aaaa

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            answer = dns_answer(data, self.a, self.aaaa)
        except Exception as err:  # a test server: say what broke, keep serving
            print("dns error", err, flush=True)
            return
        # A real resolver is at least a millisecond or two away. Answering in 0.3 ms closes the
        # client's socket before any user-space agent can look it up (docs/attribution.md).
        send = self.transport.sendto  # type: ignore[attr-defined]
        asyncio.get_running_loop().call_later(ANSWER_DELAY, send, answer, addr)


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _DnsUdp(args.a, args.aaaa), local_addr=("::", 53))

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(2), "big")
        answer = dns_answer(await reader.readexactly(size), args.a, args.aaaa)
        writer.write(len(answer).to_bytes(2, "big") + answer)
        await writer.drain()
        writer.close()

    await asyncio.start_server(tcp, "::", 53)
    config = QuicConfiguration(is_client=False, alpn_protocols=["lab", "h3", "hq-interop"])
    config.load_cert_chain(args.cert, args.key)
    await serve("::", 443, configuration=config)
    print("READY", flush=True)
    await asyncio.Event().wait()


def _stub(args: argparse.Namespace) -> None:
    """A forwarding resolver on lo: each query goes upstream from a fresh socket, like a stub."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, 53))
    print("READY", flush=True)

    def relay(query: bytes, client: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(3)
            up.sendto(query, (args.upstream, 53))
            try:
                sock.sendto(up.recv(4096), client)
            except TimeoutError:
                return

    while True:
        query, client = sock.recvfrom(4096)
        threading.Thread(target=relay, args=(query, client), daemon=True).start()


def _https(args: argparse.Namespace) -> None:
    """One HTTPS request (or a bare TLS handshake) to args.host:443 with SNI args.host."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((args.connect or args.host, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=args.host) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.0\r\nHost: " + args.host.encode() + b"\r\n\r\n")
        tls.recv(100)
    if args.linger:
        time.sleep(args.linger)


def _quic(args: argparse.Namespace) -> None:
    async def go() -> None:
        config = QuicConfiguration(
            is_client=True, alpn_protocols=["lab"], verify_mode=0, server_name=args.host
        )
        async with connect(args.connect or args.host, 443, configuration=config) as client:
            await client.ping()

    asyncio.run(asyncio.wait_for(go(), 10))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="egresswatch lab servers and clients")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve")
    for opt in ("--a", "--aaaa", "--cert", "--key"):
        serve.add_argument(opt, required=True)
    stub = sub.add_parser("stub")
    stub.add_argument("--listen", required=True)
    stub.add_argument("--upstream", required=True)
    for name in ("https", "quic"):
        client = sub.add_parser(name)
        client.add_argument("host")
        client.add_argument("--connect", help="address to connect to instead of resolving host")
        client.add_argument("--linger", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        asyncio.run(_serve(args))
    elif args.cmd == "stub":
        _stub(args)
    else:
        {"https": _https, "quic": _quic}[args.cmd](args)


def is_lab_address(address: str) -> bool:
    """Whether tests may send traffic to `address` (loopback and the lab's ranges only)."""
    ip = ipaddress.ip_address(address)
    return (
        ip.is_loopback
        or ip in ipaddress.ip_network("10.199.0.0/16")
        or ip in ipaddress.ip_network("fd00:199::/64")
    )


if __name__ == "__main__":
    main()
