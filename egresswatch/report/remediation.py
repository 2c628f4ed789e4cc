"""Remediation from what was seen: each tool's documented switches (egresswatch/data/
remediation.csv) and ready-to-paste blocks (nftables, /etc/hosts, ufw). Never applied here."""

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from egresswatch.classify.csvdata import data_rows
from egresswatch.errors import ConfigError

HEADER = ("tool", "setting", "stops", "does_not_stop", "source", "checked")
# Only names that are plainly host names go into paste blocks (hostile names never do).
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True, slots=True)
class Switch:
    tool: str
    setting: str
    stops: frozenset[str]
    does_not_stop: frozenset[str]
    source: str


@functools.cache
def switches() -> tuple[Switch, ...]:
    text = resources.files("egresswatch").joinpath("data", "remediation.csv").read_text("utf-8")
    found = []
    for where, fields in data_rows(text, "egresswatch/data/remediation.csv", HEADER, "file"):
        if len(fields) != len(HEADER):
            raise ConfigError(f"{where}: expected {len(HEADER)} fields")
        tool, setting, stops, not_stops, source, _checked = fields
        found.append(Switch(tool, setting, _set(stops), _set(not_stops), source))
    return tuple(found)


def _set(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(";") if part)


def switches_for(seen: Iterable[tuple[str, str | None]]) -> list[tuple[Switch, bool]]:
    """(switch, stops_it) for each (tool, category) seen: whether the switch stops what was seen."""
    out: dict[tuple[str, str], bool] = {}
    for tool, category in seen:
        for switch in switches():
            if switch.tool.casefold() != tool.casefold():
                continue
            key = (switch.tool, switch.setting)
            out[key] = out.get(key, False) or (category or "unknown") in switch.stops
    by_key = {(s.tool, s.setting): s for s in switches()}
    return [(by_key[k], stops) for k, stops in out.items()]


def paste_blocks(hosts: Sequence[str], addresses: Sequence[str]) -> dict[str, str]:
    """nftables, /etc/hosts and ufw lines that would block these destinations."""
    names = sorted({h.lower() for h in hosts if _HOSTNAME.match(h.lower())})
    ips = sorted({str(ipaddress.ip_address(a)) for a in addresses if _is_ip(a)})
    v4 = [a for a in ips if ":" not in a]
    v6 = [a for a in ips if ":" in a]
    nft = [
        "table inet egresswatch_block {",
        "  chain output {",
        "    type filter hook output priority 0;",
    ]
    if v4:
        nft.append(f"    ip daddr {{ {', '.join(v4)} }} drop")
    if v6:
        nft.append(f"    ip6 daddr {{ {', '.join(v6)} }} drop")
    nft += ["  }", "}"]
    return {
        "nftables": "\n".join(nft),
        "hosts": "\n".join(f"0.0.0.0 {n}" for n in names),
        "ufw": "\n".join(f"ufw deny out to {a}" for a in ips),
    }


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
