"""The webhook sink: one JSON (or ntfy) POST per alert, retried with back-off.

Presets: "generic" posts the `alerts --json` object, "slack" a Slack-compatible {"text": ...},
"ntfy" the message as the body with Title/Priority/Tags headers (ntfy's publish API).
"""

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from egresswatch.alerts.render import alert_to_dict
from egresswatch.counters import Counters
from egresswatch.model import Alert

NTFY_PRIORITY = {"info": "2", "low": "2", "medium": "3", "high": "4", "critical": "5"}
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 8.0


def _ascii(text: str) -> str:
    """Header-safe text: non-ASCII and control characters as escapes."""
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)[:250]


def build_request(url: str, preset: str, alert: Alert) -> urllib.request.Request:
    """The HTTP request for `alert` in the preset's shape."""
    headers = {"User-Agent": "egresswatch"}
    if preset == "ntfy":
        body = alert.message.encode("utf-8")
        headers |= {
            "Title": _ascii(f"egresswatch: {alert.rule} ({alert.severity})"),
            "Priority": NTFY_PRIORITY[alert.severity],
            "Tags": _ascii(alert.rule),
        }
    else:
        payload = (
            {"text": f"[{alert.severity}] {alert.message}"}
            if preset == "slack"
            else alert_to_dict(alert)
        )
        body = json.dumps(payload, ensure_ascii=True).encode()
        headers["Content-Type"] = "application/json"
    return urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310


@dataclass
class WebhookSink:
    """POSTs each alert; `retries` more attempts with doubling delays before giving up."""

    url: str
    preset: str = "generic"
    retries: int = 3
    timeout: float = 5.0
    name: str = "webhook"
    counters: Counters = field(default_factory=Counters)
    stop: threading.Event = field(default_factory=threading.Event)

    def send(self, alert: Alert) -> bool:
        delay = BACKOFF_FIRST
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters.add("sinks.webhook.retries")
                if self.stop.wait(delay):
                    return False
                delay = min(delay * 2, BACKOFF_MAX)
            if self._post(alert):
                return True
        return False

    def _post(self, alert: Alert) -> bool:
        request = build_request(self.url, self.preset, alert)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return 200 <= int(response.status) < 300
        except (urllib.error.URLError, OSError, ValueError) as err:
            self.counters.add(f"sinks.webhook.error.{type(err).__name__}")
            return False
