"""Local destinations as categories: loopback is `local`, private and link-local addresses `lan`.

Pure: decides from an address literal or a name that can only be local (localhost, mDNS .local).
"""

import ipaddress

LOCAL = "local"
LAN = "lan"
# Names that never leave the machine or the link (RFC 6761 localhost, RFC 6762 .local).
_LOCAL_SUFFIXES = ("localhost",)
_LAN_SUFFIXES = ("local", "home.arpa", "lan", "internal")


def address_locality(address: str | None) -> str | None:
    """`local` for loopback/unspecified, `lan` for private, link-local, ULA and CGNAT addresses."""
    if not address or not (address[-1].isdigit() or ":" in address or address[-1] == "]"):
        return None  # cheap pre-check: names are not addresses, and exceptions cost time
    text = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback or addr.is_unspecified:
        return LOCAL
    if addr.is_link_local or addr.is_private or addr in _CGNAT:
        return LAN
    return None


def name_locality(name: str | None) -> str | None:
    """`local` for localhost names, `lan` for mDNS/home names; None for anything else."""
    if not name:
        return None
    text = name.rstrip(".").lower()
    if text.rpartition(".")[2] not in _LAST_LABELS:
        return address_locality(text)
    if _has_suffix(text, _LOCAL_SUFFIXES):
        return LOCAL
    if _has_suffix(text, _LAN_SUFFIXES):
        return LAN
    return address_locality(text)


_LAST_LABELS = frozenset(s.rpartition(".")[2] for s in (*_LOCAL_SUFFIXES, *_LAN_SUFFIXES))


def _has_suffix(name: str, suffixes: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
