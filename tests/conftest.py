"""Shared fixtures: where the shared corpus lives, and the expected records tshark made for it."""

import json
from pathlib import Path
from typing import Any

import pytest

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
