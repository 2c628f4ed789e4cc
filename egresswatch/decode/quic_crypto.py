"""QUIC Initial packet protection (RFC 9001 5, RFC 9369 3.3): the client's Initial keys per
version, header-protection removal and AEAD opening. Pure functions; failures are DecodeError.
"""

import hmac
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from egresswatch.errors import DecodeError

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF
GOOGLE_T050 = 0x54303530
GOOGLE_T051 = 0x54303531

SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
# Google's TLS-based gQUIC versions use IETF Initial protection with their own salts
# (the values Wireshark and nDPI use).
SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

TAG_LENGTH = 16
_SHA256_SIZE = 32
SAMPLE_LENGTH = 16


@dataclass(frozen=True, slots=True)
class VersionRules:
    """How one QUIC version protects Initials and numbers its long-header packet types.

    `types` maps the two type bits of the first byte to "initial", "0rtt", "handshake", "retry";
    `google` marks gQUIC-with-TLS versions, whose frames use Google's numbering.
    """

    salt: bytes
    label_prefix: bytes
    types: tuple[str, str, str, str]
    google: bool = False


_V1_TYPES = ("initial", "0rtt", "handshake", "retry")
_V2_TYPES = ("retry", "initial", "0rtt", "handshake")  # RFC 9369 3.2
_RULES_V1 = VersionRules(SALT_V1, b"quic ", _V1_TYPES)
_RULES_V2 = VersionRules(SALT_V2, b"quicv2 ", _V2_TYPES)
_RULES_D23 = VersionRules(SALT_DRAFT_23, b"quic ", _V1_TYPES)
_RULES_D29 = VersionRules(SALT_DRAFT_29, b"quic ", _V1_TYPES)
_RULES_GOOGLE = {
    GOOGLE_T050: VersionRules(SALT_T050, b"quic ", _V1_TYPES, google=True),
    GOOGLE_T051: VersionRules(SALT_T051, b"quic ", _V1_TYPES, google=True),
}
_DRAFT_BASE = 0xFF000000


def version_rules(version: int) -> VersionRules | None:
    """The protection rules of `version`, or None when we cannot decrypt its Initials."""
    if version == VERSION_1:
        return _RULES_V1
    if version == VERSION_2:
        return _RULES_V2
    draft = version - _DRAFT_BASE
    if 23 <= draft <= 28:
        return _RULES_D23
    if 29 <= draft <= 34:
        return _RULES_D29
    return _RULES_GOOGLE.get(version)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869 2.2)."""
    return hmac.digest(salt, ikm, "sha256")


def hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1) with an empty context, SHA-256.

    Every QUIC Initial output is at most 32 bytes, so one HMAC block is enough.
    """
    if length > _SHA256_SIZE:
        raise ValueError("HKDF-Expand-Label longer than one SHA-256 block")
    return hmac.digest(secret, _expand_info(label, length), "sha256")[:length]


@lru_cache(maxsize=64)
def _expand_info(label: bytes, length: int) -> bytes:
    """HkdfLabel plus HKDF-Expand's block counter: the same few labels for every connection."""
    full = b"tls13 " + label
    return length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00\x01"


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """One direction's Initial packet-protection keys, ready to use."""

    key: bytes
    iv: bytes
    hp: bytes
    aead: AESGCM
    hp_block: CipherContext  # AES-ECB: each 16-byte update is one independent block


def initial_secret(rules: VersionRules, dcid: bytes, label: bytes = b"client in") -> bytes:
    """The client (or with label b"server in", server) Initial secret for a connection."""
    return hkdf_expand_label(hkdf_extract(rules.salt, dcid), label, 32)


def initial_keys(rules: VersionRules, dcid: bytes, label: bytes = b"client in") -> InitialKeys:
    """Derive the Initial keys of the client's original Destination Connection ID `dcid`."""
    secret = initial_secret(rules, dcid, label)
    key = hkdf_expand_label(secret, rules.label_prefix + b"key", 16)
    iv = hkdf_expand_label(secret, rules.label_prefix + b"iv", 12)
    hp = hkdf_expand_label(secret, rules.label_prefix + b"hp", 16)
    # AES-ECB on a single 16-byte block is the header-protection PRF RFC 9001 5.4.3 mandates.
    hp_block = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()  # noqa: S305
    return InitialKeys(key, iv, hp, AESGCM(key), hp_block)


def decode_packet_number(largest: int, truncated: int, pn_len: int) -> int:
    """Recover a full packet number from its truncated form (RFC 9000 A.3)."""
    nbits = pn_len * 8
    expected = largest + 1
    win = 1 << nbits
    hwin = win // 2
    mask = win - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


def unprotect(
    keys: InitialKeys, packet: bytes, pn_offset: int, largest_pn: int
) -> tuple[int, bytes]:
    """Remove header protection and open one long-header packet.

    `packet` is exactly one packet (header through tag); `pn_offset` is where its packet number
    starts. Returns (packet number, plaintext payload).

    Raises:
        DecodeError("quic.truncated"): too short to hold a sample and a tag.
        DecodeError("quic.decrypt-failed"): the AEAD tag does not verify.
    """
    if len(packet) < pn_offset + 4 + SAMPLE_LENGTH:
        raise DecodeError("quic.truncated", f"{len(packet)}-byte packet, pn at {pn_offset}")
    sample = packet[pn_offset + 4 : pn_offset + 4 + SAMPLE_LENGTH]
    mask = keys.hp_block.update(sample)
    first = packet[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_mask = mask[1 : 1 + pn_len]
    pn_bytes = bytes(
        b ^ m for b, m in zip(packet[pn_offset : pn_offset + pn_len], pn_mask, strict=True)
    )
    truncated = int.from_bytes(pn_bytes, "big")
    pn = decode_packet_number(largest_pn, truncated, pn_len)
    header = bytes([first]) + packet[1:pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    body = packet[pn_offset + pn_len :]
    if len(body) < TAG_LENGTH:
        raise DecodeError("quic.truncated", "no room for the AEAD tag")
    try:
        return pn, keys.aead.decrypt(nonce, body, header)
    except InvalidTag:
        raise DecodeError("quic.decrypt-failed", f"packet number {pn}") from None
