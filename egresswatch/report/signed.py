"""Signed report files and their verification.

Markdown and HTML: the signature covers every byte before its own last line,
`<!-- egresswatch-signature ed25519 PUBLIC SIGNATURE -->`. JSON: {"report": ..., "signature":
{...}}, the signature over the report's canonical JSON. `verify` also recomputes the evidence
SHA-256 from the store, so a deleted or altered evidence row fails too.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from egresswatch.report.evidence import canonical, evidence_records, evidence_sha256
from egresswatch.report.render import html_text, md_text, to_html, to_markdown
from egresswatch.report.signing import public_text, sign, valid

_TRAILER = re.compile(
    rb"\n<!-- egresswatch-signature ed25519 ([A-Za-z0-9+/=]+) ([A-Za-z0-9+/=]+) -->\n?\Z"
)
_MARKER = re.compile(
    rb"^<!-- egresswatch-report session=(\d+) evidence_sha256=([0-9a-f]{64}) -->$", re.M
)
FORMATS = ("md", "html", "json")


def signed_report(doc: dict[str, Any], fmt: str, key: Ed25519PrivateKey) -> bytes:
    """The file's bytes in `fmt` ("md", "html" or "json"), signed with `key`."""
    if fmt == "json":
        signature = {
            "algorithm": "ed25519",
            "public_key": public_text(key),
            "value": sign(key, canonical(doc)),
        }
        envelope = {"report": doc, "signature": signature}
        return (json.dumps(envelope, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    body = (to_markdown(doc) if fmt == "md" else to_html(doc)).encode("utf-8")
    return (
        body
        + f"<!-- egresswatch-signature ed25519 {public_text(key)} {sign(key, body)} -->\n".encode()
    )


def unsigned_report(doc: dict[str, Any], fmt: str, why: str) -> bytes:
    """The same report in `fmt` without a signature, saying so where a reader looks first:
    JSON `"signature": null` and `"unsigned": why`; a first line in Markdown and HTML.
    `verify` refuses it (no signature)."""
    if fmt == "json":
        envelope = {"report": doc, "signature": None, "unsigned": why}
        return (json.dumps(envelope, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    if fmt == "md":
        return (f"**UNSIGNED**: {md_text(why)}\n\n" + to_markdown(doc)).encode("utf-8")
    page = to_html(doc)
    cut = page.index("</h1>") + len("</h1>")
    line = f'\n<p class="unsigned"><strong>UNSIGNED</strong>: {html_text(why)}</p>'
    return (page[:cut] + line + page[cut:]).encode("utf-8")


@dataclass
class Verdict:
    """What `report verify` found: the session, the signing key, and every problem."""

    session: int | None = None
    public_key: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.session is not None


def verify_report(data: bytes, engine: Engine) -> Verdict:
    verdict = Verdict()
    claimed = (
        _check_json(data, verdict) if data.lstrip().startswith(b"{") else _check_text(data, verdict)
    )
    if claimed is None:
        return verdict
    verdict.session, sha = claimed
    current = evidence_sha256(evidence_records(engine, verdict.session))
    if current != sha:
        verdict.problems.append(
            f"the store's evidence for session {verdict.session} no longer matches the report "
            "(an evidence event was changed or deleted)"
        )
    return verdict


def _check_text(data: bytes, verdict: Verdict) -> tuple[int, str] | None:
    trailer = _TRAILER.search(data)
    if trailer is None:
        verdict.problems.append("no egresswatch signature line at the end of the file")
        return None
    body = data[: trailer.start() + 1]
    verdict.public_key = trailer.group(1).decode()
    if not valid(verdict.public_key, trailer.group(2).decode(), body):
        verdict.problems.append("the signature does not match the file's content")
        return None
    marker = _MARKER.search(body)
    if marker is None:
        verdict.problems.append("no egresswatch-report line in the signed content")
        return None
    return int(marker.group(1)), marker.group(2).decode()


def _check_json(data: bytes, verdict: Verdict) -> tuple[int, str] | None:
    try:
        envelope = json.loads(data)
        doc, signature = envelope["report"], envelope["signature"]
        verdict.public_key = str(signature["public_key"])
        signed_ok = valid(verdict.public_key, str(signature["value"]), canonical(doc))
        claimed = int(doc["session"]["id"]), str(doc["evidence_sha256"])
        inner_ok = evidence_sha256(doc["evidence"]) == claimed[1]
    except (ValueError, KeyError, TypeError) as err:
        verdict.problems.append(f"not an egresswatch JSON report: {err}")
        return None
    if not signed_ok:
        verdict.problems.append("the signature does not match the file's content")
        return None
    if not inner_ok:
        verdict.problems.append("the evidence listed does not match its SHA-256")
        return None
    return claimed
