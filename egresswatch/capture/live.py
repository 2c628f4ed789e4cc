"""Live capture: AF_PACKET sockets with the kernel filter, read on a thread into a bounded queue.

Sockets are SOCK_DGRAM ("cooked"): every frame starts at its IP header whatever the interface
(Ethernet, loopback, WireGuard/tun without a link header), so frames are LINKTYPE_RAW.
"""

import errno
import queue
import socket
import struct
import threading
import time
from collections.abc import Sequence

from egresswatch.capture.bpf import (
    SNAPLEN,
    FilterProgram,
    attach,
    compile_filter,
    skipping_loopback_echo,
)
from egresswatch.capture.frame import Frame as Frame  # noqa: PLC0414 - re-exported
from egresswatch.counters import Counters
from egresswatch.errors import CaptureError

LINKTYPE_RAW = 101
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
RCVBUF = 8 * 1024 * 1024
_TIMESPEC = struct.Struct("qq")
_STATS = struct.Struct("II")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
_POLL_SECONDS = 0.2
_REOPEN_ERRNOS = (errno.ENETDOWN, errno.ENODEV, errno.ENXIO)
_BACKOFF_MAX = 5.0
ALL_INTERFACES = "any"

PERMISSION_HINT = (
    "live capture needs CAP_NET_RAW (and CAP_NET_ADMIN to watch other network namespaces): "
    "run it with sudo, or install the service (`sudo egresswatch service install`: it runs as "
    "the egresswatch user with only the capabilities it needs); never setcap the system "
    "python3, which would give every Python program raw sockets (docs/service.md)"
)

COUNTER_NAMES = (
    "capture.packets",
    "capture.bytes",
    "capture.queued",
    "capture.dropped.queue_full",
    "capture.dropped.kernel",
    "capture.skipped.lo_outgoing",
    "capture.truncated",
    "capture.reopened",
    "capture.errors.netdown",
    "capture.errors.other",
)


def open_socket(interface: str, program: FilterProgram) -> socket.socket:
    """An AF_PACKET socket with the filter attached, bound to `interface` or to all ("any").

    Raises CaptureError (with how to get the capability) when permission is missing.
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    except PermissionError as err:
        raise CaptureError(PERMISSION_HINT) from err
    try:
        # Filter before bind: otherwise unfiltered packets queue up in between.
        attach(sock, skipping_loopback_echo(program, socket.if_nametoindex("lo")))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _grow_buffer(sock)
        if interface != ALL_INTERFACES:
            sock.bind((interface, ETH_P_ALL))
    except OSError as err:
        sock.close()
        raise CaptureError(f"cannot capture on {interface}: {err.strerror or err}") from err
    sock.settimeout(_POLL_SECONDS)
    return sock


def _grow_buffer(sock: socket.socket) -> None:
    """A bigger kernel buffer rides out bursts; FORCE exceeds rmem_max when we are privileged."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


def kernel_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped for this socket since the last call (reading resets them)."""
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
    return int(_STATS.unpack(raw)[1])


def frame_time(ancdata: list[tuple[int, int, bytes]]) -> float:
    """The kernel receive timestamp from SCM_TIMESTAMPNS, or now when it is absent."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return float(sec + nsec / 1e9)
    return time.time()


class LiveCapture:
    """Reads filtered packets on one thread per socket and hands them over in a bounded queue.

    The capture threads never block on the consumer: when the queue is full the frame is dropped
    and counted. A socket bound to a named interface that goes away is re-opened with backoff.
    """

    def __init__(
        self,
        interfaces: Sequence[str] = (),
        *,
        queue_size: int = 20000,
        program: FilterProgram | None = None,
    ) -> None:
        self.interfaces = tuple(interfaces) or (ALL_INTERFACES,)
        self.program = program or compile_filter()
        self.queue: queue.Queue[Frame] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counters: list[Counters] = []

    def start(self) -> None:
        """Opens every socket (raising CaptureError at once if one cannot be opened) and starts."""
        socks = [open_socket(name, self.program) for name in self.interfaces]
        for name, sock in zip(self.interfaces, socks, strict=True):
            reader = _Reader(name, sock, self.program, self.queue, self._stop)
            self._counters.append(reader.counters)
            thread = threading.Thread(target=reader.run, daemon=True, name=f"capture-{name}")
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None after `timeout` seconds without one."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def counters(self) -> Counters:
        """All capture threads' counters, merged (safe while they run: their keys are fixed)."""
        merged = Counters()
        for part in self._counters:
            merged.merge(part)
        return merged


class _Reader:
    """One socket's read loop; owns its counters (one writer each, keys fixed up front)."""

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        program: FilterProgram,
        out: "queue.Queue[Frame]",
        stop: threading.Event,
    ) -> None:
        self.name = name
        self.sock: socket.socket | None = sock
        self.program = program
        self.out = out
        self.stop = stop
        self.counters = Counters()
        for key in COUNTER_NAMES:
            self.counters.add(key, 0)

    def run(self) -> None:
        backoff = 0.1
        while not self.stop.is_set():
            if self.sock is None:
                self.sock = self._reopen(backoff)
                backoff = 0.1 if self.sock is not None else min(backoff * 2, _BACKOFF_MAX)
                continue
            try:
                self._read(self.sock)
            except OSError as err:
                self._on_error(self.sock, err)
        self._close()

    def _close(self) -> None:
        if self.sock is not None:
            self.counters.add("capture.dropped.kernel", kernel_drops(self.sock))
            self.sock.close()
            self.sock = None

    def _reopen(self, backoff: float) -> socket.socket | None:
        if self.stop.wait(backoff):
            return None
        try:
            sock = open_socket(self.name, self.program)
        except CaptureError:
            return None
        self.counters.add("capture.reopened")
        return sock

    def _on_error(self, sock: socket.socket, err: OSError) -> None:
        if err.errno in _REOPEN_ERRNOS and self.name != ALL_INTERFACES:
            self.counters.add("capture.errors.netdown")
            self._close()  # the interface may come back with a new index: bind afresh
            return
        self.counters.add("capture.errors.other")
        self.stop.wait(0.05)  # an unexpected error must not become a busy loop

    def _read(self, sock: socket.socket) -> None:
        """Reads until stopped; returns on poll timeouts so the stop flag is checked."""
        buf = bytearray(SNAPLEN)
        view = memoryview(buf)
        while not self.stop.is_set():
            try:
                size, anc, flags, addr = sock.recvmsg_into([view], _CMSG_SPACE)
            except TimeoutError:
                return
            self._take(bytes(view[:size]), anc, flags, addr)

    def _take(
        self,
        data: bytes,
        anc: list[tuple[int, int, bytes]],
        flags: int,
        addr: tuple[str, int, int, int, bytes],
    ) -> None:
        ifname, _proto, pkttype, hatype, _hwaddr = addr
        counters = self.counters
        if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
            # Loopback delivers each packet twice (out, then in): keep the incoming copy. The
            # kernel filter already drops these; this is the fallback should lo be renumbered.
            counters.add("capture.skipped.lo_outgoing")
            return
        if flags & socket.MSG_TRUNC:
            counters.add("capture.truncated")
        counters.add("capture.packets")
        counters.add("capture.bytes", len(data))
        try:
            self.out.put_nowait(Frame(frame_time(anc), LINKTYPE_RAW, data, ifname))
        except queue.Full:
            counters.add("capture.dropped.queue_full")
            return
        counters.add("capture.queued")
