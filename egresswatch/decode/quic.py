"""QUIC Initial decoding: find client Initials, decrypt them, reassemble their CRYPTO stream
and hand the ClientHello to the TLS decoder, once per connection, in bounded memory.

A client Initial is told from a server's as follows: a server Initial travels on the reversed
5-tuple with the client's Source Connection ID as its Destination CID, so it is recognised
from the connection table and skipped without any crypto. An Initial nobody has seen the
other side of is tried with the client keys of its DCID; a server's fails the AEAD tag and is
counted "quic.decrypt-failed".
"""

from dataclasses import dataclass, field

from egresswatch.counters import Counters
from egresswatch.decode.quic_crypto import (
    VERSION_2,
    InitialKeys,
    VersionRules,
    initial_keys,
    unprotect,
    version_rules,
)
from egresswatch.decode.quic_packet import (
    LongHeader,
    parse_initial_frames,
    parse_long_header,
    read_version,
)
from egresswatch.decode.quic_stream import CryptoStream
from egresswatch.decode.tls import parse_client_hello
from egresswatch.errors import DecodeError
from egresswatch.lru import Lru
from egresswatch.model import ClientHello, FlowKey

MIN_HEADER = 7  # first byte, version, DCID length, SCID length
MAX_KEY_SETS = 3  # original DCID plus at most two Retries
MAX_PACKETS_PER_DATAGRAM = 16  # real clients coalesce 2-3; more is only work for an attacker
# CRYPTO bytes held by all connections together (4096 connections x 64 KiB would be 256 MiB);
# real hellos are 1-2 KB, so thousands still fit.
MAX_TOTAL_CRYPTO_BYTES = 16 << 20


def looks_like_quic_initial(payload: bytes) -> bool:
    """Cheap test on the first bytes: a long-header Initial of a non-zero version.

    The Initial type bits are 00 except in QUIC v2, where they are 01 (RFC 9369 3.2).
    """
    if len(payload) < MIN_HEADER or payload[0] & 0xC0 != 0xC0:
        return False
    version = int.from_bytes(payload[1:5], "big")
    if version == 0:
        return False
    wanted = 0x01 if version == VERSION_2 else 0x00
    return (payload[0] >> 4) & 0x03 == wanted


@dataclass(slots=True)
class _Connection:
    """What the tracker keeps per client connection; `stream` is None once it is settled."""

    flow: FlowKey
    version: int
    rules: VersionRules
    scid: bytes
    keys: list[InitialKeys]
    dcids: list[bytes]
    stream: CryptoStream | None
    last_seen: float
    largest_pn: int = -1
    aliases: list[tuple[FlowKey, bytes]] = field(default_factory=list)


class QuicInitialTracker:
    """Turns client QUIC Initials into ClientHellos, one per connection.

    Connections are keyed by the 5-tuple and the client's original Destination Connection ID;
    later client Initials (to the server's CID, or after a Retry to the Retry's CID) are tied
    to the same connection through the client's Source Connection ID. `feed` never raises:
    everything it drops is counted in `counters` under a "quic." reason. While all unfinished
    hellos together hold more than `max_total_bytes`, the least recently used connections are
    forgotten ("quic.evicted-bytes").
    """

    def __init__(
        self,
        *,
        max_connections: int = 4096,
        max_crypto_bytes: int = 65536,
        max_total_bytes: int = MAX_TOTAL_CRYPTO_BYTES,
        timeout: float = 60.0,
    ) -> None:
        self.counters = Counters()
        self._max_connections = max_connections
        self._max_crypto_bytes = max_crypto_bytes
        self._max_total_bytes = max_total_bytes
        self._held = 0  # CRYPTO bytes held by all connections' streams
        self._timeout = timeout
        self._conns: Lru[tuple[FlowKey, bytes], _Connection] = Lru(max_connections)
        self._by_dcid: dict[tuple[FlowKey, bytes], _Connection] = {}
        self._by_scid: dict[tuple[FlowKey, bytes], _Connection] = {}

    def __len__(self) -> int:
        return len(self._conns)

    def buffered(self) -> int:
        """CRYPTO bytes held across all connections (for tests and health metrics)."""
        return self._held

    def feed(self, key: FlowKey, payload: bytes, ts: float) -> list[tuple[ClientHello, int]]:
        """Process one UDP payload sent on `key`; returns the ClientHellos it completed."""
        self.counters.add("quic.datagrams")
        found: list[tuple[ClientHello, int]] = []
        if not payload:
            self.counters.add("quic.empty")
        datagram, pos = bytes(payload), 0
        try:
            for _ in range(MAX_PACKETS_PER_DATAGRAM):
                if pos >= len(datagram):
                    break
                pos = self._packet(key, datagram, pos, ts=ts, found=found)
            else:
                if pos < len(datagram):
                    self.counters.add("quic.too-many-packets")
        except DecodeError as exc:
            self.counters.add(exc.reason)
        return found

    def expire(self, now: float) -> int:
        """Forget connections idle for longer than the timeout; returns how many."""
        stale = [k for k, c in self._conns.items() if c.last_seen < now - self._timeout]
        for conn_key in stale:
            self._drop(conn_key)
        self.counters.add("quic.expired", len(stale))
        return len(stale)

    def _packet(
        self,
        flow: FlowKey,
        datagram: bytes,
        pos: int,
        *,
        ts: float,
        found: list[tuple[ClientHello, int]],
    ) -> int:
        if not datagram[pos] & 0x80:
            self.counters.add("quic.short-header" if pos == 0 else "quic.coalesced-short")
            return len(datagram)
        if pos == 0 and not datagram[0] & 0x40:
            raise DecodeError("quic.no-fixed-bit")
        rules = _rules(read_version(datagram, pos))
        header = parse_long_header(datagram, pos, rules)
        if header.kind == "initial":
            packet = datagram[header.start : header.end]
            try:
                self._initial(flow, header, rules, packet, ts=ts, found=found)
            except DecodeError as exc:  # its length is known: the next packet can still be read
                self.counters.add(exc.reason)
        elif header.kind == "retry":
            self._retry(flow, header)
        else:
            self.counters.add(f"quic.skipped-{header.kind}")
        return header.end

    def _initial(
        self,
        flow: FlowKey,
        header: LongHeader,
        rules: VersionRules,
        packet: bytes,
        *,
        ts: float,
        found: list[tuple[ClientHello, int]],
    ) -> None:
        conn = self._by_dcid.get((flow, header.dcid))
        by_scid = conn is None and bool(header.scid)
        if by_scid:
            conn = self._by_scid.get((flow, header.scid))
        if conn is not None and conn.version != header.version:
            conn = None  # a new attempt after Version Negotiation: a new connection
        if conn is None:
            if (flow.reversed(), header.dcid) in self._by_scid:
                self.counters.add("quic.server-initial")
                return
            conn = self._open_new(flow, header, rules, packet, ts)
        elif not self._touch(conn, ts):
            return
        else:
            try:
                self._open_known(conn, header, packet)
            except DecodeError as exc:
                # Same 5-tuple and Source CID but keys that do not fit: a new connection.
                if exc.reason != "quic.decrypt-failed" or not by_scid:
                    raise
                conn = self._open_new(flow, header, rules, packet, ts)
        self._absorb(conn, found)
        self._keep_budget()  # after _absorb: a hello that just completed holds nothing

    def _touch(self, conn: _Connection, ts: float) -> bool:
        """Mark `conn` used; False (counted) when its hello is already settled."""
        conn.last_seen = ts
        self._conns.get((conn.flow, conn.dcids[0]))  # counts as use
        if conn.stream is None:
            self.counters.add("quic.after-hello")
            return False
        return True

    def _retry(self, flow: FlowKey, header: LongHeader) -> None:
        """A server's Retry names the CID the client's next Initial goes to: link it, so that
        even clients with empty Source CIDs (quic-go) are recognised after the Retry."""
        self.counters.add("quic.retry")
        conn = self._by_scid.get((flow.reversed(), header.dcid))
        if conn is not None and len(conn.aliases) < 2 * MAX_KEY_SETS + 2:
            self._alias(self._by_dcid, (conn.flow, header.scid), conn)

    def _open_new(
        self, flow: FlowKey, header: LongHeader, rules: VersionRules, packet: bytes, ts: float
    ) -> _Connection:
        keys = initial_keys(rules, header.dcid)
        pn, payload = unprotect(keys, packet, header.pn_offset - header.start, -1)
        stream = CryptoStream(self._max_crypto_bytes)
        conn = _Connection(flow, header.version, rules, header.scid, [keys], [header.dcid],
                           stream, ts, pn)  # fmt: skip
        self._insert(conn)
        self._feed_frames(conn, payload)
        return conn

    def _open_known(self, conn: _Connection, header: LongHeader, packet: bytes) -> None:
        pn_offset = header.pn_offset - header.start
        for keys in reversed(conn.keys):
            try:
                pn, payload = unprotect(keys, packet, pn_offset, conn.largest_pn)
            except DecodeError as exc:
                if exc.reason != "quic.decrypt-failed":
                    raise
                continue
            conn.largest_pn = max(conn.largest_pn, pn)
            self._feed_frames(conn, payload)
            return
        # After a Retry the client keys come from the Retry's CID, and the Initial carries
        # the Retry token (RFC 9000 17.2.5.2).
        if not header.token or len(conn.keys) >= MAX_KEY_SETS:
            raise DecodeError("quic.decrypt-failed", "no key set of the connection opens it")
        keys = initial_keys(conn.rules, header.dcid)
        pn, payload = unprotect(keys, packet, pn_offset, conn.largest_pn)
        conn.keys.append(keys)
        conn.dcids.append(header.dcid)
        self._alias(self._by_dcid, (conn.flow, header.dcid), conn)
        self.counters.add("quic.after-retry")
        conn.largest_pn = max(conn.largest_pn, pn)
        self._feed_frames(conn, payload)

    def _feed_frames(self, conn: _Connection, payload: bytes) -> None:
        self.counters.add("quic.initials-decrypted")
        frames = parse_initial_frames(payload, conn.rules.google)
        if frames.stopped:
            self.counters.add(frames.stopped)
        stream = conn.stream
        if stream is None:
            return
        before = stream.held()
        try:
            for offset, data in frames.crypto:
                stream.add(offset, data)
        except DecodeError as exc:
            self._settle(conn, exc.reason)
        self._held += stream.held() - before

    def _keep_budget(self) -> None:
        """Forget least recently used connections while their hellos hold more than the budget."""
        while self._held > self._max_total_bytes and len(self._conns) > 1:
            self._drop_oldest("quic.evicted-bytes")

    def _absorb(self, conn: _Connection, found: list[tuple[ClientHello, int]]) -> None:
        if conn.stream is None:
            return
        head = conn.stream.prefix()
        if len(head) < 4:
            return
        if head[0] != 0x01:
            self._settle(conn, "quic.not-client-hello")
            return
        need = 4 + int.from_bytes(head[1:4], "big")
        if need > self._max_crypto_bytes:
            self._settle(conn, "quic.hello-too-large")
        elif len(head) >= need:
            self._settle(conn, self._parse_hello(conn, head[:need], found))

    def _parse_hello(
        self, conn: _Connection, handshake: bytes, found: list[tuple[ClientHello, int]]
    ) -> str:
        try:
            hello = parse_client_hello(handshake)
        except DecodeError as exc:
            return exc.reason
        found.append((hello, conn.version))
        return "quic.hellos"

    def _settle(self, conn: _Connection, reason: str) -> None:
        """Stop reassembling: keep the connection only to recognise its later packets."""
        self.counters.add(reason)
        if conn.stream is not None:
            self._held -= conn.stream.held()
        conn.stream = None

    def _insert(self, conn: _Connection) -> None:
        if (conn.flow, conn.dcids[0]) in self._conns:  # replaced, not orphaned with its aliases
            self._drop((conn.flow, conn.dcids[0]))
        while len(self._conns) >= self._max_connections:
            self._drop_oldest("quic.evicted")
        self._conns.put((conn.flow, conn.dcids[0]), conn)
        self._alias(self._by_dcid, (conn.flow, conn.dcids[0]), conn)
        self._alias(self._by_scid, (conn.flow, conn.scid), conn)

    def _alias(
        self,
        table: dict[tuple[FlowKey, bytes], _Connection],
        key: tuple[FlowKey, bytes],
        conn: _Connection,
    ) -> None:
        table[key] = conn
        conn.aliases.append(key)

    def _drop_oldest(self, reason: str) -> None:
        oldest = self._conns.oldest()
        if oldest is not None:
            self._drop(oldest[0])
            self.counters.add(reason)

    def _drop(self, conn_key: tuple[FlowKey, bytes]) -> None:
        conn = self._conns.pop(conn_key)
        if conn is None:
            return
        if conn.stream is not None:
            self._held -= conn.stream.held()
        for table in (self._by_dcid, self._by_scid):
            for alias in conn.aliases:
                if table.get(alias) is conn:
                    del table[alias]


def _rules(version: int) -> VersionRules:
    if version == 0:
        raise DecodeError("quic.version-negotiation")
    rules = version_rules(version)
    if rules is not None:
        return rules
    if version >> 24 == ord("Q"):
        raise DecodeError("quic.gquic", f"version {version:#010x}")
    raise DecodeError("quic.unsupported-version", f"version {version:#010x}")
