"""A stand-in Ollama for lab tests: a real HTTP server process named `ollama` (recognised by
egresswatch/data/tools.csv). POST /api/generate, /api/chat... make the egress the test asks
for (one HTTPS request to --egress-host at --connect) and answer; GET /api/tags answers only.

Run as `ollama serve --listen HOST --port N [--egress-host NAME --connect IP] [--download URL]
[--stream SECONDS]` (POSTs then answer token by token for SECONDS)
through `install(dir)`, which writes the `ollama` launcher (its comm is then "ollama").
"""

import argparse
import http.server
import json
import socket
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()


def install(directory: Path) -> Path:
    """An executable named `ollama` that runs this module."""
    path = directory / "ollama"
    path.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0:1] = ['{SCRIPT}']\n"
        f"runpy.run_path('{SCRIPT}', run_name='__main__')\n"
    )
    path.chmod(0o755)
    return path


def _egress(host: str, connect: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((connect, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
        tls.recv(100)
        # Like the lab's clients (--linger): a socket that lives a few ms can close before
        # attribution looks it up on a loaded machine, and is then honestly unattributed.
        time.sleep(0.3)


def _download(url: str) -> int:
    total = 0
    with urllib.request.urlopen(url, timeout=60) as response:
        while chunk := response.read(1 << 16):
            total += len(chunk)
    return total


def handler(args: argparse.Namespace) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer({"models": []} if self.path == "/api/tags" else {"version": "0.0"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            result: dict[str, Any] = {"response": "ok", "done": True}
            if args.egress_host:
                _egress(args.egress_host, args.connect)
            if args.download:
                result["downloaded"] = _download(args.download)
            if args.stream:
                self._stream(args.stream)
                return
            self._answer(result)

        def _stream(self, seconds: float) -> None:
            """A long generation: one token every 0.25 s for `seconds`, then the close."""
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                self.wfile.write(b'{"response": "tok", "done": false}\n')
                self.wfile.flush()
                time.sleep(0.25)
            self.wfile.write(b'{"response": "", "done": true}\n')
            self.close_connection = True

        def _answer(self, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--egress-host")
    parser.add_argument("--connect")
    parser.add_argument("--download")
    parser.add_argument("--stream", type=float, default=0.0)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((args.listen, args.port), handler(args))
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
