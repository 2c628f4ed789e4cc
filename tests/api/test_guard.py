"""The guard on a real server: Host allow-list, Origin on state changes, token, headers."""

import os
import socket
import stat
from pathlib import Path

import httpx
import pytest

from egresswatch.api.guard import CSP
from tests.api.server import WebServer, egresswatch, web_server


def test_foreign_host_header_is_refused(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        rebinding = client.get(
            "/api/health", headers={"Host": f"attacker.example:{sample_web.port}"}
        )
        ok = client.get("/api/health", headers={"Host": f"localhost:{sample_web.port}"})
    assert rebinding.status_code == 421 and rebinding.json()["error"] == "host_not_allowed"
    assert ok.status_code == 200


def test_state_changing_requests_need_this_origin(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        foreign = client.post("/api/events", headers={"Origin": "http://evil.example"})
        other_port = client.post("/api/events", headers={"Origin": "http://127.0.0.1:1"})
        cross_site = client.post("/api/events", headers={"Sec-Fetch-Site": "cross-site"})
        same = client.post("/api/events", headers={"Origin": sample_web.url})
    assert foreign.status_code == other_port.status_code == cross_site.status_code == 403
    assert same.status_code == 405  # reached the app: no POST route there


def test_every_response_carries_the_security_headers(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        for path in ("/", "/api/health", "/openapi.json", "/static/app.js", "/nope"):
            headers = client.get(path).headers
            assert headers["content-security-policy"] == CSP, path
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP


def _lan_address() -> str | None:
    """A non-loopback address of this machine to bind to, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.254", 9))  # no packet is sent for a UDP connect
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_a_non_loopback_bind_needs_the_token(sample_db: Path, tmp_path: Path) -> None:
    address = _lan_address()
    if address is None:
        pytest.skip("no non-loopback address to bind to")
    token_file = tmp_path / "token"
    with web_server(sample_db, "--token-file", str(token_file), host=address) as server:
        shown = egresswatch("web", "--show-token", "--token-file", str(token_file)).stdout
        token = shown.split()[1]
        anonymous = httpx.get(server.url + "/api/health")
        wrong = httpx.get(server.url + "/api/health", headers={"Authorization": "Bearer nope"})
        bearer = httpx.get(server.url + "/api/health", headers={"Authorization": f"Bearer {token}"})
        with httpx.Client(base_url=server.url) as browser:
            first = browser.get("/", params={"token": token})
            later = browser.get("/api/events")
    assert anonymous.status_code == wrong.status_code == 401
    assert bearer.status_code == 200
    assert (
        "HttpOnly" in first.headers["set-cookie"]
        and "SameSite=Strict" in first.headers["set-cookie"]
    )
    assert later.status_code == 200
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x" * 40)
    token_file.chmod(0o644)
    done = egresswatch("web", "--show-token", "--token-file", str(token_file), check=False)
    assert done.returncode == 2 and "readable by others" in done.stderr
