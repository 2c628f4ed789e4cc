"""sock_diag exact lookups and rtnetlink address dumps against this machine's real kernel tables."""

import contextlib
import os
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.attribute.sockets import (
    TCP_CLOSE,
    TCP_TIME_WAIT,
    AddressTable,
    SockDiag,
    _parse_addr_batch,
    pack_address,
)


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def diag() -> SockDiag:
    return SockDiag()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_exact_lookup_both_ends_and_time_wait(diag: SockDiag, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
        local, remote = client.getsockname()[:2], listener.getsockname()[:2]
        hit = diag.lookup("tcp", local, remote)
        assert hit is not None and hit.inode == _inode(client) and not hit.wildcard
        back = diag.lookup("tcp", remote, local)
        assert back is not None and back.inode == _inode(server)
        assert diag.lookup("tcp", local, (host, 1)) is None
        client.close()  # the active closer ends in TIME_WAIT with no inode
        server.close()
        gone = diag.lookup("tcp", local, remote)
        assert gone is not None and gone.inode == 0
        assert gone.state in (TCP_TIME_WAIT, 4, 5)  # TIME_WAIT, or FIN_WAIT1/2 on a slow box
    diag.close()


def test_udp_lookup_connected_unconnected_and_wildcard(diag: SockDiag) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as loose,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tied,
    ):
        loose.sendto(b"x", ("127.0.0.1", 9))
        tied.connect(("127.0.0.1", 9))
        port = loose.getsockname()[1]
        hit = diag.lookup("udp", ("127.0.0.1", port), ("127.0.0.1", 9))
        assert hit is not None and hit.inode == _inode(loose) and hit.state == TCP_CLOSE
        # bound to 0.0.0.0: the kernel answers for any address, and says so
        assert hit.wildcard
        other = diag.lookup("udp", ("127.0.0.1", port), ("192.0.2.1", 53))
        assert other is not None and other.inode == _inode(loose)
        exact = diag.lookup("udp", ("127.0.0.1", tied.getsockname()[1]), ("127.0.0.1", 9))
        assert exact is not None and exact.inode == _inode(tied) and not exact.wildcard
    diag.close()


def test_dual_stack_socket_found_by_ipv4_and_mapped_lookup(diag: SockDiag) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as dual:
        dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dual.sendto(b"x", ("::ffff:127.0.0.1", 9))
        port = dual.getsockname()[1]
        for local in ("127.0.0.1", "::ffff:127.0.0.1"):
            hit = diag.lookup("udp", (local, port), ("127.0.0.1", 9))
            assert hit is not None and hit.inode == _inode(dual)
    diag.close()


def test_lookup_rejects_bad_input(diag: SockDiag) -> None:
    with pytest.raises(ValueError):
        diag.lookup("tcp", ("127.0.0.1", 1), ("::1", 2))
    with pytest.raises(ValueError):
        diag.lookup("udp", ("localhost", 1), ("127.0.0.1", 2))
    assert pack_address("::ffff:10.0.0.1") == (socket.AF_INET, bytes([10, 0, 0, 1]) + bytes(12))
    diag.close()


def test_address_table_lists_loopback_and_is_reusable() -> None:
    table = AddressTable()
    try:
        first = table.addresses()
        assert "127.0.0.1" in first
        assert table.addresses() == first
    finally:
        table.close()


def _nlmsg(kind: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 2, 1, 0) + payload


def test_parse_addr_batch_real_shapes() -> None:
    v4 = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2)
    v4 += struct.pack("=HH", 8, 2) + bytes([192, 0, 2, 7])
    found: set[str] = set()
    assert not _parse_addr_batch(_nlmsg(20, v4), found)
    assert found == {"192.0.2.7"}
    assert _parse_addr_batch(_nlmsg(3, b"\0\0\0\0"), found)


_MESSAGE = st.builds(_nlmsg, st.sampled_from([2, 3, 20, 21]), st.binary(max_size=40)) | st.binary(
    max_size=40
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_MESSAGE, max_size=4).map(b"".join))
def test_parse_addr_batch_garbage_only_raises_oserror(data: bytes) -> None:
    with contextlib.suppress(OSError):
        _parse_addr_batch(data, set())


def test_syn_sent_socket_found_while_the_handshake_hangs(diag: SockDiag) -> None:
    # a full accept queue makes the kernel drop further SYNs: the clients stay in SYN-SENT
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        clients = [socket.socket() for _ in range(4)]
        try:
            for client in clients:
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    client.connect(listener.getsockname())
            states = set()
            for client in clients:
                hit = diag.lookup("tcp", client.getsockname(), listener.getsockname())
                assert hit is not None and hit.inode == _inode(client)
                states.add(hit.state)
            assert 2 in states  # TCP_SYN_SENT
        finally:
            for client in clients:
                client.close()
    diag.close()
