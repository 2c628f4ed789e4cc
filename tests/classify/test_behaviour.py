"""Behaviour: a large download by an LLM tool from an unclassified host looks like a model."""

from egresswatch.classify.behaviour import (
    LARGE_DOWNLOAD_BYTES,
    MODEL_DOWNLOAD,
    looks_like_model_download,
    with_behaviour,
)
from egresswatch.classify.catalog import load_catalog

CATALOG = load_catalog()
BIG = 2 * 1024**3


def test_a_big_download_from_an_unknown_host_by_a_tool_is_a_model_download() -> None:
    verdict = CATALOG.classify_destination("a1.qzxv-files.example")
    assert verdict.category == "unknown"
    after = with_behaviour(verdict, tool="Ollama", bytes_in=BIG)
    assert (after.category, after.source) == (MODEL_DOWNLOAD, "behaviour")
    assert "Ollama" in after.purpose
    assert 0 < after.confidence < verdict.confidence + 1


def test_named_hosts_small_downloads_and_non_tools_stay_as_they_were() -> None:
    cdn = CATALOG.classify_destination("cdn-lfs-us-1.hf.co")
    assert with_behaviour(cdn, tool="Ollama", bytes_in=BIG) is cdn
    unknown = CATALOG.classify_destination("x.unheard-of.example")
    assert with_behaviour(unknown, tool="Ollama", bytes_in=LARGE_DOWNLOAD_BYTES - 1) is unknown
    assert with_behaviour(unknown, tool=None, bytes_in=BIG) is unknown
    local = CATALOG.classify_destination(None, address="127.0.0.1")
    assert not looks_like_model_download(local, tool="Ollama", bytes_in=BIG)


def test_a_word_guess_does_not_hide_a_model_download() -> None:
    guess = CATALOG.classify_destination("mirror.unheard-of.example")
    assert guess.source == "heuristic"
    assert looks_like_model_download(guess, tool="LM Studio", bytes_in=BIG)
    assert looks_like_model_download(guess, tool="LM Studio", bytes_in=10, threshold=10)
