"""The web process's composition root: open the store read-only, build the components and the
guard from the bind address, and serve with uvicorn.
"""

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from sqlalchemy.engine import make_url

from egresswatch.api.app import create_app
from egresswatch.api.commands import Commands
from egresswatch.api.components import WebComponents
from egresswatch.api.feed import LiveFeed
from egresswatch.api.guard import GuardPolicy
from egresswatch.classify.catalog import load_catalog
from egresswatch.control.client import ControlClient
from egresswatch.control.protocol import socket_path
from egresswatch.store.database import open_reader
from egresswatch.store.engine import make_engine, resolve_url

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
GRACEFUL_SHUTDOWN = 2  # live streams never end by themselves


@dataclass(frozen=True)
class WebOptions:
    db: str | None
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allow_hosts: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """`host` as it appears in a URL and a Host header (IPv6 in brackets)."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host.lower()


def allowed_hosts(host: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The Host names a browser may use: loopback names, the bound address, this machine's
    name and addresses when bound to all interfaces, and the ones given.
    """
    names = set(LOOPBACK_NAMES) | {url_host(host)} | {url_host(h) for h in extra}
    if host in ("0.0.0.0", "::"):  # noqa: S104 - reporting a wildcard bind, not choosing one
        names |= _own_names()
    return frozenset(names)


def _own_names() -> set[str]:
    name = socket.gethostname()
    names = {name.lower(), socket.getfqdn().lower()}
    try:
        for *_, addr in socket.getaddrinfo(name, None):
            names.add(url_host(str(addr[0])))
    except OSError:
        pass
    return names


def build_components(options: WebOptions) -> WebComponents:
    """Raises StoreError when the store cannot be read (missing, unreadable, wrong schema)."""
    store = open_reader(options.db)
    guard = GuardPolicy(allowed_hosts(options.host, options.allow_hosts), options.token)
    return WebComponents(
        store=store,
        feed=LiveFeed(store),
        guard=guard,
        commands=commands_for(resolve_url(options.db)),
        catalog=load_catalog(),
    )


def commands_for(url: str) -> Commands:
    """A writable engine for the few state changes, when this process may write the store."""
    control = ControlClient(socket_path(url))  # the running agent's, when it listens
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and not database.startswith("file:"):
        path = Path(database)
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            why = f"{path} is read-only for this user and no agent answers on {control.path}"
            return Commands(None, why, control)
    return Commands(make_engine(url), control=control)


def serve(components: WebComponents, options: WebOptions) -> None:
    """Serve until SIGINT/SIGTERM, then close the store."""
    config = uvicorn.Config(
        create_app(components),
        host=options.host,
        port=options.port,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        components.commands.close()
        components.store.close()
