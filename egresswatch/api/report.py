"""A session's verdict report as Markdown and as a plain standalone HTML page (every value
escaped; no script, no inline style: the app's CSP forbids both)."""

import html
from datetime import UTC, datetime

from egresswatch.api.schemas import SessionReportOut


def _when(ts: float | None) -> str:
    if ts is None:
        return "open"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _md(text: object) -> str:
    """Markdown-inert text: every punctuation character that Markdown or HTML could act on is
    backslash-escaped, and line breaks and control characters are shown as escapes."""
    out = []
    for ch in str(text):
        if ch in "\\`*_{}[]()#+-.!|<>&\"'~=":
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def report_markdown(report: SessionReportOut) -> str:
    s = report.session
    lines = [
        f"# Session {s.id}: {s.verdict}",
        "",
        f"- started: {_when(s.start)}",
        f"- ended: {_when(s.end)}",
        f"- trigger: {s.trigger}; strict: {'yes' if s.strict else 'no'}",
        f"- tools: {_md(', '.join(s.tools) or 'LLM tools')}",
        f"- label: {_md(s.label or '')}",
        f"- egress events: {s.egress}; alerts: {s.alerts}",
        "",
        "## Alerts",
        "",
    ]
    lines += [
        f"- **{a.severity}** {_md(a.rule)}: {_md(a.message)} (x{a.count})" for a in report.alerts
    ]
    lines += ["", f"## Evidence ({report.evidence_total} events)", ""]
    lines += [
        f"- {_when(e.ts)} {e.kind} {_md(e.process or e.attribution)} to {_md(e.host or e.dst)}"
        f" ({_md(e.category or 'unknown')})"
        for e in report.evidence
    ]
    return "\n".join(lines) + "\n"


def report_html(report: SessionReportOut) -> str:
    s = report.session
    esc = html.escape
    alerts = "".join(
        f"<tr><td>{esc(a.severity)}</td><td>{esc(a.rule)}</td><td>{esc(a.message)}</td>"
        f"<td>{a.count}</td></tr>"
        for a in report.alerts
    )
    evidence = "".join(
        f"<tr><td>{esc(_when(e.ts))}</td><td>{esc(e.kind)}</td>"
        f"<td>{esc(e.process or e.attribution)}</td><td>{esc(e.host or e.dst)}</td>"
        f"<td>{esc(e.category or 'unknown')}</td></tr>"
        for e in report.evidence
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Session {s.id}: {esc(s.verdict)}</title></head><body>"
        f"<h1>Session {s.id}: {esc(s.verdict)}</h1>"
        f"<p>{esc(_when(s.start))} to {esc(_when(s.end))}; trigger {esc(s.trigger)}; "
        f"tools {esc(', '.join(s.tools) or 'LLM tools')}; label {esc(s.label or '')}; "
        f"egress events {s.egress}; alerts {s.alerts}</p>"
        "<h2>Alerts</h2><table><tr><th>Severity</th><th>Rule</th><th>Message</th><th>Count</th>"
        f"</tr>{alerts}</table>"
        f"<h2>Evidence ({report.evidence_total} events)</h2><table><tr><th>Time</th><th>Kind</th>"
        f"<th>Process</th><th>Destination</th><th>Category</th></tr>{evidence}</table>"
        "</body></html>"
    )
