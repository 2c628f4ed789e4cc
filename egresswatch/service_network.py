"""The agent's only egress: the addresses of configured alert sinks (webhook) and a network store,
as a systemd drop-in (AF_INET/AF_INET6 plus IPAddressAllow=); None when nothing is configured.
"""

import socket
from pathlib import Path
from urllib.parse import urlsplit

from egresswatch.config import Settings
from egresswatch.errors import ConfigError


def network_targets(settings: Settings) -> list[str]:
    """Host names (or literal addresses) the agent must reach."""
    targets = []
    if settings.sinks.webhook is not None:
        targets.append(urlsplit(settings.sinks.webhook.url).hostname or "")
    url = settings.store.url or ""
    if url and not url.startswith("sqlite"):
        targets.append(urlsplit(url).hostname or "")
    return [t for t in targets if t]


def resolve(host: str) -> list[str]:
    """Every address of `host`; ConfigError naming it when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as err:
        raise ConfigError(f"cannot resolve {host!r} for IPAddressAllow=: {err}") from err
    return sorted({str(info[4][0]) for info in infos})


def nameservers(resolv_conf: Path) -> list[str]:
    """The resolvers the agent needs to look the sink's name up at run time."""
    if not resolv_conf.exists():
        return []
    found = []
    for line in resolv_conf.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.append(parts[1])
    return found


def network_drop_in(settings: Settings, resolv_conf: Path) -> str | None:
    """The drop-in text, or None when the agent needs no IP at all."""
    targets = network_targets(settings)
    if not targets:
        return None
    allowed = sorted({a for host in targets for a in resolve(host)})
    if any(not _is_literal(host) for host in targets):
        allowed += [a for a in nameservers(resolv_conf) if a not in allowed]
    return (
        "# written by `egresswatch service install` from the configured sinks and store\n"
        "[Service]\nRestrictAddressFamilies=AF_INET AF_INET6\n"
        f"IPAddressAllow={' '.join(allowed)}\n"
    )


def _is_literal(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False
