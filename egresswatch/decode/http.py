"""The request line of a plaintext HTTP/1.x request (`POST /api/generate HTTP/1.1`), from the
first bytes of a TCP stream. Pure; reads nothing past the first CRLF (never headers or bodies).
"""

import re

# A request line longer than this is not one we need: inference routes are short.
MAX_LINE = 256
_REQUEST = re.compile(rb"^([A-Z]{3,7}) (/[\x21-\x7e]{0,240}) HTTP/1\.[01]$")


def looks_like_http_request(payload: bytes) -> bool:
    """Cheap test before `request_line`: starts with an upper-case method and a space."""
    head = payload[:8]
    space = head.find(b" ")
    return 3 <= space <= 7 and head[:space].isupper() and head[:space].isalpha()


def request_line(payload: bytes) -> tuple[str, str] | None:
    """(method, path without the query) of the request line, or None if there is none."""
    end = payload.find(b"\r\n", 0, MAX_LINE)
    if end < 0:
        return None
    match = _REQUEST.match(payload[:end])
    if match is None:
        return None
    path = match.group(2).split(b"?", 1)[0].decode("ascii")
    return match.group(1).decode("ascii"), path
