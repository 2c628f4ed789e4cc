"""A tiny eBPF assembler: just the instruction forms the attribution programs use.

Each function returns the 8-byte encoding (opcode, dst|src<<4, off, imm) of one instruction;
`ld_map_fd` is the 16-byte wide load of a map's descriptor.
"""

import struct

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
_INSN = struct.Struct("<BBhi")
_SIZE = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}  # BPF_DW, BPF_W, BPF_H, BPF_B
_LDX, _STX, _ST, _ALU64, _JMP = 0x01, 0x03, 0x02, 0x07, 0x05
_MEM = 0x60
_JUMPS = {"==": 0x10, ">": 0x20, ">=": 0x30, "!=": 0x50}
PSEUDO_MAP_FD = 1


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(op, dst | src << 4, off, imm)


def mov_reg(dst: int, src: int) -> bytes:
    return _insn(_ALU64 | 0xB0 | 0x08, dst, src)


def mov_imm(dst: int, imm: int) -> bytes:
    return _insn(_ALU64 | 0xB0, dst, imm=imm)


def add_imm(dst: int, imm: int) -> bytes:
    return _insn(_ALU64 | 0x00, dst, imm=imm)


def xor_reg(dst: int, src: int) -> bytes:
    return _insn(_ALU64 | 0xA0 | 0x08, dst, src)


def load(size: int, dst: int, src: int, off: int) -> bytes:
    """dst = *(size *)(src + off)"""
    return _insn(_LDX | _MEM | _SIZE[size], dst, src, off)


def store_reg(size: int, dst: int, off: int, src: int) -> bytes:
    """*(size *)(dst + off) = src"""
    return _insn(_STX | _MEM | _SIZE[size], dst, src, off)


def store_imm(size: int, dst: int, off: int, imm: int) -> bytes:
    """*(size *)(dst + off) = imm"""
    return _insn(_ST | _MEM | _SIZE[size], dst, off=off, imm=imm)


def jump_imm(cond: str, dst: int, imm: int, off: int) -> bytes:
    """if dst <cond> imm: skip `off` instructions."""
    return _insn(_JMP | _JUMPS[cond], dst, off=off, imm=imm)


def atomic_add64(dst: int, off: int, src: int) -> bytes:
    """lock *(u64 *)(dst + off) += src"""
    return _insn(_STX | 0xC0 | _SIZE[8], dst, src, off, 0x00)


def jump_reg(cond: str, dst: int, src: int, off: int) -> bytes:
    """if dst <cond> src: skip `off` instructions."""
    return _insn(_JMP | _JUMPS[cond] | 0x08, dst, src, off)


def jump(off: int) -> bytes:
    """Skip `off` instructions."""
    return _insn(_JMP | 0x00, off=off)


def call(helper: int) -> bytes:
    return _insn(_JMP | 0x80, imm=helper)


def exit_insn() -> bytes:
    return _insn(_JMP | 0x90)


def ld_map_fd(dst: int, fd: int) -> bytes:
    """dst = the map behind descriptor `fd` (a two-slot instruction)."""
    return _insn(0x18, dst, PSEUDO_MAP_FD, imm=fd) + _insn(0)
