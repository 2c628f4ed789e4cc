"""A real local HTTP server that records webhook POSTs (optionally slow or failing first)."""

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each post arrived (epoch seconds)
    fail_first: int = 0
    delay: float = 0.0
    url: str = ""
    arrived: threading.Event = field(default_factory=threading.Event)

    def json_bodies(self) -> list[Any]:
        return [json.loads(body) for _, body in self.posts]

    def wait(self, count: int = 1, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.posts) >= count


@contextmanager
def receiver(fail_first: int = 0, delay: float = 0.0) -> Iterator[Received]:
    got = Received(fail_first=fail_first, delay=delay)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(got.delay)
            if got.fail_first > 0:
                got.fail_first -= 1
                self.send_response(503)
            else:
                got.times.append(time.time())
                got.posts.append((dict(self.headers.items()), body))
                got.arrived.set()
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
