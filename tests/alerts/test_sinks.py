"""Sinks against real receivers: an HTTP server for the webhook, a unix socket for journald."""

import json
import socket
import struct
import time
from pathlib import Path

import pytest

from egresswatch.alerts.journal import JournalSink, encode_fields
from egresswatch.alerts.sinks import Delivery
from egresswatch.alerts.webhook import WebhookSink
from egresswatch.model import Alert
from tests.alerts.receiver import receiver

HOSTILE = "evil\x1b]0;pwn\x07\u202e.example\n"
ALERT = Alert(
    "egress-during-session",
    "critical",
    1000.0,
    f"ollama (pid 812, /usr/bin/ollama) contacted {HOSTILE} [unknown] during session 7",
    session=7,
    tool="Ollama",
    pid=812,
    process="ollama",
    exe="/usr/bin/ollama",
    host=HOSTILE,
    category="unknown",
    event_id=41,
    id=3,
)


@pytest.mark.parametrize("preset", ["generic", "slack", "ntfy"])
def test_webhook_presets_post_to_a_real_receiver(preset: str) -> None:
    with receiver() as got:
        assert WebhookSink(got.url, preset).send(ALERT)
    ((headers, body),) = got.posts
    if preset == "generic":
        payload = json.loads(body)
        assert payload["id"] == 3 and payload["rule"] == "egress-during-session"
        assert payload["host"] == HOSTILE and body.isascii()
    elif preset == "slack":
        assert json.loads(body) == {"text": f"[critical] {ALERT.message}"}
    else:
        assert body.decode() == ALERT.message
        assert headers["Priority"] == "5" and headers["Tags"] == "egress-during-session"


def test_webhook_retries_with_back_off_then_delivers() -> None:
    with receiver(fail_first=2) as got:
        sink = WebhookSink(got.url, retries=3)
        assert sink.send(ALERT)
    assert len(got.posts) == 1
    assert sink.counters.snapshot()["sinks.webhook.retries"] == 2


def test_a_dead_or_slow_receiver_never_blocks_delivery_and_is_counted() -> None:
    with receiver() as got:
        dead_url = got.url
    dead = WebhookSink(dead_url, retries=1)
    with receiver(delay=2.0) as slow_got:
        slow = WebhookSink(slow_got.url, retries=0, timeout=0.3, name="slow")
        delivery = Delivery([(dead, "low"), (slow, "low")]).start()
        started = time.monotonic()
        for _ in range(50):
            delivery.send(ALERT)
        assert time.monotonic() - started < 0.5  # queued, not sent, on the caller's thread
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            delivery.counters.snapshot().get("sinks.webhook.failed")
            and delivery.counters.snapshot().get("sinks.slow.failed")
        ):
            time.sleep(0.05)
        dead.stop.set()
        slow.stop.set()
        delivery.close(timeout=0.1)
    assert dead.counters.snapshot()["sinks.webhook.retries"] >= 1
    assert any(k.startswith("sinks.webhook.error.") for k in slow.counters.snapshot())


def test_delivery_respects_each_sinks_minimum_severity() -> None:
    with receiver() as got:
        delivery = Delivery([(WebhookSink(got.url), "critical")]).start()
        low = Alert("new-destination", "low", 1.0, "m", id=1)
        delivery.send(low)
        delivery.send(ALERT)
        assert got.wait(1)
        delivery.close()
    assert [b["id"] for b in got.json_bodies()] == [3]


def test_journald_native_protocol_over_a_real_socket(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(str(path))
        assert JournalSink(str(path)).send(ALERT)
        datagram = journal.recv(65536)
    fields = parse_journal(datagram)
    assert fields["PRIORITY"] == b"2" and fields["SYSLOG_IDENTIFIER"] == b"egresswatch"
    assert fields["EGRESSWATCH_RULE"] == b"egress-during-session"
    assert fields["EGRESSWATCH_SESSION"] == b"7" and fields["EGRESSWATCH_PID"] == b"812"
    assert fields["EGRESSWATCH_HOST"] == HOSTILE.encode()  # binary-safe: the newline survives
    assert fields["MESSAGE"] == ALERT.message.encode()


def parse_journal(data: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    while data:
        line_end = data.index(b"\n")
        line = data[:line_end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            data = data[line_end + 1 :]
        else:
            (size,) = struct.unpack("<Q", data[line_end + 1 : line_end + 9])
            key, value = line, data[line_end + 9 : line_end + 9 + size]
            data = data[line_end + 10 + size :]
        fields[key.decode()] = value
    return fields


def test_without_a_journal_alerts_go_to_stderr_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert JournalSink(str(tmp_path / "absent.sock")).send(ALERT)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err
    assert "egress-during-session" in err and "\\x1b" in err
    assert encode_fields({"A": "b"}) == b"A=b\n"
