"""Write a batch of Events into the tables inside the caller's transaction, interning side rows.

The id caches are only valid for the transaction they were filled in and the ones after it:
the writer calls `forget()` whenever a transaction rolls back.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection

from egresswatch.model import Event, Observation, ProcessInfo
from egresswatch.store import rollup
from egresswatch.store.interning import (
    insert_ignore,
    insert_missing,
    intern_locked,
    intern_row,
    intern_unique,
    interning,
)
from egresswatch.store.rows import (
    ADDRESS_TYPES,
    cname_chain_text,
    detail_text,
    event_flags,
    event_name,
    method_code,
    name_candidates_text,
    opt,
    process_values,
    sha_bytes,
    storable,
)
from egresswatch.store.schema import NAME_SOURCE_CODES, pack_ports
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
    insert_rows,
    update_many,
)

__all__ = ["CACHE_LIMIT", "Ingest", "storable"]  # storable: re-exported for older importers
CACHE_LIMIT = 100_000


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
    # Rows interned one at a time because _prefetch did not foresee them (tests expect 0).
    fallbacks: int = 0

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
        self._prefetch(conn, events)
        rows = [self._event_row(conn, ev) for ev in events]
        event_ids = insert_events(conn, rows)
        answers = [
            a
            for eid, ev in zip(event_ids, events, strict=True)
            for a in self._answers(conn, eid, ev)
        ]
        insert_rows(conn, T_ANSWER, answers)
        self._flush_aggregates(conn)
        # Last, just before the commit: agents sharing a PostgreSQL database upsert the same hot
        # rows (this minute's "no tool"), so each holds their locks for as short as it can.
        rollup.add(conn, rollup.tally(rows))
        return event_ids

    # -- batch interning -------------------------------------------------------------------

    def _prefetch(self, conn: Connection, events: Sequence[Event]) -> None:
        """Intern every name `events` will need in a few statements per table, so the per-event
        code below only hits the cache: tables in dependency order, keys sorted (interning.py).
        """
        ids = self.ids
        labels: set[str] = set()
        hosts: set[str] = set()
        addrs: set[str] = set()
        procs: dict[ProcessInfo, float] = {}
        for ev in events:
            self._wanted(ev, labels, hosts, addrs)
            proc = ev.attribution.process
            if proc is not None and ("processes", proc) not in ids:
                procs.setdefault(proc, ev.observation.ts)
        with interning(conn) as own:
            for col, values in ((LABEL_TEXT, labels), (HOST_NAME, hosts), (ADDR, addrs)):
                new = {(v,): {col.key: v} for v in values if (col.key, v) not in ids}
                if new:
                    for (value,), row_id in intern_unique(own, col.table, (col.key,), new).items():
                        ids[(col.key, value)] = row_id
            self._prefetch_processes(own, procs)
            self._prefetch_destinations(own, events)
            self._prefetch_names(own, events)

    def _wanted(self, ev: Event, labels: set[str], hosts: set[str], addrs: set[str]) -> None:
        """Add the labels, host names and addresses `ev` refers to (a superset is harmless)."""
        obs = ev.observation
        addrs.add(storable(obs.flow.src)[:64])
        addrs.add(storable(obs.flow.dst)[:64])
        labels.add(storable(ev.attribution.status))
        if ev.tool is not None:
            labels.add(storable(ev.tool))
        if ev.node is not None:
            labels.add(storable(ev.node))
        for name in (ev.host, event_name(ev)):
            if name is not None:
                hosts.add(storable(name))
        detail = _detail_key(obs)
        if detail != _NO_DETAIL and ("detail", detail) not in self.ids:
            labels.add(storable(detail_text(obs)))
        dns = obs.dns
        if dns is None:
            return
        if dns.qname is not None:
            hosts.add(storable(dns.qname))
        for ans in dns.answers:
            labels.add(storable(ans.type))
            hosts.add(storable(ans.name))
            if ans.type in ADDRESS_TYPES and ans.data is not None:
                addrs.add(storable(ans.data)[:64])

    def _prefetch_processes(self, conn: Connection, procs: dict[ProcessInfo, float]) -> None:
        ids = self.ids
        exes: dict[tuple[Any, ...], dict[str, Any]] = {}
        exe_keys: dict[tuple[str | None, str | None], tuple[Any, ...]] = {}
        for proc in procs:
            raw = (proc.exe, proc.exe_sha256)
            if raw != (None, None) and ("executables", raw) not in ids:
                path, sha = opt(proc.exe), sha_bytes(proc.exe_sha256)
                exe_keys[raw] = (path, sha)
                exes[(path, sha)] = {"path": path, "sha256": sha}
        if exes:
            got = intern_locked(conn, T_EXE, ("path", "sha256"), "path", exes)
            for raw, key in exe_keys.items():
                ids[("executables", raw)] = got[key]
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        keyed: dict[ProcessInfo, tuple[Any, ...]] = {}
        for proc, ts in procs.items():
            exe_id = None if proc.exe is None and proc.exe_sha256 is None else (
                ids[("executables", (proc.exe, proc.exe_sha256))]
            )  # fmt: skip
            values = process_values(proc, exe_id)
            keyed[proc] = key = tuple(values[c] for c in PROCESS_KEY)
            rows.setdefault(key, values | {"first_seen": ts})
        if rows:
            got = intern_locked(conn, T_PROC, PROCESS_KEY, "pid", rows)
            for proc, key in keyed.items():
                ids[("processes", proc)] = got[key]

    def _prefetch_destinations(self, conn: Connection, events: Sequence[Event]) -> None:
        ids = self.ids
        dests: dict[tuple[Any, ...], dict[str, Any]] = {}
        for ev in events:
            if ev.host is None:
                continue
            host_id = ids[("name", storable(ev.host))]
            if ("destinations", host_id) not in ids and (host_id,) not in dests:
                ts = ev.observation.ts
                dests[(host_id,)] = {
                    "hostname_id": host_id, "first_seen": ts, "last_seen": ts, "count": 0
                }  # fmt: skip
        if dests:
            for (host_id,), dest in intern_unique(conn, T_DEST, ("hostname_id",), dests).items():
                ids[("destinations", host_id)] = dest
        tools: dict[tuple[int, str], dict[str, Any]] = {}
        for ev in events:
            if ev.host is None or ev.tool is None:
                continue
            dest = ids[("destinations", ids[("name", storable(ev.host))])]
            key = (dest, storable(ev.tool))
            if ("destination_tools", key) not in ids and key not in tools:
                ts = ev.observation.ts
                tools[key] = {"destination_id": dest, "tool": key[1], "first_seen": ts,
                              "last_seen": ts, "count": 0}  # fmt: skip
        if tools:
            insert_ignore(conn, T_DTOOL, ("destination_id", "tool"), list(tools.values()))
            for key in tools:
                ids[("destination_tools", key)] = 1

    def _prefetch_names(self, conn: Connection, events: Sequence[Event]) -> None:
        ids = self.ids
        names: dict[tuple[Any, ...], dict[str, Any]] = {}

        def want(addr: str, host: str, source: str, ts: float, expires: float | None) -> None:
            key = (ids[("addr", storable(addr)[:64])], ids[("name", storable(host))],
                   NAME_SOURCE_CODES[source])  # fmt: skip
            if ("names", key) not in ids and key not in names:
                names[key] = {"address_id": key[0], "hostname_id": key[1], "source": key[2],
                              "first_seen": ts, "last_seen": ts, "expires": expires}  # fmt: skip

        for ev in events:
            obs = ev.observation
            if obs.hello is not None and obs.hello.sni is not None:
                source = "quic-sni" if obs.kind == "quic" else "sni"
                want(obs.flow.dst, obs.hello.sni, source, obs.ts, None)
            dns = obs.dns
            if dns is None:
                continue
            for ans in dns.answers:
                if ans.type in ADDRESS_TYPES and ans.data is not None:
                    want(ans.data, dns.qname or ans.name, "dns", obs.ts, obs.ts + ans.ttl)
        if names:
            key_cols = ("address_id", "hostname_id", "source")
            for key, row_id in intern_unique(conn, T_NAME, key_cols, names).items():
                ids[("names", key)] = row_id

    # -- interning (the cache; one row at a time only for what _prefetch missed) ------------

    def _intern(self, conn: Connection, col: Column[Any], value: str) -> int:
        key = (col.key, value)  # the column names differ, so they keep the tables apart
        hit = self.ids.get(key)
        if hit is None:
            self.fallbacks += 1
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
            values = {"path": opt(path), "sha256": sha_bytes(sha)}
            self.fallbacks += 1
            hit = intern_row(conn, T_EXE, values)
            self.ids[key] = hit
        return hit

    def process(self, conn: Connection, proc: ProcessInfo, ts: float) -> int:
        key = ("processes", proc)
        hit = self.ids.get(key)
        if hit is None:
            values = process_values(proc, self._executable(conn, proc.exe, proc.exe_sha256))
            self.fallbacks += 1
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
            self.fallbacks += 1
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
            self.fallbacks += 1
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
            self.fallbacks += 1
            self.ids[ids_key] = intern_row(conn, T_NAME, values, extra)
        self._names.setdefault(key, _Seen(ts, ts)).add(ts, expires)

    # -- rows ------------------------------------------------------------------------------

    def _event_row(self, conn: Connection, ev: Event) -> dict[str, Any]:
        obs = ev.observation
        proc = ev.attribution.process
        ports, swapped = pack_ports(obs.flow.sport, obs.flow.dport)
        name = event_name(ev)
        name_is_host = name is not None and name == ev.host
        row: dict[str, Any] = {
            "ts": obs.ts,
            "flags": event_flags(ev, swapped, name_is_host),
            "src_id": self.address(conn, obs.flow.src),
            "dst_id": self.address(conn, obs.flow.dst),
            "ports": ports,
            "status_id": self.label(conn, ev.attribution.status),
            "process_id": None if proc is None else self.process(conn, proc, obs.ts),
            "destination_id": self._destination(conn, ev, obs.ts),
            "tool_id": None if ev.tool is None else self.label(conn, ev.tool),
            "name_id": None if name is None or name_is_host else self.host(conn, name),
            "detail_id": self._detail(conn, ev),
            "attribution_method": method_code(ev),
            "name_candidates": name_candidates_text(ev),
            "cname_chain": cname_chain_text(ev),
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
        key = _detail_key(obs)
        if key == _NO_DETAIL:
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
        # One executemany per table (one statement on PostgreSQL): built once (module level).
        # Rows go in id order, so agents sharing a PostgreSQL database lock them in one order.
        if self._dest:
            seen = [_seen_params(d, s) for d, s in sorted(self._dest.items())]
            update_many(conn, "destinations", DEST_SEEN, seen)
        if self._dest_class:
            classes = [
                {"b_id": d, "b_cat": c, "b_entry": e, "b_src": s, "b_conf": f}
                for d, (c, e, s, f) in sorted(self._dest_class.items())
            ]
            update_many(conn, "classes", DEST_CLASS, classes)
        if self._dtool:
            tools = [
                _seen_params(d, s) | {"b_tool": t} for (d, t), s in sorted(self._dtool.items())
            ]
            update_many(conn, "destination_tools", DTOOL_SEEN, tools)
        if self._names:
            names = [
                {"b_id": self.ids[("names", key)], "b_last": s.last, "b_exp": s.extra}
                for key, s in sorted(self._names.items())
            ]
            update_many(conn, "names", NAME_SEEN, names)
        self._dest.clear()
        self._dest_class.clear()
        self._dtool.clear()
        self._names.clear()


_NO_DETAIL = (None, None, None)


def _detail_key(obs: Observation) -> tuple[Any, Any, Any]:
    dns, hello = obs.dns, obs.hello
    return (
        None if dns is None else (dns.qtype, dns.rcode),
        None if hello is None else (hello.alpn, hello.legacy_version,
                                    hello.supported_versions, hello.ech),
        obs.quic_version,
    )  # fmt: skip


def _seen_params(row_id: int, seen: _Seen) -> dict[str, Any]:
    return {"b_id": row_id, "b_first": seen.first, "b_last": seen.last, "b_n": seen.count}


PROCESS_KEY = (
    "pid", "start_time", "name", "exe_id", "cmdline", "user", "ppid", "ancestry", "netns",
    "container", "tool", "tool_reason",
)  # fmt: skip
