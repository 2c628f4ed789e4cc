"""TLS ClientHello decoding: the server name, ALPN and versions a client announces, from raw bytes.

Pure functions of their input (no scapy, no I/O); the only exception they raise is DecodeError.
"""

from egresswatch.errors import DecodeError
from egresswatch.model import ClientHello

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
MAX_RECORD_LENGTH = 2**14 + 2048  # TLSCiphertext bound; plaintext hellos are far below it
MAX_HELLO_BYTES = 65536  # stream bytes (headers included) we read before giving up
MAX_RECORDS = 512  # a 64 KiB hello in 128-byte fragments; more is an attack, not a client

EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
# encrypted_client_hello (0xfe0d, draft-ietf-tls-esni-13 and later), the code points of
# earlier ECH drafts (0xfe08-0xfe0c) and the withdrawn ESNI extension (0xffce): all mean
# "the SNI we can read may not be the real destination". Chrome also sends a GREASE ECH.
ECH_EXTENSIONS = frozenset({0xFE08, 0xFE09, 0xFE0A, 0xFE0B, 0xFE0C, 0xFE0D, 0xFFCE})


def looks_like_tls_client_hello(payload: bytes) -> bool:
    """Cheap test on a TCP segment's first bytes: a handshake record that may hold a ClientHello."""
    n = len(payload)
    if n < 3 or payload[0] != CONTENT_HANDSHAKE or payload[1] != 3 or payload[2] > 4:
        return False
    return n < 6 or payload[5] == HANDSHAKE_CLIENT_HELLO


def decode_name(raw: bytes) -> str:
    """Text form of an SNI or ALPN name as sent: UTF-8 when valid, else invalid bytes as `\\xHH`.

    Case and control characters are kept; the output layer escapes them for display.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


class _Reader:
    """Bounds-checked big-endian reads over one byte string; overruns raise DecodeError."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def take(self, n: int) -> int:
        """Advance over n bytes and return the offset where they start."""
        start = self.pos
        if start + n > self.end:
            raise DecodeError("tls.bad-length", f"{n} bytes at {start}, limit {self.end}")
        self.pos = start + n
        return start

    def u8(self) -> int:
        return self.buf[self.take(1)]

    def u16(self) -> int:
        at = self.take(2)
        return (self.buf[at] << 8) | self.buf[at + 1]

    def vector(self, width: int) -> "_Reader":
        """A reader over the next length-prefixed vector (`width`-byte length) and skip it here."""
        n = self.u8() if width == 1 else self.u16()
        at = self.take(n)
        return _Reader(self.buf, at, at + n)

    def rest(self) -> bytes:
        return self.buf[self.pos : self.end]


def parse_client_hello(handshake: bytes | memoryview) -> ClientHello:
    """Parse one handshake message: msg_type 1, its 3-byte length, then the ClientHello body.

    Bytes after the declared message length are ignored. Of several server_name entries (or
    extensions) the first host_name wins; empty extension blocks (SSLv3-era hellos) are allowed.

    Returns:
        The ClientHello; `sni` is None when no server_name extension carries a host_name.
    Raises:
        DecodeError: "tls.not-client-hello", "tls.truncated" (fewer bytes than the header
        declares), "tls.bad-length" (an inner length overruns its container) or
        "tls.bad-extension" (a known extension's content is malformed).
    """
    buf = bytes(handshake)
    if len(buf) < 4:
        raise DecodeError("tls.truncated", f"{len(buf)}-byte handshake header")
    if buf[0] != HANDSHAKE_CLIENT_HELLO:
        raise DecodeError("tls.not-client-hello", f"handshake type {buf[0]}")
    end = 4 + int.from_bytes(buf[1:4], "big")
    if len(buf) < end:
        raise DecodeError("tls.truncated", f"{len(buf)} of {end} bytes")
    body = _Reader(buf, 4, end)
    legacy_version = body.u16()
    body.take(32)  # random
    body.vector(1)  # legacy_session_id
    body.vector(2)  # cipher_suites
    body.vector(1)  # legacy_compression_methods
    if body.pos == body.end:
        return ClientHello(None, (), legacy_version, (), False)
    return _parse_extensions(body.vector(2), legacy_version)


def _parse_extensions(exts: _Reader, legacy_version: int) -> ClientHello:
    sni: str | None = None
    alpn: tuple[str, ...] | None = None
    versions: tuple[int, ...] | None = None
    ech = False
    buf, pos, end = exts.buf, exts.pos, exts.end
    # Inlined rather than _Reader calls: a hello has ~20 extensions and we want 3 of them.
    while pos < end:
        if pos + 4 > end:
            raise DecodeError("tls.bad-length", f"extension header at {pos}")
        ext_type = (buf[pos] << 8) | buf[pos + 1]
        start = pos + 4
        pos = start + ((buf[pos + 2] << 8) | buf[pos + 3])
        if pos > end:
            raise DecodeError("tls.bad-length", f"extension {ext_type} overruns at {start}")
        if ext_type == EXT_SERVER_NAME and sni is None:
            sni = _server_name(_Reader(buf, start, pos))
        elif ext_type == EXT_ALPN and alpn is None:
            alpn = _alpn(_Reader(buf, start, pos))
        elif ext_type == EXT_SUPPORTED_VERSIONS and versions is None:
            versions = _supported_versions(_Reader(buf, start, pos))
        elif ext_type in ECH_EXTENSIONS:
            ech = True
    return ClientHello(sni, alpn or (), legacy_version, versions or (), ech)


def _server_name(data: _Reader) -> str | None:
    """The first host_name (type 0) of a server_name extension (RFC 6066 section 3)."""
    names = _whole_vector(data, 2, "server_name")
    while names.pos < names.end:
        name_type = names.u8()
        name = names.vector(2)
        if name_type == 0:
            return decode_name(name.rest())
    return None


def _alpn(data: _Reader) -> tuple[str, ...]:
    protocols = _whole_vector(data, 2, "alpn")
    out: list[str] = []
    while protocols.pos < protocols.end:
        out.append(decode_name(protocols.vector(1).rest()))
    return tuple(out)


def _supported_versions(data: _Reader) -> tuple[int, ...]:
    versions = _whole_vector(data, 1, "supported_versions")
    raw = versions.rest()
    if len(raw) % 2:
        raise DecodeError("tls.bad-extension", "supported_versions: odd length")
    pairs = (int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))
    return tuple(v for v in pairs if not is_grease(v))


def _whole_vector(data: _Reader, width: int, what: str) -> _Reader:
    """The single vector an extension consists of; its length must fill the extension exactly."""
    try:
        inner = data.vector(width)
    except DecodeError as exc:
        raise DecodeError("tls.bad-extension", f"{what}: {exc}") from exc
    if data.pos != data.end:
        raise DecodeError("tls.bad-extension", f"{what}: {data.end - data.pos} trailing bytes")
    return inner


def client_hello_from_stream(data: bytes | memoryview) -> ClientHello | None:
    """Find the ClientHello at the start of a client-to-server TCP byte stream.

    Walks TLS records (handshake type, versions 0x0300-0x0304) and joins handshake fragments
    that span several records.

    Returns:
        The ClientHello once its bytes are all present, None while more bytes are needed.
    Raises:
        DecodeError: the stream is not a TLS ClientHello ("tls.not-tls", "tls.bad-length",
        "tls.not-client-hello", ...) or will not finish within 64 KiB ("tls.too-large") or
        MAX_RECORDS records ("tls.too-fragmented"); the caller should stop following it.
    """
    fragments: list[bytes | memoryview] = []
    have = 0
    need = 4  # handshake header first; then the whole message
    pos = 0
    view = memoryview(data)
    while have < need:
        if len(fragments) >= MAX_RECORDS:
            raise DecodeError("tls.too-fragmented", f"{MAX_RECORDS} records")
        length = _record_length(view, pos)
        if length is None or pos + 5 + length > len(view):
            _check_bound(pos + need - have)
            return None
        fragments.append(view[pos + 5 : pos + 5 + length])
        have += length
        pos += 5 + length
        if need == 4 and have >= 4:
            need = _hello_length(fragments)
    _check_bound(pos + need - have)
    return parse_client_hello(b"".join(fragments) if len(fragments) > 1 else fragments[0])


def _record_length(view: memoryview, pos: int) -> int | None:
    """The length of the handshake record at `pos`; None when its 5-byte header is incomplete."""
    header = view[pos : pos + 5]
    if len(header) >= 1 and header[0] != CONTENT_HANDSHAKE:
        raise DecodeError("tls.not-tls", f"content type {header[0]} at {pos}")
    if (len(header) >= 2 and header[1] != 3) or (len(header) >= 3 and header[2] > 4):
        raise DecodeError("tls.not-tls", f"record version {bytes(header[1:3]).hex()}")
    if len(header) < 5:
        return None
    length = (header[3] << 8) | header[4]
    if length == 0 or length > MAX_RECORD_LENGTH:
        raise DecodeError("tls.bad-length", f"record length {length} at {pos}")
    return length


def _hello_length(fragments: list[bytes | memoryview]) -> int:
    """Total bytes of the handshake message whose first four bytes the fragments now hold."""
    head = bytes(fragments[0][:4]) if len(fragments[0]) >= 4 else b"".join(fragments)[:4]
    if head[0] != HANDSHAKE_CLIENT_HELLO:
        raise DecodeError("tls.not-client-hello", f"handshake type {head[0]}")
    need = 4 + int.from_bytes(head[1:4], "big")
    if need > MAX_HELLO_BYTES:
        raise DecodeError("tls.too-large", f"{need}-byte ClientHello")
    return need


def _check_bound(hello_end: int) -> None:
    """Give up on a hello that ends (or can only end) past MAX_HELLO_BYTES of stream."""
    if hello_end > MAX_HELLO_BYTES:
        raise DecodeError("tls.too-large", f"hello ends past stream byte {hello_end}")
