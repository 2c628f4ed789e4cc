"""ProcessResolver against real child processes, real sockets and a real network namespace."""

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.attribute.resolver import REASONS, ProcessResolver
from egresswatch.model import FlowKey
from tests.attribute._support import (
    Client,
    start_client,
    tcp_listener,
    udp_sink,
    veth_netns,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def resolver() -> Iterator[ProcessResolver]:
    res = ProcessResolver(recent_ttl=5.0)
    try:
        yield res
    finally:
        res.close()


def _assert_named(res: ProcessResolver, client: Client) -> None:
    attribution = res.attribute(client.flow, time.time())
    assert attribution.status == "exact", attribution
    assert attribution.process is not None
    assert attribution.process.pid == client.proc.pid
    assert attribution.process.netns == os.stat(f"/proc/{client.proc.pid}/ns/net").st_ino
    assert attribution.process.cmdline[-1] == "m"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_client_named_from_either_direction(resolver: ProcessResolver, host: str) -> None:
    with tcp_listener(host) as listener:
        client = start_client("tcp", host, listener.getsockname()[1])
        try:
            _assert_named(resolver, client)
            server, _ = listener.accept()
            with server:
                # the reply packet's sender is the server end: this test process
                reply = resolver.attribute(client.flow.reversed(), time.time())
                assert reply.process is not None and reply.process.pid == os.getpid()
                inbound = resolver.attribute(client.flow.reversed(), time.time(), local="dst")
                assert inbound.process is not None and inbound.process.pid == client.proc.pid
        finally:
            client.finish()


@pytest.mark.parametrize("kind", ["udp", "udp-connected"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_sender_named(resolver: ProcessResolver, kind: str, host: str) -> None:
    with udp_sink(host) as sink:
        client = start_client(kind, host, sink.getsockname()[1])
        try:
            _assert_named(resolver, client)
        finally:
            client.finish()


def test_stub_resolver_query_and_reply(resolver: ProcessResolver) -> None:
    # this process plays the stub on 127.0.0.53 (as systemd-resolved does), the child asks it
    with udp_sink("127.0.0.53") as stub:
        client = start_client("udp", "127.0.0.53", stub.getsockname()[1])
        try:
            assert client.flow.src == "127.0.0.1"
            query = resolver.attribute(client.flow, time.time())
            assert query.process is not None and query.process.pid == client.proc.pid
            reply = client.flow.reversed()
            sent = resolver.attribute(reply, time.time())  # the sender of a reply is the stub
            assert sent.process is not None and sent.process.pid == os.getpid()
            asked = resolver.attribute(reply, time.time(), local="dst")
            assert asked.process is not None and asked.process.pid == client.proc.pid
        finally:
            client.finish()


def test_ipv4_mapped_addresses_are_normalised(resolver: ProcessResolver) -> None:
    with tcp_listener() as listener:
        client = start_client("tcp", "127.0.0.1", listener.getsockname()[1])
        try:
            flow = client.flow
            mapped = FlowKey(
                "tcp", f"::ffff:{flow.src}", flow.sport, f"::ffff:{flow.dst}", flow.dport
            )
            got = resolver.attribute(mapped, time.time())
            assert got.process is not None and got.process.pid == client.proc.pid
        finally:
            client.finish()


def test_short_lived_process_alive_then_from_memory(resolver: ProcessResolver) -> None:
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        warm = start_client("tcp", "127.0.0.1", port)  # caches the python binary's sha256
        _assert_named(resolver, warm)
        _wait_for_hash(resolver, warm)
        warm.finish()
        quick = start_client("tcp", "127.0.0.1", port, hold="0.02")
        alive = resolver.attribute(quick.flow, time.time())
        unseen = start_client("tcp", "127.0.0.1", port, hold="0.02")
        quick.finish()
        unseen.finish()
        assert alive.process is not None and alive.process.pid == quick.proc.pid
        assert alive.process.exe_sha256 is not None
        before = resolver.counters.get("attribute.hit.recent")
        again = resolver.attribute(quick.flow, time.time())
        assert (again.status, again.process) == (alive.status, alive.process)
        assert (alive.method, again.method) == ("sock-diag", "recent")
        assert resolver.counters.get("attribute.hit.recent") == before + 1
        gone = resolver.attribute(unseen.flow, time.time())
        assert gone.status == "unknown:closed-before-lookup"
        assert resolver.counters.get("attribute.miss.closed-before-lookup") == 1


def _wait_for_hash(res: ProcessResolver, client: Client) -> None:
    """Lookups never wait for a hash: a later lookup of the same process carries it."""
    deadline = time.monotonic() + 10
    while True:
        process = res.attribute(client.flow, time.time()).process
        assert process is not None
        if process.exe_sha256 is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert process.exe_sha256 == hashlib.sha256(Path(process.exe or "").read_bytes()).hexdigest()


def test_recent_memory_expires() -> None:
    res = ProcessResolver(recent_ttl=0.2)
    try:
        with udp_sink() as sink:
            client = start_client("udp-connected", "127.0.0.1", sink.getsockname()[1])
            now = time.time()
            assert res.attribute(client.flow, now).status == "exact"
            client.finish()
            assert res.attribute(client.flow, now + 0.1).status == "exact"
            late = res.attribute(client.flow, now + 1.0)
            assert late.status == "unknown:closed-before-lookup"
    finally:
        res.close()


def test_fifty_parallel_processes_each_named(resolver: ProcessResolver) -> None:
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        clients = [start_client("tcp", "127.0.0.1", port, marker=f"m{i}") for i in range(50)]
        try:
            for i, client in enumerate(clients):
                got = resolver.attribute(client.flow, time.time())
                assert got.process is not None, (i, got)
                assert got.process.pid == client.proc.pid
                assert got.process.cmdline[-1] == f"m{i}"
        finally:
            for client in clients:
                client.finish()


def test_unrelated_and_unowned_flows_give_reasons(resolver: ProcessResolver) -> None:
    foreign = FlowKey("tcp", "198.51.100.7", 40000, "203.0.113.9", 443)
    assert resolver.attribute(foreign, time.time()).status == "unknown:not-local"
    with tcp_listener() as listener:
        closed_port = listener.getsockname()[1]
    inbound = FlowKey("tcp", "203.0.113.9", 443, "127.0.0.1", closed_port)
    # 203.0.113.9 is not local, 127.0.0.1 is: an inbound packet to a port nobody holds
    assert resolver.attribute(inbound, time.time()).status == "unknown:no-socket"
    garbage = FlowKey("udp", "not-an-ip", 1, "127.0.0.1", 2)
    assert resolver.attribute(garbage, time.time()).status == "unknown:lookup-error"
    for status in ("not-local", "no-socket", "lookup-error"):
        assert status in REASONS
    assert resolver.counters.get("attribute.lookups") == 3


def test_socket_bound_to_device_needs_ifindex(resolver: ProcessResolver) -> None:
    with udp_sink() as sink, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        bound.sendto(b"x", sink.getsockname())
        flow = FlowKey("udp", "127.0.0.1", bound.getsockname()[1], *sink.getsockname())
        # without the interface the kernel's lookup skips device-bound sockets
        assert resolver.attribute(flow, time.time()).status == "unknown:closed-before-lookup"
        got = resolver.attribute(flow, time.time(), ifindex=socket.if_nametoindex("lo"))
        assert got.process is not None and got.process.pid == os.getpid()


def test_process_in_its_own_network_namespace() -> None:
    with veth_netns() as ns:
        res = ProcessResolver()  # started before the namespace has processes: found on demand
        try:
            with tcp_listener(ns.host_addr) as listener:
                client = start_client(
                    "tcp",
                    ns.host_addr,
                    listener.getsockname()[1],
                    prefix=("ip", "netns", "exec", ns.name),
                )
                try:
                    got = res.attribute(client.flow, time.time())
                    assert got.process is not None, got
                    assert got.process.pid == client.proc.pid
                    ns_inode = os.stat(f"/proc/{client.proc.pid}/ns/net").st_ino
                    assert got.process.netns == ns_inode != res.root_netns
                    assert res.counters.get("attribute.netns_opened") >= 1
                    # the reply's sender is the accepted socket: this process, root namespace
                    server, _ = listener.accept()
                    with server:
                        reply = res.attribute(client.flow.reversed(), time.time())
                    assert reply.process is not None and reply.process.pid == os.getpid()
                    assert reply.process.netns == res.root_netns
                finally:
                    client.finish()
        finally:
            res.close()


def test_unprivileged_resolver_reports_no_permission() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534 for an unprivileged resolver")
    code = (
        "import sys, time\n"
        "from egresswatch.attribute.resolver import ProcessResolver\n"
        "from egresswatch.model import FlowKey\n"
        "import os\n"
        "os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
        "r = ProcessResolver()\n"
        "a = r.attribute(FlowKey('tcp', sys.argv[1], int(sys.argv[2]), sys.argv[3],"
        " int(sys.argv[4])), time.time())\n"
        "print(a.status)\n"
    )
    with tcp_listener() as listener:
        client = start_client("tcp", "127.0.0.1", listener.getsockname()[1])
        try:
            f = client.flow
            out = subprocess.run(
                [sys.executable, "-c", code, f.src, str(f.sport), f.dst, str(f.dport)],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO_ROOT,
            )
            assert out.stdout.strip() == "unknown:no-permission"
        finally:
            client.finish()


def test_a_new_connection_never_recalls_the_earlier_owner(resolver: ProcessResolver) -> None:
    with tcp_listener() as listener:
        client = start_client("tcp", "127.0.0.1", listener.getsockname()[1])
        first = resolver.attribute(client.flow, time.time(), new_connection=True)
        assert first.process is not None and first.process.pid == client.proc.pid
        client.finish()
        recalled = resolver.attribute(client.flow, time.time())  # a late packet of that flow
        assert recalled.process is not None and recalled.process.pid == client.proc.pid
        # the 5-tuple is free again: a SYN on it is a new connection, not the exited client's
        again = resolver.attribute(client.flow, time.time(), new_connection=True)
        assert again.status == "unknown:closed-before-lookup"
        later = resolver.attribute(client.flow, time.time())
        assert later.status == "unknown:closed-before-lookup"
