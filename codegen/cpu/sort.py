"""Stage codegen (CPU): the root with a loop of its own that sorting adds
to the elemental emitter: `sort` (a stable sort per row). The scans
(`cumsum`, `cumprod`, `cummax`, `cummin`) are backend-neutral: codegen/roots.py.

Input: the root equation of a kernel group, inside a KernelEmitter (which
mixes `SortRoots` in: `emit_body` calls `_root_<name>`). Output: the
statements of the kernel's body.

sort: per row (the loops over every other axis, the first one's rows split
across threads for a large sort), the first operand's values go into a row buffer (any
fused producer computed there) beside their positions, a merge sort written
into the kernel orders both (stable; numpy's order: NaN last, -0.0 == 0.0),
then every result is stored in that order: the first from the sorted keys,
the others computed at the permuted index (argsort's iota operand is the
permutation itself). One kernel writes all of a sort's results.
"""
import numpy as np

from ..loops import Idx


class SortRoots:
    """Mixed into the CPU KernelEmitter: the per-row merge sort (the CUDA
    emitter has its own block kernel: codegen/cuda/sort.py)."""

    def _root_sort(self, e):
        dim = e.params["dimension"]
        ops, first = e.inputs, e.outs[0]
        kdt = ops[0].aval.dtype
        sdt = np.dtype(np.uint8) if kdt == np.bool_ else kdt      # bool keys as bytes
        idx, scope = self._domain(first, skip_axis=dim)
        n = self.dim(first, dim)
        ka, kb, pa, pb = (self.fresh(p) for p in ("ka", "kb", "pa", "pb"))
        scope.emit(f"{ka} = np.empty({n}, np.{sdt.name})\n{kb} = np.empty({n}, np.{sdt.name})\n"
                   f"{pa} = np.empty({n}, np.int64)\n{pb} = np.empty({n}, np.int64)")
        k = self.fresh("k")
        fill = self.open_loop(scope, k, n)
        idx[dim] = Idx(k, fill)
        self.cur = fill
        v, _ = self.value_at(ops[0], tuple(idx))
        fill.emit(f"{ka}[{k}] = {'u8(' + v + ')' if kdt == np.bool_ else v}\n{pa}[{k}] = {k}")
        scope.close(fill)
        scope.emit(merge_sort(self.fresh, n, ka, kb, pa, pb, kdt))
        j, p = self.fresh("k"), self.fresh("p")
        put = self.open_loop(scope, j, n)
        put.emit(f"{p} = {pa}[{j}]")
        self.cur = put
        src, dst = list(idx), list(idx)
        src[dim], dst[dim] = Idx(p, put), Idx(j, put)
        for name, pos in self._sort_stores(e):
            if pos == 0:
                val = f"({ka}[{j}] != 0)" if kdt == np.bool_ else f"{ka}[{j}]"
            else:
                val = self.value_at(ops[pos], tuple(src))[0]
            self._store(name, dst, val, put)


def before(a, b, dt):
    """`a` sorts strictly before `b` in numpy's order (NaN above every number)."""
    if np.dtype(dt).kind == "f":
        return f"({a} < {b} or ({b} != {b} and {a} == {a}))"
    return f"({a} < {b})"


def merge_sort(fresh, n, ka, kb, pa, pb, dt):
    """Statements sorting keys `ka` (length `n`) with their positions `pa`:
    a bottom-up merge sort (stable: a right element goes first only if
    strictly before the left one), `kb` / `pb` the other buffers; the
    sorted keys and the permutation end in `ka` / `pa`. Written out rather
    than Numba's np.argsort, whose generic mergesort takes seconds to
    compile per dtype."""
    w, lo, mid, hi, i, j, o = (fresh(p) for p in ("w", "lo", "mid", "hi", "i", "j", "o"))
    right_first = before(f"{ka}[{j}]", f"{ka}[{i}]", dt)
    return "\n".join([
        f"{w} = 1",
        f"while {w} < {n}:",
        f"    {lo} = 0",
        f"    while {lo} < {n}:",
        f"        {mid} = min({lo} + {w}, {n})",
        f"        {hi} = min({lo} + 2 * {w}, {n})",
        f"        {i} = {lo}",
        f"        {j} = {mid}",
        f"        for {o} in range({lo}, {hi}):",
        f"            if {j} < {hi} and ({i} >= {mid} or {right_first}):",
        f"                {kb}[{o}] = {ka}[{j}]",
        f"                {pb}[{o}] = {pa}[{j}]",
        f"                {j} += 1",
        "            else:",
        f"                {kb}[{o}] = {ka}[{i}]",
        f"                {pb}[{o}] = {pa}[{i}]",
        f"                {i} += 1",
        f"        {lo} = {hi}",
        f"    {ka}, {kb} = {kb}, {ka}",
        f"    {pa}, {pb} = {pb}, {pa}",
        f"    {w} *= 2",
    ])
