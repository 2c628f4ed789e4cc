"""A few header bytes that decide whether a frame can be skipped before it is decoded.

Most frames of a capture are bulk payload of TCP connections already judged (a download, the
encrypted rest of a TLS session). `tcp_flow_key` reads just enough of a plain Ethernet or raw IP
frame to name its TCP connection, so the pipeline can drop those frames with one set lookup
instead of a full decode. Anything unusual (VLAN tags, IP options beyond the header length,
fragments, extension headers, tunnels, other link types) returns None and takes the full path.
"""

_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = (101, 12, 14, 228, 229)
_IPV4 = b"\x08\x00"
_IPV6 = b"\x86\xdd"
_TCP = 6


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
