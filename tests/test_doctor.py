"""`egresswatch doctor` on this machine as it is, and again without CAP_NET_RAW."""

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from egresswatch.cli import agent_cmd
from egresswatch.doctor import effective_capabilities, run_checks
from tests.lab import lab_unavailable

REPO = Path(__file__).resolve().parents[1]
APP_CODE = (
    "import typer\nfrom egresswatch.cli import agent_cmd\napp = typer.Typer()\n"
    "agent_cmd.register(app)\napp()\n"
)


def _app() -> typer.Typer:
    app = typer.Typer()
    agent_cmd.register(app)
    return app


def test_capability_mask_is_decoded(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000003000\n")  # bits 12 and 13
    assert effective_capabilities(status) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    status.write_text("CapEff:\t0000000000000000\n")
    assert effective_capabilities(status) == set()


def test_doctor_passes_with_privileges() -> None:
    if lab_unavailable() is not None:
        pytest.skip(str(lab_unavailable()))
    results = {r.name: r for r in run_checks()}
    for name in ("CAP_NET_RAW", "BPF filter compiles", "AF_PACKET socket + filter attach"):
        assert results[name].ok, results[name]
    assert "lo" in results["interfaces"].detail
    for method in ("attribution: ebpf", "attribution: exec-cache"):
        assert results[method].ok, results[method]
    outcome = CliRunner().invoke(_app(), ["doctor"])
    assert outcome.exit_code == 0, outcome.output
    assert "AF_PACKET socket" in outcome.output


def test_doctor_fails_clearly_without_cap_net_raw() -> None:
    if lab_unavailable() is not None:
        pytest.skip(str(lab_unavailable()))
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-net_raw",
            "--inh-caps=-net_raw",
            sys.executable,
            "-c",
            APP_CODE,
            "doctor",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout
    assert "CAP_NET_RAW" in done.stdout and "service install" in done.stdout


def test_doctor_says_why_the_kernel_hooks_cannot_run_without_cap_bpf() -> None:
    if lab_unavailable() is not None:
        pytest.skip(str(lab_unavailable()))
    drop = "-bpf,-perfmon,-sys_admin"
    setpriv = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    done = subprocess.run(
        [*setpriv, sys.executable, "-c", APP_CODE, "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # capture still works
    line = next(x for x in done.stdout.splitlines() if "attribution: ebpf" in x)
    assert "warn" in line and "bpf() refused" in line and "closed-before-lookup" in line
