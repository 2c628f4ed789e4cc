"""Behaviour as evidence: a large download by an LLM tool from an unclassified host is reported as
what it looks like, `model-download?` (source `behaviour`), for the untrusted-model-source alert.

Pure: the caller (alerts) supplies the byte count it measured for the host and tool.
"""

import dataclasses

from egresswatch.classify.verdict import Verdict

MODEL_DOWNLOAD = "model-download?"
# The smallest useful GGUF models (0.5B parameters, 4-bit) are ~300 MB; 100 MB leaves margin
# and stays above the installers and wheels tools fetch (llama.cpp backends ~50 MB).
LARGE_DOWNLOAD_BYTES = 100 * 1024 * 1024
BEHAVIOUR_CONFIDENCE = 0.5
# What a behaviour may override: nothing named, or only a guess from the host's words.
_UNCLASSIFIED = frozenset({"unknown", "other"})


def looks_like_model_download(
    verdict: Verdict, *, tool: str | None, bytes_in: int, threshold: int = LARGE_DOWNLOAD_BYTES
) -> bool:
    """True when an LLM tool downloaded `bytes_in` >= `threshold` from a host nobody classified."""
    if tool is None or bytes_in < threshold:
        return False
    return verdict.category in _UNCLASSIFIED or verdict.source == "heuristic"


def with_behaviour(
    verdict: Verdict, *, tool: str | None, bytes_in: int, threshold: int = LARGE_DOWNLOAD_BYTES
) -> Verdict:
    """`verdict`, or `model-download?` (source `behaviour`) when it looks like a model download."""
    if not looks_like_model_download(verdict, tool=tool, bytes_in=bytes_in, threshold=threshold):
        return verdict
    purpose = f"{tool} downloaded {bytes_in} bytes from a host no catalog or list names"
    return dataclasses.replace(
        verdict,
        category=MODEL_DOWNLOAD,
        source="behaviour",
        confidence=BEHAVIOUR_CONFIDENCE,
        purpose=purpose,
        citation="",
    )
