"""The control channel's wire format: one JSON object per line each way, bounded in size, and
the few requests it carries (validated here, before anything touches the store).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from egresswatch.config import check_node
from egresswatch.errors import StoreError

MAX_LINE = 16 * 1024  # bytes, newline included, each way
MAX_REPORT = 64 * 1024 * 1024  # bytes of a report.sign answer (the signed report inside)
REPORT_TIMEOUT = 120.0  # seconds a client waits for a signed report (it reads every event)
REPORT_FORMATS = ("md", "html", "json")
MAX_IDS = 1000
MAX_LABEL = 255
MAX_TOOLS = 64
TIMEOUT = 5.0
RUN_DIR = Path("/run/egresswatch")
SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL
ENV_PATH = "EGRESSWATCH_CONTROL"


class ControlError(StoreError):
    """The agent answered with an error (`code` as in the answer), or could not be asked."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class BadRequest(ValueError):
    """A request the agent refuses; `code` goes into the answer."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Ack:
    ids: tuple[int, ...]


@dataclass(frozen=True)
class StartSession:
    label: str | None
    strict: bool
    tools: tuple[str, ...]
    node: str | None = None  # None: the agent's own `[agent] node`


@dataclass(frozen=True)
class StopSession:
    session: int | None  # None: the newest open manual session


@dataclass(frozen=True)
class SignReport:
    """The session's canonical report (egresswatch.report), built and signed by the agent with
    the machine key the asker cannot read; the asker names the session, never sends bytes."""

    session: int
    format: str  # one of REPORT_FORMATS


WriteRequest = Ack | StartSession | StopSession  # run by the store's single writer
Request = WriteRequest | SignReport


def socket_path(db_url: str) -> Path:
    """Where the agent for the store at `db_url` listens: $EGRESSWATCH_CONTROL, else beside a
    SQLite store's file, else /run/egresswatch (root) or $XDG_RUNTIME_DIR.
    """
    if os.environ.get(ENV_PATH):
        return Path(os.environ[ENV_PATH])
    url = make_url(db_url)
    database = url.database or ""
    is_file = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and is_file:
        db = Path(database).absolute()
        return db.with_name(db.name + ".control")
    if os.geteuid() == 0:
        return RUN_DIR / "control.sock"
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "egresswatch-control.sock"  # noqa: S108


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def error(code: str, detail: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "detail": detail}


def parse_request(line: bytes) -> Request:
    """The request on one line; BadRequest says what is wrong with it."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("bad_json", f"not a JSON object: {exc}") from None
    if not isinstance(message, dict):
        raise BadRequest("bad_json", "not a JSON object")
    command = message.get("cmd")
    if command == "ack":
        return Ack(_ids(message.get("ids")))
    if command == "session_start":
        return _start(message)
    if command == "session_stop":
        sid = message.get("session")
        return StopSession(None if sid is None else _id(sid))
    if command == "report.sign":
        return _sign(message)
    raise BadRequest("unknown_command", f"unknown command {str(command)[:40]!r}: "
                     "ack, session_start, session_stop or report.sign")  # fmt: skip


def request_message(request: Request) -> dict[str, Any]:
    """The JSON object for `request` (the client's side of parse_request)."""
    if isinstance(request, Ack):
        return {"cmd": "ack", "ids": list(request.ids)}
    if isinstance(request, StartSession):
        message = {"cmd": "session_start", "label": request.label, "strict": request.strict,
                   "tools": list(request.tools)}  # fmt: skip
        if request.node is not None:
            message["node"] = request.node
        return message
    if isinstance(request, SignReport):
        return {"cmd": "report.sign", "session": request.session, "format": request.format}
    return {"cmd": "session_stop", "session": request.session}


def _id(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= 2**62:
        raise BadRequest("bad_request", "ids are integers from 1 to 2**62")
    return value


def _ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IDS:
        raise BadRequest("bad_request", f"ids: a list of 1 to {MAX_IDS} alert ids")
    return tuple(_id(v) for v in value)


def _start(message: dict[str, Any]) -> StartSession:
    label, strict = message.get("label"), message.get("strict", False)
    tools = message.get("tools", [])
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        raise BadRequest("bad_request", f"label: a string of at most {MAX_LABEL} characters")
    if not isinstance(strict, bool):
        raise BadRequest("bad_request", "strict: true or false")
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise BadRequest("bad_request", f"tools: a list of at most {MAX_TOOLS} names")
    if not all(isinstance(t, str) and 0 < len(t) <= MAX_LABEL for t in tools):
        raise BadRequest("bad_request", "tools: non-empty names")
    return StartSession(label, strict, tuple(tools), _node(message.get("node")))


def _node(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return check_node(value) if isinstance(value, str) else check_node("")
    except ValueError as exc:
        raise BadRequest("bad_request", f"node: {exc}") from None


def _sign(message: dict[str, Any]) -> SignReport:
    fmt = message.get("format", "json")
    if fmt not in REPORT_FORMATS:
        raise BadRequest("bad_request", f"format: one of {', '.join(REPORT_FORMATS)}")
    return SignReport(_id(message.get("session")), fmt)
