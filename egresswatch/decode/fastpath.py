"""A few header bytes that decide whether a frame can be skipped before it is decoded.

Most frames of a capture are bulk payload of TCP connections already judged (a download, the
encrypted rest of a TLS session). `tcp_flow_key` reads just enough of a plain Ethernet or raw IP
frame to name its TCP connection, so the pipeline can drop those frames with one set lookup
instead of a full decode. Anything unusual (VLAN tags, IP options beyond the header length,
fragments, extension headers, tunnels, other link types) returns None and takes the full path.
`udp_of_no_interest` does the same for UDP datagrams that can hold neither DNS nor a QUIC long
header (QUIC 1-RTT traffic): only well-formed plain datagrams qualify, so nothing the full decode
would count as malformed is skipped.
"""

_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = (101, 12, 14, 228, 229)
_IPV4 = b"\x08\x00"
_IPV6 = b"\x86\xdd"
_TCP = 6
_UDP = 17
# DNS, mDNS, LLMNR and the UDP tunnels (VXLAN, GTP-U) the full decode opens
_UDP_PORTS_OF_INTEREST = frozenset({53, 5353, 5355, 4789, 2152})


def tcp_flow_key(linktype: int, data: bytes) -> tuple[bytes, int] | None:
    """(addresses + ports as raw bytes, TCP flags) of a plain TCP frame, else None."""
    if linktype == _LINKTYPE_ETHERNET:
        ethertype = data[12:14]
        if ethertype == _IPV4:
            return _ipv4(data, 14)
        if ethertype == _IPV6:
            return _ipv6(data, 14)
        return None
    if linktype in _LINKTYPE_RAW and data:
        version = data[0] >> 4
        if version == 4:
            return _ipv4(data, 0)
        if version == 6:
            return _ipv6(data, 0)
    return None


def _ipv4(data: bytes, ip: int) -> tuple[bytes, int] | None:
    if len(data) < ip + 20 or data[ip + 9] != _TCP or data[ip + 6] & 0x3F or data[ip + 7]:
        return None  # not TCP, or a fragment (MF flag or an offset)
    header = data[ip] & 0x0F
    tcp = ip + header * 4
    if len(data) < tcp + 14:
        return None
    if header == 5:  # no options: addresses and ports are contiguous
        return data[ip + 12 : ip + 24], data[tcp + 13]
    return data[ip + 12 : ip + 20] + data[tcp : tcp + 4], data[tcp + 13]


def _ipv6(data: bytes, ip: int) -> tuple[bytes, int] | None:
    tcp = ip + 40
    if len(data) < tcp + 14 or data[ip + 6] != _TCP:
        return None  # extension headers (fragments among them) take the full path
    return data[ip + 8 : ip + 40] + data[tcp : tcp + 4], data[tcp + 13]


def udp_of_no_interest(linktype: int, data: bytes) -> bool:
    """True for a well-formed plain UDP datagram on other ports whose payload is empty or cannot
    start a QUIC long header (first two bits not both set); False means: decode it fully."""
    span = _udp_span(linktype, data)
    if span is None:
        return False
    udp, end = span
    ulen = (data[udp + 4] << 8) | data[udp + 5]
    if ulen < 8 or udp + ulen > end:
        return False  # the full decode counts or trusts odd lengths
    sport, dport = (data[udp] << 8) | data[udp + 1], (data[udp + 2] << 8) | data[udp + 3]
    if sport in _UDP_PORTS_OF_INTEREST or dport in _UDP_PORTS_OF_INTEREST:
        return False
    return ulen == 8 or data[udp + 8] & 0xC0 != 0xC0


def _udp_span(linktype: int, data: bytes) -> tuple[int, int] | None:
    """(UDP header offset, IP payload end) of a plain unfragmented IPv4/IPv6 UDP frame."""
    if linktype == _LINKTYPE_ETHERNET:
        ethertype = data[12:14]
        if ethertype == _IPV4:
            return _udp4(data, 14)
        return _udp6(data, 14) if ethertype == _IPV6 else None
    if linktype in _LINKTYPE_RAW and data:
        version = data[0] >> 4
        if version == 4:
            return _udp4(data, 0)
        return _udp6(data, 0) if version == 6 else None
    return None


def _udp4(data: bytes, ip: int) -> tuple[int, int] | None:
    if len(data) < ip + 28 or data[ip] >> 4 != 4 or data[ip + 9] != _UDP:
        return None
    if data[ip + 6] & 0x3F or data[ip + 7]:
        return None  # a fragment
    ihl = (data[ip] & 0x0F) << 2
    total = (data[ip + 2] << 8) | data[ip + 3]
    if ihl < 20 or total < ihl + 8 or ip + total > len(data):
        return None
    return ip + ihl, ip + total


def _udp6(data: bytes, ip: int) -> tuple[int, int] | None:
    if len(data) < ip + 48 or data[ip] >> 4 != 6 or data[ip + 6] != _UDP:
        return None  # extension headers (fragments among them) take the full path
    length = (data[ip + 4] << 8) | data[ip + 5]
    if length < 8 or ip + 40 + length > len(data):
        return None
    return ip + 40, ip + 40 + length
