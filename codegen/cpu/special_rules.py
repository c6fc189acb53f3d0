"""Stage codegen (CPU, shared with CUDA): the rules of the bit primitives,
threefry2x32 and erf_inv (ir/primitives/bits.py, special.py): what
needle.random's random bits and their float conversions compile to.

Input: operand expressions (names of typed scalars), their dtype.
Output: expression strings (threefry2x32: its statements through the
emitter's scopes, then an expression); codegen/cpu/rules.py puts them in its tables,
codegen/cuda/rules.py overrides what differs on a GPU (bitcasts through
libdevice, log1p from libdevice).

Numba computes an integer expression in 64 bits (uint32 << uint32 is a
uint64); the emitter wraps every result in its dtype's constructor
(`u32(...)`), which keeps the low bits: two's-complement wraparound, as XLA.
Every constant is typed (`u32(32)`): an untyped Python int next to a
uint64 makes Numba compare in float64.
"""
import re

import numpy as np

from ...ir.primitives import ERF_INV32, ERF_INV64, THREEFRY_PARITY, THREEFRY_ROTATIONS

_CTOR = {1: ("i8", "u8"), 2: ("i16", "u16"), 4: ("i32", "u32"), 8: ("i64", "u64")}


def _c(value, dt):
    from .rules import const
    return const(value, dt)


# An integer literal operand is written `u32(13)` (rules.const); its amount
# is known when the kernel is generated.
_LITERAL = re.compile(r"^[ui]\d+\((-?\d+)\)$")


def _shift(in_range, out_of_range, y, dt):
    """The shift expression `in_range`, or `out_of_range` where the amount y
    is not in [0, bits) (XLA reads it as unsigned). A literal amount (a
    rotation of Threefry's) is decided here: no branch in the kernel, whose
    control flow Numba's frontend pays for per block."""
    bits = np.dtype(dt).itemsize * 8
    m = _LITERAL.match(y)
    if m:
        return in_range if 0 <= int(m.group(1)) < bits else out_of_range
    cond = f"{y} < {_c(bits, dt)}"
    if np.dtype(dt).kind == "i":
        cond = f"{y} >= {_c(0, dt)} and {cond}"
    return f"({in_range} if ({cond}) else {out_of_range})"


def shift_left(x, y, dt):
    return _shift(f"({x} << {y})", _c(0, dt), y, dt)


def shift_right_logical(x, y, dt):
    dt = np.dtype(dt)
    if dt.kind == "u":
        return _shift(f"({x} >> {y})", _c(0, dt), y, dt)
    u = _CTOR[dt.itemsize][1]                   # shift the bits as unsigned
    return _shift(f"({u}({x}) >> {u}({y}))", f"{u}(0)", y, dt)


def shift_right_arithmetic(x, y, dt):
    dt = np.dtype(dt)
    s = _CTOR[dt.itemsize][0]                   # the top bit is the sign
    sx = x if dt.kind == "i" else f"{s}({x})"
    return _shift(f"({sx} >> {s}({y}))", f"({sx} >> {s}({dt.itemsize * 8 - 1}))", y, dt)


SHIFT_RULES = {"shift_left": shift_left, "shift_right_logical": shift_right_logical,
               "shift_right_arithmetic": shift_right_arithmetic}


def threefry2x32(names, output, emit_key, emit, fresh):
    """The Threefry-2x32 block function of operand names (k0, k1, x0, x1) as
    straight integer code: `emit_key(text)` places code on the key words
    alone (the key schedule: once per kernel, outside the element loops),
    `emit(text)` code per element, `fresh(prefix)` makes a name; returns the
    result's expression (`output`: "xor" or "concat").

    Straight code, not a loop over the rounds: a loop compiles in half the
    time but runs 6x slower in a prange kernel. A rotation by a constant is
    two shifts and an or, which LLVM makes one rotate (a funnel shift on a
    GPU). Additions are written in 64 bits (Numba adds two uint32 in 64 bits
    anyway) and wrapped by u32(), so the CUDA simulator's numpy scalars wrap
    without overflow warnings."""
    k0, k1, x0, x1 = names
    lines = []

    def let(rhs, prefix="y"):
        v = fresh(prefix)
        lines.append(f"{v} = u32({rhs})")
        return v
    k2 = fresh("ks")
    ks = (k0, k1, k2)
    # the key words injected into y1 after group i: ks[(i + 2) % 3] + i + 1
    emit_key("\n".join([f"{k2} = u32({k0} ^ {k1} ^ u32({THREEFRY_PARITY}))"] + [
        f"{k2}_{i} = u32(u64({ks[(i + 2) % 3]}) + u32({i + 1}))" for i in range(5)]))
    y0, y1 = let(f"u64({x0}) + {ks[0]}"), let(f"u64({x1}) + {ks[1]}")
    for i in range(5):                  # 5 x 4 rounds, a key injection after each 4
        for r in THREEFRY_ROTATIONS[i % 2]:
            y0 = let(f"u64({y0}) + {y1}")
            y1 = let(f"(({y1} << u32({r})) | ({y1} >> u32({32 - r}))) ^ {y0}")
        y0 = let(f"u64({y0}) + {ks[(i + 1) % 3]}")
        y1 = let(f"u64({y1}) + {k2}_{i}")
    emit("\n".join(lines))
    if output == "xor":
        return f"{y0} ^ {y1}"
    return f"(u64({y0}) << u64(32)) | u64({y1})"


def bitcast(x, src, dst):
    """bitcast_convert_type on CPU: the intrinsics of codegen/cpu/fastmath.py
    (`_f2i`: float32 bits as int32, ...), which LLVM vectorises; an integer
    to integer bitcast is a conversion of the same width."""
    src, dst = np.dtype(src), np.dtype(dst)
    cd = _CTOR.get(dst.itemsize, ("", ""))[0 if dst.kind == "i" else 1]
    if src.kind != "f" and dst.kind != "f":
        return f"{cd}({x})"
    if src.kind == "f" and dst.kind == "f":
        return x
    if src.kind == "f":
        return f"{cd}({'_f2i' if src.itemsize == 4 else '_f2l'}({x}))"
    si = _CTOR[src.itemsize][0]
    return f"{'_i2f' if src.itemsize == 4 else '_l2f'}({si}({x}))"


def cuda_bitcast(x, src, dst):
    """bitcast_convert_type on CUDA: libdevice's float_as_int and friends
    (numba.cuda has no scalar view; the simulator gets numpy stand-ins)."""
    src, dst = np.dtype(src), np.dtype(dst)
    if src.kind != "f" or dst.kind != "f":
        if src.kind == "f":
            fn = "float_as_int" if src.itemsize == 4 else "double_as_longlong"
            cd = _CTOR[dst.itemsize][0 if dst.kind == "i" else 1]
            return f"{cd}(libdevice.{fn}({x}))"
        if dst.kind == "f":
            fn = "int_as_float" if dst.itemsize == 4 else "longlong_as_double"
            return f"libdevice.{fn}({_CTOR[src.itemsize][0]}({x}))"
    return bitcast(x, src, dst)


def _horner(coefficients, f):
    """The polynomial (highest coefficient first) of `t_`, as text."""
    p = f(coefficients[0])
    for c in coefficients[1:]:
        p = f"({f(c)} + {p} * t_)"
    return f"(lambda t_: {p})"


def erf_inv_rule(log1p32):
    """The erf_inv rule, with `log1p32` the float32 log1p to call (CPU: the
    vectorisable `_flog1p`; CUDA: libdevice through `math.log1p`).

    XLA picks each Horner coefficient by the piece w falls in; evaluating
    every piece's polynomial in full and picking one result is the same
    arithmetic for each element, without a branch per coefficient (Numba's
    compile time grows with branches). A rule is one expression and this
    one needs named temporaries (x, w): immediately called lambdas give
    them; Numba inlines them, on CPU and CUDA alike."""
    def rule(x, dt):
        dt = np.dtype(dt)
        f = lambda v: _c(v, dt)                                     # noqa: E731
        log1p = log1p32 if dt == np.float32 else "math.log1p"
        if dt == np.float32:
            lo, hi = ERF_INV32
            p = (f"(lambda a_, b_: a_ if w_ < {f(5)} else b_)("
                 f"{_horner(lo, f)}(w_ - {f(2.5)}), {_horner(hi, f)}(math.sqrt(w_) - {f(3)}))")
        else:
            a6, a16, a_big = ERF_INV64
            p = (f"(lambda a_, b_, c_: a_ if w_ < {f(6.25)} else (b_ if w_ < {f(16)} else c_))("
                 f"{_horner(a6, f)}(w_ - {f(3.125)}), {_horner(a16, f)}(math.sqrt(w_) - "
                 f"{f(3.25)}), {_horner(a_big, f)}(math.sqrt(w_) - {f(5)}))")
        # erf_inv(+-1) = +-inf; the polynomial is indeterminate there
        result = f"(x_ * {f(np.inf)} if abs(x_) == {f(1)} else {p} * x_)"
        return f"(lambda x_, w_: {result})({x}, -{log1p}(-({x} * {x})))"
    return rule
