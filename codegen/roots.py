"""Stage codegen: the backend-neutral roots with a loop of their own: the
scatters (scatter, scatter_add / _mul / _min / _max: copy the operand, then
apply the updates in order) and the scans (cumsum, cumprod, cummax, cummin:
one serial loop per scan line, each with its reduction's combine).

Input: the root equation of a kernel group (it is the group's only result),
inside an Emitter (codegen/emitter.py mixes `OwnLoopRoots` in: `emit_body`
calls `_root_<name>`). Output: the statements of the kernel's body.

A backend overrides what differs (CUDA: atomic updates, an ordered update
per column; sort lives in each backend's sort.py).
"""
from ..ir.primitives import CUMULATIVE, ScatterMode, reduce_identity
from .exprs import CTOR, const, fmax, fmin
from .loops import Idx

_COMBINE = {"cumsum": "reduce_sum", **CUMULATIVE}     # scan -> its reduction's combine


class OwnLoopRoots:
    """Mixed into the Emitter: scatters and scans."""

    def _root_scatter(self, e):
        x, ind, upd = e.inputs
        out = e.outs[0]
        axis = e.params["axis"]
        idx, scope = self._domain(out)
        self.cur = scope
        v, _ = self.value_at(x, tuple(idx))
        self._store("o0", idx, v, scope)
        self._close(self.root, scope)          # the copy finishes before any update
        # Updates in order, serially: the last write wins, repeated adds accumulate.
        self.cur = self.root
        uidx, uscope = self._domain(upd)
        self.cur = uscope
        k = ind.aval.ndim
        j, js = self.operand(ind, tuple(uidx[axis:axis + k]))
        n = self.dim(x, axis)
        wrapped = f"i64({j}) + {n} if {j} < 0 else i64({j})"
        drop = e.params["mode"] == ScatterMode.DROP
        jj = self.define(wrapped if drop else f"min(max({wrapped}, 0), {n} - 1)", js,
                         prefix="j")
        u, _ = self.value_at(upd, tuple(uidx))
        target = uidx[:axis] + [Idx(jj, js)] + uidx[axis + k:]
        if drop:                # an update out of range is skipped (mode="drop")
            guard = uscope.child(f"if {jj} >= 0 and {jj} < {n}:")
            self._update("o0", target, u, guard, e.prim.name)
            uscope.close(guard)
        else:
            self._update("o0", target, u, uscope, e.prim.name)

    def _update(self, out_name, idx, val, scope, how):
        """One scatter update of out[idx] by `val`: scatter writes it, the
        others combine it with the current value (add, mul, NaN-propagating
        min / max)."""
        sub = ", ".join(i.text for i in idx)
        cur = f"{out_name}[{sub}]"
        dt = self.g.outvars[0].aval.dtype
        if how == "scatter":
            scope.emit(f"{cur} = {val}")
        elif how == "scatter_add":
            scope.emit(f"{cur} += {val}")
        elif how == "scatter_mul":
            scope.emit(f"{cur} *= {val}")
        else:
            u = self.define(val, scope, dt) if not val.isidentifier() else val
            combine = fmax if how == "scatter_max" else fmin
            scope.emit(f"{cur} = {combine(u, cur, dt)}")

    def _root_cumulative(self, e):
        x, out = e.inputs[0], e.outs[0]
        axis, reverse = e.params["axis"], e.params.get("reverse", False)
        red = _COMBINE[e.prim.name]
        idx, scope = self._domain(out, skip_axis=axis)
        dt = out.aval.dtype
        acc = self.fresh("acc")
        scope.emit(f"{acc} = {const(reduce_identity(red, dt), dt)}")
        n = self.dim(out, axis)
        k = self.fresh("k")
        loop = self.open_loop(scope, k + "_", n)
        loop.emit(f"{k} = {n} - 1 - {k}_" if reverse else f"{k} = {k}_")
        idx[axis] = Idx(k, loop)
        self.cur = loop
        v, _ = self.value_at(x, tuple(idx))
        loop.emit(self._combine(red, acc, v, dt))
        # a narrow integer product is computed in int64 (numba widens it):
        # its low bits, what the cast keeps, are the wrapped product's
        self._store("o0", idx, acc if dt.kind == "f" or dt.itemsize == 8 else
                    f"{CTOR[dt]}({acc})", loop)

    _root_cumsum = _root_cumprod = _root_cummax = _root_cummin = _root_cumulative

    def _sort_stores(self, e):
        """(output name, position among the sort's results) of each kernel result."""
        return [(f"o{k}", e.outs.index(v)) for k, v in enumerate(self.g.outvars)]
