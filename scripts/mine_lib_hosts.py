"""Regenerate egresswatch/data/lib-hosts.csv from pinned snapshots of tool libraries' source.

    python scripts/mine_lib_hosts.py GITDIR=OWNER/REPO@COMMIT [...] > egresswatch/data/lib-hosts.csv

Used for egresswatch/data/lib-hosts.csv (GITDIR is where `fetch` put the snapshot):

    python scripts/mine_lib_hosts.py \
      /work/.mirror/langchain-ai+langchain-community/repo=langchain-ai/langchain-community@bc87773064735e649cfd798185502e156d5e948a

Each GITDIR is a bare clone (e.g. what the `fetch` tool or `git clone --bare` gives); only the
pinned COMMIT is read (`git ls-tree`/`git show`), nothing is run. A host counts when a Python string
constant that is a whole URL (not a docstring, not inside a sentence) names it as a default
endpoint; its category comes from where the library files the code (RULES, the library's own
taxonomy), never from the host's name. Local, example and documentation hosts are left out.
"""

import ast
import csv
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
)  # fmt: skip
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
    for rule_repo, prefix, words, category in RULES:
        fits = repo == rule_repo and path.startswith(prefix) and path.endswith(".py")
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
        try:
            found = list(url_hosts(git(gitdir, "show", f"{commit}:{path}")))
        except SyntaxError as exc:
            print(f"# skipped {path}: {exc.msg}", file=sys.stderr)
            continue
        for host, line in found:
            yield host, category, f"{repo}@{commit[:8]} {path}:{line}"


TRANSCRIBED = Path(__file__).with_name("lib-hosts-transcribed.csv")


def transcribed() -> Iterator[tuple[str, str, str]]:
    """Rows read through the source index for repositories too large to fetch (cited)."""
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
        "# Licences: langchain-community, litellm, NextChat MIT; Open WebUI its own BSD-style"
    )
    print("# licence. Only host names (facts) and where they were read are kept, no code.")
    print("kind,domain,list,category,source")
    for arg in sys.argv[1:]:
        gitdir, _, pinned = arg.partition("=")
        repo, _, commit = pinned.partition("@")
        for host, category, source in sorted(mine(gitdir, repo, commit)):
            if host not in seen:
                seen.add(host)
                print(f"full,{host},{repo.split('/')[-1]},{category},{source}")
    for host, category, source in transcribed():
        if host not in seen:
            seen.add(host)
            print(f"full,{host},{source.split('/')[1].split('@')[0]},{category},{source}")


if __name__ == "__main__":
    main()
