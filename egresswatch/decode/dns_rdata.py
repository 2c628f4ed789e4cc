"""The text of RDATA other than addresses, through dnspython (forms listed in decode/dns.py).

Loaded on the first answer that needs it: dnspython's RDATA machinery is slow to import.
"""

import re
import struct

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.SRV
import dns.rdtypes.mxbase
import dns.rdtypes.nsbase
import dns.rdtypes.svcbbase
import dns.rdtypes.txtbase
import dns.wire

from egresswatch.decode.dns_wire import labels_text

_TARGET_TYPES = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME
_TEXT_TYPES = frozenset({16, 99})  # TXT, SPF
_SVCB_TYPES = frozenset({64, 65})  # SVCB, HTTPS
# bytes our TXT form escapes
_TEXT_ESCAPES = re.compile(rb"[^\x20-\x7e]|\\")
# What dnspython's RDATA readers raise on hostile bytes (anything else is a bug to surface).
_DNSPYTHON_REJECTS = (
    dns.exception.DNSException,
    ValueError,  # includes UnicodeDecodeError and ipaddress errors
    TypeError,
    IndexError,
    KeyError,
    struct.error,
)


def rdata_text(wire: bytes, start: int, rdlen: int, rdclass: int, rdtype: int) -> str:
    """Our text form of the RDATA at wire[start:start + rdlen]; RFC 3597's generic form when
    dnspython rejects it. Our own formatting is not guarded: a fault there is a bug to see."""
    rdata = _parsed_rdata(wire, start, rdlen, rdclass, rdtype)
    if rdata is None:
        return f"\\# {rdlen} {wire[start : start + rdlen].hex()}"
    return _format_rdata(rdata)


def _parsed_rdata(
    wire: bytes, start: int, rdlen: int, rdclass: int, rdtype: int
) -> dns.rdata.Rdata | None:
    """dnspython's reading of the RDATA, or None when it rejects it (the generic form is used)."""
    # A fresh parser over the whole message: names in RDATA may point anywhere before it.
    parser = dns.wire.Parser(wire, start)
    try:
        with parser.restrict_to(rdlen):
            return dns.rdata.from_wire_parser(
                dns.rdataclass.RdataClass.make(rdclass),
                dns.rdatatype.RdataType.make(rdtype),
                parser,
            )
    except _DNSPYTHON_REJECTS:
        # dnspython's many rdata classes raise these types on hostile RDATA; the record's
        # bounds are already known good, so the generic form is always valid.
        return None


def _format_rdata(rdata: dns.rdata.Rdata) -> str:
    text = _name_form(rdata)
    if text is None:
        text = _string_form(rdata)
    return text if text is not None else str(rdata.to_text())


def _name_form(rdata: dns.rdata.Rdata) -> str | None:
    """Our own text for the types whose data is mostly a name (so it gets our name form)."""
    rdtype = rdata.rdtype
    if rdtype in _TARGET_TYPES and isinstance(rdata, dns.rdtypes.nsbase.NSBase):
        return _name_text(rdata.target)
    if rdtype == 15 and isinstance(rdata, dns.rdtypes.mxbase.MXBase):
        return f"{rdata.preference} {_name_text(rdata.exchange)}"
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return f"{rdata.priority} {rdata.weight} {rdata.port} {_name_text(rdata.target)}"
    if isinstance(rdata, dns.rdtypes.ANY.SOA.SOA):
        return _soa_text(rdata)
    return None


def _string_form(rdata: dns.rdata.Rdata) -> str | None:
    if rdata.rdtype in _TEXT_TYPES and isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return "".join(_escape_text(part) for part in rdata.strings)
    if rdata.rdtype in _SVCB_TYPES and isinstance(rdata, dns.rdtypes.svcbbase.SVCBBase):
        return _svcb_text(rdata)
    return None


def _soa_text(soa: dns.rdtypes.ANY.SOA.SOA) -> str:
    names = f"{_name_text(soa.mname)} {_name_text(soa.rname)}"
    return f"{names} {soa.serial} {soa.refresh} {soa.retry} {soa.expire} {soa.minimum}"


def _svcb_text(svcb: dns.rdtypes.svcbbase.SVCBBase) -> str:
    head = f"{svcb.priority} {_name_text(svcb.target)}"
    # dnspython writes "priority target params..."; the target has no unescaped spaces.
    params = str(svcb.to_text()).split(" ", 2)[2:]
    return " ".join([head, *params])


def _name_text(name: dns.name.Name) -> str:
    return labels_text(name.labels[:-1])  # names from the wire are absolute: drop the root


def _escape_text(data: bytes) -> str:
    if not _TEXT_ESCAPES.search(data):
        return data.decode("ascii")
    return data.decode("latin-1").translate(_BYTE_TEXT)


def _byte_text(byte: int) -> str:
    if byte == 0x5C:
        return "\\\\"
    return chr(byte) if 0x20 <= byte < 0x7F else f"\\{byte:03d}"


_BYTE_TEXT = {byte: _byte_text(byte) for byte in range(256)}
