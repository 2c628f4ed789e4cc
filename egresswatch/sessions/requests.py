"""Telling inference from housekeeping by an HTTP request line (issue #7's examples), and the
record of one request seen on the wire."""

from dataclasses import dataclass

from egresswatch.model import FlowKey

# POST routes that run a model: Ollama, OpenAI-compatible servers (LM Studio, vLLM, llama.cpp
# server, LocalAI), llama.cpp's native API, ComfyUI's /prompt, Anthropic-style /v1/messages.
INFERENCE_PATHS = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/completion",
        "/completions",
        "/chat/completions",
        "/embedding",
        "/embeddings",
        "/infill",
        "/prompt",
    }
)


def is_inference(method: str, path: str) -> bool:
    """POST to an inference route; GET /api/tags, /api/version, /health, /v1/models are not."""
    return method == "POST" and path.rstrip("/") in INFERENCE_PATHS


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A plaintext request line seen at `ts` on `flow` (client -> server)."""

    ts: float
    flow: FlowKey
    method: str
    path: str
