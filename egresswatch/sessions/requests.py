"""Telling inference from housekeeping by an HTTP request line (issue #7's examples), the model
a request line names (never headers or bodies), and the record of one request seen on the wire."""

import re
from dataclasses import dataclass
from urllib.parse import unquote

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


# POST routes that name their model in the path: KServe v2 / Triton (and servers speaking it),
# Gemini-style `models/NAME:generateContent`, Azure-OpenAI-style deployments.
MODEL_ROUTES = (
    re.compile(r"/v2/models/([^/]+)(?:/versions/[^/]+)?/(?:infer|generate|generate_stream)"),
    re.compile(
        r"/v1(?:beta)?/models/([^/:]+):(?:generateContent|streamGenerateContent|embedContent)"
    ),
    re.compile(r"/openai/deployments/([^/]+)/(?:chat/completions|completions|embeddings)"),
)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")


def is_inference(method: str, path: str) -> bool:
    """POST to an inference route; GET /api/tags, /api/version, /health, /v1/models are not."""
    if method != "POST":
        return False
    path = path.rstrip("/")
    return path in INFERENCE_PATHS or any(r.fullmatch(path) for r in MODEL_ROUTES)


def model_in(path: str) -> str | None:
    """The model a route names in its path (see MODEL_ROUTES), if it is a plain model name."""
    for route in MODEL_ROUTES:
        found = route.fullmatch(path.rstrip("/"))
        if found is not None:
            name = unquote(found.group(1))
            return name if MODEL_NAME.fullmatch(name) else None
    return None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A plaintext request line seen at `ts` on `flow` (client -> server)."""

    ts: float
    flow: FlowKey
    method: str
    path: str
