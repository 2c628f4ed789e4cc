"""The policy: shipped defaults, user overrides and entries, and one clear error per bad file."""

import subprocess
import sys
from pathlib import Path

import pytest

from egresswatch.alerts.policy import RULES, load_policy
from egresswatch.errors import ConfigError
from egresswatch.model import Alert


def finding(rule: str = "new-destination", **changes: object) -> Alert:
    fields: dict[str, object] = {
        "rule": rule,
        "severity": "low",
        "time": 1.0,
        "message": "m",
        "tool": "Ollama",
        "host": "registry.ollama.ai",
        "category": "model-registry",
    }
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def test_shipped_defaults_grade_egress_by_category_and_quiet_ollama_pulls() -> None:
    policy = load_policy()
    assert all(policy.enabled(rule) for rule in RULES)
    assert policy.severity("egress-during-session", "cloud-llm-api") == "critical"
    assert policy.severity("egress-during-session", "telemetry") == "high"
    assert policy.severity("egress-during-session", "model-cdn") == "medium"
    assert policy.severity("egress-during-session", None) == "critical"  # unknown
    assert policy.severity("exposed-api") == "high"
    pull = policy.grade(finding())
    assert pull is not None and pull.severity == "info"
    during = policy.grade(finding(session=3))
    assert during is not None and during.severity == "low"  # the entry is outside-session only


def test_a_user_policy_overrides_rules_and_its_entries_come_first(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[rules.new-destination]\nenabled = false\n"
        "[rules.egress-during-session.categories]\ntelemetry = 'critical'\n"
        "[[entry]]\nhost = '*.ollama.ai'\nseverity = 'allow'\n"
        "[[entry]]\nrule = 'remote-client'\nscope = 'session'\nseverity = 'critical'\n"
    )
    policy = load_policy(path)
    assert not policy.enabled("new-destination")
    assert policy.severity("egress-during-session", "telemetry") == "critical"
    assert policy.severity("egress-during-session", "cloud-llm-api") == "critical"
    assert policy.grade(finding()) is None
    assert policy.grade(finding(host="example.com", category=None)) is not None
    remote = finding("remote-client", host="10.0.0.9", session=1, category=None)
    graded = policy.grade(remote)
    assert graded is not None and graded.severity == "critical"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[rules.phone-home]\nseverity = 'low'\n", "rules"),
        ("[rules.new-destination]\nseverity = 'loud'\n", "rules.new-destination.severity"),
        ("[rules.new-destination]\nenable = true\n", "rules.new-destination.enable"),
        ("[[entry]]\nrule = 'nope'\nseverity = 'low'\n", "entry.0.rule"),
        ("[[entry]]\nhost = 'x'\n", "entry.0.severity"),
        ("[[entry]]\nseverity = 'low'\nscope = 'sometimes'\n", "entry.0.scope"),
        ("[[entry]]\nseverity = 'low'\nexe_sha256 = 'xyz'\n", "entry.0.exe_sha256"),
        ("[rules\nbroken", "not valid TOML"),
        ("colour = 'red'\n", "colour"),
    ],
)
def test_a_bad_policy_file_is_one_config_error_naming_file_and_key(
    tmp_path: Path, text: str, where: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert where in message
    assert "\n" not in message


def test_an_unreadable_policy_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_a_policy_file_that_is_not_utf8_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"[rules.new-destination]\nseverity = '\xff'\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(bad byte at offset 36\)"):
        load_policy(path)


def test_run_refuses_a_bad_policy_file_with_one_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[rules.phone-home]\nseverity = 'low'\n")
    config = tmp_path / "config.toml"
    config.write_text(f"[alerts]\npolicy = '{policy}'\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "egresswatch",
            "run",
            "--config",
            str(config),
            "--db",
            str(tmp_path / "e.db"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert (
        str(policy) in result.stderr and "rules" in result.stderr and "phone-home" in result.stderr
    )
    assert "Traceback" not in result.stderr
