"""The alert policy: rule settings and entries that allow or re-grade alerts, from TOML.

A policy file that cannot be read or does not validate raises ConfigError naming the file and
the bad key (docs/alerts.md lists every key).
"""

import dataclasses
import tomllib
from collections.abc import Mapping
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from egresswatch.model import Alert, Severity
from egresswatch.tomlfile import invalid_value, read_toml

RULES = (
    "egress-during-session",
    "new-destination",
    "exposed-api",
    "remote-client",
    "untrusted-model-source",
    "name-mismatch",
    "name-hidden",
)
Scope = Literal["session", "outside-session", "always"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleConfig(_Strict):
    enabled: bool = True
    severity: Severity = "high"
    categories: dict[str, Severity] = Field(default_factory=dict)


class Entry(_Strict):
    """Matches alerts by every field it sets; `severity` re-grades, "allow" drops them."""

    severity: Severity | Literal["allow"]
    rule: str | None = None
    tool: str | None = None
    exe_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    host: str | None = Field(default=None, description="glob: *.example.com")
    category: str | None = None
    scope: Scope = "always"

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str | None) -> str | None:
        if value is not None and value not in RULES:
            raise ValueError(f"unknown rule {value!r} (rules: {', '.join(RULES)})")
        return value

    def matches(self, alert: Alert) -> bool:
        in_session = alert.session is not None
        if self.scope != "always" and in_session != (self.scope == "session"):
            return False
        return (
            _same(self.rule, alert.rule)
            and _same_fold(self.tool, alert.tool)
            and _same(self.exe_sha256, alert.exe_sha256)
            and _same(self.category, alert.category)
            and (self.host is None or fnmatchcase((alert.host or "").lower(), self.host.lower()))
        )


def _same(want: str | None, have: str | None) -> bool:
    return want is None or want == have


def _same_fold(want: str | None, have: str | None) -> bool:
    return want is None or (have is not None and want.casefold() == have.casefold())


class PolicyFile(_Strict):
    rules: dict[str, RuleConfig] = Field(default_factory=dict)
    entry: list[Entry] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, RuleConfig]) -> dict[str, RuleConfig]:
        unknown = sorted(set(value) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule {unknown[0]!r} (rules: {', '.join(RULES)})")
        return value


@dataclasses.dataclass(frozen=True)
class Policy:
    """Rule settings by name and the entries, user entries first."""

    rules: Mapping[str, RuleConfig]
    entries: tuple[Entry, ...]

    def enabled(self, rule: str) -> bool:
        return self.rules[rule].enabled

    def severity(self, rule: str, category: str | None = None) -> Severity:
        config = self.rules[rule]
        return config.categories.get(category or "unknown", config.severity)

    def grade(self, alert: Alert) -> Alert | None:
        """The alert re-graded by the first matching entry; None when an entry allows it."""
        for entry in self.entries:
            if entry.matches(alert):
                if entry.severity == "allow":
                    return None
                return dataclasses.replace(alert, severity=entry.severity)
        return alert


def _parse(raw: Mapping[str, Any], origin: str) -> PolicyFile:
    try:
        return PolicyFile.model_validate(raw)
    except ValidationError as err:
        raise invalid_value(origin, err) from err


def _merge(base: PolicyFile, user: PolicyFile) -> Policy:
    rules = {name: base.rules.get(name, RuleConfig()) for name in RULES}
    for name, config in user.rules.items():
        changed = config.model_dump(exclude_unset=True)
        merged = rules[name].model_dump() | changed
        if "categories" in changed:
            merged["categories"] = rules[name].categories | config.categories
        rules[name] = RuleConfig.model_validate(merged)
    return Policy(rules, (*user.entry, *base.entry))


def load_policy(path: Path | None = None) -> Policy:
    """The shipped policy with the user's file `path` read over it."""
    shipped_text = resources.files("egresswatch").joinpath("data", "policy.toml").read_text("utf-8")
    shipped = _parse(tomllib.loads(shipped_text), "egresswatch/data/policy.toml")
    user = _parse(read_toml(path), str(path)) if path is not None else PolicyFile()
    return _merge(shipped, user)
