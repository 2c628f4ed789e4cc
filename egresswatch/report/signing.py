"""The machine's Ed25519 report key (created at first use, mode 0600) and detached signatures."""

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from egresswatch.errors import ConfigError
from egresswatch.store.engine import SYSTEM_DIR

KEY_NAME = "report-key.pem"


def key_path() -> Path:
    """$EGRESSWATCH_REPORT_KEY, else beside the store: /var/lib/egresswatch or the XDG state."""
    explicit = os.environ.get("EGRESSWATCH_REPORT_KEY")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return SYSTEM_DIR / KEY_NAME
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "egresswatch" / KEY_NAME


def machine_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The key at `path` (default `key_path()`), created 0600 when there is none."""
    path = path or key_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the report key: {err.strerror}") from err
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as err:
        raise ConfigError(f"{path}: not a PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def _create(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another report created it meanwhile
        return machine_key(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot create the report key: {err.strerror}") from err
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def public_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def valid(public_b64: str, signature_b64: str, data: bytes) -> bool:
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        public.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True
