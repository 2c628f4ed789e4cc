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
    MAX_REPORT,
    REPORT_TIMEOUT,
    TIMEOUT,
    Ack,
    ControlError,
    Request,
    SignReport,
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

    def ask(
        self, request: Request, *, limit: int = MAX_LINE, timeout: float | None = None
    ) -> dict[str, Any]:
        """The agent's answer (`ok` true, at most `limit` bytes); ControlError with its code
        otherwise."""
        timeout = self.timeout if timeout is None else timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise ControlUnavailable("unavailable", f"no agent on {self.path}: {exc}") from exc
            try:
                _send(sock, encode(request_message(request)))
                answer = _answer(sock, limit)
            except TimeoutError:
                raise ControlError(
                    "timeout", f"the agent did not answer within {timeout:g} s"
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

    def start_session(
        self, label: str | None, strict: bool, tools: tuple[str, ...], node: str | None = None
    ) -> int:
        """A manual session's id; it carries `node`, or the agent's own node when None."""
        return int(self.ask(StartSession(label, strict, tools, node))["session"])

    def stop_session(self, session_id: int | None) -> tuple[int | None, str | None]:
        """(session id, verdict); verdict None when it is not open, id None when none is."""
        answer = self.ask(StopSession(session_id))
        return answer["session"], answer["verdict"]

    def sign_report(self, session_id: int, fmt: str) -> bytes:
        """The session's report in `fmt`, built and signed by the agent (egresswatch.report)."""
        answer = self.ask(SignReport(session_id, fmt), limit=MAX_REPORT, timeout=REPORT_TIMEOUT)
        report = answer.get("report")
        if not isinstance(report, str):
            raise ControlError("bad_answer", "the agent's answer holds no report")
        return report.encode("utf-8")


def _send(sock: socket.socket, line: bytes) -> None:
    # The agent may answer before reading (e.g. `forbidden`) and close: read that answer then.
    with contextlib.suppress(BrokenPipeError):
        sock.sendall(line)


def _answer(sock: socket.socket, limit: int) -> dict[str, Any]:
    data = bytearray()
    while True:
        chunk = sock.recv(min(1 << 20, limit + 1 - len(data)))
        if not chunk or len(data) + len(chunk) > limit:
            raise ControlError("bad_answer", "the agent's answer was cut short or too long")
        data += chunk
        if b"\n" in chunk:  # only the new bytes: a large answer is scanned once
            break
    try:
        answer = json.loads(data[: data.index(b"\n")])
    except ValueError as exc:
        raise ControlError("bad_answer", f"the agent's answer is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError("bad_answer", "the agent's answer is not a JSON object")
    return answer
