"""End to end in the lab: real clients (curl, dig, openssl, Python, renamed tools) -> live capture
-> decode -> attribution -> naming; every flow must name the right pid, exe and host.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from egresswatch.agent import Agent
from egresswatch.attribute.methods import build_resolver
from egresswatch.attribute.resolver import ProcessResolver
from egresswatch.capture.live import LINKTYPE_RAW, Frame, LiveCapture
from egresswatch.classify.catalog import load_catalog
from egresswatch.daemon import Recorder as StoreRecorder
from egresswatch.fanout import FanOut
from egresswatch.model import Attribution, Event, FlowKey, Observation, ProcessInfo
from egresswatch.output import event_to_dict, to_json_line
from egresswatch.store import open_store
from egresswatch.store.queries import EventFilter
from tests.lab import Lab, lab, lab_unavailable

# Attribution here races real processes whose sockets close within milliseconds; on a loaded
# 2-core machine an unlucky scheduling delay can lose one (reported honestly as
# unknown:closed-before-lookup, never as a wrong pid). A failure is retried twice before it
# counts; bench/attribution.py measures the rate itself.
pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]
CURL = os.path.realpath(shutil.which("curl") or "curl")
PYTHON = os.path.realpath(sys.executable)
REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """Collects the agent's events (thread-safe) and waits for the ones a test needs."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.delays: list[float] = []  # packet -> sink, seconds, for failure messages
        self.lock = threading.Lock()
        self.no_kernel: str | None = (
            None  # why the eBPF hooks could not run here, if they could not
        )

    def require_kernel(self) -> None:
        if self.no_kernel is not None:
            pytest.skip(f"in-kernel attribution unavailable: {self.no_kernel}")

    @property
    def method(self) -> str:
        """The method that names a live client's socket here."""
        return "ebpf" if self.no_kernel is None else "sock-diag"

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
            self.delays.append(time.time() - event.observation.ts)

    def one(self, pred: Callable[[Event], bool]) -> Event:
        """The first event matching `pred`; fails with the latest events when there is none."""
        found = self.wait(pred)
        assert found, f"no matching event; latest: {self.tail()}"
        return found[0]

    def tail(self, n: int = 6) -> list[tuple[str, str, str, str]]:
        """The last events and how long after their packet each was emitted."""
        with self.lock:
            return [
                (
                    e.observation.kind,
                    str(e.observation.flow),
                    e.attribution.status,
                    f"{d * 1e3:.1f}ms",
                )
                for e, d in zip(self.events[-n:], self.delays[-n:], strict=True)
            ]

    def wait(
        self, pred: Callable[[Event], bool], count: int = 1, timeout: float = 8.0
    ) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [e for e in self.events if pred(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with lab() as built:
        yield built


@pytest.fixture(scope="module")
def agent(net: Lab) -> Iterator[Recorder]:
    capture = LiveCapture()
    capture.start()
    recorder = Recorder()
    resolver, methods = build_resolver()  # the kernel hooks when allowed, else sock_diag
    recorder.no_kernel = None if methods[0].ok else methods[0].detail
    loop = Agent(capture, resolver, recorder)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    # Warm-up: the first lookups after start-up pay one-off costs (imports, first hashes).
    warm = subprocess.run(
        curl("https://warm.lab/", "--resolve", f"warm.lab:443:{net.server_ip}"), check=False
    )
    recorder.wait(lambda e: e.host == "warm.lab", timeout=5)
    del warm
    try:
        yield recorder
    finally:
        stop.set()
        thread.join(5)
        capture.stop()
        counters = loop.all_counters()
        resolver.close()
        assert loop.counters.get("agent.errors.attribute.Exception") == 0
        if recorder.no_kernel is None:
            assert counters.get("bpf.records.owner") > 0
            assert counters.get("attribute.hit.ebpf") > 0
            assert counters.get("bpf.ring.lost") == 0


def run(argv: list[str], timeout: float = 20) -> int:
    """Runs a client to completion; returns its pid."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return proc.pid


def of_pid(pid: int, kind: str, dport: int | None = 443) -> Callable[[Event], bool]:
    """Events of `kind` attributed to `pid` (to port `dport` unless it is None)."""

    def pred(e: Event) -> bool:
        process = e.attribution.process
        return (
            e.observation.kind == kind
            and process is not None
            and process.pid == pid
            and (dport is None or e.observation.flow.dport == dport)
        )

    return pred


def flows_to(dst: str, dport: int = 443) -> Callable[[Event], bool]:
    return lambda e: (
        e.observation.kind == "flow"
        and e.observation.flow.dst == dst
        and e.observation.flow.dport == dport
    )


def curl(url: str, *extra: str) -> list[str]:
    return ["curl", "-sk", "--max-time", "10", "-o", "/dev/null", *extra, url]


def test_curl_through_lab_dns_is_attributed_and_named(net: Lab, agent: Recorder) -> None:
    pid = run(net.with_dns(curl("https://api.openai.lab/", "-4")))
    answer = agent.one(
        lambda e: (
            e.observation.kind == "dns"
            and e.observation.dns is not None
            and e.observation.dns.is_response
            and e.observation.dns.qname == "api.openai.lab"
        )
    )
    assert answer.attribution.process is not None, answer.attribution.status
    assert answer.attribution.process.pid == pid
    dns = [answer]
    assert dns[0].observation.dns is not None
    assert dns[0].observation.dns.qname == "api.openai.lab"
    flow = agent.one(of_pid(pid, "flow"))
    assert flow is not None, "no flow event attributed to curl"
    assert flow.observation.flow.dst == net.server_ip
    assert flow.attribution.status == "exact" and flow.attribution.process is not None
    assert flow.attribution.process.exe == CURL
    # the flow record waits for its hello, so it carries the SNI, not a DNS guess
    assert (flow.host, flow.name_source) == ("api.openai.lab", "sni")
    assert flow.attribution.method == agent.method
    assert answer.host == "api.openai.lab" and answer.name_source == "dns"
    tls = agent.one(of_pid(pid, "tls"))
    assert tls is not None and (tls.host, tls.name_source, tls.name_conflict) == (
        "api.openai.lab",
        "sni",
        False,
    )
    record = json.loads(to_json_line(event_to_dict(tls)))
    assert record["pid"] == pid and record["exe"] == CURL and record["sni"] == "api.openai.lab"
    assert record["attribution"] == "exact" and isinstance(record["cmdline"], list)
    assert record["attribution_method"] == agent.method and record["name_ambiguous"] is False
    assert {"ppid", "ancestry", "netns", "container", "user", "exe_sha256", "tool"} <= set(record)


def test_sni_that_disagrees_with_dns_is_flagged(net: Lab, agent: Recorder) -> None:
    run(net.with_dns(["dig", "+short", "good.lab"]))
    pid = _s_client(net, "evil.lab")
    tls = agent.one(of_pid(pid, "tls"))
    assert tls is not None
    assert (tls.host, tls.name_source, tls.name_conflict) == ("evil.lab", "sni", True)
    flow = agent.one(of_pid(pid, "flow"))
    assert flow is not None and (flow.host, flow.name_source) == ("evil.lab", "sni")
    assert flow.name_conflict


def _s_client(net: Lab, sni: str) -> int:
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"{net.server_ip}:443", "-servername", sni],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc.communicate(b"Q\n", timeout=20)
    return proc.pid


def test_short_lived_processes(net: Lab, agent: Recorder) -> None:
    resolve = f"short.lab:443:{net.server_ip}"
    start = time.time()  # the agent is shared by the module: ignore earlier attempts' events
    pids = [run(curl("https://short.lab/", "--resolve", resolve)) for _ in range(20)]
    for pid in pids:
        assert agent.wait(of_pid(pid, "flow")), f"curl {pid} not attributed: {agent.tail()}"
    mine = agent.wait(
        lambda e: (
            e.observation.kind == "tls" and e.host == "short.lab" and e.observation.ts >= start
        ),
        count=20,
    )
    wrong = [
        e for e in mine if e.attribution.process is None or e.attribution.process.pid not in pids
    ]
    assert len(mine) >= 20 and not wrong


def test_fifty_parallel_connections(net: Lab, agent: Recorder) -> None:
    resolve = f"par.lab:443:{net.server_ip}"
    start = time.time()
    procs = [
        subprocess.Popen(
            curl("https://par.lab/", "--resolve", resolve),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50)
    ]
    for proc in procs:
        proc.wait(60)
    pids = {p.pid for p in procs}
    hellos = agent.wait(
        lambda e: e.observation.kind == "tls" and e.host == "par.lab" and e.observation.ts >= start,
        count=50,
        timeout=15,
    )
    got = {e.attribution.process.pid for e in hellos if e.attribution.process is not None}
    wrong = [
        (str(e.observation.flow), e.attribution.process.pid)
        for e in hellos
        if e.attribution.process is not None and e.attribution.process.pid not in pids
    ]
    assert not wrong, f"attributed to other processes: {wrong[:5]}"
    assert got == pids
    assert all(
        e.attribution.process is not None and e.attribution.process.exe == CURL for e in hellos
    )


def test_ipv6(net: Lab, agent: Recorder) -> None:
    pid = run(curl("https://v6.lab/", "--resolve", f"v6.lab:443:[{net.server_ip6}]"))
    flow = agent.one(of_pid(pid, "flow"))
    assert flow is not None and flow.observation.flow.dst == net.server_ip6
    tls = agent.one(of_pid(pid, "tls"))
    assert tls is not None and tls.host == "v6.lab"


def test_loopback_only(agent: Recorder) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            curl(
                f"https://loop.lab:{port}/",
                "--resolve",
                f"loop.lab:{port}:127.0.0.1",
                "--max-time",
                "2",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()
        proc.wait(10)
    tls = agent.one(of_pid(proc.pid, "tls", port))
    assert tls is not None and tls.host == "loop.lab" and tls.observation.flow.dport == port


def test_dns_through_stub_resolver_on_lo(net: Lab, agent: Recorder) -> None:
    pid = run(net.with_dns(curl("https://stubbed.lab/", "-4"), stub=True))
    queries = agent.wait(
        lambda e: of_pid(pid, "dns", None)(e) and e.observation.flow.dst == net.stub_ip
    )
    assert queries, "the query to the stub on lo is attributed to curl"
    flow = agent.one(of_pid(pid, "flow"))
    assert flow is not None and (flow.host, flow.name_source) == ("stubbed.lab", "sni")
    assert not flow.name_conflict  # the SNI is the name curl's own lookup returned


def test_client_in_its_own_network_namespace(net: Lab, agent: Recorder) -> None:
    pid = run(net.in_client_ns(curl("https://container.lab/", "-4")))
    flow = agent.one(of_pid(pid, "flow"))
    assert flow is not None and flow.attribution.process is not None
    assert flow.observation.flow.src == net.client_ip
    assert flow.attribution.process.netns == os.stat(f"/run/netns/{net.client_ns}").st_ino
    assert flow.host == "container.lab"


class InstantDns:
    """A DNS server on loopback that answers at once (~0.1 ms): the client's socket is gone
    before any user-space lookup could run, so only the kernel hooks can name it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # port 53 (what the capture filter passes), on a loopback address of this run's own
        self.address = f"127.198.{os.getpid() % 250}.53"
        self.sock.bind((self.address, 53))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                wire, client = self.sock.recvfrom(4096)
            except OSError:
                return
            if not wire:
                return  # shut down
            query = dns.message.from_wire(wire)
            reply = dns.message.make_response(query)
            name = query.question[0].name
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.9"))
            self.sock.sendto(reply.to_wire(), client)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recvfrom
        self.thread.join(2)
        self.sock.close()


def _lookups_of(agent: Recorder, names: dict[str, int], start: float) -> list[Event]:
    return agent.wait(
        lambda e: (
            e.observation.kind == "dns"
            and e.observation.ts >= start
            and e.observation.dns is not None
            and e.observation.dns.qname in names
        ),
        count=2 * len(names),
        timeout=10,
    )


def test_sub_millisecond_dns_clients_are_named_by_the_kernel(agent: Recorder) -> None:
    agent.require_kernel()
    server = InstantDns()
    start = time.time()
    names: dict[str, int] = {}
    try:
        for i in range(10):
            qname = f"instant{i}.lab"
            names[qname] = run(["dig", f"@{server.address}", "+short", "+tries=1", qname])
    finally:
        server.close()
    lookups = _lookups_of(agent, names, start)
    assert len(lookups) == 2 * len(names), agent.tail()  # every query and every answer
    for event in lookups:
        assert event.observation.dns is not None
        qname = event.observation.dns.qname or ""
        process = event.attribution.process
        assert process is not None, (qname, event.attribution.status)
        assert process.pid == names[qname] and event.attribution.method == "ebpf"
        assert (event.host, event.name_source) == (qname, "dns")
    # dig has exited: its exe comes from the exec-time cache (or, rarely, it was too quick even
    # for that: exec.missed, and only the kernel's pid/comm are known)
    with_exe = [e for e in lookups if e.attribution.process and e.attribution.process.exe]
    assert len(with_exe) >= 0.8 * len(lookups)
    assert all(e.attribution.process.exe.endswith("/dig") for e in with_exe)  # type: ignore[union-attr]


# Go's pure resolver: a connected UDP socket per query (connect, write, read, close), each
# query a fresh socket; here in Python, with the socket open well under 1 ms.
GO_STYLE = r"""
import socket, sys, dns.message
for qname in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((sys.argv[1], 53))
    s.send(dns.message.make_query(qname, "A").to_wire())
    s.recv(4096)
    s.close()
"""


def test_go_style_resolver_sockets_are_named(agent: Recorder) -> None:
    agent.require_kernel()
    server = InstantDns()
    start = time.time()
    try:
        qnames = [f"go{i}.lab" for i in range(10)]
        pid = run([sys.executable, "-c", GO_STYLE, server.address, *qnames])
    finally:
        server.close()
    names = dict.fromkeys(qnames, pid)
    lookups = _lookups_of(agent, names, start)
    assert len(lookups) == 20, agent.tail()
    assert {(e.attribution.process.pid if e.attribution.process else None) for e in lookups} == {
        pid
    }
    assert {e.attribution.method for e in lookups} == {"ebpf"}


def test_glibc_and_in_namespace_lookups_are_named(net: Lab, agent: Recorder) -> None:
    agent.require_kernel()
    start = time.time()
    names: dict[str, int] = {}
    for i in range(5):
        names[f"glibc{i}.lab"] = run(net.with_dns(["getent", "ahostsv4", f"glibc{i}.lab"]))
        names[f"ns{i}.lab"] = run(
            net.in_client_ns(["dig", f"@{net.server_ip}", "+short", f"ns{i}.lab"])
        )
    lookups = _lookups_of(agent, names, start)
    got = {
        (e.observation.dns.qname if e.observation.dns else "", e.attribution.process.pid)
        for e in lookups
        if e.attribution.process is not None
    }
    assert got == set(names.items()), agent.tail()
    contained = [e for e in lookups if e.observation.flow.src == net.client_ip]
    assert contained and all(e.attribution.method == "ebpf" for e in contained)


@pytest.mark.parametrize("tool", ["ollama", "llama-server", "lms"])
def test_renamed_tools(net: Lab, agent: Recorder, tool: str) -> None:
    script = net.tool_script(tool)
    pid = run([str(script), "https", f"{tool}.lab", "--connect", net.server_ip])
    tls = agent.one(of_pid(pid, "tls"))
    assert tls is not None and tls.attribution.process is not None
    assert tls.attribution.process.name == tool
    assert tls.attribution.process.exe == PYTHON
    quic_pid = run([str(script), "quic", f"q-{tool}.lab", "--connect", net.server_ip])
    quic = agent.one(of_pid(quic_pid, "quic"))
    assert quic is not None and (quic.host, quic.name_source) == (f"q-{tool}.lab", "quic-sni")


def test_agent_command_streams_jsonl_and_stops_on_sigint(net: Lab) -> None:
    code = (
        "import typer\nfrom egresswatch.cli import agent_cmd\napp = typer.Typer()\n"
        "agent_cmd.register(app)\napp.command('noop')(lambda: None)\napp()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "agent", "--jsonl"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # start-up: filter compile, socket index scan
        dig = run(net.with_dns(["dig", "+short", "cli.lab"]))
        assert proc.stdout is not None
        record = _first_record(proc, lambda r: r["kind"] == "dns" and r["qname"] == "cli.lab")
        # Attribution itself is asserted by the in-process tests; here: the CLI's record shape.
        if record["attribution"] == "exact":
            assert record["pid"] == dig and record["process"] == "dig"
        else:
            assert str(record["attribution"]).startswith("unknown:") and record["pid"] is None
        assert {"host", "name_source", "exe", "cmdline", "ancestry", "netns"} <= set(record)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "egresswatch agent stopped" in err and "capture.packets" in err


def _first_record(
    proc: subprocess.Popen[str], pred: Callable[[dict[str, object]], bool]
) -> dict[str, object]:
    assert proc.stdout is not None
    timer = threading.Timer(15, proc.send_signal, (signal.SIGINT,))
    timer.start()
    try:
        for line in proc.stdout:
            record = json.loads(line)
            if pred(record):
                return dict(record)
    finally:
        timer.cancel()
    raise AssertionError("no matching record")


# ---- the loop itself on hand-built frames (no root needed) -------------------------------------


def ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        1,
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + udp


class CountingAttributor:
    """A fake at the OS seam: every lookup answers "unknown:test" (or raises), and is counted."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def attribute(
        self,
        flow: FlowKey,
        ts: float,
        *,
        ifindex: int = 0,
        local: str = "auto",
        new_connection: bool = False,
    ) -> Attribution:
        self.calls += 1
        if self.fail:
            raise RuntimeError("lookup bug")
        return Attribution("unknown:test")


def dns_frames(name: str = "frame.lab") -> list[Frame]:
    query = dns.message.make_query(name, "A")
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text(f"{name}.", 60, "IN", "A", "10.199.1.2"))
    return [
        Frame(
            1.0,
            LINKTYPE_RAW,
            ipv4_udp("10.199.1.1", 4000, "10.199.1.53", 53, query.to_wire()),
            "lo",
        ),
        Frame(
            1.01,
            LINKTYPE_RAW,
            ipv4_udp("10.199.1.53", 53, "10.199.1.1", 4000, answer.to_wire()),
            "lo",
        ),
    ]


def test_loop_shares_lookups_drops_bridge_copies_and_contains_errors() -> None:
    events: list[Event] = []
    attributor = CountingAttributor()
    loop = Agent(FrameList([]), attributor, events.append)
    query, answer = dns_frames()
    loop.handle(query)
    loop.handle(Frame(query.ts + 0.001, query.linktype, query.data, "ewb0"))  # bridge copy
    loop.handle(answer)
    assert [e.observation.kind for e in events] == ["flow", "dns", "dns"]
    assert attributor.calls == 2  # flow + query share one lookup; the answer has its own
    assert loop.counters.get("agent.skipped.duplicate_frame") == 1
    failing = Agent(FrameList([]), CountingAttributor(fail=True), events.append)
    [*_, last] = failing.handle(query)
    assert last.attribution.status == "unknown:error"
    assert failing.counters.get("agent.errors.attribute.RuntimeError") == 1


def test_lookups_are_stored_with_their_host_and_found_by_category(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "events.db"))
    try:
        sink = FanOut(load_catalog(), (StoreRecorder(store.writer()),))
        loop = Agent(FrameList([]), CountingAttributor(), sink)
        for frame in dns_frames("huggingface.co"):
            loop.handle(frame)
        store.writer().flush()
        found = store.query_events(EventFilter(category="model-registry"))
    finally:
        store.close()
    lookups = [s.event for s in found if s.event.observation.kind == "dns"]
    assert len(lookups) == 2  # the query and its answer
    assert {(e.host, e.name_source, e.category) for e in lookups} == {
        ("huggingface.co", "dns", "model-registry")
    }


def test_method_and_candidates_are_stored_and_printed(tmp_path: Path) -> None:
    obs = Observation(5.0, "flow", FlowKey("tcp", "10.199.1.1", 50000, "10.199.1.2", 443))
    process = ProcessInfo(
        pid=4242,
        name="hf",
        exe="/usr/bin/python3",
        exe_sha256=None,
        cmdline=("hf", "download"),
        user="root",
        ppid=1,
        start_time=1.0,
        ancestry=(),
        netns=None,
        container=None,
    )
    event = Event(
        obs,
        Attribution("exact", process, "ebpf"),
        host="pypi.org",
        name_source="dns-same-pid",
        name_candidates=("pypi.org", "huggingface.co"),
        category="package-registry",
    )
    store = open_store(str(tmp_path / "events.db"))
    try:
        assert store.writer().submit(event)
        store.writer().flush()
        [stored] = store.query_events()
    finally:
        store.close()
    assert stored.event.attribution.method == "ebpf"
    assert stored.event.name_candidates == ("pypi.org", "huggingface.co")
    record = json.loads(to_json_line(event_to_dict(stored.event)))
    assert record["attribution_method"] == "ebpf" and record["name_ambiguous"] is True
    assert record["name_candidates"] == ["pypi.org", "huggingface.co"]
    plain = event_to_dict(dataclasses.replace(event, name_candidates=()))
    assert (plain["name_ambiguous"], plain["name_candidates"]) == (False, None)


class FrameList:
    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames

    def get(self, timeout: float | None = None) -> Frame | None:
        return self.frames.pop(0) if self.frames else None


FLOOD = """
import socket, sys, time, dns.message
wire = bytearray(dns.message.make_query("flood.lab", "A").to_wire())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[1]); sent = 0
while time.monotonic() < end:
    for _ in range(1000):
        wire[0:2] = (sent & 0xFFFF).to_bytes(2, "big")
        s.sendto(wire, ("127.0.0.1", 53)); sent += 1
print(sent)
"""


def _drained(capture: LiveCapture, within: float) -> bool:
    """Waits until the queue is empty and the socket buffer too (no packet read for 0.5 s)."""
    deadline = time.monotonic() + within
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        read = capture.counters().get("capture.packets")
        if read != last or capture.queue.qsize():
            last, quiet_since = read, time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return True
        time.sleep(0.05)
    return False


def test_flood_is_counted_and_the_agent_stays_responsive() -> None:
    if lab_unavailable() is not None:
        pytest.skip(str(lab_unavailable()))
    capture = LiveCapture(["lo"], queue_size=5000)
    capture.start()
    events: list[Event] = []
    resolver = ProcessResolver()
    loop = Agent(capture, resolver, events.append)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    sent = 0
    try:
        floods = [
            subprocess.Popen([sys.executable, "-c", FLOOD, "2"], stdout=subprocess.PIPE, text=True)
            for _ in range(3)  # one Python sender manages ~30-50k packets/s here
        ]
        sent = sum(int(flood.communicate(timeout=60)[0]) for flood in floods)
        assert _drained(capture, within=30), "the backlog of a 2 s flood must drain within 30 s"
        wire = dns.message.make_query("after-flood.lab", "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(wire, ("127.0.0.1", 53))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            e.observation.dns is not None and e.observation.dns.qname == "after-flood.lab"
            for e in events[-50:]
        ):
            time.sleep(0.1)
        responsive = any(
            e.observation.dns is not None and e.observation.dns.qname == "after-flood.lab"
            for e in events
        )
    finally:
        stop.set()
        thread.join(5)
        capture.stop()
        resolver.close()
    counts = capture.counters()  # kernel drops are read when the socket closes
    print(f"flood: {sent} sent in 2 s, {counts.snapshot()}")
    assert sent > 20000
    dropped = counts.get("capture.dropped.queue_full")
    assert dropped + counts.get("capture.dropped.kernel") > 0, "an overload must be counted"
    assert counts.get("capture.packets") == counts.get("capture.queued") + dropped
    assert responsive, "agent unresponsive after the flood"
