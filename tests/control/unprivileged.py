"""Shared check: a Python the unprivileged web user can run (webproc starts the dashboard with
sys.executable; a venv under /root is not one: set EGRESSWATCH_TEST_SHARED_PYTHON then)."""

import os
import subprocess
import sys

import pytest

SHARED_PYTHON = "EGRESSWATCH_TEST_SHARED_PYTHON"


def unprivileged_python() -> str:
    for candidate in (sys.executable, os.environ.get(SHARED_PYTHON)):
        if candidate and _runs_as_nobody(candidate):
            return candidate
    pytest.skip(
        f"nobody cannot run {sys.executable}; set {SHARED_PYTHON} to a shared venv's python"
    )


def _runs_as_nobody(python: str) -> bool:
    command = [python, "-c", "import egresswatch"]
    try:
        done = subprocess.run(
            command, user="nobody", group="nogroup", capture_output=True, timeout=60, check=False
        )
    except (PermissionError, KeyError):
        return False
    return done.returncode == 0
