"""Shared fixtures: where the shared corpus lives, the expected records tshark made for it, and
the lab (`net`) for the end-to-end tests."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab, lab, require_lab

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"


def corpus_stems() -> list[str]:
    """Names of the corpus captures (empty when ../shared is absent)."""
    expected = CORPUS_DIR / "expected"
    return sorted(p.stem for p in expected.glob("*.json")) if expected.is_dir() else []


def corpus_capture(stem: str) -> Path:
    for suffix in (".pcap", ".pcapng"):
        path = CORPUS_DIR / "pcaps" / f"{stem}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(stem)


def load_expected(stem: str) -> dict[str, Any]:
    with (CORPUS_DIR / "expected" / f"{stem}.json").open() as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS_DIR / "expected").is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS_DIR} (it sits beside the repo in CI)")
    return CORPUS_DIR


@pytest.fixture
def net() -> Iterator[Lab]:
    """A fresh lab for one test (tests/lab.py); skipped with the reason where it cannot run."""
    require_lab()
    with lab() as made:
        yield made
