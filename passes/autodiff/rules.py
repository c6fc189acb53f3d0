"""Stage passes (autodiff): the rule tables, keyed by Primitive.

Input: nothing. Output: `JVP_RULES`, `TRANSPOSE_RULES`, `NOT_DIFFERENTIABLE`
and the helpers the transformations share (`zeros`, `fit`, `UndefinedPrimal`).

JAX's scheme: every differentiable primitive has a JVP rule, and every
primitive that a JVP rule applies to tangents (a linear one) has a transpose
rule. Reverse mode is derived: linearize (JVP, then split the equations into
the primal ones and the tangent ones), then transpose the tangent ones. All
rules are written with `Primitive.bind`, so their results are ordinary
equations that can be differentiated again, simplified and compiled.

JVP rule:       rule(primals, tangents, **params) -> (out, tangent_out)
                a tangent is None for a symbolic zero (never materialised);
                multiple-result primitives return lists.
Transpose rule: rule(ct, *operands, **params) -> [ct per operand]
                a linear operand is an `UndefinedPrimal` (only its aval is
                known); the entry of a non-linear operand, or a zero, is None.

Ties of max / min (and of reduce_max / reduce_min) split the derivative
evenly between the tied operands, as JAX does.
"""
import itertools

import numpy as np

from ...ir.core import Lit, ShapedArray
from ...ir.primitives import (BINARY, COMPARE, UNARY, DotDimensionNumbers, ScatterMode, argmax_p,
                              argmin_p, broadcast_in_dim_p, concatenate_p, convert_element_type_p,
                              cumsum_p, dot_general_p, gather_p, integer_pow_p, iota_p, kernel_p,
                              pad_p, reduce_max_p, reduce_min_p, reduce_prod_p, reduce_sum_p,
                              reshape_p, rev_p, scatter_add_p, scatter_max_p, scatter_min_p,
                              scatter_mul_p, scatter_p, select_p, slice_p, transpose_p)
from ...ir.primitives.debug import debug_callback_p
from ...ir.primitives.bits import bitcast_convert_type_p, threefry2x32_p
from ...tracer.core import Tracer, current_trace
from .markers import custom_lin_p, custom_vjp_call_p, stop_gradient_p

JVP_RULES = {}
TRANSPOSE_RULES = {}
NOT_DIFFERENTIABLE = set()      # derivative zero everywhere it exists (marked explicitly)


class UndefinedPrimal:
    """A linear operand in a transpose rule: its value is what we solve for."""
    __slots__ = ("aval",)

    def __init__(self, aval):
        self.aval = aval


# --- values: shapes, dtypes, constants, zeros --------------------------------------

def aval_of_value(x):
    if isinstance(x, (Tracer, Lit, UndefinedPrimal)):
        return x.aval
    x = np.asarray(x)
    return ShapedArray(x.shape, x.dtype)


def shape_of(x):
    return aval_of_value(x).shape


def dtype_of(x):
    return aval_of_value(x).dtype


def const(v, like):
    """A 0-d constant of `like`'s dtype (a literal in the graph)."""
    return np.array(v, dtype=dtype_of(like))


def zeros(aval):
    """An array of zeros: one broadcast of a literal under a trace (so the
    simplifier sees it), a numpy array otherwise."""
    z = np.zeros((), aval.dtype)
    if not aval.shape:
        return z
    tr = current_trace()
    if tr is None:
        return np.zeros(aval.shape, aval.dtype)
    return tr.process(broadcast_in_dim_p, [z], {"shape": tuple(aval.shape),
                                                "broadcast_dimensions": ()})


def fit(x, aval):
    """Make a tangent / cotangent match `aval`: broadcast a 0-d value up, sum a
    value standing for a 0-d operand down, convert the dtype."""
    if x is None:
        return None
    s = shape_of(x)
    if s != tuple(aval.shape):
        if s == ():
            x = broadcast_in_dim_p.bind(x, shape=tuple(aval.shape), broadcast_dimensions=())
        elif aval.shape == ():
            x = reduce_sum_p.bind(x, axes=tuple(range(len(s))))
        else:
            raise AssertionError(f"autodiff: value of shape {s} cannot stand for {aval}")
    if dtype_of(x) != aval.dtype:
        x = convert_element_type_p.bind(x, new_dtype=aval.dtype, weak_type=aval.weak_type)
    return x


def instantiate(t, aval):
    return zeros(aval) if t is None else fit(t, aval)


def add_tangents(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return add(a, b)


# --- primitive shorthands (strict: equal shapes or a 0-d operand) ------------------

def _binop(name):
    p = {**BINARY, **COMPARE}[name]
    return lambda x, y: p.bind(x, y)


def _unop(name):
    p = UNARY[name]
    return lambda x: p.bind(x)


add, sub, mul, div = _binop("add"), _binop("sub"), _binop("mul"), _binop("div")
eq, gt, lt = _binop("eq"), _binop("gt"), _binop("lt")
neg, exp, log, sin, cos = _unop("neg"), _unop("exp"), _unop("log"), _unop("sin"), _unop("cos")
sign, floor = _unop("sign"), _unop("floor")


def select(p, x, y):
    return select_p.bind(p, x, y)


def convert(x, dtype):
    return convert_element_type_p.bind(x, new_dtype=np.dtype(dtype), weak_type=False)


def reduce_sum(x, axes):
    return reduce_sum_p.bind(x, axes=tuple(axes)) if axes else x


def bcast(x, shape, dims):
    return broadcast_in_dim_p.bind(x, shape=tuple(shape), broadcast_dimensions=tuple(dims))


def square(x):
    return mul(x, x)


# --- rule builders ---------------------------------------------------------------

def defjvp(prim, *partials):
    """Elementwise prim: partials[i](g, ans, *primals) is the tangent that input
    i contributes (None: that input has no derivative)."""
    def rule(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        out = None
        for part, p_i, t in zip(partials, primals, tangents):
            if t is not None and part is not None:
                out = add_tangents(out, part(t, ans, *primals, **params))
        return ans, out
    JVP_RULES[prim] = rule


def deflinear(prim, transpose):
    """A primitive linear in its only operand: its tangent is itself applied
    to the tangent."""
    def rule(primals, tangents, **params):
        return prim.bind(*primals, **params), prim.bind(*tangents, **params)
    JVP_RULES[prim] = rule
    TRANSPOSE_RULES[prim] = transpose


def not_differentiable(*prims):
    NOT_DIFFERENTIABLE.update(prims)


# --- elementwise -------------------------------------------------------------------

U, B = UNARY, BINARY

deflinear(U["neg"], lambda ct, x: [neg(ct)])
defjvp(U["exp"], lambda g, ans, x: mul(g, ans))
defjvp(U["log"], lambda g, ans, x: div(g, x))
defjvp(U["log1p"], lambda g, ans, x: div(g, add(x, const(1, x))))
defjvp(U["expm1"], lambda g, ans, x: mul(g, add(ans, const(1, x))))
defjvp(U["sin"], lambda g, ans, x: mul(g, cos(x)))
defjvp(U["cos"], lambda g, ans, x: neg(mul(g, sin(x))))
defjvp(U["tan"], lambda g, ans, x: mul(g, add(const(1, x), square(ans))))
defjvp(U["tanh"], lambda g, ans, x: mul(g, sub(const(1, x), square(ans))))
defjvp(U["logistic"], lambda g, ans, x: mul(g, mul(ans, sub(const(1, x), ans))))
defjvp(U["sqrt"], lambda g, ans, x: div(g, mul(const(2, x), ans)))
defjvp(U["rsqrt"], lambda g, ans, x: mul(g, mul(const(-0.5, x), div(ans, x))))
defjvp(U["abs"], lambda g, ans, x: mul(g, sign(x)))
defjvp(U["erf"], lambda g, ans, x: mul(g, mul(const(2 / np.sqrt(np.pi), x), exp(neg(square(x))))))
not_differentiable(U["sign"], U["floor"], U["ceil"], U["round"], U["not"], U["isnan"],
                   U["isinf"], *COMPARE.values(), B["and"], B["or"], B["xor"])
# erf_inv' = sqrt(pi)/2 exp(erf_inv(x)^2); the bit primitives (ir/primitives/bits.py)
# move bits: zero derivative, as JAX's
defjvp(U["erf_inv"], lambda g, ans, x: mul(g, mul(const(np.sqrt(np.pi) / 2, x), exp(square(ans)))))
not_differentiable(B["shift_left"], B["shift_right_logical"], B["shift_right_arithmetic"],
                   bitcast_convert_type_p, threefry2x32_p)


def _integer_pow_jvp(g, ans, x, *, y):
    if y == 0:
        return None
    if y == 1:
        return g
    if y == 2:
        return mul(g, mul(const(2, x), x))
    return mul(g, mul(const(y, x), integer_pow_p.bind(x, y=y - 1)))


defjvp(integer_pow_p, _integer_pow_jvp)


def _pow_jvp_base(g, ans, x, y):
    return mul(g, mul(y, B["pow"].bind(x, sub(y, const(1, y)))))


def _pow_jvp_exponent(g, ans, x, y):
    # d/dy x**y = log(x) x**y; at x == 0 take log(1) (JAX's convention), so
    # 0**y contributes 0 rather than NaN.
    safe = select(eq(x, const(0, x)), const(1, x), x)
    return mul(g, mul(log(safe), ans))


defjvp(B["pow"], _pow_jvp_base, _pow_jvp_exponent)
defjvp(B["add"], lambda g, ans, x, y: g, lambda g, ans, x, y: g)
defjvp(B["sub"], lambda g, ans, x, y: g, lambda g, ans, x, y: neg(g))
defjvp(B["mul"], lambda g, ans, x, y: mul(g, y), lambda g, ans, x, y: mul(x, g))
defjvp(B["div"], lambda g, ans, x, y: div(g, y),
       lambda g, ans, x, y: neg(mul(g, div(ans, y))))
defjvp(B["rem"], lambda g, ans, x, y: g,                   # x - floor(x/y) * y
       lambda g, ans, x, y: mul(g, neg(floor(div(x, y)))))
defjvp(B["atan2"], lambda g, ans, x, y: mul(g, div(y, add(square(x), square(y)))),
       lambda g, ans, x, y: mul(g, div(neg(x), add(square(x), square(y)))))


def _minmax_weight(win, a, b):
    """1 where a wins, 1/2 at a tie, 0 where b wins (NaN: 0 for both)."""
    half = select(eq(a, b), const(0.5, a), const(0, a))
    return select(win(a, b), const(1, a), half)


defjvp(B["max"], lambda g, ans, x, y: mul(g, _minmax_weight(gt, x, y)),
       lambda g, ans, x, y: mul(g, _minmax_weight(gt, y, x)))
defjvp(B["min"], lambda g, ans, x, y: mul(g, _minmax_weight(lt, x, y)),
       lambda g, ans, x, y: mul(g, _minmax_weight(lt, y, x)))


def _unbroadcast_ct(ct, operand):
    return fit(ct, operand.aval) if isinstance(operand, UndefinedPrimal) else None


def _add_T(ct, x, y):
    return [_unbroadcast_ct(ct, x), _unbroadcast_ct(ct, y)]


def _sub_T(ct, x, y):
    return [_unbroadcast_ct(ct, x),
            _unbroadcast_ct(neg(ct), y) if isinstance(y, UndefinedPrimal) else None]


def _mul_T(ct, x, y):
    if isinstance(x, UndefinedPrimal) and isinstance(y, UndefinedPrimal):
        raise TypeError("autodiff: mul of two tangents is not linear")
    if isinstance(x, UndefinedPrimal):
        return [fit(mul(ct, y), x.aval), None]
    return [None, fit(mul(x, ct), y.aval)]


def _div_T(ct, x, y):
    if isinstance(y, UndefinedPrimal):
        raise TypeError("autodiff: division by a tangent is not linear")
    return [fit(div(ct, y), x.aval), None]


TRANSPOSE_RULES.update({B["add"]: _add_T, B["sub"]: _sub_T, B["mul"]: _mul_T,
                        B["div"]: _div_T})


def _select_jvp(primals, tangents):
    p, x, y = primals
    _, tx, ty = tangents
    ans = select_p.bind(p, x, y)
    if tx is None and ty is None:
        return ans, None
    aval = aval_of_value(ans)
    return ans, select(p, instantiate(tx, aval), instantiate(ty, aval))


def _select_T(ct, p, x, y):
    z = const(0, ct)
    return [None,
            fit(select(p, ct, z), x.aval) if isinstance(x, UndefinedPrimal) else None,
            fit(select(p, z, ct), y.aval) if isinstance(y, UndefinedPrimal) else None]


JVP_RULES[select_p] = _select_jvp
TRANSPOSE_RULES[select_p] = _select_T


def _convert_jvp(primals, tangents, *, new_dtype, weak_type=False):
    (x,), (t,) = primals, tangents
    ans = convert_element_type_p.bind(x, new_dtype=new_dtype, weak_type=weak_type)
    if np.dtype(new_dtype).kind != "f" or dtype_of(x).kind != "f":
        return ans, None                         # through integers the derivative is zero
    return ans, convert_element_type_p.bind(t, new_dtype=new_dtype, weak_type=weak_type)


JVP_RULES[convert_element_type_p] = _convert_jvp
TRANSPOSE_RULES[convert_element_type_p] = lambda ct, x, **_: [
    convert_element_type_p.bind(ct, new_dtype=x.aval.dtype, weak_type=x.aval.weak_type)]


# --- structural --------------------------------------------------------------------

def _bid_T(ct, x, *, shape, broadcast_dimensions):
    xs, bd = x.aval.shape, tuple(broadcast_dimensions)
    expanded = [bd[i] for i, n in enumerate(xs) if n == 1 and shape[bd[i]] != 1]
    axes = sorted([d for d in range(len(shape)) if d not in bd] + expanded)
    r = reduce_sum(ct, axes)
    if shape_of(r) != tuple(xs):
        r = reshape_p.bind(r, new_sizes=tuple(xs))
    return [r]


deflinear(broadcast_in_dim_p, _bid_T)
deflinear(reshape_p, lambda ct, x, **_: [reshape_p.bind(ct, new_sizes=tuple(x.aval.shape))])
deflinear(transpose_p, lambda ct, x, *, permutation: [
    transpose_p.bind(ct, permutation=tuple(int(i) for i in np.argsort(permutation)))])
deflinear(rev_p, lambda ct, x, *, dimensions: [rev_p.bind(ct, dimensions=dimensions)])
deflinear(reduce_sum_p, lambda ct, x, *, axes: [
    bcast(ct, x.aval.shape, [d for d in range(len(x.aval.shape)) if d not in axes])])
deflinear(cumsum_p, lambda ct, x, *, axis, reverse=False: [
    cumsum_p.bind(ct, axis=axis, reverse=not reverse)])


def _slice_T(ct, x, *, start_indices, limit_indices, strides=None):
    shape = x.aval.shape
    strides = strides or (1,) * len(shape)
    out = shape_of(ct)
    if any(m == 0 for m in out):
        return [zeros(x.aval)]
    config = tuple((s, n - (s + (m - 1) * st + 1), st - 1)
                   for s, st, m, n in zip(start_indices, strides, out, shape))
    return [pad_p.bind(ct, const(0, ct), padding_config=config)]


deflinear(slice_p, _slice_T)


def _pad_jvp(primals, tangents, *, padding_config):
    (x, v), (tx, tv) = primals, tangents
    ans = pad_p.bind(x, v, padding_config=padding_config)
    return ans, pad_p.bind(instantiate(tx, aval_of_value(x)),
                           instantiate(tv, aval_of_value(v)), padding_config=padding_config)


def _pad_T(ct, x, v, *, padding_config):
    xs = x.aval.shape if isinstance(x, UndefinedPrimal) else shape_of(x)
    if any(n == 0 for n in xs):
        ct_x = zeros(ShapedArray(xs, dtype_of(ct)))
    else:
        ct_x = slice_p.bind(
            ct, start_indices=tuple(lo for lo, _, _ in padding_config),
            limit_indices=tuple(lo + (n - 1) * (it + 1) + 1
                                for n, (lo, _, it) in zip(xs, padding_config)),
            strides=tuple(it + 1 for _, _, it in padding_config))
    ct_v = None
    if isinstance(v, UndefinedPrimal):
        all_ct, all_x = tuple(range(len(shape_of(ct)))), tuple(range(len(xs)))
        ct_v = sub(reduce_sum(ct, all_ct), reduce_sum(ct_x, all_x))
    return [ct_x if isinstance(x, UndefinedPrimal) else None, ct_v]


JVP_RULES[pad_p] = _pad_jvp
TRANSPOSE_RULES[pad_p] = _pad_T


def _concat_jvp(primals, tangents, *, dimension):
    ans = concatenate_p.bind(*primals, dimension=dimension)
    if all(t is None for t in tangents):
        return ans, None
    ts = [instantiate(t, aval_of_value(p)) for p, t in zip(primals, tangents)]
    return ans, concatenate_p.bind(*ts, dimension=dimension)


def _concat_T(ct, *xs, dimension):
    out, start = [], 0
    full = shape_of(ct)
    for x in xs:
        n = aval_of_value(x).shape[dimension]
        if isinstance(x, UndefinedPrimal):
            lo = [0] * len(full)
            hi = list(full)
            lo[dimension], hi[dimension] = start, start + n
            out.append(slice_p.bind(ct, start_indices=tuple(lo), limit_indices=tuple(hi),
                                    strides=(1,) * len(full)))
        else:
            out.append(None)
        start += n
    return out


JVP_RULES[concatenate_p] = _concat_jvp
TRANSPOSE_RULES[concatenate_p] = _concat_T
not_differentiable(iota_p)


# --- reductions ----------------------------------------------------------------------

def _reduce_chooser_jvp(prim):
    def rule(primals, tangents, *, axes):
        (x,), (t,) = primals, tangents
        ans = prim.bind(x, axes=axes)
        shape = shape_of(x)
        kept = [d for d in range(len(shape)) if d not in axes]
        mask = convert(eq(x, bcast(ans, shape, kept)), dtype_of(x))
        count = reduce_sum(mask, axes)          # ties share the derivative evenly
        return ans, div(reduce_sum(mul(t, mask), axes), count)
    JVP_RULES[prim] = rule


_reduce_chooser_jvp(reduce_max_p)
_reduce_chooser_jvp(reduce_min_p)


def _reduce_prod_jvp(primals, tangents, *, axes):
    # d prod / d x_i = the product of the others, computed without dividing by
    # zero: with one zero in the slice only that element has a derivative, with
    # two or more none has.
    (x,), (t,) = primals, tangents
    ans = reduce_prod_p.bind(x, axes=axes)
    shape = shape_of(x)
    kept = [d for d in range(len(shape)) if d not in axes]
    is0 = eq(x, const(0, x))
    safe = select(is0, const(1, x), x)
    p1 = bcast(reduce_prod_p.bind(safe, axes=axes), shape, kept)
    n0 = bcast(reduce_sum(convert(is0, dtype_of(x)), axes), shape, kept)
    z = const(0, x)
    others = select(is0, select(eq(n0, const(1, x)), p1, z),
                    select(eq(n0, z), div(p1, safe), z))
    return ans, reduce_sum(mul(t, others), axes)


JVP_RULES[reduce_prod_p] = _reduce_prod_jvp
not_differentiable(argmax_p, argmin_p)


# --- dot_general -------------------------------------------------------------------

def _dot_jvp(primals, tangents, *, dimension_numbers):
    (x, y), (tx, ty) = primals, tangents
    ans = dot_general_p.bind(x, y, dimension_numbers=dimension_numbers)
    out = None
    if tx is not None:
        out = dot_general_p.bind(tx, y, dimension_numbers=dimension_numbers)
    if ty is not None:
        out = add_tangents(out, dot_general_p.bind(x, ty, dimension_numbers=dimension_numbers))
    return ans, out


def _ranges_like(*xs):
    start = 0
    for x in xs:
        yield tuple(range(start, start + len(x)))
        start += len(x)


def _remaining(n, *removed):
    gone = set(itertools.chain(*removed))
    return [i for i in range(n) if i not in gone]


def _dot_T_lhs(ct, x_aval, y, dn, swap_ans=False):
    # JAX's _dot_general_transpose_lhs: contract ct with y over y's free axes,
    # then permute the result into x's axis order.
    xc, yc, xb, yb = dn.lhs_contract, dn.rhs_contract, dn.lhs_batch, dn.rhs_batch
    x_kept = _remaining(len(x_aval.shape), xc, xb)
    y_kept = _remaining(len(shape_of(y)), yc, yb)
    if swap_ans:
        ans_batch, ans_y, _ = _ranges_like(xb, y_kept, x_kept)
    else:
        ans_batch, _, ans_y = _ranges_like(xb, x_kept, y_kept)
    dims = DotDimensionNumbers((ans_y, tuple(y_kept)), (ans_batch, yb))
    xc_by_y = [xc[i] for i in np.argsort(yc)]
    out_axes = tuple(int(i) for i in np.argsort(list(xb) + x_kept + xc_by_y))
    r = dot_general_p.bind(ct, y, dimension_numbers=dims)
    if out_axes != tuple(range(len(out_axes))):
        r = transpose_p.bind(r, permutation=out_axes)
    return r


def _dot_T(ct, x, y, *, dimension_numbers):
    dn = dimension_numbers              # a DotDimensionNumbers, as every equation holds
    if isinstance(x, UndefinedPrimal) and isinstance(y, UndefinedPrimal):
        raise TypeError("autodiff: dot_general of two tangents is not linear")
    if isinstance(x, UndefinedPrimal):
        return [_dot_T_lhs(ct, x.aval, y, dn), None]
    return [None, _dot_T_lhs(ct, y.aval, x, dn.swapped(), swap_ans=True)]


JVP_RULES[dot_general_p] = _dot_jvp
TRANSPOSE_RULES[dot_general_p] = _dot_T


# --- gather / scatter ----------------------------------------------------------------

def _gather_jvp(primals, tangents, *, axis):
    (x, idx), (tx, _) = primals, tangents
    ans = gather_p.bind(x, idx, axis=axis)
    return ans, None if tx is None else gather_p.bind(tx, idx, axis=axis)


def _gather_T(ct, x, idx, *, axis):
    return [scatter_add_p.bind(zeros(x.aval), idx, ct, axis=axis), None]


def _scatter_jvp(prim):
    def rule(primals, tangents, *, axis, mode):
        (x, idx, u), (tx, _, tu) = primals, tangents
        ans = prim.bind(x, idx, u, axis=axis, mode=mode)
        if tx is None and tu is None:
            return ans, None
        return ans, prim.bind(instantiate(tx, aval_of_value(x)), idx,
                              instantiate(tu, aval_of_value(u)), axis=axis, mode=mode)
    return rule


def _kept(idx, x_aval, u_aval, axis, mode):
    """mode="drop": 1.0 where an update lands (its index in range), shaped
    like the updates; None for mode="clip" (every update lands)."""
    if mode != ScatterMode.DROP:
        return None
    n = x_aval.shape[axis]
    i64 = convert(idx, np.int64)
    ok = B["and"].bind(COMPARE["ge"].bind(i64, np.array(-n, np.int64)),
                       lt(i64, np.array(n, np.int64)))
    return bcast(convert(ok, u_aval.dtype), u_aval.shape,
                 range(axis, axis + len(shape_of(idx))))


def _times(x, mask):
    return x if mask is None else mul(x, mask)


def _scatter_add_T(ct, x, idx, u, *, axis, mode):
    ct_u = None
    if isinstance(u, UndefinedPrimal):
        ct_u = _times(gather_p.bind(ct, idx, axis=axis),
                      _kept(idx, aval_of_value(ct), u.aval, axis, mode))
    return [ct if isinstance(x, UndefinedPrimal) else None, None, ct_u]


def _scatter_winners(x_aval, idx, u_aval, axis, mode):
    """1.0 where an update is the one scatter keeps (the last write to its
    position), 0.0 where a later update to the same position overwrote it."""
    ishape = shape_of(idx)
    m = int(np.prod(ishape, dtype=np.int64))
    if m <= 1:
        return None                              # a single update always lands
    pos = np.arange(m, dtype=np.int64).reshape(ishape)
    last = scatter_p.bind(np.full((x_aval.shape[axis],), -1, np.int64), idx, pos, axis=0,
                          mode=mode)
    win = convert(eq(gather_p.bind(last, idx, axis=0), pos), u_aval.dtype)
    return bcast(win, u_aval.shape, range(axis, axis + len(ishape)))


def _scatter_T(ct, x, idx, u, *, axis, mode):
    u_aval = aval_of_value(u)
    ct_x = ct_u = None
    if isinstance(x, UndefinedPrimal):
        ct_x = scatter_p.bind(ct, idx, zeros(u_aval), axis=axis, mode=mode)
    if isinstance(u, UndefinedPrimal):
        ct_u = gather_p.bind(ct, idx, axis=axis)
        ct_u = _times(ct_u, _scatter_winners(aval_of_value(ct), idx, u_aval, axis, mode))
        ct_u = _times(ct_u, _kept(idx, aval_of_value(ct), u_aval, axis, mode))
    return [ct_x, None, ct_u]


def _scatter_mul_jvp(primals, tangents, *, axis, mode):
    # out[t] = x[t] * prod of the updates u_j into t. d/dx[t]: that product
    # (scatter_mul of the tangent, linear in it); d/du_j: x[t] times the
    # product of the other updates into t, computed without dividing by zero
    # as reduce_prod's rule does (per position: how many updates are 0, the
    # product of the others). Dropped updates (mode="drop") count nowhere.
    (x, idx, u), (tx, _, tu) = primals, tangents
    ans = scatter_mul_p.bind(x, idx, u, axis=axis, mode=mode)
    x_aval = aval_of_value(x)
    t_out = None
    if tx is not None:
        t_out = scatter_mul_p.bind(fit(tx, x_aval), idx, u, axis=axis, mode=mode)
    if tu is not None:
        one, z = const(1, u), const(0, u)
        is0 = eq(u, z)
        safe = select(is0, one, u)
        ones_x = add(zeros(x_aval), const(1, x))
        p1 = gather_p.bind(scatter_mul_p.bind(ones_x, idx, safe, axis=axis, mode=mode), idx,
                           axis=axis)
        n0 = gather_p.bind(scatter_add_p.bind(zeros(x_aval), idx, convert(is0, dtype_of(u)),
                                              axis=axis, mode=mode), idx, axis=axis)
        others = select(is0, select(eq(n0, one), p1, z), select(eq(n0, z), div(p1, safe), z))
        coef = mul(gather_p.bind(x, idx, axis=axis), others)
        t_u = scatter_add_p.bind(zeros(x_aval), idx, mul(fit(tu, aval_of_value(u)), coef),
                                 axis=axis, mode=mode)
        t_out = add_tangents(t_out, t_u)
    return ans, t_out


def _scatter_mul_T(ct, x, idx, u, *, axis, mode):
    # linear in the operand only (the JVP applies it to the operand's tangent)
    if isinstance(u, UndefinedPrimal):
        raise NotImplementedError("scatter_mul is not linear in its updates")
    ones = add(zeros(aval_of_value(ct)), const(1, ct))
    return [mul(ct, scatter_mul_p.bind(ones, idx, u, axis=axis, mode=mode)), None, None]


def _scatter_extremum_jvp(prim):
    # JAX's rule: the result at t is the operand or some updates; the tangent
    # is the average of the tangents of those that equal it (ties split).
    def rule(primals, tangents, *, axis, mode):
        (x, idx, u), (tx, _, tu) = primals, tangents
        ans = prim.bind(x, idx, u, axis=axis, mode=mode)
        if tx is None and tu is None:
            return ans, None
        x_aval, dt = aval_of_value(x), dtype_of(x)
        won = convert(eq(u, gather_p.bind(ans, idx, axis=axis)), dt)
        kept = convert(eq(x, ans), dt)
        refs = add(scatter_add_p.bind(zeros(x_aval), idx, won, axis=axis, mode=mode), kept)
        refs = select(eq(refs, const(0, x)), const(1, x), refs)      # a NaN result
        t_out = None
        if tx is not None:
            t_out = mul(fit(tx, x_aval), div(kept, refs))
        if tu is not None:
            coef = div(won, gather_p.bind(refs, idx, axis=axis))
            t_out = add_tangents(t_out, scatter_add_p.bind(
                zeros(x_aval), idx, mul(fit(tu, aval_of_value(u)), coef), axis=axis,
                mode=mode))
        return ans, t_out
    return rule


JVP_RULES[scatter_mul_p] = _scatter_mul_jvp
TRANSPOSE_RULES[scatter_mul_p] = _scatter_mul_T
JVP_RULES[scatter_min_p] = _scatter_extremum_jvp(scatter_min_p)
JVP_RULES[scatter_max_p] = _scatter_extremum_jvp(scatter_max_p)
JVP_RULES[gather_p] = _gather_jvp
TRANSPOSE_RULES[gather_p] = _gather_T
JVP_RULES[scatter_add_p] = _scatter_jvp(scatter_add_p)
TRANSPOSE_RULES[scatter_add_p] = _scatter_add_T
JVP_RULES[scatter_p] = _scatter_jvp(scatter_p)
TRANSPOSE_RULES[scatter_p] = _scatter_T


# --- sub-graphs and markers ----------------------------------------------------------

def _kernel_jvp(primals, tangents, *, graph, **_):
    from .transform import jvp_eval
    return jvp_eval(graph, [], primals, tangents)


JVP_RULES[kernel_p] = _kernel_jvp
JVP_RULES[stop_gradient_p] = lambda primals, tangents: (primals[0], None)


def _custom_vjp_jvp(primals, tangents, *, graph, n_consts, fwd, bwd, in_tree, out_tree):
    from ...tracer import pytree
    from .markers import ad_context
    from .transform import jvp_eval
    consts, args, targs = primals[:n_consts], primals[n_consts:], tangents[n_consts:]
    if all(t is None for t in targs):
        outs, _ = jvp_eval(graph, consts, args, [None] * len(args))
        return outs, [None] * len(outs)
    with ad_context(False):                   # the user's rules run inlined
        res = fwd(*pytree.tree_unflatten(in_tree, args))
    if not (isinstance(res, tuple) and len(res) == 2):
        raise TypeError(f"custom_vjp: the fwd rule {getattr(fwd, '__name__', fwd)} must "
                        f"return a pair (output, residuals), got {type(res).__name__}")
    out, residuals = res
    outs, tree = pytree.tree_flatten(out)
    if tree != out_tree:
        raise TypeError(f"custom_vjp: the fwd rule's output structure {tree} differs from "
                        f"the function's {out_tree}")
    res_flat, res_tree = pytree.tree_flatten(residuals)
    nz = tuple(t is not None for t in targs)
    out_avals = tuple(v.aval for v in graph.outvars)
    touts = custom_lin_p.bind(*res_flat, *[t for t in targs if t is not None],
                              n_res=len(res_flat), res_tree=res_tree, bwd=bwd,
                              in_tree=in_tree, out_tree=out_tree, nonzero=nz,
                              in_avals=tuple(aval_of_value(a) for a in args),
                              out_avals=out_avals)
    touts = [t if a.dtype.kind == "f" else None for t, a in zip(touts, out_avals)]
    return outs, touts


def _custom_lin_T(cts, *args, n_res, res_tree, bwd, in_tree, out_tree, nonzero, in_avals,
                  out_avals):
    from ...tracer import pytree
    from .markers import ad_context
    cts = [instantiate(c, a) for c, a in zip(cts, out_avals)]
    with ad_context(False):
        grads = bwd(pytree.tree_unflatten(res_tree, list(args[:n_res])),
                    pytree.tree_unflatten(out_tree, cts))
    if not isinstance(grads, (tuple, list)):
        raise TypeError(f"custom_vjp: the bwd rule {getattr(bwd, '__name__', bwd)} must "
                        f"return a tuple with one entry per argument, got "
                        f"{type(grads).__name__}")
    flat = []
    for g, sub in zip(grads, in_tree.children):
        leaves = pytree.tree_leaves(g)
        if g is None:
            leaves = [None] * sub.num_leaves
        if len(leaves) != sub.num_leaves or len(grads) != len(in_tree.children):
            raise TypeError(f"custom_vjp: the bwd rule's result does not match the "
                            f"function's arguments {in_tree}")
        flat.extend(leaves)
    out = [None] * n_res
    out += [fit(g, a) for g, a, nz in zip(flat, in_avals, nonzero) if nz]
    return out


JVP_RULES[custom_vjp_call_p] = _custom_vjp_jvp
TRANSPOSE_RULES[custom_lin_p] = _custom_lin_T


# --- effects ---------------------------------------------------------------------------

def _debug_callback_jvp(primals, tangents, *, callback):
    # A debug print has no results, so no tangents: it is emitted again on the
    # primals (JAX's rule), which partial evaluation keeps in the primal
    # program; the tangents are never printed and never flow anywhere.
    return debug_callback_p.bind(*primals, callback=callback), []


JVP_RULES[debug_callback_p] = _debug_callback_jvp
