"""The simplification pass: each rule rewrites the IR it should (checked on
the equations left after simplify + DCE) and keeps the values."""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle.ir import check_graph, run_numpy
from needle.passes import dce, simplify

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def simplified(f, *args):
    cg = needle.make_ir(f)(*args)
    out = dce(simplify(cg))
    check_graph(out.graph)
    for g, w in zip(run_numpy(out.graph, out.consts, list(args)),
                    run_numpy(cg.graph, cg.consts, list(args))):
        np.testing.assert_array_equal(g, w)
    return [e.prim.name for e in out.graph.eqns]


@pytest.mark.parametrize("f, expected", [
    (lambda x: x * 1.0, []),                                           # x*1 -> x
    (lambda x: 1.0 * x + 0.0, []),                                     # 1*x + 0 -> x
    (lambda x: (x - 0.0) / 1.0, []),                                   # x-0, x/1 -> x
    (lambda x: -(-x), []),                                             # --x -> x
    (lambda x: x ** 1, []),                                            # x**1 -> x
    (lambda x: nnp.where(x > 0, x, x), []),                            # where(p,x,x) -> x
    (lambda x: x.reshape(12).reshape(4, 3).reshape(2, 6), ["reshape"]),  # reshape chains
    (lambda x: x.reshape(12).reshape(3, 4), []),                       # back to its shape
    (lambda x: x.T.T, []),                                             # transpose pairs
    (lambda x: nnp.transpose(nnp.transpose(x[None], (1, 0, 2)), (0, 2, 1)), ["reshape"]),  # moves a 1
    (lambda x: nnp.transpose(nnp.transpose(x[None], (1, 0, 2)), (0, 2, 1)).T, ["reshape", "transpose"]),
    (lambda x: x.astype(np.float64).astype(np.float32), []),           # lossless round trip
    (lambda x: x.astype(np.int32).astype(np.float32), ["convert_element_type"] * 2),  # lossy: kept
    (lambda x: nnp.broadcast_to(nnp.broadcast_to(x[0], (3, 4)), (2, 3, 4)),
     ["slice", "reshape", "broadcast_in_dim"]),                        # broadcast chains
])
def test_rules(f, expected):
    assert simplified(f, X) == expected


def test_transposes_around_matmuls_fold_into_dimension_numbers():
    w = np.ones((4, 5), np.float32)
    v = np.ones((3, 5), np.float32)
    assert simplified(lambda x, w: (x @ w).T, X, w) == ["dot_general"]      # (a.b)^T = b^T.a^T
    assert simplified(lambda x, v: x.T @ v, X, v) == ["dot_general"]        # a^T.b: no copy
    assert simplified(lambda x, w: w.T @ x.T, X, w) == ["dot_general"]
    # kept when the untransposed product is used too
    def both(x, w):
        y = x @ w
        return y.T, y
    assert "transpose" in simplified(both, X, w)


def test_pipeline_has_simplify_stage():
    lo = needle.jit(lambda x: (x * 1.0).reshape(12).reshape(3, 4)).lower(X)
    assert "simplified" in lo.stages
    assert lo.kernel_count == 0 or "mul" not in lo.as_text("simplified")
