"""A report document as Markdown or HTML for people; every attacker-controlled string (host
names, process names, messages) is escaped for the format it lands in."""

import html
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from egresswatch.output import printable

# Inline markup (emphasis, code, links, HTML, tables); "-", "." and "+" only matter at a line
# start, which escaped text never is.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>~#])")
Escape = Callable[[Any], str]


def md_text(value: Any) -> str:
    """Markdown-inert text: control characters as escapes, markup characters backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", printable("" if value is None else str(value)))


def html_text(value: Any) -> str:
    return html.escape(printable("" if value is None else str(value)), quote=True)


def _when(ts: Any) -> str:
    return "-" if ts is None else datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")


def _tables(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    evidence = doc["evidence"]
    return [
        (
            "Egress by tool, process and category",
            ["tool", "process", "category", "hosts", "events"],
            [
                [g["tool"], g["process"], g["category"], ", ".join(g["hosts"]), g["events"]]
                for g in doc["groups"]
            ],
        ),
        (
            "Alerts",
            ["id", "severity", "rule", "count", "message"],
            [[a["id"], a["severity"], a["rule"], a["count"], a["message"]] for a in doc["alerts"]],
        ),
        (
            f"Evidence ({len(evidence)} events, SHA-256 {doc['evidence_sha256']})",
            ["event", "time", "kind", "process", "pid", "destination", "host", "category"],
            [
                [
                    r["event_id"],
                    _when(r["ts"]),
                    r["kind"],
                    r["process"],
                    r["pid"],
                    f"{r['dst']}:{r['dport']}",
                    r["host"],
                    r["category"],
                ]
                for r in evidence
            ],
        ),
        (
            "Remediation: settings that turn it off",
            ["tool", "setting", "stops what was seen", "source"],
            [
                [
                    s["tool"],
                    s["setting"],
                    "yes" if s["stops_what_was_seen"] else "no: see the blocks below",
                    s["source"],
                ]
                for s in doc["remediation"]["switches"]
            ],
        ),
    ]


def _facts(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    s = doc["session"]
    return [
        ("Session", s["id"]),
        ("Trigger", s["trigger"]),
        ("Label", s["label"]),
        ("Strict", "yes" if s["strict"] else "no"),
        ("Tools", ", ".join(s["tools"]) or "all recognised LLM tools"),
        ("Start", _when(s["start"])),
        ("End", _when(s["end"])),
        ("Verdict", s["verdict"]),
        ("Machine", doc["machine"]),
    ]


def marker(doc: dict[str, Any]) -> str:
    """The machine-readable line `report verify` reads (inside the signed body)."""
    sid, sha = int(doc["session"]["id"]), doc["evidence_sha256"]
    return f"<!-- egresswatch-report session={sid} evidence_sha256={sha} -->"


def to_markdown(doc: dict[str, Any]) -> str:
    out = [
        f"# egresswatch session report: session {int(doc['session']['id'])}",
        "",
        f"**{md_text(doc['summary'])}**",
        "",
    ]
    out += [f"- {name}: {md_text(value)}" for name, value in _facts(doc)]
    for title, header, rows in _tables(doc):
        out += [
            "",
            f"## {md_text(title)}",
            "",
            _md_row(header),
            _md_row(["---"] * len(header), raw=True),
        ]
        out += [_md_row(row) for row in rows] or ["_none_"]
    out += ["", "## Ready-to-paste blocks (never applied by egresswatch)"]
    for name, block in doc["remediation"]["paste"].items():
        out += ["", f"### {name}", "", "```", block, "```"]
    return "\n".join([*out, "", marker(doc), ""])


def _md_row(cells: Sequence[Any], raw: bool = False) -> str:
    return "| " + " | ".join(str(c) if raw else md_text(c) for c in cells) + " |"


def to_html(doc: dict[str, Any]) -> str:
    sid = int(doc["session"]["id"])
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>egresswatch session report: session {sid}</title></head><body>",
        f"<h1>egresswatch session report: session {sid}</h1>",
        f"<p><strong>{html_text(doc['summary'])}</strong></p>",
        "<ul>",
        *[f"<li>{name}: {html_text(value)}</li>" for name, value in _facts(doc)],
        "</ul>",
    ]
    for title, header, rows in _tables(doc):
        out += [f"<h2>{html_text(title)}</h2>", "<table>", _html_row(header, "th")]
        out += [_html_row(row, "td") for row in rows]
        out.append("</table>")
    out.append("<h2>Ready-to-paste blocks (never applied by egresswatch)</h2>")
    for name, block in doc["remediation"]["paste"].items():
        out += [f"<h3>{html_text(name)}</h3>", f"<pre>{html_text(block)}</pre>"]
    return "\n".join([*out, "</body></html>", marker(doc), ""])


def _html_row(cells: Sequence[Any], tag: str) -> str:
    return "<tr>" + "".join(f"<{tag}>{html_text(c)}</{tag}>" for c in cells) + "</tr>"
