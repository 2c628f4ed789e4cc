"""The first ten minutes, item by item (issue 13): help, version, completion, bad input as one
line, classify, demo, --json on every table, exit codes, the README's promises."""

import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import dns.message
import pytest

from egresswatch.capture.pcapwrite import PcapWriter
from egresswatch.classify.catalog import packaged_catalog_text
from egresswatch.cli.classify_cmd import host_of
from egresswatch.cli.main import app
from egresswatch.cli.version import catalog_date
from egresswatch.demo import udp_packet
from tests.cli.session import egresswatch, session

ROOT = Path(__file__).resolve().parents[2]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    return line


def test_version_names_the_catalog_date() -> None:
    result = egresswatch("--version")
    date = catalog_date(packaged_catalog_text())
    assert result.returncode == 0 and date is not None
    assert result.stdout.split() == [
        "egresswatch",
        result.stdout.split()[1],
        "(catalog",
        f"{date})",
    ]


def test_help_shows_flags_without_type_noise() -> None:
    for command in ("agent", "events", "run", "summary", "classify"):
        result = egresswatch(command, "--help")
        assert result.returncode == 0
        assert "<bool>" not in result.stdout and "╭" not in result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_shell_completion_is_offered() -> None:
    assert "--install-completion" in egresswatch("--help").stdout
    installed = Path(sys.executable).parent / "egresswatch"  # the console script
    result = subprocess.run(
        [str(installed), "--show-completion", "bash"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "_EGRESSWATCH_COMPLETE" in result.stdout


def test_usage_errors_are_one_line_with_exit_2() -> None:
    missing = egresswatch("replay", "/missing.pcap")
    assert missing.returncode == 2
    assert "/missing.pcap" in one_line(missing) and "does not exist" in missing.stderr
    unknown = egresswatch("events", "--bogus")
    assert unknown.returncode == 2 and "--bogus" in one_line(unknown)
    empty = egresswatch("classify", "")
    assert empty.returncode == 2 and "empty host name" in one_line(empty)


def test_non_utf8_settings_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b'[store]\nurl = "\xff\xfe"\n')
    result = egresswatch("run", "--config", str(config))
    assert result.returncode == 2
    line = one_line(result)
    assert str(config) in line and "not UTF-8" in line


def test_unusable_store_says_what_to_do() -> None:
    result = egresswatch("run", "--db", "sqlite:////proc/nope.db")
    assert result.returncode == 2
    line = one_line(result)
    assert "/proc/nope.db" in line and "Pass --db" in line
    assert "OperationalError" not in line and "sqlalche.me" not in line


@pytest.mark.parametrize(
    ("pasted", "host"),
    [
        ("https://huggingface.co/TheBloke", "huggingface.co"),
        ("huggingface.co/TheBloke/x", "huggingface.co"),
        ("api.openai.com:443", "api.openai.com"),
        ("2001:db8::1", "2001:db8::1"),
        ("http://[2001:db8::1]:8080/x", "2001:db8::1"),
        ("  HF.co  ", "HF.co"),
    ],
)
def test_host_of_what_users_paste(pasted: str, host: str) -> None:
    assert host_of(pasted) == host


def test_classify_takes_a_url_and_wraps_at_words() -> None:
    result = egresswatch("classify", "https://huggingface.co/TheBloke", "cdn-lfs-us-1.hf.co")
    assert result.returncode == 0, result.stderr
    assert "huggingface.co" in result.stdout and "cdn-lfs-us-1.hf.co" in result.stdout
    assert "model-registry" in result.stdout and "model-cdn" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    wide = egresswatch("classify", "registry.ollama.ai", columns=200)
    purpose = next(line for line in packaged_catalog_text().splitlines()
                   if line.startswith("registry.ollama.ai,")).split(",")[3]  # fmt: skip
    assert " ".join(purpose.split()[:8]) in " ".join(wide.stdout.split())


def test_demo_fills_a_scratch_store_and_shows_it(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = egresswatch("demo", "--db", str(db))
    assert result.returncode == 0, result.stderr
    for host in ("registry.ollama.ai", "api.openai.com", "eu.i.posthog.com", "huggingface.co"):
        assert host in result.stdout
    assert "cloud-llm-api" in result.stdout and "telemetry" in result.stdout
    assert f"{sys.executable} -m egresswatch summary --db {db} --by tool" in result.stderr
    tools = egresswatch("summary", "--db", str(db), "--by", "tool", "--json")
    counted = {g["key"]: g for g in map(json.loads, tools.stdout.splitlines())}
    assert {"Ollama", "Jan", "Open WebUI", "huggingface_hub / transformers"} <= set(counted)
    assert counted["Ollama"]["connections"] == 3
    raw = egresswatch("events", "--db", str(db), "--json", "--tool", "ollama")
    records = [json.loads(line) for line in raw.stdout.splitlines()]
    assert {r["process"] for r in records} == {"ollama"}
    assert {r["kind"] for r in records} == {"dns", "flow", "tls"}


def test_every_table_has_json(tmp_path: Path) -> None:
    db = session(tmp_path / "events.db")
    capture_path = tmp_path / "one.pcap"
    _write_capture(capture_path)
    commands = [
        ["events", "--db", db, "--json"],
        ["summary", "--db", db, "--json"],
        ["db", "stats", "--db", db, "--json"],
        ["classify", "hf.co", "--json"],
        ["doctor", "--json"],
        ["replay", "--json", "-q", str(capture_path)],
    ]
    for args in commands:
        result = egresswatch(*args)
        assert result.returncode in (0, 1), (args, result.stderr)  # doctor: 1 if capture cannot
        assert [json.loads(line) for line in result.stdout.splitlines()], args


def _write_capture(path: Path) -> None:
    wire = dns.message.make_query("example.org", "A").to_wire()
    with PcapWriter(path, linktype=101) as out:
        out.write(1_700_000_000.0, udp_packet("10.199.7.3", "10.199.7.1", 40000, 53, wire))


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    assert names and all(f"`egresswatch {name}" in readme for name in names)
    for promise in (
        "Exit codes",
        "--install-completion",
        "/var/lib/egresswatch/events.db",
        "/opt/egresswatch/venv",
        "egresswatch_test",
        "rm /usr/local/bin/egresswatch",
    ):
        assert promise in readme, promise  # fmt: skip


def test_readme_set_up_does_not_require_sudo() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "    bash scripts/setup.sh run" in readme
    assert not re.search(r"^ {4}sudo ", readme, re.MULTILINE)


def test_setup_without_root_says_how_when_there_is_no_sudo() -> None:
    with tempfile.TemporaryDirectory(prefix="ew-nosudo-") as where:
        tools = Path(where)
        tools.chmod(0o755)  # nobody (below) must reach the tools; pytest's tmp_path is private
        for tool in ("id", "dirname", "bash", "setpriv"):
            found = shutil.which(tool)
            assert found is not None
            (tools / tool).symlink_to(found)
        result = subprocess.run(
            [str(tools / "setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
             str(tools / "bash"), "-s", "run"],
            input=(ROOT / "scripts" / "setup.sh").read_text(), capture_output=True, text=True,
            check=False, env={"PATH": str(tools)}, cwd="/",
        )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr == "setup.sh: run as root (no sudo here): su -c 'bash scripts/setup.sh run'\n"
    )


def test_license_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
