"""Classifier behaviour: normalisation, hostile names, precedence, overrides, properties."""

import fnmatch
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from egresswatch.classify.catalog import (
    CACHE_SIZE,
    CATEGORIES,
    Catalog,
    build_entries,
    load_catalog,
)
from egresswatch.classify.destinations import Entry, Role, is_subtree, pattern_anchor
from egresswatch.cli.classify_cmd import register
from egresswatch.errors import ConfigError
from egresswatch.output import printable

CATALOG = load_catalog()
HEADER = "host_pattern,category,tools,purpose,source\n"


# ---- normalisation and hostile names ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("HuggingFace.CO", "huggingface.co"),
        ("huggingface.co.", "huggingface.co"),
        ("CDN-LFS.HF.CO.", "cdn-lfs.hf.co"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("example\u3002com", "example.com"),  # ideographic full stop is a label separator in IDNA
        ("[2606:4700:4700::1111]", "2606:4700:4700::1111"),
        ("::ffff:8.8.8.8", "8.8.8.8"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_normalisation(raw: str, host: str) -> None:
    assert CATALOG.classify(raw).host == host


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a" * 255 + ".com", "bad-name:label-too-long"),
        ("a" * 64 + ".example", "bad-name:label-too-long"),
        (".".join(["abcdefghi"] * 26), "bad-name:name-too-long"),  # 259 chars
        ("x" * 5000, "bad-name:too-long"),
        ("api.openai.com\x00.evil", "bad-name:control-char"),
        ("api.openai.com\n", "bad-name:control-char"),
        ("\x1b[31mred.com", "bad-name:control-char"),
        ("a..b.com", "bad-name:empty-label"),
        (".huggingface.co", "bad-name:empty-label"),
        ("huggingface.co..", "bad-name:empty-label"),
        ("", "bad-name:empty"),
        (".", "bad-name:empty"),
        ("x[red]y.com", "bad-name:invalid-char"),
        ("*.huggingface.co", "bad-name:invalid-char"),
        ("a b.com", "bad-name:invalid-char"),
        ("\udcff.com", "bad-name:idna"),
        ("evil\u202ecom.example", "bad-name:idna"),
        ("ü" * 70 + ".com", "bad-name:idna"),
    ],
)
def test_hostile_names_are_unknown_with_a_reason(raw: str, reason: str) -> None:
    result = CATALOG.classify(raw)
    assert (result.category, result.reason, result.matched) == ("unknown", reason, None)
    assert len(result.host) <= 300


def test_memo_is_bounded_and_transparent() -> None:
    catalog = Catalog(CATALOG.entries)
    for i in range(CACHE_SIZE + 50):
        catalog.classify(f"h{i}.example.com")
    assert len(catalog._cache) <= CACHE_SIZE
    assert catalog.classify("HF.CO") == Catalog(CATALOG.entries).classify("HF.CO")


def test_ip_literals_are_unknown_unless_listed() -> None:
    assert CATALOG.classify("1.2.3.4").reason == "ip-literal"
    assert CATALOG.classify("1.2.3.4").registrable_domain is None
    assert CATALOG.classify("9.9.9.9").category == "doh-dot"


def test_registrable_domain_uses_the_public_suffix_list() -> None:
    assert CATALOG.classify("a.b.example.co.uk").registrable_domain == "example.co.uk"
    assert CATALOG.classify("cdn-lfs.hf.co").registrable_domain == "hf.co"
    # github.io is a private suffix: every Pages site is its own registrable domain.
    assert CATALOG.classify("someone.github.io").registrable_domain == "someone.github.io"


def test_the_public_suffix_list_is_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access during catalog load/classify")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    catalog = load_catalog()
    assert catalog.classify("x.y.example.co.uk").registrable_domain == "example.co.uk"
    assert "publicsuffixlist.update" not in sys.modules


# ---- precedence ---------------------------------------------------------------------------


def test_subtree_wildcard_does_not_match_the_suffix_itself() -> None:
    assert CATALOG.classify("x1.gradio.live").matched == "*.gradio.live"
    apex = CATALOG.classify("gradio.live")
    assert apex.matched is None and apex.category == "other" and apex.reason == "vendor-domain"


def test_longest_match_wins() -> None:
    assert CATALOG.classify("o1.ingest.us.sentry.io").matched == "*.ingest.us.sentry.io"
    assert CATALOG.classify("o1.ingest.sentry.io").matched == "*.ingest.sentry.io"
    exact = "o4507954455314432.ingest.us.sentry.io"
    assert CATALOG.classify(exact).matched == exact
    assert CATALOG.classify("cdn-lfs-eu-1.hf.co").matched == "cdn-lfs-eu-1.hf.co"
    assert CATALOG.classify("cdn-lfs-eu-2.hf.co").matched == "cdn-lfs*.hf.co"
    assert CATALOG.classify("copilot-proxy.githubusercontent.com").category == "cloud-llm-api"
    assert CATALOG.classify("avatars.githubusercontent.com").matched == "*.githubusercontent.com"


def test_label_glob_stays_inside_one_label() -> None:
    assert CATALOG.classify("bedrock-runtime.us-east-1.amazonaws.com").category == "cloud-llm-api"
    deeper = CATALOG.classify("bedrock-runtime.a.b.amazonaws.com")
    assert deeper.matched is None


def test_unlisted_subdomain_of_a_known_vendor_is_other_without_tools() -> None:
    result = CATALOG.classify("status.hf.co")
    assert (result.category, result.reason, result.tools) == ("other", "vendor-domain", ())
    assert "hf.co" in result.purpose
    assert CATALOG.classify("nothing-here.invalid").category == "unknown"


# ---- user catalog -------------------------------------------------------------------------


def _write(tmp_path: Path, body: str, name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_user_rows_override_and_extend(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "# site additions\n"
        + HEADER
        + "huggingface.co,telemetry,mine,we only see telemetry here,our audit 2026-11\n"
        + "llm.corp.example,cloud-llm-api,internal,company LLM gateway,wiki/llm\n"
        + "*.corp.example,other,,internal services,wiki/net\n"
        + "stats.vllm.ai,unknown,,silenced: we accept it,ticket 12\n",
    )
    catalog = load_catalog(path)
    hf = catalog.classify("huggingface.co")
    assert (hf.category, hf.categories, hf.tools) == ("telemetry", ("telemetry",), ("mine",))
    assert catalog.classify("llm.corp.example").category == "cloud-llm-api"
    assert catalog.classify("wiki.corp.example").matched == "*.corp.example"
    assert catalog.classify("stats.vllm.ai").category == "unknown"
    assert catalog.classify("cdn-lfs.hf.co").category == "model-cdn"  # untouched rows remain


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("host,category\n", 1, "expected header"),
        ("", 1, "empty catalog"),
        (HEADER + "a.example,other,t,p\n", 2, "expected 5 fields"),
        (HEADER + "a.example,nonsense,t,p,s\n", 2, "unknown category"),
        (HEADER + "\n# c\na..b,other,t,p,s\n", 4, "bad host_pattern"),
        (HEADER + "a.*,other,t,p,s\n", 2, "rightmost label"),
        (HEADER + "bücher.de,other,t,p,s\n", 2, "xn--"),
        (HEADER + "a/b.example,other,t,p,s\n", 2, "only letters"),
        (HEADER + "x.example,other,t,p,s\nx.example,other,t,p,s\n", 3, "duplicate"),
        (HEADER + 'x.example,other,t,"p\n', 2, "bad CSV"),
    ],
)
def test_malformed_user_file_names_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_unreadable_user_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalog(tmp_path / "missing.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(HEADER.encode() + b"caf\xe9.example,other,t,p,s\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_catalog(bad)


# ---- properties -----------------------------------------------------------------------------

LABEL = st.text(alphabet="abc-", min_size=1, max_size=3).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
NAME = st.lists(LABEL, min_size=1, max_size=5).map(".".join)
HOSTILE = st.one_of(
    st.text(max_size=300),
    st.lists(st.text(max_size=70), max_size=6).map(".".join),
    st.binary(max_size=120).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
def test_hostile_text_never_raises_and_is_deterministic(raw: str) -> None:
    first = CATALOG.classify(raw)
    assert first == CATALOG.classify(raw)
    assert first.category in CATEGORIES
    assert (first.matched is None) == (first.reason is not None)


@settings(max_examples=200, deadline=None)
@given(NAME)
def test_normalised_hosts_are_fixed_points(name: str) -> None:
    result = CATALOG.classify(name.upper() + ".")
    assert CATALOG.classify(result.host) == result


@settings(max_examples=200, deadline=None)
@given(LABEL, NAME)
def test_unknown_stays_unknown(label: str, name: str) -> None:
    # .invalid is reserved (RFC 2606) and in no catalog row, so nothing may claim it.
    host = f"{label}.{name}.invalid"
    assert CATALOG.classify(host).category == "unknown"
    assert CATALOG.classify(CATALOG.classify(host).host).category == "unknown"


EXACT_PATTERNS = sorted(
    e.pattern
    for e in CATALOG.entries
    if "*" not in e.pattern and ":" not in e.pattern and not e.pattern[-1].isdigit()
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(EXACT_PATTERNS), LABEL)
def test_a_subdomain_of_an_exact_row_is_not_that_row(pattern: str, label: str) -> None:
    assert CATALOG.classify(f"{label}.{pattern}").matched != pattern


def _reference_match(entries: list[Entry], host: str) -> str | None:
    """A loop over every rule implementing the documented precedence, for comparison."""
    best: tuple[tuple[int, int, int], str] | None = None
    for entry in entries:
        p = entry.pattern
        if p == host:
            return p
        anchor = pattern_anchor(p)
        if not host.endswith("." + anchor):
            continue
        head, pattern_head = host[: -len(anchor) - 1], p[: -len(anchor) - 1]
        if is_subtree(p):
            rank = (anchor.count(".") + 1, 0, 0)
        elif _glob_match(pattern_head, head):
            rank = (anchor.count(".") + 1, 1, len(p) - p.count("*"))
        else:
            continue
        if best is None or rank > best[0]:
            best = (rank, p)
    return best[1] if best else None


def _glob_match(pattern_head: str, head: str) -> bool:
    p_labels, h_labels = pattern_head.split("."), head.split(".")
    return len(p_labels) == len(h_labels) and all(
        fnmatch.fnmatchcase(h, p) for p, h in zip(p_labels, h_labels, strict=True)
    )


PATTERN = st.one_of(
    NAME,
    NAME.map(lambda n: "*." + n),
    st.tuples(LABEL, NAME).map(lambda t: t[0][:1] + "*." + t[1]),
    st.tuples(LABEL, NAME).map(lambda t: t[0] + ".*." + t[1]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(PATTERN, min_size=1, max_size=12, unique=True), NAME)
def test_compiled_lookup_agrees_with_a_loop_over_rules(patterns: list[str], host: str) -> None:
    role = Role("other", (), "p", "s")
    entries = build_entries([(p, role) for p in patterns])
    catalog = Catalog(entries)
    result = catalog.classify(host)
    assert result.matched == _reference_match(entries, host)


# ---- CLI ----------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test root with a callback so `classify` stays a subcommand."""

    register(app)
    return app


def test_cli_json_lines() -> None:
    out = CliRunner().invoke(_app(), ["classify", "--json", "HF.co.", "1.2.3.4", "a\x1bb"])
    assert out.exit_code == 0, out.output
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["host"] for o in objs] == ["hf.co", "1.2.3.4", "a\x1bb"]
    assert objs[0]["category"] == "model-registry" and objs[0]["matched"] == "hf.co"
    assert {
        "host",
        "category",
        "tools",
        "purpose",
        "source",
        "matched",
        "registrable_domain",
    } <= set(objs[0])
    assert objs[2]["reason"] == "bad-name:control-char"
    assert "\x1b" not in out.stdout  # JSON escapes it


def test_cli_table_escapes_hostile_names() -> None:
    args = ["classify", "x[bold]y.com", "a\x1b[2Jb", "ollama.com"]
    out = CliRunner().invoke(_app(), args, env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "x[bold]y.com" in out.stdout
    assert "\x1b" not in out.stdout and "\\x1b" in out.stdout
    assert "cloud-llm-api" in out.stdout


def test_cli_user_catalog_and_errors(tmp_path: Path) -> None:
    good = _write(tmp_path, HEADER + "llm.corp.example,cloud-llm-api,internal,gw,wiki\n")
    out = CliRunner().invoke(
        _app(), ["classify", "--json", "--catalog", str(good), "llm.corp.example"]
    )
    assert json.loads(out.stdout)["category"] == "cloud-llm-api"
    bad = _write(tmp_path, HEADER + "x,bogus,t,p,s\n", "bad.csv")
    out = CliRunner().invoke(_app(), ["classify", "--catalog", str(bad), "x.example"])
    assert out.exit_code == 2
    assert f"{bad}:2:" in out.stderr


def test_printable_escapes_controls_and_bidi() -> None:
    assert printable("a\x00b\x7f\u202e") == "a\\x00b\\x7f\\u202e"


def test_cli_says_how_each_category_was_decided_and_takes_the_tool() -> None:
    args = ["classify", "--json", "--tool", "Gradio apps (library)", "api.gradio.app"]
    out = CliRunner().invoke(_app(), [*args, "versions-prod.lmstudio.ai", "127.0.0.1"])
    assert out.exit_code == 0, out.output
    gradio, lmstudio, loopback = (json.loads(line) for line in out.stdout.splitlines())
    assert (gradio["category"], gradio["category_source"]) == ("update-check", "catalog")
    assert gradio["category_confidence"] == 1.0
    assert (lmstudio["category"], lmstudio["category_source"]) == ("update-check", "vendor")
    assert lmstudio["evidence"] == "lmstudio.ai"
    assert (loopback["category"], loopback["category_source"]) == ("local", "address")
    table = CliRunner().invoke(_app(), ["classify", "claude.ai"], env={"COLUMNS": "250"})
    assert "list 0.50" in table.stdout
