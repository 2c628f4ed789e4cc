"""The asking end of the control channel (the web process, the CLI): send one request line,
read one answer line; ControlUnavailable when no agent listens, ControlError for its refusals.
"""

import contextlib
import json
import socket
from pathlib import Path
from typing import Any

from egresswatch.control.protocol import (
    MAX_LINE,
    TIMEOUT,
    Ack,
    ControlError,
    Request,
    StartSession,
    StopSession,
    encode,
    request_message,
)


class ControlUnavailable(ControlError):
    """No agent answers on the socket (absent, refused, not ours to open)."""


class ControlClient:
    """Talks to the agent listening at `path`."""

    def __init__(self, path: Path, timeout: float = TIMEOUT + 1.0) -> None:
        self.path, self.timeout = path, timeout

    def available(self) -> bool:
        return self.path.is_socket()

    def ask(self, request: Request) -> dict[str, Any]:
        """The agent's answer (`ok` true); ControlError with its code otherwise."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise ControlUnavailable("unavailable", f"no agent on {self.path}: {exc}") from exc
            try:
                _send(sock, encode(request_message(request)))
                answer = _answer(sock)
            except TimeoutError:
                raise ControlError(
                    "timeout", f"the agent did not answer within {self.timeout:g} s"
                ) from None
            except OSError as exc:
                raise ControlError(
                    "unavailable", f"the agent's control socket failed: {exc}"
                ) from exc
        if answer.get("error") == "forbidden":  # like a socket we may not open
            raise ControlUnavailable("forbidden", f"the agent refused: {answer.get('detail')}")
        if answer.get("ok") is not True:
            raise ControlError(
                str(answer.get("error")), f"the agent refused: {answer.get('detail')}"
            )
        return answer

    def acknowledge(self, ids: list[int]) -> list[int]:
        return [int(i) for i in self.ask(Ack(tuple(ids)))["acknowledged"]]

    def start_session(self, label: str | None, strict: bool, tools: tuple[str, ...]) -> int:
        return int(self.ask(StartSession(label, strict, tools))["session"])

    def stop_session(self, session_id: int | None) -> tuple[int | None, str | None]:
        """(session id, verdict); verdict None when it is not open, id None when none is."""
        answer = self.ask(StopSession(session_id))
        return answer["session"], answer["verdict"]


def _send(sock: socket.socket, line: bytes) -> None:
    # The agent may answer before reading (e.g. `forbidden`) and close: read that answer then.
    with contextlib.suppress(BrokenPipeError):
        sock.sendall(line)


def _answer(sock: socket.socket) -> dict[str, Any]:
    data = bytearray()
    while b"\n" not in data:
        chunk = sock.recv(MAX_LINE + 1 - len(data))
        if not chunk or len(data) + len(chunk) > MAX_LINE:
            raise ControlError("bad_answer", "the agent's answer was cut short or too long")
        data += chunk
    try:
        answer = json.loads(data[: data.index(b"\n")])
    except ValueError as exc:
        raise ControlError("bad_answer", f"the agent's answer is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError("bad_answer", "the agent's answer is not a JSON object")
    return answer
