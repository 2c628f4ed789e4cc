"""Regenerate egresswatch/data/lib-hosts.csv from pinned snapshots of tool libraries' source.

    python scripts/mine_lib_hosts.py GITDIR=OWNER/REPO@COMMIT [...] > egresswatch/data/lib-hosts.csv

Used for egresswatch/data/lib-hosts.csv (GITDIR is where `fetch` put the snapshot):

    python scripts/mine_lib_hosts.py \
      $M/langchain-ai+langchain-community/repo=langchain-ai/langchain-community@$LC \
      $M/vercel+ai/repo=vercel/ai@ed857f50f112e23930b0c2dd8d532cc8bebbc911

with M=/work/.mirror and LC=bc87773064735e649cfd798185502e156d5e948a.

Each GITDIR is a bare clone (e.g. what the `fetch` tool or `git clone --bare` gives); only the
pinned COMMIT is read (`git ls-tree`/`git show`), nothing is run. A host counts when a Python string
constant (or, in TypeScript provider files, a string literal outside comments) that is a whole
URL (not a docstring, not inside a sentence) names it as a default endpoint; its category
comes from where the library files the code (RULES, the library's own taxonomy), never from the
host's name. Local, example and documentation hosts are left out.
"""

import ast
import csv
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

# (repository, path prefix, file-name words (any) or None, category): first rule that fits wins.
RULES: tuple[tuple[str, str, tuple[str, ...] | None, str], ...] = (
    ("langchain-ai/langchain-community", "libs/community/langchain_community/utilities/",
     ("search", "serp", "searx", "tavily", "you.py", "exa", "jina"), "web-search"),
    ("langchain-ai/langchain-community", "libs/community/langchain_community/tools/",
     ("search", "serp", "searx", "tavily", "you", "exa", "jina"), "web-search"),
    ("langchain-ai/langchain-community", "libs/community/langchain_community/retrievers/",
     ("search", "serp", "tavily", "you.py", "exa", "jina"), "web-search"),
    ("langchain-ai/langchain-community", "libs/community/langchain_community/llms/", None,
     "cloud-llm-api"),
    ("langchain-ai/langchain-community", "libs/community/langchain_community/chat_models/", None,
     "cloud-llm-api"),
    ("langchain-ai/langchain-community", "libs/community/langchain_community/embeddings/", None,
     "cloud-llm-api"),
    ("langchain-ai/langchain-community", "libs/community/langchain_community/callbacks/", None,
     "telemetry"),
    # the AI SDK's provider packages: packages/<provider>/src/<provider>-provider.ts
    ("vercel/ai", "packages/", ("-provider.ts",), "cloud-llm-api"),
)  # fmt: skip
# vercel/ai packages that are not a provider of their own (helpers, UI, user-given endpoints).
NOT_PROVIDERS = ("packages/provider-utils/", "packages/svelte/", "packages/open-responses/",
                 "packages/openai-compatible/")  # fmt: skip
_TS_URL = re.compile(r"""['"`](https?://[^'"`\s]+)['"`]""")
NOT_ENDPOINTS = (
    "localhost", "127.0.0.1", "0.0.0.0",  # noqa: S104 (names to leave out)
    "example.com", "example.org", "github.com",
    "raw.githubusercontent.com", "python.langchain.com", "docs.", "readthedocs", "huggingface.co",
    "arxiv.org", "wikipedia.org", "pypi.org", "www.w3.org", "json-schema.org", "youtube.com",
    "tfhub.dev",
)  # fmt: skip


def git(gitdir: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", gitdir, *args], check=True, capture_output=True, text=True
    ).stdout


def _rule(repo: str, path: str) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    if path.startswith(NOT_PROVIDERS) or ".test." in name:
        return None
    for rule_repo, prefix, words, category in RULES:
        source = path.endswith(".py") or (path.endswith(".ts") and path.count("/") == 3)
        fits = repo == rule_repo and path.startswith(prefix) and source
        if fits and (words is None or any(w in name for w in words)):
            return category
    return None


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    ids.add(id(stmt.value))
    return ids


def ts_url_hosts(source: str) -> Iterator[tuple[str, int]]:
    """(host, line) for each TypeScript string literal that is a whole http(s) URL (no `${`)."""
    for number, line in enumerate(source.splitlines(), 1):
        if line.lstrip().startswith(("//", "*", "/*")):
            continue  # comments and doc blocks
        for url in _TS_URL.findall(line):
            host = (urlsplit(url).hostname or "").lower().rstrip(".")
            if "." in host and "$" not in url.split("/")[2] and not _not_endpoint(host):
                yield host, number


def _not_endpoint(host: str) -> bool:
    return any(n in host for n in NOT_ENDPOINTS)


def url_hosts(source: str) -> Iterator[tuple[str, int]]:
    """(host, line) for each string constant that is a whole http(s) URL (f-string heads too)."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if (
            not isinstance(node, ast.Constant)
            or not isinstance(node.value, str)
            or id(node) in skip
        ):
            continue
        text = node.value.strip()
        if not text.startswith(("https://", "http://")) or " " in text:
            continue
        host = (urlsplit(text).hostname or "").lower().rstrip(".")
        if "." in host and "{" not in host and not any(n in host for n in NOT_ENDPOINTS):
            yield host, node.lineno


def mine(gitdir: str, repo: str, commit: str) -> Iterator[tuple[str, str, str]]:
    for path in git(gitdir, "ls-tree", "-r", "--name-only", commit).splitlines():
        category = _rule(repo, path)
        if category is None:
            continue
        text = git(gitdir, "show", f"{commit}:{path}")
        try:
            found = list(ts_url_hosts(text) if path.endswith(".ts") else url_hosts(text))
        except SyntaxError as exc:
            print(f"# skipped {path}: {exc.msg}", file=sys.stderr)
            continue
        for host, line in found:
            yield host, category, f"{repo}@{commit[:8]} {path}:{line}"


def _list_name(repo: str) -> str:
    """The repository's name, or owner-name when the name alone says little ("ai")."""
    name = repo.rsplit("/", 1)[-1]
    return name if len(name) > 3 else repo.replace("/", "-")


TRANSCRIBED = Path(__file__).with_name("lib-hosts-transcribed.csv")


def transcribed() -> Iterator[tuple[str, str, str]]:
    """Rows read through the source index or a fetched snapshot at the cited commit (`*.domain`
    stands for the domain and its subdomains)."""
    lines = [
        line for line in TRANSCRIBED.read_text("utf-8").splitlines() if not line.startswith("#")
    ]
    for row in csv.DictReader(lines):
        yield row["host"], row["category"], row["source"]


def main() -> None:
    seen: set[str] = set()
    print("# Host literals of tool libraries (pinned commits below), categorised by where the")
    print("# library files the code (scripts/mine_lib_hosts.py RULES). Regenerate with:")
    pinned = " ".join("GITDIR=" + arg.partition("=")[2] for arg in sys.argv[1:])
    print("#   python scripts/mine_lib_hosts.py " + pinned)
    print(
        "# and the rows of scripts/lib-hosts-transcribed.csv (read through the source index)."
    )
    print(
        "# Licences: langchain-community, litellm, NextChat MIT; vercel/ai Apache-2.0; Open WebUI"
    )
    print("# its own BSD-style licence; the SDKs and agents added on 2026-12-05 MIT, Apache-2.0,")
    print("# BSD or MPL-2.0. Only host names (facts) and where they were read are kept.")
    print("kind,domain,list,category,source")
    for arg in sys.argv[1:]:
        gitdir, _, pinned = arg.partition("=")
        repo, _, commit = pinned.partition("@")
        for host, category, source in sorted(mine(gitdir, repo, commit)):
            if host not in seen:
                seen.add(host)
                print(f"full,{host},{_list_name(repo)},{category},{source}")
    for host, category, source in transcribed():
        if host not in seen:
            seen.add(host)
            kind, name = ("domain", host[2:]) if host.startswith("*.") else ("full", host)
            print(f"{kind},{name},{source.split('/')[1].split('@')[0]},{category},{source}")


if __name__ == "__main__":
    main()
