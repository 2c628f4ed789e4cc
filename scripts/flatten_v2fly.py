"""Regenerate the rows of egresswatch/data/v2fly-lists.csv from a domain-list-community snapshot.

    python scripts/flatten_v2fly.py GITDIR COMMIT > /tmp/v2fly-rows.csv
    python scripts/flatten_v2fly.py GITDIR COMMIT --check egresswatch/data/v2fly-lists.csv

GITDIR is a bare clone (what the `fetch` tool or `git clone --bare` gives); only COMMIT's data/
files are read. Each list in LISTS is flattened: `include:` lines are followed (with their
`@attribute` / `@-attribute` filters), `regexp:` and `keyword:` rules and `@cn`-tagged entries are
left out. A domain already emitted by an earlier list keeps that row. In the first part, subtree
rows (`kind` domain) come first, then exact hosts (full), each sorted; the later parts keep the
order they are read in (includes in place). The vendored file is its header comment block, then
these rows; `--check FILE` compares them with FILE's rows instead of printing them.
"""

import subprocess
import sys
from collections.abc import Iterator

# (list, category) in the order they were added; a later list never overrides an earlier row.
PARTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("sentry", "crash-report"), ("category-doh", "doh-dot"),
        ("category-proxy-tunnels", "mesh-vpn"), ("category-vpnservices", "mesh-vpn"),
        ("category-container", "package-registry"), ("category-ip-geo-detect", "telemetry"),
        ("category-ntp", "other"), ("category-ads-all", "telemetry"),
        ("category-ai-!cn", "ai-service"), ("category-forums", "docs-web"),
        ("category-dev", "package-registry"),
    ),
    (
        ("connectivity-check", "other"), ("duckduckgo", "web-search"),
        ("category-ai-cn", "ai-service"), ("category-ai-chat-!cn", "ai-service"),
        ("category-speedtest", "other"), ("category-scholar-!cn", "docs-web"),
        ("python", "package-registry"), ("npmjs", "package-registry"),
        ("docker", "package-registry"), ("homebrew", "package-registry"),
    ),
    (
        ("category-social-media-!cn", "other"), ("category-media", "other"),
        ("category-entertainment", "other"), ("category-ecommerce", "other"),
        ("category-games", "other"), ("category-communication", "other"),
        ("category-cdn-!cn", "other"), ("google", "other"), ("apple", "other"),
        ("amazon", "other"), ("microsoft", "other"),
    ),
)  # fmt: skip
MAX_INCLUDE_DEPTH = 32


class Snapshot:
    def __init__(self, gitdir: str, commit: str) -> None:
        self.gitdir, self.commit = gitdir, commit

    def read(self, name: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", self.gitdir, "show", f"{self.commit}:data/{name}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip


def _keeps(attrs: set[str], wanted: set[str], unwanted: set[str]) -> bool:
    return wanted <= attrs and not attrs & unwanted


def entries(
    snap: Snapshot, name: str, wanted: set[str], unwanted: set[str], depth: int = 0
) -> Iterator[tuple[str, str]]:
    """(kind, domain) of one list, includes followed, filtered by attributes."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ValueError(f"include loop at {name}")
    for raw in snap.read(name).splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        rule, attrs = words[0], {w[1:] for w in words[1:] if w.startswith("@")}
        if rule.startswith("include:"):
            filters = [w for w in words[1:] if w.startswith("@")]
            plus = {f[1:] for f in filters if not f.startswith("@-")} | wanted
            minus = {f[2:] for f in filters if f.startswith("@-")} | unwanted
            yield from entries(snap, rule[len("include:"):], plus, minus, depth + 1)
            continue
        if rule.startswith(("regexp:", "keyword:")) or "cn" in attrs:
            continue
        if not _keeps(attrs, wanted, unwanted):
            continue
        kind, _, domain = rule.rpartition(":") if ":" in rule else ("domain", "", rule)
        if kind in ("domain", "full"):
            yield kind, domain.lower()


def rows(snap: Snapshot) -> Iterator[str]:
    seen: set[str] = set()
    for index, part in enumerate(PARTS):
        for name, category in part:
            found = list(entries(snap, name, set(), set()))
            if index == 0:  # the first part was written sorted; later ones in reading order
                found = sorted(set(found))
            for kind, domain in found:
                if domain not in seen:
                    seen.add(domain)
                    yield f"{kind},{domain},{name},{category}"


def main() -> None:
    made = list(rows(Snapshot(sys.argv[1], sys.argv[2])))
    if len(sys.argv) > 4 and sys.argv[3] == "--check":
        with open(sys.argv[4], encoding="utf-8") as vendored:
            kept = [
                line.rstrip("\n") for line in vendored
                if line.strip() and not line.startswith(("#", "kind,"))
            ]  # fmt: skip
        same = kept == made
        verdict = "identical" if same else "DIFFERENT"
        print(f"{len(made)} rows made, {len(kept)} vendored: {verdict}")
        sys.exit(0 if same else 1)
    for row in made:
        print(row)


if __name__ == "__main__":
    main()
