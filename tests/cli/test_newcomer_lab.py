"""A newcomer's first run, scripted: a fresh clone, the README's run command for a few seconds
while curl talks to the lab's hosts, then the follow-up command exactly as `run` printed it.

Offline by design: the clone's virtual environment reuses this environment's packages (a .pth
line) and pip is told to use no index, so the test sends nothing beyond the lab.
"""

import os
import shlex
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from tests.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
LAB_HOSTS = ("registry.ollama.ai", "huggingface.co")
pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]


def _clone(tmp_path: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("the newcomer run clones the repository: run it from a git checkout")
    clone = tmp_path / "egresswatch"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    return clone


def _offline_venv(tmp_path: Path) -> Path:
    """An empty venv that sees this environment's packages (but not its egresswatch)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = sysconfig.get_paths()["purelib"]
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "borrowed.pth").write_text(purelib + "\n")
    return venv


def _readme_run_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    line = next(x.strip() for x in readme.splitlines() if x.strip().endswith("setup.sh run"))
    return shlex.split(line)


def _traffic(net: Lab, stop: threading.Event) -> None:
    while not stop.is_set():
        for host in LAB_HOSTS:
            curl = ["curl", "-sk", "--max-time", "3", "-o", "/dev/null", f"https://{host}/"]
            subprocess.run(net.with_dns(curl), capture_output=True, timeout=10, check=False)
        stop.wait(0.3)


def _follow_up(stderr: "subprocess.Popen[str]") -> str:
    assert stderr.stderr is not None
    seen = []
    for line in stderr.stderr:
        seen.append(line)
        if "To see what was recorded, run:" in line:
            return stderr.stderr.readline().strip()
    raise AssertionError("run printed no follow-up command:\n" + "".join(seen))


def test_fresh_clone_readme_run_then_printed_command(net: Lab, tmp_path: Path) -> None:
    clone, venv, bin_dir = _clone(tmp_path), _offline_venv(tmp_path), tmp_path / "bin"
    bin_dir.mkdir()
    env = {
        **os.environ,
        "EGRESSWATCH_VENV": str(venv),
        "EGRESSWATCH_BIN_DIR": str(bin_dir),
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "COLUMNS": "80",
    }
    db = str(tmp_path / "state" / "events.db")
    command = [*_readme_run_command(), "--db", db]
    run = subprocess.Popen(command, cwd=clone, env=env, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(net, stop))
    try:
        printed = _follow_up(run)
        traffic.start()
        time.sleep(4.0)
    finally:
        stop.set()
        if traffic.is_alive():
            traffic.join(30)
        run.send_signal(signal.SIGINT)
        _out, rest = run.communicate(timeout=60)
    assert run.returncode == 0, rest
    assert "egresswatch stopped after" in rest and "\r" not in rest  # no status line off a TTY
    assert "\nLLM tools seen: " in rest  # the summary's lines are lines, not escapes
    assert printed == f"egresswatch events --since 10m --db {db}"
    shown = subprocess.run(
        shlex.split(printed), cwd="/", env=env, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    for host in LAB_HOSTS:
        assert host in shown.stdout
    assert "curl[" in shown.stdout
