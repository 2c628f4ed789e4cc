"""The in-kernel source against the real kernel: real sockets of real processes, bursts, links
that die with the agent, exec-time facts. Skipped (with the reason) where bpf() is refused.
"""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.attribute.bpf import syscall
from egresswatch.attribute.bpf.kernel import CGROUP_ROOT, KernelOwners
from egresswatch.attribute.bpf.records import SocketOwner
from egresswatch.attribute.exec_events import ExecWatcher
from egresswatch.attribute.methods import open_kernel
from egresswatch.attribute.owners import owner_info
from egresswatch.attribute.process import ExeHasher, ProcessFacts

SO_COOKIE = 57
# argv: kind (udp | tcp), port; prints "cookie sport" and exits at once
SHORT_CLIENT = r"""
import socket, sys
kind, port = sys.argv[1], int(sys.argv[2])
if kind == "tcp":
    s = socket.create_connection(("127.0.0.1", port))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", port))
cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
print(cookie, s.getsockname()[1], flush=True)
s.close()
"""
BURST = r"""
import socket, sys, time
rate, seconds, port = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
start = time.monotonic(); sent = 0
while time.monotonic() - start < seconds:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", ("127.0.0.1", port))
    sent += 1
    pause = start + sent / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
print(sent)
"""


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelOwners]:
    owners, reason = open_kernel()
    if owners is None:
        pytest.skip(f"in-kernel attribution unavailable here: {reason}")
    yield owners
    owners.close()


@pytest.fixture()
def sink() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        yield udp


def test_udp_sender_that_already_exited_is_named(kernel: KernelOwners, sink: socket.socket) -> None:
    port = sink.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SHORT_CLIENT, "udp", str(port)], stdout=subprocess.PIPE, text=True
    )
    out, _ = proc.communicate(timeout=20)
    cookie, sport = (int(x) for x in out.split())
    owner = kernel.owner(("udp", "127.0.0.1", sport, "127.0.0.1", port), time.time())
    assert owner is not None
    assert (owner.pid, owner.cookie, owner.transport) == (proc.pid, cookie, "udp")
    assert owner.comm.startswith("python") and owner.uid == os.getuid()
    assert owner.netns_cookie > 0 and owner.cgroup_id > 0
    assert abs(owner.time - time.time()) < 10


def test_tcp_connect_is_joined_to_its_five_tuple(kernel: KernelOwners) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-c", SHORT_CLIENT, "tcp", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = proc.communicate(timeout=20)
    cookie, sport = (int(x) for x in out.split())
    owner = kernel.owner(("tcp", "127.0.0.1", sport, "127.0.0.1", port), time.time())
    assert owner is not None and (owner.pid, owner.cookie) == (proc.pid, cookie)
    assert (owner.dst, owner.dport) == ("127.0.0.1", port)
    # a packet stamped before the socket existed is not that socket's
    assert kernel.owner(("tcp", "127.0.0.1", sport, "127.0.0.1", port), owner.time - 5) is None
    assert kernel.owner(("tcp", "127.0.0.1", sport, "127.0.0.1", port + 1), time.time()) is None


def test_burst_of_2000_new_sockets_a_second_loses_nothing(
    kernel: KernelOwners, sink: socket.socket
) -> None:
    port = sink.getsockname()[1]
    lost_before = kernel.lost()
    before = kernel.counters.get("bpf.records.owner")
    proc = subprocess.run(
        [sys.executable, "-c", BURST, "2000", "2", str(port)],
        capture_output=True,
        text=True,
        check=True,
    )
    sent = int(proc.stdout)
    kernel.drain()
    got = kernel.counters.get("bpf.records.owner") - before
    print(f"burst: {sent} sockets in 2 s, {got} owner records, lost {kernel.lost()}")
    assert sent >= 2000  # the machine may be too busy for the full rate; the loss must be 0
    assert kernel.lost() == lost_before
    assert got >= sent


def test_a_full_ring_counts_what_it_lost(sink: socket.socket) -> None:
    try:
        small = KernelOwners.open(ring_bytes=4 * os.sysconf("SC_PAGE_SIZE"))
    except OSError as err:
        pytest.skip(f"bpf() refused: {err}")
    try:  # never drained: 16 KiB holds ~70 records
        port = sink.getsockname()[1]
        subprocess.run(
            [sys.executable, "-c", BURST, "5000", "0.2", str(port)], check=True, capture_output=True
        )
        assert small.lost() > 0
    finally:
        small.close()


def _attached() -> int:
    fd = os.open(CGROUP_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return syscall.attached_count(fd, syscall.ATTACH_CGROUP_UDP4_SENDMSG)
    finally:
        os.close(fd)


HOLDER = r"""
from egresswatch.attribute.bpf.kernel import KernelOwners
owners = KernelOwners.open()
print("linked", flush=True)
input()
"""


def test_a_killed_agent_leaves_no_program_attached(kernel: KernelOwners) -> None:
    before = _attached()
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "linked"
        assert _attached() == before + 1
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    deadline = time.monotonic() + 5
    while _attached() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _attached() == before


def test_exec_facts_outlive_a_one_millisecond_process() -> None:
    try:
        watcher = ExecWatcher.open()
    except OSError as err:
        pytest.skip(f"proc connector refused: {err}")
    watcher.start()
    try:
        proc = subprocess.Popen(["sleep", "0.001"])
        proc.wait(10)
        deadline = time.monotonic() + 3
        found = None
        while found is None and time.monotonic() < deadline:
            found = watcher.facts(proc.pid, time.time())
            time.sleep(0.02)
    finally:
        watcher.close()
    assert found is not None, watcher.counters.snapshot()
    info, cwd = found
    assert cwd == os.getcwd()
    assert info.exe is not None and info.exe.endswith("/sleep")
    assert info.cmdline == ("sleep", "0.001") and info.pid == proc.pid
    assert watcher.facts(proc.pid, (info.start_time or 0.0) - 10) is None  # not before it began


def test_a_socket_sending_many_datagrams_is_reported_once_per_destination(
    kernel: KernelOwners, sink: socket.socket
) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    elsewhere = other.getsockname()
    with other, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(1000):
            sender.sendto(b"x", sink.getsockname())
        sender.sendto(b"x", other.getsockname())
        sender.sendto(b"x", sink.getsockname())
        cookie = int.from_bytes(sender.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
        records = kernel.owners_of(cookie)  # (other processes on the box write records too)
        assert [(o.dst, o.dport) for o in records] == [
            sink.getsockname(),
            elsewhere,
            sink.getsockname(),
        ]
        port = sender.getsockname()[1]
    owner = kernel.owner(("udp", "127.0.0.1", port, *elsewhere), time.time())
    assert owner is not None and owner.pid == os.getpid()
    assert (owner.dst, owner.dport) == elsewhere


def test_a_pid_reused_since_the_record_is_never_named_with_its_successor() -> None:
    facts = ProcessFacts(Path("/proc"), ExeHasher())
    me = facts.info(os.getpid())
    assert me.start_time is not None
    record = SocketOwner(
        cookie=1,
        pid=os.getpid(),
        tid=os.getpid(),
        uid=0,
        comm="gone-client",
        cgroup_id=1,
        netns_cookie=1,
        transport="udp",
        dst="127.0.0.1",
        dport=53,
        src_port=40000,
        time=me.start_time - 60,  # the socket was used before this process existed
    )
    info = owner_info(record, facts, None, None)
    assert (info.pid, info.name, info.exe, info.user) == (os.getpid(), "gone-client", None, "root")
    now = dataclasses.replace(record, time=time.time())
    live = owner_info(now, facts, None, None)  # (its exe hash may have arrived meanwhile)
    assert (live.pid, live.start_time, live.exe, live.cmdline) == (
        me.pid,
        me.start_time,
        me.exe,
        me.cmdline,
    )


FORKER = r"""
import os, sys, time
time.sleep(0.3)  # the watcher has read this image by now
child = os.fork()
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
print(child, flush=True)
"""


def test_a_forked_child_that_never_execs_has_its_parents_facts() -> None:
    try:
        watcher = ExecWatcher.open()
    except OSError as err:
        pytest.skip(f"proc connector refused: {err}")
    watcher.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", FORKER, "marker"], capture_output=True, text=True, check=True
        )
        child = int(done.stdout)
        time.sleep(0.2)
        found = watcher.facts(child, time.time())
    finally:
        watcher.close()
    assert found is not None, watcher.counters.snapshot()
    info, _cwd = found
    assert info.pid == child and info.cmdline[-1] == "marker"
    assert info.start_time is not None and abs(info.start_time - time.time()) < 5
