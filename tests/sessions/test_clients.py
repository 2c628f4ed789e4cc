"""Naming an inference request's client from the kernel's owner records (a recorded table
stands in for KernelOwners, which the lab test in tests/test_sessions_lab.py runs for real)."""

import os
import time

from egresswatch.attribute.bpf.records import SocketOwner, TupleKey
from egresswatch.model import FlowKey, ProcessRef
from egresswatch.sessions.clients import ClientNamer

FLOW = FlowKey("tcp", "::ffff:127.0.0.1", 40000, "127.0.0.1", 11434)
KEY: TupleKey = ("tcp", "127.0.0.1", 40000, "127.0.0.1", 11434)


class Recorded:
    def __init__(self, owners: dict[TupleKey, SocketOwner]) -> None:
        self.owners = owners

    def owner(self, key: TupleKey, ts: float) -> SocketOwner | None:
        return self.owners.get(key)


def owner(pid: int, comm: str, at: float) -> SocketOwner:
    return SocketOwner(1, pid, pid, 0, comm, 0, 0, "tcp", "127.0.0.1", 11434, 40000, at)


def never(flow: FlowKey) -> ProcessRef | None:
    raise AssertionError("the fallback is not asked when the kernel named the client")


def test_a_running_client_is_named_with_its_executable() -> None:
    namer = ClientNamer(Recorded({KEY: owner(os.getpid(), "python3", time.time())}), never)
    found = namer(FLOW, time.time())
    assert found is not None and found.pid == os.getpid() and found.exe is not None


def test_a_client_whose_pid_was_reused_keeps_the_kernels_name() -> None:
    # this process started after the record (1970): it is not the one that owned the socket
    namer = ClientNamer(Recorded({KEY: owner(os.getpid(), "curl", 0.0)}), never)
    assert namer(FLOW, time.time()) == ProcessRef(os.getpid(), "curl", None)


def test_without_a_record_the_open_socket_lookup_answers() -> None:
    fallback = ProcessRef(7, "open", None)
    assert ClientNamer(Recorded({}), lambda flow: fallback)(FLOW, 0.0) == fallback
    assert ClientNamer(None, lambda flow: fallback)(FLOW, 0.0) == fallback
