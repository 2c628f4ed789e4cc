"""Pure predicates: is an event egress (leaves the machine), is a local name or address."""

import ipaddress

from egresswatch.model import Event

# Names that never leave the machine or the local link (RFC 6761, RFC 6762, RFC 8375).
LOCAL_NAMES = frozenset({"localhost", "local", "home.arpa", "localdomain"})
DNS_PORTS = frozenset({53, 5353, 5355})


def is_local_address(address: str) -> bool:
    """Loopback, link-local, multicast or unspecified: traffic that stays on this machine/link."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified


def is_local_name(name: str) -> bool:
    name = name.rstrip(".").lower()
    if "." not in name:
        return True  # a single label is resolved on the local search path, not the internet
    return any(name == n or name.endswith("." + n) for n in LOCAL_NAMES)


def is_egress(event: Event) -> bool:
    """A non-local DNS lookup, or a flow / hello to a non-local address."""
    obs = event.observation
    if obs.kind == "dns":
        dns = obs.dns
        if dns is None or dns.is_response or obs.dns_proto != "dns" or not dns.qname:
            return False
        return not is_local_name(dns.qname)
    if obs.kind == "flow" and obs.flow.dport in DNS_PORTS:
        return False  # the transport of a lookup: the DNS event itself is the egress
    return not is_local_address(obs.flow.dst)
