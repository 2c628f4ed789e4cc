"""The shipped unit files: exposure scores from `systemd-analyze security --offline=yes`,
`systemd-analyze verify`, and the settings the service design depends on."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from egresswatch.service_layout import unit_text

UNITS = Path(__file__).resolve().parent.parent / "systemd"
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def exposure(unit: Path) -> float:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize(
    ("name", "limit"), [("egresswatch.service", 2.5), ("egresswatch-web.service", 1.5)]
)
def test_exposure_within_limit(name: str, limit: float) -> None:
    assert exposure(UNITS / name) <= limit


def test_rendered_units_verify(tmp_path: Path) -> None:
    for name in ("egresswatch.service", "egresswatch-web.service"):
        (tmp_path / name).write_text(unit_text(name, shutil.which("true") or "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in tmp_path.iterdir())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _settings(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_agent_unit_design() -> None:
    agent = _settings("egresswatch.service")
    assert agent["Type"] == ["notify"] and agent["WatchdogSec"] == ["30s"]
    assert agent["User"] == ["egresswatch"] and agent["Restart"] == ["on-failure"]
    assert agent["IPAddressDeny"] == ["any"]
    assert agent["AmbientCapabilities"] == agent["CapabilityBoundingSet"]
    assert "AF_INET" not in agent["RestrictAddressFamilies"][0]


def test_web_unit_has_no_capabilities() -> None:
    web = _settings("egresswatch-web.service")
    assert web["CapabilityBoundingSet"] == [""] and web["AmbientCapabilities"] == [""]
    assert "--require-unprivileged" in web["ExecStart"][0]
    assert web["IPAddressAllow"] == ["localhost"]


def test_top_level_units_are_the_packaged_ones() -> None:
    for name in ("egresswatch.service", "egresswatch-web.service"):
        assert (UNITS / name).read_text() == unit_text(
            name, "/opt/egresswatch/venv/bin/egresswatch"
        )
