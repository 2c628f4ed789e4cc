"""Regenerate egresswatch/data/shadowwhisperer-lists.csv from a ShadowWhisperer/BlockLists snapshot.

    python scripts/flatten_shadowwhisperer.py GITDIR COMMIT \
        > egresswatch/data/shadowwhisperer-lists.csv

GITDIR is a bare clone (what the `fetch` tool or `git clone --bare` gives); only COMMIT is read.
The lists are in the public domain (the Unlicense: egresswatch/data/shadowwhisperer-LICENSE).
`Wild_*` lists cover a domain and its subdomains (kind domain); the others name exact hosts (full).
Only the lists whose stated purpose is one of egresswatch's categories are read (LISTS).
"""

import subprocess
import sys

# list file -> (kind, category); the list's own description in its header says why.
LISTS = {
    "Wild_Tracking": (
        "domain",
        "telemetry",
    ),  # "Analytics, Diagnostics, Metrics, Public IP, Location"
    "Wild_Tunnel": ("domain", "mesh-vpn"),  # "VPNs & Proxies" (wildcard)
    "DNS": ("full", "doh-dot"),  # "DNS Resolvers"
    "AI": ("full", "ai-service"),  # "LLMs, Chatbots, Music/Photo/Video generation"
}


def main() -> None:
    gitdir, commit = sys.argv[1], sys.argv[2]
    print(
        "# Lists of ShadowWhisperer/BlockLists (public domain, Unlicense: shadowwhisperer-LICENSE)."
    )
    print(f"# Pinned: github.com/ShadowWhisperer/BlockLists commit {commit}.")
    print(
        "# Regenerate: python scripts/flatten_shadowwhisperer.py GITDIR COMMIT (lists, categories)."
    )
    print(
        "# kind domain = the domain and every subdomain (Wild_* lists); full = exactly that host."
    )
    print("kind,domain,list,category")
    seen: set[str] = set()
    for name, (kind, category) in LISTS.items():
        text = subprocess.run(
            ["git", "--git-dir", gitdir, "show", f"{commit}:Lists/{name}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        for line in text.splitlines():
            domain = line.strip().lower()
            if domain and not domain.startswith("#") and "," not in domain and domain not in seen:
                seen.add(domain)
                print(f"{kind},{domain},{name},{category}")


if __name__ == "__main__":
    main()
