"""A scripted local-LLM session for `egresswatch demo`: the packets four tools would send (real DNS
messages from dnspython, real TLS ClientHellos from Python's ssl module) and the processes behind
them, run through the real agent, classifier and store. Nothing is sent on any network.
"""

import contextlib
import dataclasses
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import dns.message
import dns.rrset

from egresswatch.capture.live import LINKTYPE_RAW, Frame
from egresswatch.classify.tools import default_tool_rules
from egresswatch.model import Attribution, FlowKey, ProcessInfo, ProcessRef

CLIENT = "192.168.1.23"  # this machine in the story (private range; only ever written to a file)
RESOLVER = "192.168.1.1"
TCP_SYN, TCP_PSH_ACK = 0x02, 0x18
ISN = 1000  # the SYN takes one sequence number; the ClientHello starts at ISN + 1
_SYSTEMD = ProcessRef(1, "systemd", "/usr/lib/systemd/systemd")
_SHELL = ProcessRef(3100, "bash", "/usr/bin/bash")


def _process(pid: int, name: str, exe: str, *cmdline: str, user: str = "ana") -> ProcessInfo:
    info = ProcessInfo(
        pid=pid, name=name, exe=exe, exe_sha256=None, cmdline=cmdline, user=user,
        ppid=1 if user != "ana" else _SHELL.pid, start_time=0.0,
        ancestry=(_SYSTEMD,) if user != "ana" else (_SHELL, _SYSTEMD),
        netns=None, container=None, tool=None,
    )  # fmt: skip
    match = default_tool_rules().recognise_process(info)
    return dataclasses.replace(info, tool=match.tool if match else None)


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a process does: look up `host` and (unless lookup_only) open TLS to it."""

    at: float  # seconds after the session starts
    who: str
    host: str
    address: str  # documentation range (RFC 5737): never contacted
    lookup_only: bool = False


def processes() -> dict[str, ProcessInfo]:
    """The session's processes by short name."""
    return {
        "ollama": _process(
            812, "ollama", "/usr/local/bin/ollama", "/usr/local/bin/ollama", "serve",
            user="ollama",
        ),
        "hf": _process(
            4211, "hf", "/home/ana/.venv/bin/python3", "/home/ana/.venv/bin/python3",
            "/home/ana/.venv/bin/hf", "download", "TheBloke/Mistral-7B-Instruct-v0.2-GGUF",
        ),
        "open-webui": _process(
            2290, "open-webui", "/opt/open-webui/venv/bin/python3",
            "/opt/open-webui/venv/bin/python3", "/opt/open-webui/venv/bin/open-webui", "serve",
        ),
        "jan": _process(5120, "Jan", "/opt/Jan/jan", "/opt/Jan/jan"),
    }  # fmt: skip


SESSION = (
    Step(0.0, "ollama", "registry.ollama.ai", "192.0.2.10"),
    Step(1.2, "ollama", "dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage.com", "192.0.2.11"),
    Step(30.0, "ollama", "ollama.com", "192.0.2.12"),
    Step(45.0, "hf", "pypi.org", "192.0.2.20"),
    Step(46.0, "hf", "huggingface.co", "192.0.2.21"),
    Step(47.5, "hf", "cdn-lfs-us-1.hf.co", "192.0.2.22"),
    Step(90.0, "jan", "eu.i.posthog.com", "192.0.2.30"),
    Step(95.0, "jan", "github.com", "192.0.2.31"),
    Step(120.0, "open-webui", "api.openai.com", "192.0.2.40"),
    Step(121.0, "open-webui", "api.openai.com", "192.0.2.40", lookup_only=True),
)


class ScriptedProcesses:
    """The Attributor of the demo: each client port belongs to the step's process."""

    def __init__(self) -> None:
        self.owners: dict[int, ProcessInfo] = {}

    def attribute(
        self,
        flow: FlowKey,
        ts: float,
        *,
        ifindex: int = 0,
        local: str = "auto",
        new_connection: bool = False,
    ) -> Attribution:
        port = flow.dport if local == "dst" else flow.sport
        owner = self.owners.get(port)
        return Attribution("exact", owner) if owner else Attribution("unknown:no-socket")


def session_frames(start: float, owners: ScriptedProcesses) -> Iterator[Frame]:
    """Every frame of the session, in time order; registers each client port's owner."""
    table = processes()
    for number, step in enumerate(SESSION):
        sport = 40000 + 2 * number
        owners.owners[sport] = owners.owners[sport + 1] = table[step.who]
        yield from _step_frames(start + step.at, step, sport)


def _step_frames(ts: float, step: Step, sport: int) -> Iterator[Frame]:
    for qtype, offset in (("A", 0.0), ("AAAA", 0.0005)):
        query, response = _lookup(step, qtype, sport)
        yield _frame(ts + offset, udp_packet(CLIENT, RESOLVER, sport, 53, query))
        yield _frame(ts + offset + 0.012, udp_packet(RESOLVER, CLIENT, 53, sport, response))
    if not step.lookup_only:
        hello = client_hello(step.host)
        server = (step.address, 443)
        yield _frame(ts + 0.02, _tcp((CLIENT, sport + 1), server, ISN, TCP_SYN, b""))
        yield _frame(ts + 0.05, _tcp((CLIENT, sport + 1), server, ISN + 1, TCP_PSH_ACK, hello))


def _lookup(step: Step, qtype: str, sport: int) -> tuple[bytes, bytes]:
    query = dns.message.make_query(step.host, qtype, id=sport ^ (0x5A5A if qtype == "A" else 0))
    response = dns.message.make_response(query)
    if qtype == "A":
        response.answer.append(dns.rrset.from_text(step.host + ".", 60, "IN", "A", step.address))
    return query.to_wire(), response.to_wire()


def client_hello(server_name: str) -> bytes:
    """The bytes Python's TLS client sends first for `server_name` (a real ClientHello)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def _frame(ts: float, packet: bytes) -> Frame:
    return Frame(ts, LINKTYPE_RAW, packet, "demo0")


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
        _addr(src), _addr(dst),
    )  # fmt: skip
    return header + payload


def _addr(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 UDP packet (raw IP, checksums left zero: the decoder does not check them)."""
    return _ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def _tcp(
    src: tuple[str, int], dst: tuple[str, int], seq: int, flags: int, payload: bytes
) -> bytes:
    segment = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, 1, 5 << 4, flags, 65535, 0, 0)
    return _ipv4(src[0], dst[0], 6, segment + payload)
