"""TOML files the user writes (settings, alert policy): read one, and name its first invalid value.

Every failure is a ConfigError that starts with the file, never a traceback.
"""

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from egresswatch.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    """The table in `path`; ConfigError when it cannot be read, is not UTF-8 or not TOML."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def invalid_value(origin: str, err: ValidationError) -> ConfigError:
    """`origin: dotted.key: reason` for the first error pydantic found."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return ConfigError(f"{origin}: {where}: {first['msg']}")
