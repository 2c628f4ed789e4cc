"""Write a batch of Events into the tables inside the caller's transaction, interning side rows.

The id caches are only valid for the transaction they were filled in and the ones after it:
the writer calls `forget()` whenever a transaction rolls back.
"""

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, insert, select

from egresswatch.model import Event, ProcessInfo
from egresswatch.store.schema import DNS_PROTO_CODES, KIND_CODES, NAME_SOURCE_CODES, TRANSPORT_CODES
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
    T_HELLO,
    T_NAME,
    T_PROC,
    insert_events,
    select_or_insert,
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
    _dest_class: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)
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
        return len(rows)

    # -- interning -------------------------------------------------------------------------

    def _intern(self, conn: Connection, col: Column[Any], value: str) -> int:
        key = (col.key, value)  # the column names differ, so they keep the tables apart
        hit = self.ids.get(key)
        if hit is None:
            found = conn.execute(select(col.table.c.id).where(col == value)).scalar()
            if found is None:
                ins = insert(col.table).values({col.key: value}).returning(col.table.c.id)
                found = conn.execute(ins).scalar_one()
            hit = self.ids[key] = int(found)
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
            hit = select_or_insert(conn, T_EXE, values)
            self.ids[key] = hit
        return hit

    def process(self, conn: Connection, proc: ProcessInfo, ts: float) -> int:
        key = ("processes", proc)
        hit = self.ids.get(key)
        if hit is None:
            values = _process_values(proc, self._executable(conn, proc.exe, proc.exe_sha256))
            hit = select_or_insert(conn, T_PROC, values, {"first_seen": ts})
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
            dest = select_or_insert(conn, T_DEST, values, extra)
            self.ids[key] = dest
        self._dest.setdefault(dest, _Seen(ts, ts)).add(ts)
        if ev.category is not None:
            self._dest_class[dest] = (opt(ev.category), opt(ev.catalog_entry))
        if ev.tool is not None:
            self._dest_tool(conn, dest, storable(ev.tool), ts)
        return dest

    def _dest_tool(self, conn: Connection, dest: int, tool: str, ts: float) -> None:
        key = ("destination_tools", (dest, tool))
        if key not in self.ids:
            values = {"destination_id": dest, "tool": tool}
            extra = {"first_seen": ts, "last_seen": ts, "count": 0}
            found = conn.execute(select(T_DTOOL.c.count).filter_by(**values)).first()
            if found is None:
                conn.execute(insert(T_DTOOL).values(**values, **extra))
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
            self.ids[ids_key] = select_or_insert(conn, T_NAME, values, extra)
        self._names.setdefault(key, _Seen(ts, ts)).add(ts, expires)

    # -- rows ------------------------------------------------------------------------------

    def _event_row(self, conn: Connection, ev: Event) -> dict[str, Any]:
        obs = ev.observation
        proc = ev.attribution.process
        row: dict[str, Any] = {
            "ts": obs.ts,
            "kind": KIND_CODES[obs.kind],
            "transport": TRANSPORT_CODES[obs.flow.transport],
            "src_id": self.address(conn, obs.flow.src),
            "sport": obs.flow.sport,
            "dst_id": self.address(conn, obs.flow.dst),
            "dport": obs.flow.dport,
            "tunneled": obs.tunneled,
            "status_id": self.label(conn, ev.attribution.status),
            "process_id": None if proc is None else self.process(conn, proc, obs.ts),
            "destination_id": self._destination(conn, ev, obs.ts),
            "name_source": None if ev.name_source is None else NAME_SOURCE_CODES[ev.name_source],
            "name_conflict": ev.name_conflict,
            "tool": opt(ev.tool),
            "dns_proto": None if obs.dns_proto is None else DNS_PROTO_CODES[obs.dns_proto],
        }
        row.update(self._dns_columns(conn, ev))
        row.update(self._hello_columns(conn, ev, row["dst_id"]))
        return row

    def _dns_columns(self, conn: Connection, ev: Event) -> dict[str, Any]:
        dns = ev.observation.dns
        if dns is None:
            return dict.fromkeys(_DNS_COLUMNS)
        return {
            "dns_id": dns.id,
            "dns_response": dns.is_response,
            "dns_opcode": dns.opcode,
            "dns_truncated": dns.truncated,
            "qname_id": None if dns.qname is None else self.host(conn, dns.qname),
            "qtype_id": None if dns.qtype is None else self.label(conn, dns.qtype),
            "rcode_id": None if dns.rcode is None else self.label(conn, dns.rcode),
        }

    def _hello_columns(self, conn: Connection, ev: Event, dst_id: int) -> dict[str, Any]:
        obs = ev.observation
        hello = obs.hello
        if hello is None:
            return dict.fromkeys(_HELLO_COLUMNS) | {"quic_version": obs.quic_version}
        sni_id = None if hello.sni is None else self.host(conn, hello.sni)
        if sni_id is not None:
            source = "quic-sni" if obs.kind == "quic" else "sni"
            self._bind_name(conn, dst_id, sni_id, source, ts=obs.ts, expires=None)
        shape = (to_json(hello.alpn), hello.legacy_version, to_json(hello.supported_versions),
                 hello.ech)  # fmt: skip
        hello_id = self.ids.get(("hello_shapes", shape))
        if hello_id is None:
            values = dict(zip(("alpn", "tls_version", "tls_versions", "ech"), shape, strict=True))
            hello_id = self.ids[("hello_shapes", shape)] = select_or_insert(conn, T_HELLO, values)
        return {"sni_id": sni_id, "hello_id": hello_id, "quic_version": obs.quic_version}

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
                    "hostname_id": self.host(conn, ans.name),
                    "type_id": self.label(conn, ans.type),
                    "address_id": addr_id,
                    "data": None if addr_id is not None else opt(ans.data),
                    "ttl": ans.ttl,
                }
            )
        return rows

    # -- aggregates ------------------------------------------------------------------------

    def _flush_aggregates(self, conn: Connection) -> None:
        # One executemany per table: the statements are built once (module level).
        if self._dest:
            conn.execute(DEST_SEEN, [_seen_params(d, s) for d, s in self._dest.items()])
        if self._dest_class:
            classes = [
                {"b_id": d, "b_cat": c, "b_entry": e} for d, (c, e) in self._dest_class.items()
            ]
            conn.execute(DEST_CLASS, classes)
        if self._dtool:
            tools = [_seen_params(d, s) | {"b_tool": t} for (d, t), s in self._dtool.items()]
            conn.execute(DTOOL_SEEN, tools)
        if self._names:
            names = [
                {"b_id": self.ids[("names", key)], "b_last": s.last, "b_exp": s.extra}
                for key, s in self._names.items()
            ]
            conn.execute(NAME_SEEN, names)
        self._dest.clear()
        self._dest_class.clear()
        self._dtool.clear()
        self._names.clear()


_DNS_COLUMNS = (
    "dns_id",
    "dns_response",
    "dns_opcode",
    "dns_truncated",
    "qname_id",
    "qtype_id",
    "rcode_id",
)
_HELLO_COLUMNS = ("sni_id", "hello_id", "quic_version")


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
    }
