"""The bpf() system call through ctypes: create maps, load programs, link them to a cgroup.

Only the commands the kernel attribution source needs. Every failure is a `BpfError` carrying
the errno and, for a refused program, the verifier's log.
"""

import ctypes
import ctypes.util
import errno
import os
import struct

SYS_BPF = {"x86_64": 321, "aarch64": 280}
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_PROG_LOAD = 5
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
MAP_TYPE_ARRAY = 2
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_RINGBUF = 27
PROG_TYPE_CGROUP_SKB = 8
PROG_TYPE_CGROUP_SOCK_ADDR = 18
ATTACH_CGROUP_INET_EGRESS = 1
ATTACH_CGROUP_INET4_CONNECT = 10
ATTACH_CGROUP_INET6_CONNECT = 11
ATTACH_CGROUP_UDP4_SENDMSG = 14
ATTACH_CGROUP_UDP6_SENDMSG = 15
_ATTR_SIZE = 128  # union bpf_attr is larger; the kernel accepts any size it can check is zeroed
_LOG_SIZE = 1 << 20


class BpfError(OSError):
    """bpf() refused a command; `log` holds the verifier's output for a refused program."""

    def __init__(self, what: str, err: int, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.log = log


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _syscall_number() -> int:
    machine = os.uname().machine
    if machine not in SYS_BPF:
        raise BpfError(f"bpf() on {machine}", errno.ENOSYS)
    return SYS_BPF[machine]


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    """Runs one bpf() command with `attr`; its non-negative result, or raises BpfError."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(_syscall_number(), cmd, attr, len(attr)))
    if result < 0:
        raise BpfError(what, ctypes.get_errno())
    return result


def _attr(fmt: str, *values: int | bytes) -> ctypes.Array[ctypes.c_char]:
    raw = struct.pack(fmt, *values)
    return ctypes.create_string_buffer(raw.ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """A new map's file descriptor."""
    attr = _attr("=IIIII", map_type, key_size, value_size, max_entries, 0)
    return bpf(BPF_MAP_CREATE, attr, "map create")


def lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored under `key`, or None when there is none."""
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value_size)
    attr = _attr("=IxxxxQQQ", map_fd, ctypes.addressof(key_buf), ctypes.addressof(value_buf), 0)
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, attr, "map lookup")
    except BpfError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return value_buf.raw


def load_program(prog_type: int, attach_type: int, insns: bytes, name: str) -> int:
    """A verified program's file descriptor; BpfError with the verifier log when refused."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_text = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = _attr(
        "=IIQQIIQII16sII",
        prog_type,
        len(insns) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license_text),
        1,
        _LOG_SIZE,
        ctypes.addressof(log),
        0,
        0,
        name.encode()[:15],
        0,
        attach_type,
    )
    try:
        return bpf(BPF_PROG_LOAD, attr, f"load {name}")
    except BpfError as err:
        text = log.value.decode(errors="replace")
        raise BpfError(f"load {name}", err.errno or errno.EINVAL, text) from None


def attached_count(cgroup_fd: int, attach_type: int) -> int:
    """How many programs are attached to the cgroup at `attach_type` (links included)."""
    attr = _attr("=IIII", cgroup_fd, attach_type, 0, 0)
    bpf(BPF_PROG_QUERY, attr, "prog query")
    return int(struct.unpack_from("=I", attr.raw, 24)[0])


def link_cgroup(prog_fd: int, cgroup_fd: int, attach_type: int) -> int:
    """A BPF link of the program to the cgroup: it lasts as long as the returned descriptor."""
    attr = _attr("=IIII", prog_fd, cgroup_fd, attach_type, 0)
    return bpf(BPF_LINK_CREATE, attr, "link create")
