"""Differential tests: needle.numpy's contractions against numpy, eagerly and
under needle.jit: matmul (matrix, batched, broadcast batch, vector cases),
dot, vdot, inner, outer, tensordot and einsum.

Expected values are numpy's computed in float64 (int64 for integers) and cast
to the JAX-promoted dtype. float32 sums of k <= 4 products of values <= 3 in
magnitude stay within helpers.tol.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import needle.numpy as nnp
from helpers import MODES, arrays, assert_close, expected_dtype, reference, run

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32, I64 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
NUMERIC = [F32, F64, I32, I64]
PAIRS = [(d, d) for d in NUMERIC] + [(I32, F32), (F32, F64), (I64, F32)]


def _pairs(mode):
    """Eagerly every dtype pair; under jit float32, int32 and one mixed pair."""
    return PAIRS if mode == "eager" else [(F32, F32), (I32, I32), (I32, F32)]


def _check(got, np_fn, *args):
    dt = expected_dtype(*args)
    assert_close(got, reference(np_fn, *args, dtype=dt), dt)


side = st.integers(1, 4)


@st.composite
def matmul_operands(draw, dx, dy):
    """Operands of every matmul form: 1-d with 1-d / 2-d / n-d, 2-d with 2-d, and
    batched with broadcast batch dims (size-1 or missing)."""
    m, k, n = draw(side, label="m"), draw(side, label="k"), draw(side, label="n")
    ba, bb = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3),
                  label="batch").input_shapes
    sa = draw(st.sampled_from([(k,), (m, k), ba + (m, k)]), label="a_shape")
    sb = draw(st.sampled_from([(k,), (k, n), bb + (k, n)]), label="b_shape")
    return draw(arrays(dx, sa), label="a"), draw(arrays(dy, sb), label="b")


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_matmul(mode, data):
    dx, dy = data.draw(st.sampled_from(_pairs(mode)), label="dtypes")
    a, b = data.draw(matmul_operands(dx, dy))
    fn = (lambda a, b: a @ b) if mode == "jit" else nnp.matmul
    _check(run(fn, (a, b), mode), np.matmul, a, b)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)),
                                   ((4, 2, 3), (3,)), ((3,), (4, 3, 2)), ((2, 3), (3, 4)),
                                   ((5, 2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)),
                                   ((1, 2, 3), (6, 3, 1))], ids=str)
def test_matmul_forms(sa, sb, mode):
    """Each form once with fixed shapes (vector cases squeeze their axis)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    _check(run(nnp.matmul, (a, b), mode), np.matmul, a, b)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_dot_vdot_inner_outer(mode, data):
    dx, dy = data.draw(st.sampled_from(_pairs(mode)), label="dtypes")
    k = data.draw(side, label="k")
    sa = data.draw(st.sampled_from([(), (k,), (2, k), (3, 2, k)]), label="a_shape")
    sb = data.draw(st.sampled_from([(), (k,), (k, 2), (2, k, 3)]), label="b_shape")
    a, b = data.draw(arrays(dx, sa), label="a"), data.draw(arrays(dy, sb), label="b")
    fns = {"dot": (nnp.dot, np.dot), "outer": (nnp.outer, np.outer)}
    if not sa or not sb or sa[-1] == sb[-1]:
        fns["inner"] = (nnp.inner, np.inner)
    if sa == sb:
        fns["vdot"] = (nnp.vdot, np.vdot)
    got = run(lambda a, b: {n: f(a, b) for n, (f, _) in fns.items()}, (a, b), mode)
    for n, (_, np_fn) in fns.items():
        try:
            _check(got[n], np_fn, a, b)
        except AssertionError as e:
            raise AssertionError(f"{n}: {e}") from None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sa,sb,axes", [((2, 3, 4), (3, 4, 5), 2), ((2, 3), (3, 2), 1),
                                        ((2, 3), (4,), 0), ((2, 3, 4), (4, 2, 3), ([1, 2], [2, 0])),
                                        ((3, 4), (3, 5), ([0], [0])), ((3, 4), (5, 4), (-1, -1))],
                         ids=str)
def test_tensordot(sa, sb, axes, mode):
    rng = np.random.default_rng(1)
    a = rng.integers(-3, 4, sa).astype(np.float32)
    b = rng.integers(-3, 4, sb).astype(np.float32)
    _check(run(lambda a, b: nnp.tensordot(a, b, axes), (a, b), mode),
           lambda a, b: np.tensordot(a, b, axes), a, b)


EINSUM = {
    "ij,jk->ik": ("ij", "jk"),
    "bij,bjk->bik": ("bij", "bjk"),
    "ij->ji": ("ij",),
    "ij->": ("ij",),
    "i,i->": ("i", "i"),
    "i,j->ij": ("i", "j"),
    "ij,kj->ik": ("ij", "kj"),
    "bij,jk->bki": ("bij", "jk"),
    "ij,ij->i": ("ij", "ij"),
    "ijk->kj": ("ijk",),
    "ij,jk": ("ij", "jk"),           # implicit output: letters seen once, sorted
    "ij,jk,kl->il": ("ij", "jk", "kl"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", list(EINSUM))
@given(data=st.data())
def test_einsum(spec, mode, data):
    dx, dy = data.draw(st.sampled_from(_pairs(mode)), label="dtypes")
    sizes = {c: data.draw(side, label=c) for c in "bijkl"}
    ops = [data.draw(arrays(dx if n == 0 else dy, tuple(sizes[c] for c in s)), label=f"op{n}")
           for n, s in enumerate(EINSUM[spec])]
    _check(run(lambda *ops: nnp.einsum(spec, *ops), ops, mode),
           lambda *ops: np.einsum(spec, *ops), *ops)


# ----------------------------------------------------------------------------
# dot_general itself: any contracting and batch dimensions, against einsum


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_dot_general_primitive(mode, data):
    """Output axes: batch, then lhs free, then rhs free (JAX's convention)."""
    from needle.ir.primitives import dot_general_p
    dt = data.draw(st.sampled_from([F32, F64, I32, I64] if mode == "eager" else [F32, I32]))
    nb, nc = data.draw(st.integers(0, 2), label="n_batch"), data.draw(st.integers(0, 2))
    fa, fb = data.draw(st.integers(0, 2), label="lhs_free"), data.draw(st.integers(0, 2))
    letters = iter("abcdefghij")
    batch = [next(letters) for _ in range(nb)]
    contract = [next(letters) for _ in range(nc)]
    free_a = [next(letters) for _ in range(fa)]
    free_b = [next(letters) for _ in range(fb)]
    size = {c: data.draw(st.integers(1, 3), label=c) for c in batch + contract + free_a + free_b}
    spec_a = data.draw(st.permutations(batch + contract + free_a), label="lhs_axes")
    spec_b = data.draw(st.permutations(batch + contract + free_b), label="rhs_axes")
    a = data.draw(arrays(dt, tuple(size[c] for c in spec_a)), label="a")
    b = data.draw(arrays(dt, tuple(size[c] for c in spec_b)), label="b")
    dn = ((tuple(spec_a.index(c) for c in contract), tuple(spec_b.index(c) for c in contract)),
          (tuple(spec_a.index(c) for c in batch), tuple(spec_b.index(c) for c in batch)))
    out_spec = "".join(batch + [c for c in spec_a if c in free_a] +
                       [c for c in spec_b if c in free_b])
    got = run(lambda a, b: dot_general_p.bind(a, b, dimension_numbers=dn), (a, b), mode)
    want = reference(lambda a, b: np.einsum(f"{''.join(spec_a)},{''.join(spec_b)}->{out_spec}",
                                            a, b), a, b, dtype=dt)
    assert_close(got, want, dt)


def test_every_linalg_primitive_is_tested_here():
    from needle.ir import PRIMITIVES
    from needle.ir.primitives import LINALG_DECOMPOSITIONS     # test_numpy_linalg_decomp.py
    assert {n for n, p in PRIMITIVES.items() if p.kind == "linalg"} == \
        {"dot_general", *LINALG_DECOMPOSITIONS, "conv", "conv_wgrad"}   # test_conv_direct.py
