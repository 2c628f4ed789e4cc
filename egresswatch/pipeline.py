"""The decode stage: raw frames in, metadata observations out (DNS, TLS/QUIC hellos, flow starts).

Most packets cannot matter (bulk payload of established connections), so every frame is first
judged from a few header bytes and dropped early; only candidates reach the protocol decoders.
"""

from collections.abc import Callable

from egresswatch.counters import Counters
from egresswatch.decode.dns import dns_proto_for_ports, parse_dns, split_tcp_dns
from egresswatch.decode.fastpath import tcp_flow_key, udp_of_no_interest
from egresswatch.decode.http import looks_like_http_request, request_line
from egresswatch.decode.packet import PacketDecoder, Segment
from egresswatch.decode.quic import QuicInitialTracker, looks_like_quic_initial
from egresswatch.decode.tcp_stream import TcpReassembler
from egresswatch.decode.tls import client_hello_from_stream, looks_like_tls_client_hello
from egresswatch.errors import DecodeError
from egresswatch.lru import Lru
from egresswatch.model import FlowKey, Observation

_SYN = 0x02
_ACK = 0x10
_FIN_RST = 0x05
_DNS_TCP_BUFFER = 65535 + 2
RequestHook = Callable[[float, FlowKey, str, str], None]  # (ts, flow, method, path)


def _remember(seen: Lru[object, bool], key: object) -> bool:
    """Marks `key` as just used; returns True when it was not there yet."""
    new = key not in seen
    seen.put(key, True)
    return new


class ObservationDecoder:
    """Turns frames into observations; keeps the bounded per-flow state that needs.

    With `emit_flows`, also reports each new TCP connection (SYN without ACK) and each new UDP
    5-tuple as a kind "flow" observation (the live agent's flow starts). With `on_request`, the
    request line of a TCP stream that starts as plaintext HTTP goes to it (inference sessions).
    """

    def __init__(
        self,
        *,
        emit_flows: bool = False,
        max_flows: int = 65536,
        on_request: RequestHook | None = None,
    ) -> None:
        self.counters = Counters()
        self._on_request = on_request
        self.packets = PacketDecoder()
        self.streams = TcpReassembler(max_stream_bytes=_DNS_TCP_BUFFER, max_streams=8192)
        self.quic = QuicInitialTracker()
        self._emit_flows = emit_flows
        self._tls_decided: Lru[object, bool] = Lru(max_flows)
        self._udp_seen: Lru[object, bool] = Lru(max_flows)
        # Raw 4-tuples of TCP flows judged by _tls: their later frames skip decoding entirely.
        self._bulk: Lru[object, bool] = Lru(max_flows)
        self._judged = False
        self.frames = 0
        self.bulk_skipped = 0
        self.udp_skipped = 0

    def decode_frame(self, ts: float, linktype: int, data: bytes) -> list[Observation]:
        self.frames += 1
        fast = tcp_flow_key(linktype, data)
        if fast is not None and fast[0] in self._bulk:
            if not fast[1] & _SYN:
                self.bulk_skipped += 1
                return []
            self._bulk.pop(fast[0])  # a new connection reuses the 4-tuple
        elif fast is None and not self._emit_flows and udp_of_no_interest(linktype, data):
            self.udp_skipped += 1  # e.g. QUIC 1-RTT: nothing to learn, no state to keep
            return []
        seg = self.packets.decode(linktype, data, ts)
        if seg is None:
            return []
        if seg.transport == "udp":
            return self._udp(seg, ts)
        self._judged = False
        out = self._tcp(seg, ts)
        if self._judged and fast is not None:
            self._bulk.put(fast[0], True)
        return out

    def expire(self, now: float) -> None:
        """Drops per-flow state idle for longer than the components' timeouts."""
        self.streams.expire(now)
        self.quic.expire(now)

    def all_counters(self) -> Counters:
        """This stage's counters merged with those of the components it drives."""
        merged = Counters()
        merged.add("frames", self.frames)
        merged.add("skipped.tcp-bulk", self.bulk_skipped)
        merged.add("skipped.udp-other", self.udp_skipped)
        for part in (
            self.counters,
            self.packets.counters,
            self.streams.counters,
            self.quic.counters,
        ):
            merged.merge(part)
        return merged

    def _key(self, seg: Segment) -> FlowKey:
        return FlowKey(seg.transport, seg.src, seg.sport, seg.dst, seg.dport)

    def _udp(self, seg: Segment, ts: float) -> list[Observation]:
        out: list[Observation] = []
        if self._emit_flows:
            self._flow_start_udp(seg, ts, out)
        payload = seg.payload
        proto = dns_proto_for_ports(seg.sport, seg.dport)
        if proto is not None:
            self._dns(seg, payload, proto, ts, out)
        elif payload and looks_like_quic_initial(payload):
            key = self._key(seg)
            for hello, version in self.quic.feed(key, payload, ts):
                self.counters.add("decoded.quic")
                out.append(
                    Observation(
                        ts, "quic", key, hello=hello, quic_version=version, tunneled=seg.tunneled
                    )
                )
        return out

    def _flow_start_udp(self, seg: Segment, ts: float, out: list[Observation]) -> None:
        key = self._key(seg)
        if key.reversed() in self._udp_seen:
            self._udp_seen.put(key.reversed(), True)
            return
        if _remember(self._udp_seen, key):
            out.append(Observation(ts, "flow", key, tunneled=seg.tunneled))

    def _dns(
        self, seg: Segment, payload: bytes, proto: str, ts: float, out: list[Observation]
    ) -> None:
        try:
            msg = parse_dns(payload)
        except DecodeError as err:
            self.counters.add(f"skipped.{err.reason}")
            return
        self.counters.add(f"decoded.{proto}")
        out.append(
            Observation(
                ts,
                "dns",
                self._key(seg),
                dns=msg,
                dns_proto=proto,  # type: ignore[arg-type]
                tunneled=seg.tunneled,
            )
        )

    def _tcp(self, seg: Segment, ts: float) -> list[Observation]:
        flags = seg.flags
        key = self._key(seg)
        out: list[Observation] = []
        if flags & _SYN:
            if flags & _ACK:
                return out
            self.streams.open(key, seg.seq, ts)
            self._tls_decided.pop(key)
            if self._emit_flows:
                out.append(Observation(ts, "flow", key, tunneled=seg.tunneled))
            if not seg.payload:
                return out
            # TCP Fast Open: the SYN carries the first bytes, numbered from isn + 1.
            seg = seg._replace(seq=(seg.seq + 1) & 0xFFFFFFFF)
        if not seg.payload:
            return out
        proto = dns_proto_for_ports(seg.sport, seg.dport)
        if proto is not None:
            self._dns_tcp(seg, key, proto, ts, out)
        elif key not in self._tls_decided:
            self._tls(seg, key, ts, out)
        return out

    def _dns_tcp(
        self, seg: Segment, key: FlowKey, proto: str, ts: float, out: list[Observation]
    ) -> None:
        buffered = self.streams.feed(key, seg.seq, seg.payload, ts)
        if buffered is None:
            return
        messages, used = split_tcp_dns(buffered)
        if used:
            self.streams.consume(key, used)
        for message in messages:
            self._dns(seg, message, proto, ts, out)

    def _tls(self, seg: Segment, key: FlowKey, ts: float, out: list[Observation]) -> None:
        if self._on_request is not None and looks_like_http_request(seg.payload):
            self._request(seg.payload, key, ts)  # plaintext HTTP: never a ClientHello
            self._finish_tls(key)
            return
        if key not in self.streams and not looks_like_tls_client_hello(seg.payload):
            self._tls_decided.put(key, True)
            self._judged = True
            return
        buffered = self.streams.feed(key, seg.seq, seg.payload, ts)
        if buffered is None:
            return
        try:
            hello = client_hello_from_stream(buffered)
        except DecodeError as err:
            self.counters.add(f"skipped.{err.reason}")
            self._finish_tls(key)
            return
        if hello is not None:
            self.counters.add("decoded.tls")
            out.append(Observation(ts, "tls", key, hello=hello, tunneled=seg.tunneled))
            self._finish_tls(key)

    def _request(self, payload: bytes, key: FlowKey, ts: float) -> None:
        line = request_line(payload)
        if line is not None and self._on_request is not None:
            self.counters.add("decoded.http-request")
            self._on_request(ts, key, line[0], line[1])

    def _finish_tls(self, key: FlowKey) -> None:
        self.streams.close(key)
        self._tls_decided.put(key, True)
        self._judged = True
