"""The in-place DNS name reader against dnspython's, and the RDATA text's error policy."""

import struct

import dns.exception
import dns.name
import dns.wire
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.decode import dns_rdata
from egresswatch.decode.dns import parse_dns
from egresswatch.decode.dns_wire import read_name
from egresswatch.errors import DecodeError

_DNSPYTHON_REASONS: dict[type[dns.exception.DNSException], str] = {
    dns.name.BadPointer: "dns.bad-pointer",
    dns.name.PointerChainTooLong: "dns.compression-depth",
    dns.name.BadLabelType: "dns.bad-name",
    dns.name.NameTooLong: "dns.bad-name",
    dns.exception.FormError: "dns.truncated",
}


def _dnspython(wire: bytes, offset: int) -> tuple[list[bytes], int] | str:
    parser = dns.wire.Parser(wire, offset)
    try:
        name = dns.name.from_wire_parser(parser)
    except dns.exception.DNSException as exc:
        return _DNSPYTHON_REASONS[type(exc)]
    return list(name.labels[:-1]), parser.current


def _ours(wire: bytes, offset: int) -> tuple[list[bytes], int] | str:
    try:
        return read_name(wire, offset)
    except DecodeError as exc:
        return exc.reason


# Names built from labels, pointers (mostly backwards), reserved label types and zeros.
_PIECE = st.one_of(
    st.binary(min_size=1, max_size=70).map(lambda b: bytes([min(len(b) - 1, 63)]) + b[1:]),
    st.integers(0, 40).map(lambda target: bytes([0xC0, target])),
    st.integers(0x40, 0xBF).map(lambda kind: bytes([kind])),
    st.just(b"\x00"),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_PIECE, max_size=12), st.integers(0, 60))
def test_read_name_agrees_with_dnspython(pieces: list[bytes], offset: int) -> None:
    wire = b"".join(pieces)
    offset = min(offset, len(wire))
    assert _ours(wire, offset) == _dnspython(wire, offset)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 300))
def test_read_name_agrees_with_dnspython_on_any_bytes(wire: bytes, offset: int) -> None:
    offset = min(offset, len(wire))
    assert _ours(wire, offset) == _dnspython(wire, offset)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([*range(1, 70), 99, 249, 256, 257, 32768, 65280]), st.binary(max_size=48))
def test_rdata_dnspython_rejects_takes_the_generic_form(rdtype: int, rdata: bytes) -> None:
    header = struct.pack("!6H", 1, 0x8000, 0, 1, 0, 0)
    answer = b"\x00" + struct.pack("!HHIH", rdtype, 1, 60, len(rdata)) + rdata
    (record,) = parse_dns(header + answer).answers
    assert record.data is None or isinstance(record.data, str)


def test_a_fault_in_our_own_formatter_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(soa: object) -> str:
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(dns_rdata, "_soa_text", broken)  # injects the fault, nothing else
    header = struct.pack("!6H", 1, 0x8000, 0, 1, 0, 0)
    soa = b"\x00\x00" + struct.pack("!5I", 1, 2, 3, 4, 5)  # root mname and rname
    answer = b"\x00" + struct.pack("!HHIH", 6, 1, 60, len(soa)) + soa
    with pytest.raises(ZeroDivisionError):
        parse_dns(header + answer)
