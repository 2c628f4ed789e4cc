"""The web access token for non-loopback binds: generated once, kept in a 0600 file."""

import os
import secrets
from pathlib import Path

from egresswatch.errors import ConfigError

TOKEN_BYTES = 32


def default_token_path() -> Path:
    """Beside the default store: /var/lib/egresswatch for root, the XDG state dir otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/egresswatch/web-token")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "egresswatch" / "web-token"


def load_or_create_token(path: Path) -> str:
    """The token in `path`, created (0600, exclusively) when missing; ConfigError when the
    file is readable by others or unusable.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
    except FileExistsError:
        return _read(path)  # another process made it first
    except OSError as err:
        raise ConfigError(f"cannot create the web token file {path}: {err.strerror}") from err
    return token


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ConfigError(f"cannot read the web token file {path}: {err.strerror}") from err
    with os.fdopen(fd) as fh:
        if os.fstat(fh.fileno()).st_mode & 0o077:
            raise ConfigError(f"{path} is readable by others: chmod 600 it")
        token = fh.read().strip()
    if len(token) < 16:
        raise ConfigError(f"{path} holds no usable token (delete it to make a new one)")
    return token
