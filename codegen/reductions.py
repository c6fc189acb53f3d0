"""Stage codegen: the backend-neutral emission of reductions (reduce_sum,
reduce_prod, reduce_max, reduce_min, argmax, argmin): a loop of their own,
opened at the place the reduced value's index allows.

Input: a reduction equation and the index its result is wanted at, inside
an Emitter (codegen/emitter.py mixes `Reductions` in). Output: the name of
the accumulated value and the scope it is valid in.

A backend overrides `_emit_reduction` with its strategies (CPU: a column sum
staged through a temporary, float max / min in the ordered-integer domain;
CUDA: a block per row) and falls back to this serial loop.
"""
import numpy as np

from ..ir.primitives import reduce_identity
from .exprs import const, fmax, fmin
from .loops import Idx


class Reductions:
    """Mixed into the Emitter: the reductions' loops."""

    def _reduce_loops(self, x, keep_idx, axes):
        """Open loops over `axes` of x inside the scope `keep_idx` allows; return
        (parent scope, innermost loop scope, full index of x)."""
        parent = self.deepest(i.scope for i in keep_idx)
        it = iter(keep_idx)
        full, scope = [], parent
        loops = {}
        for d in range(x.aval.ndim):
            if d in axes:
                r = self.fresh("r")
                scope = self.open_loop(scope, r, self.dim(x, d))
                loops[d] = scope
                full.append(Idx(r, scope))
            else:
                full.append(next(it))
        return parent, scope, tuple(full), loops

    def _close(self, parent, inner):
        s = inner
        while s is not parent:
            s.parent.close(s)
            s = s.parent

    def _with_scope(self, scope, fn):
        saved, self.cur = self.cur, scope
        try:
            return fn()
        finally:
            self.cur = saved

    def _combine(self, name, acc, v, dt):
        """The statement folding v into accumulator `acc` (a name or element)."""
        if name == "reduce_sum":
            return f"{acc} += {v}"
        if name == "reduce_prod":
            return f"{acc} *= {v}"
        if name == "reduce_max":
            return f"{acc} = {fmax(v, acc, dt)}"
        return f"{acc} = {fmin(v, acc, dt)}"

    def _emit_reduction(self, e, idx, axes):
        """The serial loop over the reduced axes, at the deepest scope of `idx`."""
        x = e.inputs[0]
        dt = x.aval.dtype
        name = e.prim.name
        parent = self.deepest(i.scope for i in idx)
        acc = self.fresh("acc")
        parent.emit(f"{acc} = {const(reduce_identity(name, dt), dt)}")
        parent, inner, full, _ = self._reduce_loops(x, idx, axes)
        self._count(e.outs[0], inner)

        def body():
            v, _ = self.value_at(x, full)
            inner.emit(self._combine(name, acc, v, dt))
            # an expensive value the output reads back (the output cache:
            # `Emitter.cached`) is stored in the loop over the output's row
            if x in self.cached and \
                    tuple(i.text for i in full[:-1]) == self.domain_idx[:-1]:
                inner.emit(f"{self.cached[x]}[{', '.join(i.text for i in full)}] = {v}")
                self.cache_stored.add(x)
        self._with_scope(inner, body)
        self._close(parent, inner)
        if dt != np.bool_ and dt.kind in "iu" and dt.itemsize < 8:
            return self.define(acc, parent, dt), parent
        return acc, parent

    def _emit_reduce_sum(self, e, idx):
        return self._emit_reduction(e, idx, e.params["axes"])

    _emit_reduce_prod = _emit_reduce_max = _emit_reduce_min = _emit_reduce_sum

    def _emit_argmax(self, e, idx):
        x = e.inputs[0]
        dt = x.aval.dtype
        axis = e.params["axis"]
        parent = self.deepest(i.scope for i in idx)
        best, bi = self.fresh("best"), self.fresh("bi")
        init = reduce_identity("reduce_max" if e.prim.name == "argmax" else "reduce_min", dt)
        parent.emit(f"{best} = {const(init, dt)}\n{bi} = 0")
        parent, inner, full, loops = self._reduce_loops(x, idx, (axis,))
        r = full[axis].text
        cmp = ">" if e.prim.name == "argmax" else "<"
        self._count(e.outs[0], inner)

        def body():
            v, _ = self.value_at(x, full)
            nan = f" or ({v} != {v} and {best} == {best})" if dt.kind == "f" else ""
            inner.emit(f"if {v} {cmp} {best}{nan}:\n    {best} = {v}\n    {bi} = {r}")
        self._with_scope(inner, body)
        self._close(parent, inner)
        return self.define(bi, parent, e.outs[0].aval.dtype), parent

    _emit_argmin = _emit_argmax
