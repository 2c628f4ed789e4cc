"""Times as users type them: epoch seconds, ISO 8601 (UTC unless an offset is given), or an age
such as 15m, 24h or 7d (that long before now). Pure; the CLI and the web API wrap its ValueError.
"""

import math
import re
from datetime import UTC, datetime

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Years 1-9999, what a datetime can hold: a time outside them is a typo or an attack, and would
# overflow the bucket arithmetic and 64-bit integers further down (the API's timeline).
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def parse_when(text: str, now: float) -> float:
    """ValueError with the reason when `text` is none of the accepted forms."""
    text = text.strip()
    age = _AGE.match(text)
    if age:
        value = now - float(age.group(1)) * _UNIT_SECONDS[age.group(2)]
    else:
        try:
            value = float(text)
        except ValueError:
            value = _iso(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite time: {text[:64]!r}")
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"out of range (years 1-9999): {text[:64]!r}")
    return value


def _iso(text: str) -> float:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an epoch, ISO 8601 time or age like 15m: {text[:64]!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
