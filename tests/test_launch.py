"""Cheaper CPU launches (issue 13): a kernel step calls its kernel's compiled
entry point after one call through Numba's dispatcher, which checks the
argument types (runtime/cpu_device.kernel_step, entry_point); the steps are
generated per arity; the Executable runs its plan as one generated function
(runtime/executable.run_plan); allocators are C-level partials
(runtime/memory.allocator).

References: numpy formulas in float64 (never the kernels themselves); the
dispatcher-then-entry switch is counted on a stand-in dispatcher and on the
real kernels of a jitted program.
"""
import types

import numba
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle.runtime import cpu_device, executable, memory
from needle.runtime.cpu_device import kernel_step


def _axpy_kernel(n_in, n_out, lits=False, rows=False):
    """o_j[i, k] = sum_m (m + 1) * a_m[i, k] + j (+ lits[0]) for rows lo..hi:
    a kernel in needle's CPU signature style (2-D float32 arrays, dims, lits,
    lo, hi)."""
    params = [f"a{k}" for k in range(n_in)] + [f"o{k}" for k in range(n_out)] + ["dims"]
    types_ = ["float32[:, ::1]"] * (n_in + n_out) + ["int64[::1]"]
    if lits:
        params.append("lits")
        types_.append("float64[::1]")
    if rows:
        params += ["lo", "hi"]
        types_ += ["int64", "int64"]
    acc = " + ".join([f"{m + 1} * a{m}[i, k]" for m in range(n_in)] or ["0.0"])
    add = " + lits[0]" if lits else ""
    start, stop = ("lo", "hi") if rows else ("0", "dims[0]")
    body = "".join(f"            o{j}[i, k] = {acc} + {j}{add}\n" for j in range(n_out))
    src = (f"def kernel({', '.join(params)}):\n"
           f"    for i in range({start}, {stop}):\n"
           f"        for k in range(dims[1]):\n{body}")
    ns = {}
    exec(src, ns)
    return numba.njit(f"void({', '.join(types_)})", nogil=True)(ns["kernel"])


def _reference(ins, n_out, lit=0.0):
    acc = sum((m + 1) * a.astype(np.float64) for m, a in enumerate(ins)) if ins else 0.0
    return [acc + j + lit for j in range(n_out)]


@pytest.mark.parametrize("n_in,n_out", [(0, 1), (1, 1), (3, 1), (2, 3), (40, 2)])
def test_kernel_steps_of_each_arity_match_numpy(n_in, n_out):
    rng = np.random.default_rng(n_in)
    shape = (3, 4)
    fn = _axpy_kernel(n_in, n_out, lits=n_in == 2)
    dims = np.array(shape, np.int64)
    lits = np.array([0.5]) if n_in == 2 else None
    env = [rng.standard_normal(shape).astype(np.float32) for _ in range(n_in)] + \
        [None] * n_out
    outs = list(range(n_in, n_in + n_out))
    step = kernel_step(fn, list(range(n_in)), outs, [(shape, np.dtype(np.float32))] * n_out,
                       dims, lits=lits)
    for call in range(3):                   # the dispatcher's call, then the entry's
        for a in env[:n_in]:
            a += 1.0
        step(env)
        want = _reference(env[:n_in], n_out, 0.5 if lits is not None else 0.0)
        for o, w in zip(outs, want):
            assert env[o].dtype == np.float32 and env[o].shape == shape
            np.testing.assert_allclose(env[o], w, rtol=1e-5, atol=1e-5)
    assert len({id(env[o]) for o in outs}) == n_out     # a fresh buffer per output


def test_in_place_outputs_and_rows_of_a_split_kernel():
    """An output written into a given slot's buffer (inplace) and one
    allocated, with the (lo, hi) rows of a splittable kernel called in one
    piece."""
    rng = np.random.default_rng(1)
    shape = (5, 3)
    fn = _axpy_kernel(2, 2, rows=True)
    dims = np.array(shape, np.int64)
    a, b = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    dest = np.zeros(shape, np.float32)
    env = [a, b, dest, None, None]
    step = kernel_step(fn, [0, 1], [3, 4], [(shape, np.dtype(np.float32))] * 2, dims,
                       inplace={0: 2}, rows=(0, shape[0]))
    for _ in range(2):
        step(env)
        w0, w1 = _reference([a, b], 2)
        assert env[3] is dest
        np.testing.assert_allclose(dest, w0, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(env[4], w1, rtol=1e-5, atol=1e-5)


def _fake_dispatcher():
    """A stand-in for a Numba dispatcher with one overload: counts the calls
    through the dispatcher and through the entry point, and refuses (as the
    dispatcher does) an argument that is not a float32 array."""
    calls = {"dispatcher": 0, "entry": 0}

    class Dispatcher:
        def __call__(self, *args):
            if any(not (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.int64))
                   for x in args):
                raise TypeError("No matching definition for argument type(s)")
            calls["dispatcher"] += 1

    def entry(*args):
        calls["entry"] += 1
    d = Dispatcher()
    d.overloads = {("sig",): types.SimpleNamespace(entry_point=entry)}
    return d, calls


def test_first_call_goes_through_the_dispatcher_then_the_entry_point(monkeypatch):
    fn, calls = _fake_dispatcher()
    dims = np.array([2], np.int64)
    env = [np.zeros(2, np.float32), None]
    step = kernel_step(fn, [0], [1], [((2,), np.dtype(np.float32))], dims)
    for _ in range(4):
        step(env)
    assert calls == {"dispatcher": 1, "entry": 3}


def test_a_mistyped_first_call_is_refused_and_checked_again(monkeypatch):
    """The dispatcher's check: an argument of another type raises its
    TypeError; the step stays on the checked path until a call passes."""
    fn, calls = _fake_dispatcher()
    dims = np.array([2], np.int64)
    step = kernel_step(fn, [0], [1], [((2,), np.dtype(np.float32))], dims)
    bad = [np.zeros(2, np.float64), None]
    for _ in range(2):
        with pytest.raises(TypeError, match="No matching definition"):
            step(bad)
    assert calls == {"dispatcher": 0, "entry": 0}
    good = [np.zeros(2, np.float32), None]
    step(good)
    step(good)
    assert calls == {"dispatcher": 1, "entry": 1}


def test_a_real_kernel_refuses_a_mistyped_first_call():
    """Numba's dispatcher, not the entry (which checks only itemsizes),
    sees the first call: int32 data where float32 is declared is refused."""
    fn = _axpy_kernel(1, 1)
    dims = np.array([2, 2], np.int64)
    step = kernel_step(fn, [0], [1], [((2, 2), np.dtype(np.float32))], dims)
    with pytest.raises(TypeError):
        step([np.ones((2, 2), np.int32), None])
    env = [np.full((2, 2), 3.0, np.float32), None]
    step(env)
    step(env)
    np.testing.assert_array_equal(env[1], np.full((2, 2), 3.0))


def test_dispatcher_mode_calls_the_dispatcher_every_time(monkeypatch):
    monkeypatch.setitem(cpu_device.LAUNCH, "mode", "dispatcher")
    fn, calls = _fake_dispatcher()
    step = kernel_step(fn, [0], [1], [((2,), np.dtype(np.float32))], np.array([2], np.int64))
    env = [np.zeros(2, np.float32), None]
    for _ in range(3):
        step(env)
    assert calls == {"dispatcher": 3, "entry": 0}


def test_entry_point_only_for_one_overload(monkeypatch):
    fn = _axpy_kernel(1, 1)
    assert cpu_device.entry_point(fn) is fn.overloads[fn.signatures[0]].entry_point
    assert cpu_device.entry_point(lambda *a: None) is None      # a splitter's launcher
    monkeypatch.setitem(cpu_device.LAUNCH, "mode", "dispatcher")
    assert cpu_device.entry_point(fn) is None


@pytest.mark.parametrize("limit", [None, 0])
def test_run_plan_runs_steps_in_order_and_releases(monkeypatch, limit):
    """The generated runner (and the loop a plan longer than the limit runs
    as) calls each step in order and clears each released slot after it."""
    if limit is not None:
        monkeypatch.setattr(executable, "MAX_INLINED_STEPS", limit)
    seen = []

    def step_k(k):
        def step(env):
            seen.append((k, list(env)))
            env[k] = k * 10
        return step
    plan = [(step_k(0), ()), (step_k(1), (0,)), (step_k(2), ()), (step_k(3), (1, 2))]
    env = [None] * 4
    executable.run_plan(plan)(env)
    assert [k for k, _ in seen] == [0, 1, 2, 3]
    assert seen[2][1] == [None, 10, None, None]     # slot 0 released after step 1
    assert env == [None, None, None, 30]
    assert executable.run_plan([])([1]) is None


def test_allocator_gives_fresh_arrays_of_its_shape_and_dtype():
    for shape, dt in [((3, 4), np.float32), ((), np.int64),
                      ((memory.MIN_BYTES // 4 + 8,), np.float32)]:
        alloc = memory.allocator(shape, dt)
        a, b = alloc(), alloc()
        assert a.shape == shape and a.dtype == np.dtype(dt) and a.flags.c_contiguous
        assert not np.shares_memory(a, b)


def _chain(*xs):
    """Many inputs and several outputs in few kernels: wide launches."""
    s, outs = xs[0], []
    for k, x in enumerate(xs[1:]):
        s = s * 0.5 + nnp.tanh(x)
        if k % 10 == 9:
            outs.append(s)
    return outs + [nnp.sum(s, axis=1)]


def _chain_ref(*xs):
    xs = [x.astype(np.float64) for x in xs]
    s, outs = xs[0], []
    for k, x in enumerate(xs[1:]):
        s = s * 0.5 + np.tanh(x)
        if k % 10 == 9:
            outs.append(s)
    return outs + [s.sum(axis=1)]


@pytest.mark.parametrize("mode", ["entry", "dispatcher"])
def test_jitted_wide_program_matches_numpy_in_both_modes(monkeypatch, mode):
    """A jitted function of 41 inputs: its kernels through entry points after
    their first call (counted), or through the dispatcher, agree with
    numpy on every call."""
    monkeypatch.setitem(cpu_device.LAUNCH, "mode", mode)
    counts = []
    real = cpu_device.entry_point

    def counting(fn):
        e = real(fn)
        if e is None:
            return None
        n = [0]
        counts.append(n)

        def entry(*args):
            n[0] += 1
            return e(*args)
        return entry
    monkeypatch.setattr(cpu_device, "entry_point", counting)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((4, 6)).astype(np.float32) for _ in range(41)]
    f = needle.jit(lambda *xs: _chain(*xs))
    for call in range(3):
        xs = [x + np.float32(0.1) for x in xs]
        got = f(*xs)
        for g, w in zip(got, _chain_ref(*xs)):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    if mode == "entry":
        assert counts and all(n[0] == 2 for n in counts)     # calls 2 and 3
    else:
        assert not counts
