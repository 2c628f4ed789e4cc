"""Link, IP and transport layer decoding: one captured frame -> its TCP/UDP `Segment`, or None.

Hot path of replay and of the live agent: offsets into the frame instead of slices, one copy
(the L4 payload) per packet. Malformed input returns None and bumps a counter named for the reason.
"""

import socket
import struct
from collections.abc import Callable
from socket import AF_INET6
from typing import Final, Literal, NamedTuple

from egresswatch.counters import Counters
from egresswatch.decode.fragments import KEPT_PROTOCOLS, Reassembler
from egresswatch.errors import DecodeError
from egresswatch.model import Transport


class Segment(NamedTuple):
    """A TCP or UDP segment from the innermost IP header of a frame."""

    transport: Transport
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    seq: int  # TCP sequence number, 0 for UDP
    flags: int  # TCP flags byte, 0 for UDP
    tunneled: bool  # found inside GRE, VXLAN, GTP-U or IP-in-IP


# A link handler decodes data[off:end] at tunnel depth `depth`.
LinkHandler = Callable[[bytes, int, int, float, int], Segment | None]

MAX_DEPTH: Final = 4  # nested tunnels followed before giving up
MAX_TAGS: Final = 8  # VLAN / MPLS labels / PPPoE headers walked in one frame
MAX_EXTENSIONS: Final = 8  # IPv6 extension headers walked
MAX_TLVS: Final = 64  # NFLOG TLVs walked
ADDRESS_CACHE: Final = 8192

_new = tuple.__new__
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
_TCP = struct.Struct("!HHI4xBB").unpack_from
_IPV4 = struct.Struct("!BxHHHxB").unpack_from  # version/IHL, total length, id, flags/offset, proto
_ETHER_IPV4, _ETHER_IPV6 = 0x0800, 0x86DD
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_MPLS = frozenset({0x8847, 0x8848})
_PPP_PROTOCOLS = {0x0021: _ETHER_IPV4, 0x0057: _ETHER_IPV6}
_NULL_IPV6 = frozenset({24, 28, 30})
_IPV6_SKIPPED = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_PROTO_NAMES = {50: "ip.esp", 1: "ip.proto:icmp", 58: "ip.proto:icmpv6", 59: "ip.proto:none"}
_VXLAN_PORT, _GTPU_PORT = 4789, 2152


class PacketDecoder:
    """Decodes frames to segments; keeps fragment buffers and counters, so one per capture."""

    __slots__ = ("_frags", "_links", "_names", "counters")

    def __init__(self, counters: Counters | None = None, reassembler: Reassembler | None = None):
        self.counters = counters if counters is not None else Counters()
        self._frags = reassembler if reassembler is not None else Reassembler(self.counters)
        self._names: dict[bytes, tuple[str, str]] = {}  # src+dst bytes -> their text
        raw, sll = self._raw, self._sll
        self._links: dict[int, LinkHandler] = {
            1: self._ether, 101: raw, 12: raw, 14: raw, 228: self._ipv4, 229: self._ipv6,
            0: self._null, 108: self._null, 113: sll, 276: self._sll2,
            9: self._ppp, 50: self._ppp, 239: self._nflog,
        }  # fmt: skip

    def decode(self, linktype: int, data: bytes, ts: float) -> Segment | None:
        """Return the TCP/UDP segment in `data` (a frame of `linktype`), or None, counted."""
        link = self._links.get(linktype)
        if link is None:
            self.counters.add(f"link.unsupported:{linktype if 0 <= linktype < 1024 else 'other'}")
            return None
        try:
            return link(data, 0, len(data), ts, 0)
        except DecodeError as exc:
            self.counters.add(exc.reason)
        except (struct.error, IndexError, ValueError):
            # A bounds check missed somewhere: still a malformed packet, never a crash.
            self.counters.add("packet.malformed")
        return None

    # -- link layers -------------------------------------------------------------------------

    def _ether(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if end - off < 14:
            raise DecodeError("link.truncated")
        etype = _U16(data, off + 12)[0]
        if etype == _ETHER_IPV4:
            return self._ipv4(data, off + 14, end, ts, depth)
        return self._ethertype(etype, data, off + 14, end, ts, depth)

    def _ethertype(  # noqa: PLR0917
        self, etype: int, data: bytes, off: int, end: int, ts: float, depth: int
    ) -> Segment | None:
        """Walk VLAN tags, PPPoE session and MPLS headers down to IPv4/IPv6."""
        for _ in range(MAX_TAGS):
            if etype == _ETHER_IPV4:
                return self._ipv4(data, off, end, ts, depth)
            if etype == _ETHER_IPV6:
                return self._ipv6(data, off, end, ts, depth)
            if etype in _VLAN_TPIDS:
                etype, off = _need_u16(data, off + 2, end), off + 4
            elif etype == 0x8864:
                etype, off = self._pppoe(data, off, end), off + 8
            elif etype in _MPLS:
                return self._mpls(data, off, end, ts, depth)
            elif etype < 0x0600:
                raise DecodeError("link.llc")
            else:
                raise DecodeError("link.non-ip")
        raise DecodeError("link.too-many-tags")

    @staticmethod
    def _pppoe(data: bytes, off: int, end: int) -> int:
        if end - off < 8 or data[off + 1] != 0:
            raise DecodeError("link.pppoe-not-session")
        return _ppp_ethertype(_U16(data, off + 6)[0])

    def _mpls(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        for _ in range(MAX_TAGS):
            if end - off < 4:
                raise DecodeError("link.truncated")
            bottom = data[off + 2] & 1
            off += 4
            if bottom:
                return self._raw(data, off, end, ts, depth)
        raise DecodeError("link.too-many-tags")

    def _raw(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if off >= end:
            raise DecodeError("ip.truncated")
        version = data[off] >> 4
        if version == 4:
            return self._ipv4(data, off, end, ts, depth)
        if version == 6:
            return self._ipv6(data, off, end, ts, depth)
        raise DecodeError("ip.version")

    def _null(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        """BSD loopback: a 4-byte address family in the capturing host's byte order."""
        if end - off < 4:
            raise DecodeError("link.truncated")
        family = int.from_bytes(data[off : off + 4], "little")
        if family > 0xFFFF:
            family = int.from_bytes(data[off : off + 4], "big")
        if family == 2:
            return self._ipv4(data, off + 4, end, ts, depth)
        if family in _NULL_IPV6:
            return self._ipv6(data, off + 4, end, ts, depth)
        raise DecodeError("link.non-ip")

    def _sll(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if end - off < 16:
            raise DecodeError("link.truncated")
        return self._ethertype(_U16(data, off + 14)[0], data, off + 16, end, ts, depth)

    def _sll2(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if end - off < 20:
            raise DecodeError("link.truncated")
        return self._ethertype(_U16(data, off)[0], data, off + 20, end, ts, depth)

    def _ppp(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        """PPP, with or without HDLC address/control bytes and protocol-field compression."""
        if end - off < 2:
            raise DecodeError("link.truncated")
        if data[off] == 0xFF and data[off + 1] == 0x03:
            off += 2
        elif data[off] in (0x0F, 0x8F):  # Cisco HDLC shares link type 50 in some captures
            return self._ethertype(_need_u16(data, off + 2, end), data, off + 4, end, ts, depth)
        if off < end and data[off] & 1:
            proto, off = data[off], off + 1
        else:
            proto, off = _need_u16(data, off, end), off + 2
        return self._ethertype(_ppp_ethertype(proto), data, off, end, ts, depth)

    def _nflog(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        """Linux NFLOG: family byte, then TLVs in the capturing host's byte order; 9 = payload."""
        if end - off < 8:
            raise DecodeError("link.truncated")
        first = int.from_bytes(data[off + 4 : off + 6], "little")
        little = 4 <= first <= end - off - 4  # a big-endian length read backwards is huge
        order: Literal["little", "big"] = "little" if little else "big"
        pos = off + 4
        for _ in range(MAX_TLVS):
            if end - pos < 4:
                break
            size = int.from_bytes(data[pos : pos + 2], order)
            kind = int.from_bytes(data[pos + 2 : pos + 4], order) & 0x7FFF
            if size < 4 or pos + size > end:
                raise DecodeError("link.nflog-bad-tlv")
            if kind == 9:
                return self._raw(data, pos + 4, pos + size, ts, depth)
            pos += (size + 3) & ~3
        raise DecodeError("link.nflog-no-payload")

    # -- IP ----------------------------------------------------------------------------------

    def _ipv4(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if end - off < 20:
            raise DecodeError("ip.truncated")
        vihl, total, ident, frag, proto = _IPV4(data, off)
        ihl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or ihl < 20 or off + ihl > end:
            raise DecodeError("ip.bad-ihl")
        if total == 0:
            # TSO/GSO packets captured on the sending host: use the captured length, as tshark does
            self.counters.add("ip.zero-length")
        elif total < ihl:
            raise DecodeError("ip.bad-length")
        elif off + total < end:
            end = off + total  # drops Ethernet padding
        addrs = data[off + 12 : off + 20]
        if frag & 0x3FFF:
            return self._fragment(addrs, proto, ident, frag, data[off + ihl : end], ts, depth)
        return self._l4(proto, data, off + ihl, end, addrs, ts, depth)

    def _ipv6(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if end - off < 40:
            raise DecodeError("ip.truncated")
        if data[off] >> 4 != 6:
            raise DecodeError("ip.version")
        length = _U16(data, off + 4)[0]
        if length and off + 40 + length < end:
            end = off + 40 + length
        addrs = data[off + 8 : off + 40]
        return self._ipv6_chain(data[off + 6], data, off + 40, end, addrs, ts, depth)

    def _ipv6_chain(  # noqa: PLR0917
        self,
        nh: int,
        data: bytes,
        off: int,
        end: int,
        addrs: bytes,
        ts: float,
        depth: int,
    ) -> Segment | None:
        """Skip IPv6 extension headers; a fragment header hands over to reassembly."""
        for _ in range(MAX_EXTENSIONS):
            if nh in _IPV6_SKIPPED or nh == 51:
                if end - off < 2:
                    raise DecodeError("ip.truncated")
                size = (data[off + 1] + 2) * 4 if nh == 51 else (data[off + 1] + 1) * 8
                nh, off = data[off], off + size
            elif nh == 44:
                if end - off < 8:
                    raise DecodeError("ip.fragment-bad")
                nh, frag, ident = data[off], _U16(data, off + 2)[0], _U32(data, off + 4)[0]
                if frag & 0xFFF9:  # not an atomic fragment
                    flags = (frag >> 3) | (0x2000 if frag & 1 else 0)  # IPv4 layout
                    return self._fragment(addrs, nh, ident, flags, data[off + 8 : end], ts, depth)
                off += 8
            else:
                if off > end:
                    raise DecodeError("ip.truncated")
                return self._l4(nh, data, off, end, addrs, ts, depth)
        raise DecodeError("ip.too-many-extensions")

    def _fragment(  # noqa: PLR0917
        self,
        addrs: bytes,
        proto: int,
        ident: int,
        flags: int,
        part: bytes,
        ts: float,
        depth: int,
    ) -> Segment | None:
        """Feed one fragment (IPv4 flags/offset layout) to reassembly; decode a whole datagram."""
        self.counters.add("ip.fragment")
        if proto not in KEPT_PROTOCOLS:
            self.counters.add("ip.fragment-ignored")
            return None
        key = (addrs, proto, ident)
        whole = self._frags.add(key, (flags & 0x1FFF) * 8, bool(flags & 0x2000), part, ts)
        if whole is None:
            return None
        return self._l4(proto, whole, 0, len(whole), addrs, ts, depth)

    # -- transport and tunnels -----------------------------------------------------------------

    def _l4(  # noqa: PLR0917
        self,
        proto: int,
        data: bytes,
        off: int,
        end: int,
        addrs: bytes,
        ts: float,
        depth: int,
    ) -> Segment | None:
        if proto == 6:
            if end - off < 20:
                raise DecodeError("tcp.truncated")
            sport, dport, seq, doff, flags = _TCP(data, off)
            hlen = (doff >> 4) << 2
            if hlen < 20 or off + hlen > end:
                raise DecodeError("tcp.bad-offset")
            names = self._names.get(addrs) or self._name(addrs)
            return _new(Segment, (
                "tcp", names[0], sport, names[1],
                dport, data[off + hlen : end], seq, flags, depth > 0,
            ))  # fmt: skip
        if proto == 17:
            return self._udp(data, off, end, addrs, ts, depth)
        return self._tunnel(proto, data, off, end, ts, depth)

    def _udp(  # noqa: PLR0917
        self, data: bytes, off: int, end: int, addrs: bytes, ts: float, depth: int
    ) -> Segment | None:
        if end - off < 8:
            raise DecodeError("udp.truncated")
        sport, dport, length = _UDP(data, off)
        if length < 8 and length != 0:  # 0: IPv6 jumbogram or offloaded packet; trust IP
            raise DecodeError("udp.bad-length")
        if 8 <= length < end - off:
            end = off + length
        tunnel_port = dport == _VXLAN_PORT or _GTPU_PORT in (dport, sport)
        if tunnel_port and _is_tunnel(dport, data, off + 8, end):
            return self._udp_tunnel(dport, data, off + 8, end, ts, depth)
        names = self._names.get(addrs) or self._name(addrs)
        return _new(Segment, (
            "udp", names[0], sport, names[1],
            dport, data[off + 8 : end], 0, 0, depth > 0,
        ))  # fmt: skip

    def _udp_tunnel(  # noqa: PLR0917
        self, dport: int, data: bytes, off: int, end: int, ts: float, depth: int
    ) -> Segment | None:
        """The packet inside a VXLAN or GTP-U header that `_is_tunnel` accepted."""
        if dport == _VXLAN_PORT:
            return self._ether(data, off + 8, end, ts, _deeper(depth))
        inner_end = min(end, off + 8 + _U16(data, off + 2)[0])
        return self._raw(data, _gtp_skip(data, off, inner_end), inner_end, ts, _deeper(depth))

    def _tunnel(  # noqa: PLR0917
        self, proto: int, data: bytes, off: int, end: int, ts: float, depth: int
    ) -> Segment | None:
        if proto == 47:
            return self._gre(data, off, end, ts, _deeper(depth))
        if proto == 4:
            return self._ipv4(data, off, end, ts, _deeper(depth))
        if proto == 41:
            return self._ipv6(data, off, end, ts, _deeper(depth))
        self.counters.add(_PROTO_NAMES.get(proto) or f"ip.proto:{proto & 0xFF}")
        return None

    def _gre(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if end - off < 4:
            raise DecodeError("gre.truncated")
        flags, ptype = _U16(data, off)[0], _U16(data, off + 2)[0]
        version = flags & 7
        if version == 0 and not flags & 0x4000:
            # checksum (and its reserved word), key and sequence number are each 4 bytes
            off += 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
        elif version == 1 and ptype == 0x880B:  # enhanced GRE (PPTP) carrying PPP
            off += 8 + 4 * (bool(flags & 0x1000) + bool(flags & 0x0080))
            return self._ppp(data, off, end, ts, depth) if off <= end else _truncated("gre")
        else:
            raise DecodeError("gre.unsupported")
        if off > end:
            raise DecodeError("gre.truncated")
        if ptype == 0x6558:
            return self._ether(data, off, end, ts, depth)
        return self._ethertype(ptype, data, off, end, ts, depth)

    def _name(self, addrs: bytes) -> tuple[str, str]:
        """Text of a source+destination pair, cached: flows repeat them. IPv6 as glibc and tshark
        write it: RFC 5952, with IPv4-mapped addresses dotted (`::ffff:192.0.2.1`)."""
        if len(self._names) >= ADDRESS_CACHE:
            self._names.clear()
        half = len(addrs) // 2
        src, dst = addrs[:half], addrs[half:]
        if half == 4:
            names = (socket.inet_ntoa(src), socket.inet_ntoa(dst))
        else:
            names = (socket.inet_ntop(AF_INET6, src), socket.inet_ntop(AF_INET6, dst))
        self._names[addrs] = names
        return names


def _is_tunnel(dport: int, data: bytes, off: int, end: int) -> bool:
    """Whether a UDP payload on a tunnel port has the header (else it is ordinary UDP)."""
    if end - off < 8:
        return False
    if dport == _VXLAN_PORT:
        return bool(data[off] & 0x08)  # I flag: a valid VNI follows
    # GTPv1 (version 1, protocol type GTP) carrying a user packet (G-PDU, message 255)
    return data[off] >> 5 == 1 and bool(data[off] & 0x10) and data[off + 1] == 0xFF


def _deeper(depth: int) -> int:
    if depth + 1 >= MAX_DEPTH:
        raise DecodeError("tunnel.too-deep")
    return depth + 1


def _truncated(layer: str) -> Segment | None:
    raise DecodeError(f"{layer}.truncated")


def _need_u16(data: bytes, off: int, end: int) -> int:
    if off + 2 > end:
        raise DecodeError("link.truncated")
    value: int = _U16(data, off)[0]
    return value


def _ppp_ethertype(proto: int) -> int:
    etype = _PPP_PROTOCOLS.get(proto)
    if etype is None:
        raise DecodeError("link.ppp-non-ip")
    return etype


def _gtp_skip(data: bytes, off: int, end: int) -> int:
    """Offset of the user packet in the GTPv1-U G-PDU at `off`, past options and extensions."""
    flags = data[off]
    pos = off + 8
    if not flags & 0x07:
        return pos
    if end - pos < 4:
        raise DecodeError("gtp.truncated")
    nxt, pos = data[pos + 3], pos + 4
    for _ in range(MAX_TAGS):
        if not (flags & 0x04 and nxt):
            return pos
        if pos >= end or data[pos] == 0 or pos + data[pos] * 4 > end:
            raise DecodeError("gtp.bad-extension")
        pos, nxt = pos + data[pos] * 4, data[pos + data[pos] * 4 - 1]
    raise DecodeError("gtp.bad-extension")
