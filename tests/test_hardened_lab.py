"""The agent started exactly as its unit starts it, without systemd: an unprivileged uid,
the unit's ambient capability set, no-new-privs, and a read-only file system except its
state directory. It still attributes exactly (eBPF, and sock_diag without CAP_BPF); the web
process started as its unit starts it holds no capabilities."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egresswatch.service_layout import interpreter_paths
from tests.lab import Lab, lab, lab_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]

SERVICE_UID = 64123  # stands in for the egresswatch system user (no passwd entry needed)
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "egresswatch.service"
SANDBOX = Path(__file__).resolve().parent / "unit_sandbox.py"


def unit_capabilities() -> list[str]:
    for line in UNIT.read_text().splitlines():
        if line.startswith("AmbientCapabilities="):
            return [c.removeprefix("CAP_").lower() for c in line.split("=", 1)[1].split()]
    raise AssertionError("no AmbientCapabilities= in the unit")


def as_unit(argv: list[str], caps: list[str]) -> list[str]:
    """`argv` under setpriv with the unit's User=, capability sets and NoNewPrivileges=."""
    listed = ",".join(f"+{c}" for c in caps)
    sets = f"-all,{listed}" if caps else "-all"
    return [
        "setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups",
        f"--inh-caps={sets}", f"--ambient-caps={sets}", f"--bounding-set={sets}",
        "--no-new-privs", "--", *argv,
    ]  # fmt: skip


@pytest.fixture
def net() -> Iterator[Lab]:
    reason = lab_unavailable() or (None if shutil.which("setpriv") else "no setpriv")
    if reason:
        pytest.skip(reason)
    with lab() as made:
        yield made


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory owned by the service uid, outside /tmp (which the sandbox hides)."""
    path = Path(f"/run/egresswatch-hardened-{os.getpid()}")
    path.mkdir(mode=0o750)
    os.chown(path, SERVICE_UID, SERVICE_UID)
    yield path
    shutil.rmtree(path)


def _egresswatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "egresswatch", *args]


def _agent(state: Path, caps: list[str]) -> "subprocess.Popen[str]":
    run = _egresswatch("run", "--no-web", "--db", f"sqlite:///{state / 'events.db'}")
    keep = [arg for path in interpreter_paths() for arg in ("--ro", path)]
    sealed = ["unshare", "--mount", sys.executable, str(SANDBOX), "--rw", str(state), *keep, "--"]
    proc = subprocess.Popen([*sealed, *as_unit(run, caps)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    said = []
    for line in proc.stderr:
        said.append(line)
        if "recording to" in line:
            return proc
    proc.stderr.close()
    raise AssertionError(f"agent did not start: {proc.wait(30)}: {''.join(said)}")


def _capabilities_of(pid: int) -> dict[str, str]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in status if line.startswith(("Cap", "Uid")))


def _request_and_read(
    net: Lab, proc: "subprocess.Popen[str]", state: Path, in_container: bool = False
) -> dict[str, Any]:
    argv = [str(net.tool_script("ollama")), "https", "registry.ollama.ai", "--connect",
            net.server_ip, "--linger", "0.3"]  # fmt: skip
    client = subprocess.run(
        net.in_client_ns(argv) if in_container else argv,
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert client.returncode == 0, client.stderr
    time.sleep(1.0)  # the writer commits every 0.2 s
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)  # also closes its stderr
    assert proc.returncode == 0, err
    shown = subprocess.run(
        _egresswatch("events", "--db", str(state / "events.db"), "--json",
                     "--host", "registry.ollama.ai"),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    hellos = [json.loads(x) for x in shown.stdout.splitlines() if '"tls"' in x]
    assert hellos, shown.stdout
    hello: dict[str, Any] = hellos[0]
    return hello


# Without the kernel hooks a hello is named by sock_diag, or by the memory of the sock_diag lookup
# its own flow record made a moment before ("recent"): both are the fallback path.
@pytest.mark.parametrize(
    ("drop", "methods"), [((), {"ebpf"}), (("bpf", "perfmon"), {"sock-diag", "recent"})]
)
def test_agent_with_the_unit_privileges_attributes_exactly(
    net: Lab, state: Path, drop: tuple[str, ...], methods: set[str]
) -> None:
    caps = [c for c in unit_capabilities() if c not in drop]
    proc = _agent(state, caps)
    seen = _capabilities_of(proc.pid)  # the sandbox helper exec()s into setpriv -> egresswatch
    deadline = time.monotonic() + 10
    while seen["Uid"].split()[0] != str(SERVICE_UID) and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _capabilities_of(proc.pid)
    assert seen["Uid"].split()[0] == str(SERVICE_UID)
    assert seen["CapAmb"] == seen["CapEff"] and int(seen["CapBnd"], 16) == int(seen["CapEff"], 16)
    hello = _request_and_read(net, proc, state)
    assert hello["attribution"] == "exact" and hello["process"] == "ollama", hello
    assert hello["attribution_method"] in methods
    assert hello["category"] == "model-registry"


def test_container_sockets_named_without_cap_sys_admin(net: Lab, state: Path) -> None:
    """The unit has no CAP_SYS_ADMIN (no setns): the eBPF hooks name other namespaces' sockets."""
    assert "sys_admin" not in unit_capabilities()
    proc = _agent(state, unit_capabilities())
    hello = _request_and_read(net, proc, state, in_container=True)
    assert hello["attribution"] == "exact" and hello["attribution_method"] == "ebpf", hello
    assert hello["process"] == "ollama"
    assert hello["netns"] != os.stat("/proc/self/ns/net").st_ino


def test_web_as_its_unit_starts_it_has_no_capabilities(state: Path) -> None:
    db = state / "events.db"
    subprocess.run(_egresswatch("db", "upgrade", "--db", str(db)), check=True, capture_output=True)
    for made in state.iterdir():
        os.chown(made, SERVICE_UID, SERVICE_UID)
    port = 18000 + os.getpid() % 1000
    web = _egresswatch("web", "--require-unprivileged", "--port", str(port), "--db", str(db))
    proc = subprocess.Popen(as_unit(web, []), stderr=subprocess.PIPE, text=True)
    try:
        body = _get(f"http://127.0.0.1:{port}/api/health", proc)
        caps = _capabilities_of(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert body
    assert {caps[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {
        "0000000000000000"
    }


def _get(url: str, proc: "subprocess.Popen[str]") -> bytes:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
                return bytes(response.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")
