"""Settings load from TOML and the environment, and a corrupt file stops with a clear error."""

import json
import socket
from pathlib import Path

import pytest

from egresswatch import config as config_module
from egresswatch.config import load_settings
from egresswatch.errors import ConfigError


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    settings = load_settings(environ={})
    assert settings.store.url is None
    assert settings.capture.interfaces == []
    assert settings.store.max_age_days == 90


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[store]\nurl = "sqlite:///from-file.db"\nmax_age_days = 7\n')
    from_file = load_settings(config, environ={})
    assert from_file.store.url == "sqlite:///from-file.db"
    assert from_file.store.max_age_days == 7
    overridden = load_settings(config, environ={"EGRESSWATCH_DB": "sqlite:///from-env.db"})
    assert overridden.store.url == "sqlite:///from-env.db"
    assert overridden.store.max_age_days == 7


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[store\nurl = 1", "not valid TOML"),
        ("[store]\nmax_age_days = -1\n", "store.max_age_days"),
        ("[store]\nretention = 3\n", "store.retention"),
        ("[capture]\nqueue_size = 'big'\n", "capture.queue_size"),
    ],
)
def test_corrupt_file_is_a_clear_config_error(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config, environ={})
    assert str(config) in str(err.value) and needle in str(err.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_node_defaults_to_the_hostname_and_comes_from_file_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_settings(environ={}).agent.node == socket.gethostname()
    config = tmp_path / "config.toml"
    config.write_text('[agent]\nnode = "rack-3/box 7"\n')
    assert load_settings(config, environ={}).agent.node == "rack-3/box 7"
    env = {"EGRESSWATCH_NODE": "from-env"}
    assert load_settings(config, environ=env).agent.node == "from-env"
    flagged = config_module.with_node(load_settings(config, environ={}), "from-flag")
    assert flagged.agent.node == "from-flag"


@pytest.mark.parametrize(
    ("node", "needle"),
    [
        ("", "must not be empty"),
        ("x" * 254, "at most 253 characters, not 254"),
        ("evil\nnode", "must be printable"),
        ("bell\x07", "must be printable"),
        (" padded", "must be printable"),
    ],
)
def test_a_bad_node_is_one_config_error_line(tmp_path: Path, node: str, needle: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[agent]\nnode = {json.dumps(node)}\n")  # a TOML basic string
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert "agent.node" in message and needle in message and "\n" not in message
    with pytest.raises(ConfigError) as flagged:
        config_module.with_node(load_settings(environ={}), node)
    assert str(flagged.value).startswith("--node: ") and needle in str(flagged.value)
    assert "\n" not in str(flagged.value)
