"""ProcessInfo facts of real processes: renamed tools, exe hashes, ancestry, cgroup parsing."""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.attribute.process import ExeHasher, ProcessFacts, container_from_cgroup
from egresswatch.attribute.resolver import ProcessResolver
from egresswatch.model import FlowKey, ProcessRef
from tests.attribute._support import CLIENT, start_client, tcp_listener

PROC = Path("/proc")
DOCKER_ID = "3f4e" * 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"0::/system.slice/docker-{DOCKER_ID}.scope\n", f"docker:{DOCKER_ID}"),
        (f"12:pids:/docker/{DOCKER_ID}\n0::/\n", f"docker:{DOCKER_ID}"),
        (
            f"0::/user.slice/user-1000.slice/libpod-{DOCKER_ID}.scope/container\n",
            f"libpod:{DOCKER_ID}",
        ),
        (
            f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{DOCKER_ID}.scope\n",
            f"cri-containerd:{DOCKER_ID}",
        ),
        ("0::/system.slice/ollama.service\n", "system.slice/ollama.service"),
        (
            "1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n4:memory:/x\n",
            "user.slice/user-1000.slice/session-2.scope",
        ),
        ("0::/\n", None),
        ("4:memory:/process_api/abc\n0::/\n", None),
        ("", None),
    ],
)
def test_container_from_cgroup(text: str, expected: str | None) -> None:
    assert container_from_cgroup(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_container_from_cgroup_never_raises(text: str) -> None:
    result = container_from_cgroup(text)
    assert result is None or isinstance(result, str)


def test_own_process_facts() -> None:
    hasher = ExeHasher(wait=5.0)
    try:
        info = ProcessFacts(PROC, hasher).info(os.getpid())
        assert info.pid == os.getpid() and info.ppid == os.getppid()
        assert info.exe == os.path.realpath(sys.executable)
        own_cmdline = Path("/proc/self/cmdline").read_bytes().split(b"\0")[:-1]
        assert info.cmdline == tuple(arg.decode() for arg in own_cmdline)
        assert info.netns == os.stat("/proc/self/ns/net").st_ino
        assert info.ancestry and info.ancestry[0].pid == os.getppid()
        assert info.ancestry[-1].pid == 1
        assert info.tool is None
    finally:
        hasher.close()


def test_renamed_script_named_like_a_tool(tmp_path: Path) -> None:
    script = tmp_path / "ollama"
    script.write_text(f"#!{sys.executable}\n{CLIENT}")
    script.chmod(0o755)
    resolver = ProcessResolver(hash_wait=5.0)
    try:
        with tcp_listener() as listener:
            client = start_client(
                "tcp",
                "127.0.0.1",
                listener.getsockname()[1],
                marker="serve",
                executable=str(script),
                script=True,
            )
            try:
                got = resolver.attribute(client.flow, time.time())
            finally:
                client.finish()
        assert got.process is not None
        assert got.process.name == "ollama"
        assert got.process.exe == os.path.realpath(sys.executable)
        assert got.process.cmdline[:2] == (sys.executable, str(script))
        assert got.process.cmdline[-1] == "serve"
        assert got.process.tool == "Ollama"  # `ollama serve`, recognised while it was alive
    finally:
        resolver.close()


def test_copied_binary_hash_is_correct_and_cached(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    shutil.copy2(os.path.realpath(sys.executable), binary)
    expected = hashlib.sha256(binary.read_bytes()).hexdigest()
    resolver = ProcessResolver(hash_wait=5.0)
    try:
        with tcp_listener() as listener:
            port = listener.getsockname()[1]
            infos = []
            for _ in range(2):
                client = start_client("tcp", "127.0.0.1", port, executable=str(binary))
                infos.append(resolver.attribute(client.flow, time.time()).process)
                client.finish()
            hasher = resolver._hasher
            assert hasher.hashes_computed == 1  # second process: same (dev, ino, mtime, size)
            os.utime(binary, ns=(time.time_ns(), time.time_ns() + 10**9))
            client = start_client("tcp", "127.0.0.1", port, executable=str(binary))
            infos.append(resolver.attribute(client.flow, time.time()).process)
            client.finish()
            assert hasher.hashes_computed == 2  # a new mtime is a new file
        for info in infos:
            assert info is not None
            assert info.exe == str(binary) and info.name == "llama-server"
            assert info.exe_sha256 == expected
            assert info.tool == "llama.cpp"
        assert infos[0] is not None and infos[1] is not None
        assert infos[0].pid != infos[1].pid
    finally:
        resolver.close()


LEVEL = r"""
import os, subprocess, sys
print("pid", os.getpid(), flush=True)
subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], check=False)
"""


def test_ancestry_chain_parent_child_grandchild() -> None:
    resolver = ProcessResolver()
    try:
        with tcp_listener() as listener:
            port = str(listener.getsockname()[1])
            grandchild = [CLIENT, "tcp", "127.0.0.1", port, "stdin", "m"]
            child = [LEVEL, *grandchild]
            parent = subprocess.Popen(
                [sys.executable, "-c", LEVEL, *child],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert parent.stdout is not None and parent.stdin is not None
            try:
                parent_pid = int(parent.stdout.readline().split()[1])
                child_pid = int(parent.stdout.readline().split()[1])
                host, sport = parent.stdout.readline().split()
                flow = FlowKey("tcp", host, int(sport), "127.0.0.1", int(port))
                got = resolver.attribute(flow, time.time())
            finally:
                parent.stdin.close()
                parent.wait(timeout=10)
                parent.stdout.close()
        assert got.process is not None
        assert got.process.ppid == child_pid
        pids = [ref.pid for ref in got.process.ancestry]
        assert pids[:4] == [child_pid, parent_pid, os.getpid(), os.getppid()]
        assert pids[-1] == 1
        exe = os.path.realpath(sys.executable)
        name = Path(sys.executable).name[:15]  # comm: the name the child was exec'd by
        assert got.process.ancestry[:2] == (
            ProcessRef(child_pid, name, exe),
            ProcessRef(parent_pid, name, exe),
        )
    finally:
        resolver.close()


def test_direct_proc_reads_agree_with_psutil(tmp_path: Path) -> None:
    # comm may hold ')' and spaces, and a name over 15 bytes is cut by the kernel
    link = tmp_path / "we) ird (name-longer-than-15"
    link.symlink_to(os.path.realpath(sys.executable))
    child = subprocess.Popen(
        [str(link), "-c", "import sys; sys.stdin.read()", "arg with space", ""],
        stdin=subprocess.PIPE,
    )
    hasher = ExeHasher()
    try:
        time.sleep(0.2)  # let it exec
        info = ProcessFacts(PROC, hasher).info(child.pid)
        proc = psutil.Process(child.pid)
        assert info.name == proc.name() == link.name
        assert info.cmdline == tuple(proc.cmdline())
        assert info.cmdline[-2:] == ("arg with space", "")
        assert info.exe == proc.exe() == os.path.realpath(sys.executable)
        assert info.start_time == proc.create_time()
        assert (info.ppid, info.user) == (os.getpid(), proc.username())
        assert ProcessFacts(PROC, hasher).start_time(child.pid) == proc.create_time()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
        hasher.close()
    with pytest.raises(psutil.NoSuchProcess):
        ProcessFacts(PROC, ExeHasher()).info(child.pid)  # reaped: gone, not half-read


def test_lookups_never_wait_for_a_hash_and_later_ones_carry_it(tmp_path: Path) -> None:
    binary = tmp_path / "big-tool"
    shutil.copy2(os.path.realpath(sys.executable), binary)
    with binary.open("ab") as grow:  # ~64 MiB: hashing takes tens of ms, a lookup well under
        grow.write(os.urandom(1 << 20) * 64)
    expected = hashlib.sha256(binary.read_bytes()).hexdigest()
    child = subprocess.Popen(
        [str(binary), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    hasher = ExeHasher()
    facts = ProcessFacts(PROC, hasher)
    try:
        time.sleep(0.2)
        started = time.perf_counter()
        first = facts.info(child.pid)
        assert time.perf_counter() - started < 0.04  # the old default waited 0.05 s
        assert first.exe_sha256 is None  # not yet hashed: the event says so, nothing waits
        deadline = time.monotonic() + 20
        while facts.info(child.pid).exe_sha256 is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert facts.info(child.pid).exe_sha256 == expected
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
        hasher.close()
