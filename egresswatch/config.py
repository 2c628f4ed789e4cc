"""Settings: one validated model with sections, read from a TOML file, then the environment.

Precedence (lowest first): built-in defaults < TOML file < EGRESSWATCH_* environment variables <
command-line flags (applied by the caller with `model_copy(update=...)`). A file that cannot be
read or does not validate raises ConfigError naming the file and the bad key: egresswatch never
falls back silently to defaults when the configuration is corrupt.
"""

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from egresswatch.errors import ConfigError
from egresswatch.tomlfile import invalid_value, read_toml

DEFAULT_CONFIG_PATH = Path("/etc/egresswatch/config.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptureSettings(_Section):
    interfaces: list[str] = Field(default_factory=list, description="empty: every interface")
    queue_size: int = Field(default=65536, ge=1024)


class StoreSettings(_Section):
    url: str | None = Field(default=None, description="SQLAlchemy URL; None: the default SQLite")
    max_age_days: float = Field(default=90.0, gt=0)
    max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    spool_max_bytes: int = Field(
        default=256 << 20, ge=0, description="local spool while the store is down; 0: none"
    )
    spool_dir: Path | None = Field(
        default=None, description="where the spool lives; None: the state directory"
    )


class CatalogSettings(_Section):
    extra: Path | None = Field(
        default=None, description="user catalog merged over the packaged one"
    )


class SessionSettings(_Section):
    auto: bool = Field(default=True, description="open sessions on inference requests")
    idle_seconds: float = Field(default=120.0, gt=0)


class AlertSettings(_Section):
    policy: Path | None = Field(default=None, description="policy TOML over the shipped one")
    large_download_mb: float = Field(default=50.0, gt=0)


class WebhookSettings(_Section):
    url: str = Field(pattern=r"^https?://")
    preset: Literal["generic", "ntfy", "slack"] = "generic"
    retries: int = Field(default=3, ge=0, le=10)
    timeout: float = Field(default=5.0, gt=0, le=60)
    min_severity: Literal["info", "low", "medium", "high", "critical"] = "low"


class SinkSettings(_Section):
    journald: bool = Field(default=True, description="journal, or stderr without one")
    webhook: WebhookSettings | None = None
    desktop: bool = False


MAX_NODE_LENGTH = 253  # a DNS name's length: every hostname fits


def check_node(value: str) -> str:
    """A node name as stored: non-empty, printable (no control characters), <= 253 chars."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_NODE_LENGTH:
        raise ValueError(f"must be at most {MAX_NODE_LENGTH} characters, not {len(value)}")
    if not value.isprintable() or value != value.strip():
        raise ValueError(f"must be printable, without control characters or edge spaces: {value!r}")
    return value


class AgentSettings(_Section):
    node: str = Field(
        default_factory=socket.gethostname,
        description="the name this agent's events, sessions and alerts carry; default hostname",
    )

    @field_validator("node")
    @classmethod
    def _valid_node(cls, value: str) -> str:
        return check_node(value)


class Settings(_Section):
    agent: AgentSettings = Field(default_factory=AgentSettings)
    capture: CaptureSettings = CaptureSettings()
    store: StoreSettings = StoreSettings()
    catalog: CatalogSettings = CatalogSettings()
    sessions: SessionSettings = SessionSettings()
    alerts: AlertSettings = AlertSettings()
    sinks: SinkSettings = SinkSettings()


_ENVIRONMENT = {
    "EGRESSWATCH_DB": ("store", "url"),
    "EGRESSWATCH_CATALOG": ("catalog", "extra"),
    "EGRESSWATCH_NODE": ("agent", "node"),
}


def with_node(settings: Settings, node: str | None, origin: str = "--node") -> Settings:
    """`settings` with the agent's node replaced (a command-line flag), validated the same way."""
    if node is None:
        return settings
    try:
        check_node(node)
    except ValueError as err:
        raise ConfigError(f"{origin}: {err}") from err
    agent = settings.agent.model_copy(update={"node": node})
    return settings.model_copy(update={"agent": agent})


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `path` (or $EGRESSWATCH_CONFIG, or /etc/egresswatch/config.toml if present)."""
    env = os.environ if environ is None else environ
    explicit = path or (Path(env["EGRESSWATCH_CONFIG"]) if "EGRESSWATCH_CONFIG" in env else None)
    source = explicit or DEFAULT_CONFIG_PATH
    raw = read_toml(source) if explicit or source.exists() else {}
    for var, (section, key) in _ENVIRONMENT.items():
        if env.get(var):
            raw.setdefault(section, {})[key] = env[var]
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise invalid_value(str(source), err) from err
