"""The exception tree of egresswatch.

EgressWatchError
├── ConfigError      bad or missing configuration; stops start-up with one clear line
├── CaptureError     a capture source could not be opened or read
├── DecodeError      untrusted bytes that are not what they claim; `reason` is a counter key
├── AttributionError a flow could not be tied to a process; `reason` is recorded
└── StoreError       the event store cannot be read or written
"""


class EgressWatchError(Exception):
    """Base of every error egresswatch raises on purpose."""


class ConfigError(EgressWatchError):
    """Configuration is missing or invalid."""


class CaptureError(EgressWatchError):
    """A packet source could not be opened or read."""


class DecodeError(EgressWatchError):
    """Bytes from the wire are malformed; `reason` names the counter to bump."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class AttributionError(EgressWatchError):
    """A flow could not be attributed; `reason` is kept with the event."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class StoreError(EgressWatchError):
    """The event store cannot be used."""
