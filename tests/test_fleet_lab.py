"""Three agents, one PostgreSQL: three real `egresswatch run` processes, each inside its own lab
network namespace with its own node name, write through the agent role of docs/fleet.md into one
real PostgreSQL server. Every client's TLS hello and DNS lookup is stored exactly once, under its
agent's node, attributed to the client's pid and executable, and classified."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from egresswatch.classify.catalog import load_catalog
from egresswatch.model import Event
from egresswatch.store import EventFilter, open_reader
from tests.lab import Lab, lab, require_lab
from tests.store.test_shared_pg import _doc_sql

CATALOG = load_catalog(None)
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Attribution races real processes that live milliseconds (see tests/test_run_lab.py).
pytestmark = [
    pytest.mark.lab,
    pytest.mark.postgres,
    pytest.mark.flaky(reruns=2, reruns_delay=1),
    pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="needs PostgreSQL 15 binaries"),
]
# Per node: the host one curl reaches by address (TLS SNI only), the host a second curl looks up
# through the lab's DNS (a DNS query, then SNI), and the name dig asks for.
CLIENTS = {
    "fleet-a": ("huggingface.co", "registry.ollama.ai", "api.openai.com"),
    "fleet-b": ("api.openai.com", "cdn-lfs.hf.co", "huggingface.co"),
    "fleet-c": ("registry.ollama.ai", "huggingface.co", "cdn-lfs.hf.co"),
}


@dataclass(frozen=True)
class Server:
    """A throwaway PostgreSQL cluster reached over its Unix socket (so every namespace can)."""

    socket_dir: Path

    def url(self, role: str, database: str = "egresswatch") -> str:
        query = {"host": str(self.socket_dir)}
        made = URL.create(
            "postgresql+psycopg",
            role,
            f"change-me-{role.rsplit('_', maxsplit=1)[-1]}",
            database=database,
            query=query,
        )
        return made.render_as_string(hide_password=False)

    def psql(self, sql: str, database: str = "postgres") -> None:
        psql = [
            "psql",
            "-h",
            str(self.socket_dir),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-d",
            database,
        ]
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *psql],
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def _as_postgres(*argv: str) -> None:
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def server() -> Iterator[Server]:
    """initdb + pg_ctl in a temporary directory (the system cluster is not touched); the
    fleet database and roles made with docs/fleet.md's SQL, migrated by the owner."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run PostgreSQL as the postgres user")
    base = Path(tempfile.mkdtemp(prefix="ew-pg-"))
    shutil.chown(base, "postgres")
    data, sock = base / "data", base / "s"
    sock.mkdir()
    shutil.chown(sock, "postgres")
    _as_postgres(
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "--no-sync",
        "--no-instructions",
    )
    options = f"-k {sock} -c listen_addresses='' -c fsync=off -c max_connections=60"
    _as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-w",
        "-l",
        str(base / "log"),
        "start",
    )
    try:
        made = Server(sock)
        made.psql(_doc_sql("sql", "egresswatch"))
        owner = made.url("egresswatch_owner")
        upgrade = subprocess.run(
            [sys.executable, "-m", "egresswatch", "db", "upgrade", "--db", owner],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stderr
        grants = _doc_sql("sql grants", "egresswatch").replace(
            "ALTER DEFAULT PRIVILEGES", "ALTER DEFAULT PRIVILEGES FOR ROLE egresswatch_owner"
        )
        made.psql(grants, "egresswatch")
        yield made
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def _start_agent(net: Lab, node: str, url: str) -> "subprocess.Popen[str]":
    """`egresswatch run` inside the lab's client namespace, capturing its interface only.

    nsenter (not `ip netns exec`, which mounts a fresh /sys) keeps the cgroup v2 hierarchy in
    view, so the agent attributes with its eBPF hooks as on a real host.
    """
    iface = f"ewc{net.suffix}x"  # the client namespace's end of its veth (tests/lab.py)
    argv = [sys.executable, "-m", "egresswatch", "run", "--no-web", "-i", iface, "--db", url,
            "--node", node]  # fmt: skip
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{net.client_ns}", *argv],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # notes (what this host lacks) may come first
        seen.append(line)
        if "recording to" in line:
            return proc
    proc.wait(30)
    raise AssertionError(f"{node}: egresswatch run did not start: {''.join(seen)}")


def _stop(proc: "subprocess.Popen[str]") -> str:
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def _client(net: Lab, argv: list[str]) -> int:
    """Run `argv` in the lab's client namespace; its pid (ip netns exec execs it)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.client_ns, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return proc.pid


def _exe(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, name
    return os.path.realpath(found)


def test_three_agents_share_one_postgresql(server: Server) -> None:
    require_lab()
    with ExitStack() as stack:
        nets = {node: stack.enter_context(lab()) for node in CLIENTS}
        agents: dict[str, subprocess.Popen[str]] = {}
        try:
            for node, net in nets.items():
                agents[node] = _start_agent(net, node, server.url("egresswatch_agent"))
            time.sleep(1.0)  # capture live in each namespace
            pids = {node: _clients(nets[node], *names) for node, names in CLIENTS.items()}
            time.sleep(1.5)  # the writers commit every 0.2 s
        finally:
            logs = {node: _stop(proc) for node, proc in agents.items()}
        assert len(logs) == len(CLIENTS)
    reader = open_reader(server.url("egresswatch_owner"))
    try:
        stored = [s.event for s in reader.query_events(EventFilter(), limit=100_000)]
        per_node = {n: reader.query_events(EventFilter(node=n), limit=100_000) for n in CLIENTS}
    finally:
        reader.close()
    assert {e.node for e in stored} == set(CLIENTS), logs
    for node, (sni, lookup, dig_name) in CLIENTS.items():
        mine = [s.event for s in per_node[node]]
        assert all(e.node == node for e in mine)
        # stored once each, by its own agent
        hellos = _one([e for e in mine if e.observation.kind == "tls" and e.host == sni])
        looked_up = _one([e for e in mine if _asks(e, lookup)])
        dug = _one([e for e in mine if _asks(e, dig_name)])
        for event, client, name in ((hellos, "curl", sni), (looked_up, "resolver", lookup)):
            process = event.attribution.process
            assert event.attribution.status == "exact", (node, client, event)
            assert process is not None and process.pid == pids[node][client], (node, client)
            assert process.name == "curl" and process.exe == _exe("curl"), (node, process)
            _classified(event, name)
        # dig lives a few ms: its pid is exact; the name may be its worker thread's
        # ("isc-net-0000") and the exe unknown when it exited before /proc was read.
        assert dug.attribution.status == "exact", (node, dug)
        assert dug.attribution.process is not None
        assert dug.attribution.process.pid == pids[node]["dig"], (node, dug)
        _classified(dug, dig_name)
    # Each client's packets were seen by its own agent only: nothing under another node.
    for node, by_client in pids.items():
        for pid in by_client.values():
            owners = {e.node for e in stored if _pid(e) == pid}
            assert owners == {node}, (node, pid, owners)


def _clients(net: Lab, sni: str, lookup: str, dig_name: str) -> dict[str, int]:
    """Run the node's three clients one after the other; their pids."""
    # An agent in a network namespace has no exec cache (the kernel's proc connector answers
    # only the initial namespace), so a process is read from /proc when its packet arrives:
    # each curl stays half a second after its request (a pause, then a local file:// fetch).
    curl = ["curl", "-sk", "--max-time", "10", "--rate", "2/s"]
    stay = "file:///dev/null"
    return {
        "curl": _client(
            net, [*curl, "--resolve", f"{sni}:443:{net.server_ip}", f"https://{sni}/", stay]
        ),
        "resolver": _client(net, net.with_dns([*curl, "-4", f"https://{lookup}/", stay])),
        "dig": _client(net, ["dig", f"@{net.server_ip}", "+tries=1", "+time=3", dig_name, "A"]),
    }


def _one(found: list[Event]) -> Event:
    assert len(found) == 1, found
    return found[0]


def _classified(event: Event, name: str) -> None:
    expected = CATALOG.classify(name).category
    assert expected != "unknown" and event.category == expected, (name, event)


def _asks(event: Event, name: str) -> bool:
    dns = event.observation.dns
    return dns is not None and not dns.is_response and dns.qname == name


def _pid(event: Event) -> int | None:
    process = event.attribution.process
    return None if process is None else int(process.pid)
