"""Request lines: parsed from the first bytes only, inference told from housekeeping; the
decoder hands them to its hook without reading past the first line."""

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from egresswatch.decode.http import looks_like_http_request, request_line
from egresswatch.model import FlowKey
from egresswatch.pipeline import ObservationDecoder
from egresswatch.sessions.requests import is_inference, model_in


def test_request_lines_and_what_counts_as_inference() -> None:
    assert request_line(b"POST /api/generate HTTP/1.1\r\nHost: x\r\n\r\n{}") == (
        "POST",
        "/api/generate",
    )
    assert request_line(b"GET /v1/models?x=1 HTTP/1.0\r\n") == ("GET", "/v1/models")
    assert request_line(b"POST /api/chat HTTP/1.1") is None  # no CRLF in reach
    assert request_line(b"POST /" + b"a" * 300 + b" HTTP/1.1\r\n") is None
    assert request_line(b"POST /\x1b[31m HTTP/1.1\r\n") is None
    for path in ("/api/generate", "/api/chat", "/api/embed", "/v1/chat/completions", "/prompt"):
        assert is_inference("POST", path)
    for path in ("/api/tags", "/api/version", "/health", "/v1/models"):
        assert not is_inference("GET", path) and not is_inference("POST", path)
    assert not is_inference("GET", "/api/generate")
    assert looks_like_http_request(b"POST /x") and not looks_like_http_request(b"\x16\x03\x01")


@given(st.binary(max_size=400))
def test_request_line_never_raises(data: bytes) -> None:
    found = request_line(data)
    assert found is None or (found[0].isupper() and found[1].startswith("/"))


def test_the_decoder_hands_request_lines_to_its_hook() -> None:
    seen: list[tuple[float, FlowKey, str, str]] = []
    decoder = ObservationDecoder(
        emit_flows=True, on_request=lambda ts, flow, m, p: seen.append((ts, flow, m, p))
    )
    ip = IP(src="127.0.0.1", dst="127.0.0.1")
    frames = [
        Ether() / ip / TCP(sport=40000, dport=11434, flags="S", seq=1),
        Ether()
        / ip
        / TCP(sport=40000, dport=11434, flags="PA", seq=2)
        / (b'POST /api/generate HTTP/1.1\r\nHost: localhost\r\n\r\n{"model": "secret"}'),
        Ether() / ip / TCP(sport=40000, dport=11434, flags="PA", seq=200) / b"POST /api/chat",
    ]
    for i, frame in enumerate(frames):
        decoder.decode_frame(10.0 + i, 1, bytes(frame))
    assert seen == [
        (11.0, FlowKey("tcp", "127.0.0.1", 40000, "127.0.0.1", 11434), "POST", "/api/generate")
    ]


def test_the_model_a_request_line_names() -> None:
    named = {
        "/v2/models/llama3-8b/infer": "llama3-8b",
        "/v2/models/phi3/versions/2/generate_stream": "phi3",
        "/v1beta/models/gemma-2b:generateContent": "gemma-2b",
        "/openai/deployments/gpt-4o/chat/completions": "gpt-4o",
        "/v2/models/qwen2.5%3A7b/generate": "qwen2.5:7b",
    }
    for path, model in named.items():
        assert is_inference("POST", path) and model_in(path) == model
    for path in ("/api/generate", "/v1/chat/completions", "/prompt", "/v2/models/x/ready"):
        assert model_in(path) is None
    assert not is_inference("POST", "/v2/models/x/ready")
    assert model_in("/v2/models/%1B%5B31m/infer") is None  # a terminal escape is no model name
    assert model_in("/v2/models/" + "a" * 200 + "/infer") is None
