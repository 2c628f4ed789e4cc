"""Write a batch of Events into the tables inside the caller's transaction, interning side rows.

The id caches are only valid for the transaction they were filled in and the ones after it:
the writer calls `forget()` whenever a transaction rolls back.
"""

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, insert

from egresswatch.model import Event, Observation, ProcessInfo
from egresswatch.store.interning import insert_missing, intern_row
from egresswatch.store.schema import (
    ATTRIBUTION_METHOD_CODES,
    DNS_PROTO_CODES,
    FLAG_DNS_ID,
    FLAG_DNS_OPCODE,
    FLAG_DNS_PROTO,
    FLAG_DNS_RESPONSE,
    FLAG_DNS_TRUNCATED,
    FLAG_KIND,
    FLAG_NAME_CONFLICT,
    FLAG_NAME_IS_HOST,
    FLAG_NAME_SOURCE,
    FLAG_PORTS_SWAPPED,
    FLAG_TRANSPORT,
    FLAG_TUNNELED,
    KIND_CODES,
    NAME_SOURCE_CODES,
    TRANSPORT_CODES,
    pack_flags,
    pack_ports,
)
from egresswatch.store.statements import (
    ADDR,
    DEST_CLASS,
    DEST_SEEN,
    DTOOL_SEEN,
    HOST_NAME,
    LABEL_TEXT,
    NAME_SEEN,
    T_ANSWER,
    T_DEST,
    T_DTOOL,
    T_EXE,
    T_NAME,
    T_PROC,
    insert_events,
)

CACHE_LIMIT = 100_000
ADDRESS_TYPES = frozenset({"A", "AAAA"})


def storable(text: str) -> str:
    """`text` made storable in any backend: NUL and lone surrogates become backslash escapes.

    PostgreSQL TEXT cannot hold NUL and UTF-8 cannot hold lone surrogates; everything else,
    however hostile, is stored exactly (display escaping is the reader's job).
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def opt(text: str | None) -> str | None:
    return None if text is None else storable(text)


def to_json(items: Sequence[Any]) -> str:
    # ensure_ascii keeps NULs and surrogates as \u escapes, so the JSON round-trips exactly.
    return json.dumps(list(items), separators=(",", ":"))


@dataclass
class _Seen:
    """first/last/count aggregated over one batch for an upserted row."""

    first: float
    last: float
    count: int = 0
    extra: float | None = None

    def add(self, ts: float, extra: float | None = None) -> None:
        self.first, self.last, self.count = min(self.first, ts), max(self.last, ts), self.count + 1
        if extra is not None:
            self.extra = extra if self.extra is None else max(self.extra, extra)


@dataclass
class Ingest:
    """Interning caches plus the per-batch aggregates for destinations and name bindings."""

    ids: dict[tuple[str, Hashable], int] = field(default_factory=dict)
    _dest: dict[int, _Seen] = field(default_factory=dict)
    _dest_class: dict[int, tuple[str | None, str | None, str | None, float | None]] = field(
        default_factory=dict
    )
    _dtool: dict[tuple[int, str], _Seen] = field(default_factory=dict)
    _names: dict[tuple[int, int, int], _Seen] = field(default_factory=dict)

    def forget(self) -> None:
        self.ids.clear()
        self._dest.clear()
        self._dest_class.clear()
        self._dtool.clear()
        self._names.clear()

    def write(self, conn: Connection, events: Sequence[Event]) -> int:
        """Insert `events` (one transaction is the caller's); returns how many were written."""
        return len(self.write_ids(conn, events))

    def write_ids(self, conn: Connection, events: Sequence[Event]) -> list[int]:
        """Insert `events` (one transaction is the caller's); returns their ids, in order."""
        if len(self.ids) > CACHE_LIMIT:
            self.ids.clear()
        rows = [self._event_row(conn, ev) for ev in events]
        event_ids = insert_events(conn, rows)
        answers = [
            a
            for eid, ev in zip(event_ids, events, strict=True)
            for a in self._answers(conn, eid, ev)
        ]
        if answers:
            conn.execute(insert(T_ANSWER), answers)
        self._flush_aggregates(conn)
        return event_ids

    # -- interning -------------------------------------------------------------------------

    def _intern(self, conn: Connection, col: Column[Any], value: str) -> int:
        key = (col.key, value)  # the column names differ, so they keep the tables apart
        hit = self.ids.get(key)
        if hit is None:
            hit = self.ids[key] = intern_row(conn, col.table, {col.key: value})
        return hit

    def label(self, conn: Connection, text: str) -> int:
        return self._intern(conn, LABEL_TEXT, storable(text))

    def host(self, conn: Connection, name: str) -> int:
        return self._intern(conn, HOST_NAME, storable(name))

    def address(self, conn: Connection, addr: str) -> int:
        return self._intern(conn, ADDR, storable(addr)[:64])

    def _executable(self, conn: Connection, path: str | None, sha: str | None) -> int | None:
        if path is None and sha is None:
            return None
        key = ("executables", (path, sha))
        hit = self.ids.get(key)
        if hit is None:
            values = {"path": opt(path), "sha256": _sha_bytes(sha)}
            hit = intern_row(conn, T_EXE, values)
            self.ids[key] = hit
        return hit

    def process(self, conn: Connection, proc: ProcessInfo, ts: float) -> int:
        key = ("processes", proc)
        hit = self.ids.get(key)
        if hit is None:
            values = _process_values(proc, self._executable(conn, proc.exe, proc.exe_sha256))
            hit = intern_row(conn, T_PROC, values, {"first_seen": ts})
            self.ids[key] = hit
        return hit

    def _destination(self, conn: Connection, ev: Event, ts: float) -> int | None:
        if ev.host is None:
            return None
        host_id = self.host(conn, ev.host)
        key = ("destinations", host_id)
        dest = self.ids.get(key)
        if dest is None:
            values = {"hostname_id": host_id}
            extra = {"first_seen": ts, "last_seen": ts, "count": 0}
            dest = intern_row(conn, T_DEST, values, extra)
            self.ids[key] = dest
        self._dest.setdefault(dest, _Seen(ts, ts)).add(ts)
        if ev.category is not None:
            self._dest_class[dest] = (
                opt(ev.category), opt(ev.catalog_entry), opt(ev.category_source),
                ev.category_confidence,
            )  # fmt: skip
        if ev.tool is not None:
            self._dest_tool(conn, dest, storable(ev.tool), ts)
        return dest

    def _dest_tool(self, conn: Connection, dest: int, tool: str, ts: float) -> None:
        key = ("destination_tools", (dest, tool))
        if key not in self.ids:
            values = {"destination_id": dest, "tool": tool}
            extra = {"first_seen": ts, "last_seen": ts, "count": 0}
            insert_missing(conn, T_DTOOL, values, extra)
            self.ids[key] = 1
        self._dtool.setdefault((dest, tool), _Seen(ts, ts)).add(ts)

    def _bind_name(
        self,
        conn: Connection,
        addr_id: int,
        host_id: int,
        source: str,
        *,
        ts: float,
        expires: float | None,
    ) -> None:
        key = (addr_id, host_id, NAME_SOURCE_CODES[source])
        ids_key = ("names", key)
        if ids_key not in self.ids:
            values = {"address_id": addr_id, "hostname_id": host_id, "source": key[2]}
            extra = {"first_seen": ts, "last_seen": ts, "expires": expires}
            self.ids[ids_key] = intern_row(conn, T_NAME, values, extra)
        self._names.setdefault(key, _Seen(ts, ts)).add(ts, expires)

    # -- rows ------------------------------------------------------------------------------

    def _event_row(self, conn: Connection, ev: Event) -> dict[str, Any]:
        obs = ev.observation
        proc = ev.attribution.process
        ports, swapped = pack_ports(obs.flow.sport, obs.flow.dport)
        name = _event_name(ev)
        name_is_host = name is not None and name == ev.host
        row: dict[str, Any] = {
            "ts": obs.ts,
            "flags": _flags(ev, swapped, name_is_host),
            "src_id": self.address(conn, obs.flow.src),
            "dst_id": self.address(conn, obs.flow.dst),
            "ports": ports,
            "status_id": self.label(conn, ev.attribution.status),
            "process_id": None if proc is None else self.process(conn, proc, obs.ts),
            "destination_id": self._destination(conn, ev, obs.ts),
            "tool_id": None if ev.tool is None else self.label(conn, ev.tool),
            "name_id": None if name is None or name_is_host else self.host(conn, name),
            "detail_id": self._detail(conn, ev),
            "attribution_method": _method_code(ev),
            "name_candidates": json.dumps(ev.name_candidates) if ev.name_ambiguous else None,
            "node_id": None if ev.node is None else self.label(conn, ev.node),
        }
        hello = obs.hello
        if hello is not None and hello.sni is not None:
            source = "quic-sni" if obs.kind == "quic" else "sni"
            sni_id = self.host(conn, hello.sni)
            self._bind_name(conn, row["dst_id"], sni_id, source, ts=obs.ts, expires=None)
        return row

    def _detail(self, conn: Connection, ev: Event) -> int | None:
        obs = ev.observation
        dns, hello = obs.dns, obs.hello
        key = (
            None if dns is None else (dns.qtype, dns.rcode),
            None if hello is None else (hello.alpn, hello.legacy_version,
                                        hello.supported_versions, hello.ech),
            obs.quic_version,
        )  # fmt: skip
        if key == (None, None, None):
            return None
        hit = self.ids.get(("detail", key))
        if hit is None:
            hit = self.ids[("detail", key)] = self.label(conn, detail_text(obs))
        return hit

    def _answers(self, conn: Connection, event_id: int, ev: Event) -> list[dict[str, Any]]:
        dns = ev.observation.dns
        if dns is None or not dns.answers:
            return []
        rows = []
        for ord_, ans in enumerate(dns.answers):
            addr_id = None
            if ans.type in ADDRESS_TYPES and ans.data is not None:
                addr_id = self.address(conn, ans.data)
                bound = self.host(conn, dns.qname or ans.name)
                ts = ev.observation.ts
                self._bind_name(conn, addr_id, bound, "dns", ts=ts, expires=ts + ans.ttl)
            rows.append(
                {
                    "event_id": event_id,
                    "ord": ord_,
                    # The common answer is for the question's own name: NULL says so.
                    "hostname_id": None if ans.name == dns.qname else self.host(conn, ans.name),
                    "type_id": self.label(conn, ans.type),
                    "address_id": addr_id,
                    "data": None if addr_id is not None else opt(ans.data),
                    "ttl": ans.ttl,
                }
            )
        return rows

    # -- aggregates ------------------------------------------------------------------------

    def _flush_aggregates(self, conn: Connection) -> None:
        # One executemany per table: the statements are built once (module level). Rows go in
        # id order, so agents sharing a PostgreSQL database lock them in one order (no deadlock).
        if self._dest:
            conn.execute(DEST_SEEN, [_seen_params(d, s) for d, s in sorted(self._dest.items())])
        if self._dest_class:
            classes = [
                {"b_id": d, "b_cat": c, "b_entry": e, "b_src": s, "b_conf": f}
                for d, (c, e, s, f) in sorted(self._dest_class.items())
            ]
            conn.execute(DEST_CLASS, classes)
        if self._dtool:
            tools = [
                _seen_params(d, s) | {"b_tool": t} for (d, t), s in sorted(self._dtool.items())
            ]
            conn.execute(DTOOL_SEEN, tools)
        if self._names:
            names = [
                {"b_id": self.ids[("names", key)], "b_last": s.last, "b_exp": s.extra}
                for key, s in sorted(self._names.items())
            ]
            conn.execute(NAME_SEEN, names)
        self._dest.clear()
        self._dest_class.clear()
        self._dtool.clear()
        self._names.clear()


def detail_text(obs: Observation) -> str:
    """The few-valued parts of an observation as one JSON label: a list of tagged parts,
    ["d", qtype, rcode] for DNS, ["h", alpn, legacy_version, supported_versions, ech] for a
    hello, ["v", quic_version], in that order (queries look for a leading DNS part).
    """
    parts: list[list[Any]] = []
    if obs.dns is not None:
        parts.append(["d", obs.dns.qtype, obs.dns.rcode])
    if obs.hello is not None:
        h = obs.hello
        parts.append(["h", list(h.alpn), h.legacy_version, list(h.supported_versions), h.ech])
    if obs.quic_version is not None:
        parts.append(["v", obs.quic_version])
    return to_json(parts)


def _event_name(ev: Event) -> str | None:
    """The name the packet itself carries: a DNS question's or a hello's SNI."""
    obs = ev.observation
    if obs.dns is not None:
        return obs.dns.qname
    return None if obs.hello is None else obs.hello.sni


def _method_code(ev: Event) -> int | None:
    method = ev.attribution.method
    return None if method is None else ATTRIBUTION_METHOD_CODES[method]


def _flags(ev: Event, ports_swapped: int, name_is_host: bool) -> int:
    obs = ev.observation
    fields = {
        FLAG_KIND: KIND_CODES[obs.kind],
        FLAG_TRANSPORT: TRANSPORT_CODES[obs.flow.transport],
        FLAG_TUNNELED: int(obs.tunneled),
        FLAG_NAME_CONFLICT: int(ev.name_conflict),
        FLAG_NAME_SOURCE: 0 if ev.name_source is None else NAME_SOURCE_CODES[ev.name_source] + 1,
        FLAG_DNS_PROTO: 0 if obs.dns_proto is None else DNS_PROTO_CODES[obs.dns_proto] + 1,
        FLAG_PORTS_SWAPPED: ports_swapped,
        FLAG_NAME_IS_HOST: int(name_is_host),
    }
    if obs.dns is not None:
        fields[FLAG_DNS_RESPONSE] = int(obs.dns.is_response)
        fields[FLAG_DNS_TRUNCATED] = int(obs.dns.truncated)
        fields[FLAG_DNS_ID] = obs.dns.id
        fields[FLAG_DNS_OPCODE] = obs.dns.opcode
    return pack_flags(fields)


def _seen_params(row_id: int, seen: _Seen) -> dict[str, Any]:
    return {"b_id": row_id, "b_first": seen.first, "b_last": seen.last, "b_n": seen.count}


def _sha_bytes(sha: str | None) -> bytes | None:
    if sha is None:
        return None
    try:
        return bytes.fromhex(sha)
    except ValueError:
        return storable(sha).encode()


def _process_values(proc: ProcessInfo, exe_id: int | None) -> dict[str, Any]:
    ancestry = [[ref.pid, ref.name, ref.exe] for ref in proc.ancestry]
    return {
        "pid": proc.pid,
        "start_time": proc.start_time,
        "name": storable(proc.name),
        "exe_id": exe_id,
        "cmdline": to_json(proc.cmdline),
        "user": opt(proc.user),
        "ppid": proc.ppid,
        "ancestry": to_json(ancestry),
        "netns": proc.netns,
        "container": opt(proc.container),
        "tool": opt(proc.tool),
        "tool_reason": opt(proc.tool_reason),
    }
