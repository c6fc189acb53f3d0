"""Tests of needle.distributed (the public package: data-parallel training on
MPI).

Input: the scripts in tests/distributed/, run as 2 ranks under the venv's
`mpiexec -n 2` in a subprocess (skipped, with the reason, where mpi4py or
mpiexec is missing: `pip install -e ".[distributed]"`), and the package's
pure logic (buckets, sampler, single-rank behaviour) in this process. Output:
pass / fail. References are numpy: the whole batch's gradient written out in
float64, BatchNorm over the whole batch, sums and means of the ranks' inputs
rebuilt here from the same seeds, and the same training run in one process.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import weakref

import numpy as np
import pytest

import needle
import needle.distributed as dist
from needle.distributed.buckets import BytePlan, Plan

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "distributed")
sys.path.insert(0, SCRIPTS)
from rank_inputs import floats, inputs  # noqa: E402  (the ranks' inputs, rebuilt here)


def _mpiexec():
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else shutil.which("mpiexec")


def _skip_reason():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e \".[distributed]\")"
    if _mpiexec() is None:
        return "no mpiexec (pip install mpich, or an MPI on PATH)"
    return None


needs_mpi = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _env():
    env = dict(os.environ)
    for k in list(env):            # a test run itself under mpiexec must not leak its rank
        if k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPIR_")):
            del env[k]
    env.setdefault("NEEDLE_PREWARM", "0")
    return env


def run_ranks(script, *args, n=2, timeout=120, env=None):
    """Run tests/distributed/<script> on n ranks (n=1: plain python, no mpiexec)."""
    cmd = [sys.executable, os.path.join(SCRIPTS, script), *args]
    if n > 1:
        cmd = [_mpiexec(), "-n", str(n)] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**_env(), **(env or {})}, cwd=SCRIPTS)


def _ok(proc):
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


# --- numpy references -----------------------------------------------------------------

def ref_grads(p, x, y):
    """float64 gradient of the mean softmax cross-entropy of the MLP
    fc2(relu(fc1(x))) (Linear: x @ W + b, b of shape (1, out))."""
    w1, b1, w2, b2 = (p[k].astype(np.float64) for k in
                      ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    x = x.astype(np.float64)
    h = x @ w1 + b1
    a = np.maximum(h, 0)
    z = a @ w2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    dz = (prob - np.eye(z.shape[1])[y]) / len(x)
    da = dz @ w2.T
    dh = da * (h > 0)
    return {"fc1.weight": x.T @ dh, "fc1.bias": dh.sum(0, keepdims=True),
            "fc2.weight": a.T @ dz, "fc2.bias": dz.sum(0, keepdims=True)}


def ref_loss(p, x, y):
    h = np.maximum(x @ p["fc1.weight"] + p["fc1.bias"], 0)
    z = h @ p["fc2.weight"] + p["fc2.bias"]
    z = z - z.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])


def test_reference_gradient_matches_central_differences():
    rng = np.random.default_rng(0)
    p = {"fc1.weight": rng.standard_normal((4, 5)), "fc1.bias": rng.standard_normal((1, 5)),
         "fc2.weight": rng.standard_normal((5, 3)), "fc2.bias": rng.standard_normal((1, 3))}
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    g = ref_grads(p, x, y)
    eps = 1e-6
    for k, v in p.items():
        for idx in np.ndindex(v.shape):
            up = {**p, k: v.copy()}
            dn = {**p, k: v.copy()}
            up[k][idx] += eps
            dn[k][idx] -= eps
            fd = (ref_loss(up, x, y) - ref_loss(dn, x, y)) / (2 * eps)
            assert abs(fd - g[k][idx]) < 1e-7, (k, idx)


# --- 2 ranks --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def collectives(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dist") / "collectives.npz")
    _ok(run_ranks("collectives.py", path))
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@needs_mpi
def test_gradients_averaged_over_half_batches_equal_the_whole_batch(tmp_path):
    path = str(tmp_path / "grads.npz")
    _ok(run_ranks("grads.py", path))
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    assert d["world"] == 2
    p0 = {k[3:]: d[k] for k in d if k.startswith("p0/")}
    ref = ref_grads(p0, d["x"], d["y"])
    for k, g in ref.items():
        for path_ in ("functional", "opt"):        # all_reduce; DistributedOptimizer
            got = d[f"{path_}/{k}"]
            assert got.dtype == np.float32 and got.shape == g.shape
            np.testing.assert_allclose(got, g, rtol=2e-5, atol=2e-6, err_msg=f"{path_} {k}")
        # step() reading each parameter's .grad (course style), SGD with lr 1
        np.testing.assert_allclose(d[f"after/{k}"], p0[k] - g, rtol=2e-5, atol=2e-6,
                                   err_msg=f"after {k}")


@needs_mpi
def test_all_reduce_mixed_dtypes_equals_numpy(collectives):
    d = collectives
    a, b = inputs(0), inputs(1)
    for k in ("w", "b", "h", "z"):
        want_sum = a[k] + b[k] if a[k].dtype != np.float16 else \
            (a[k].astype(np.float32) + b[k].astype(np.float32)).astype(np.float16)
        assert d[f"sum/{k}"].dtype == a[k].dtype and d[f"sum/{k}"].shape == a[k].shape
        np.testing.assert_array_equal(d[f"sum/{k}"], want_sum)
        fa, fb = floats(a)[k], floats(b)[k]
        want_mean = ((fa.astype(np.float64) + fb) / 2).astype(fa.dtype)
        np.testing.assert_allclose(d[f"mean/{k}"], want_mean, rtol=1e-3 if k == "h" else 1e-6)
        assert d[f"mean/{k}"].dtype == fa.dtype
    np.testing.assert_array_equal(d["sum/n0"], a["n"][0] + b["n"][0])
    assert d["sum/n0"].dtype == np.int32
    assert int(d["sum/n1"]) == int(a["n"][1]) + int(b["n"][1])
    assert "tree['n'][0]" in str(d["mean_int_error"]) and "int32" in str(d["mean_int_error"])


@needs_mpi
def test_all_gather_and_broadcast(collectives):
    d = collectives
    np.testing.assert_array_equal(d["gather/a"], np.stack([np.full((2, 3), r, np.int32)
                                                           for r in (0, 1)]))
    np.testing.assert_array_equal(d["gather/f"], [0.5, 1.5])
    # broadcast: rank 0's values everywhere, for arrays and an optimizer's state
    np.testing.assert_array_equal(d["bcast/v"], np.stack([np.arange(5, dtype=np.float32)] * 2))
    np.testing.assert_array_equal(d["bcast/k"], [7, 7])
    np.testing.assert_array_equal(d["bcast/m0"][1], np.full(d["bcast/m0"].shape[1:], 1.0))
    np.testing.assert_array_equal(d["bcast/m0"][0], d["bcast/m0"][1])
    np.testing.assert_array_equal(d["bcast/t"], [5, 5])
    np.testing.assert_array_equal(d["bcast/w"][0], d["bcast/w"][1])


@needs_mpi
def test_sampler_shards_are_disjoint_and_cover(collectives):
    d = collectives
    for drop_last in (0, 1):
        for n in (10, 11):
            shards = [d[f"sampler/{drop_last}/{n}/{e}"] for e in (0, 1)]
            for s in shards:
                assert s.shape[0] == 2 and s.shape[1] == (n // 2 if drop_last else -(-n // 2))
                a, b = set(s[0].tolist()), set(s[1].tolist())
                if drop_last or n % 2 == 0:
                    assert not a & b and len(a | b) == 2 * s.shape[1]
                    if not drop_last:
                        assert a | b == set(range(n))
                else:            # padded by one repeated sample, as PyTorch's
                    assert a | b == set(range(n)) and len(a & b) <= 1
            assert not np.array_equal(shards[0], shards[1])     # set_epoch reshuffles


@needs_mpi
def test_sync_batchnorm_uses_the_global_batch(collectives):
    d = collectives
    x = d["bn/x"].astype(np.float64)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    y = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(d["bn/y"].reshape(x.shape), y, rtol=1e-5, atol=1e-5)
    for r in (0, 1):
        np.testing.assert_allclose(d["bn/running/0"][r], 0.2 * mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d["bn/running/1"][r], 0.8 + 0.2 * var, rtol=1e-5)


# --- SyncBatchNorm under jit(value_and_grad): numpy BatchNorm on the whole batch -----------

def _mlp_bn_loss(p, x, y, eps=1e-5):
    """float64: Linear(4, 6) -> BatchNorm over the whole batch (biased
    variance) -> ReLU -> Linear(6, 3), mean softmax cross-entropy; and the
    batch moments of the BatchNorm."""
    h = x @ p["modules.0.weight"] + p["modules.0.bias"]
    mean, var = h.mean(axis=0), h.var(axis=0)
    a = np.maximum((h - mean) / np.sqrt(var + eps) * p["modules.1.weight"]
                   + p["modules.1.bias"], 0)
    z = a @ p["modules.3.weight"] + p["modules.3.bias"]
    z = z - z.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]), mean, var


def _central_grad(f, p, eps=1e-6):
    g = {}
    for k, v in p.items():
        g[k] = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            up, dn = {**p, k: v.copy()}, {**p, k: v.copy()}
            up[k][idx] += eps
            dn[k][idx] -= eps
            g[k][idx] = (f(up) - f(dn)) / (2 * eps)
    return g


@needs_mpi
def test_sync_batchnorm_trains_under_jit_grad_as_batchnorm_on_the_whole_batch(tmp_path):
    path = str(tmp_path / "sync_bn.npz")
    _ok(run_ranks("sync_bn.py", path, timeout=180))
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    assert d["world"] == 2
    p = {k[3:]: d[k].astype(np.float64) for k in d if k.startswith("p0/")}
    run_mean, run_var = np.zeros(6), np.ones(6)
    for s in range(3):
        x, y = d["xs"][s].astype(np.float64), d["ys"][s]
        value, mean, var = _mlp_bn_loss(p, x, y)
        g = _central_grad(lambda q: _mlp_bn_loss(q, x, y)[0], p)
        run_mean, run_var = 0.9 * run_mean + 0.1 * mean, 0.9 * run_var + 0.1 * var
        for r in (0, 1):                 # every rank: the whole batch's value and gradient
            np.testing.assert_allclose(d[f"loss/{s}"][r], value, rtol=1e-5)
            for k in p:
                np.testing.assert_allclose(d[f"grad/{s}/{k}"][r], g[k], rtol=1e-4, atol=1e-5,
                                           err_msg=f"step {s} {k} rank {r}")
            np.testing.assert_allclose(d[f"running_mean/{s}"][r], run_mean, rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(d[f"running_var/{s}"][r], run_var, rtol=1e-5)
        p = {k: v - 0.5 * g[k] for k, v in p.items()}
    for k in p:
        assert d[f"final/{k}"][0].tobytes() == d[f"final/{k}"][1].tobytes(), k
        np.testing.assert_allclose(d[f"final/{k}"][0], p[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # 4-d (B, C, H, W): the input gradient crosses ranks through the moments
    x4, w4 = d["x4"].astype(np.float64), d["w4"].astype(np.float64)

    def bn4(x):
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        return (x - mean) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)

    np.testing.assert_allclose(d["bn4/y"].reshape(x4.shape), bn4(x4), rtol=1e-5, atol=1e-5)
    gx = _central_grad(lambda q: np.sum(bn4(q["x"]) * w4), {"x": x4})["x"]
    np.testing.assert_allclose(d["bn4/gx"].reshape(x4.shape), gx, rtol=1e-4, atol=1e-4)


def test_sync_batchnorm_moments_gradient_on_one_rank():
    """The moments' custom_vjp (one rank: the all-reduces return their input)
    against central differences of numpy's mean and biased variance."""
    from needle.distributed.sync_batchnorm import _global_moments
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 2)).astype(np.float32)
    c = rng.standard_normal((2, 3))
    moments = _global_moments((0, 2), 3)

    def f(v):
        mean, var = moments(v)
        return needle.numpy.sum(mean * c[0]) + needle.numpy.sum(var * c[1])

    got = needle.jit(needle.grad(f))(x)
    ref = _central_grad(lambda q: np.sum(q["x"].mean(axis=(0, 2)) * c[0]) +
                        np.sum(q["x"].var(axis=(0, 2)) * c[1]), {"x": x.astype(np.float64)})
    np.testing.assert_allclose(got, ref["x"], rtol=1e-4, atol=1e-5)
    mean, var = needle.jit(moments)(x)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=(0, 2)), rtol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    one, two = str(base / "one.npz"), str(base / "two.npz")
    p1 = _ok(run_ranks("train_mlp.py", one, n=1, timeout=180))   # compiles; fills the kernel cache
    p2 = _ok(run_ranks("train_mlp.py", two, n=2, timeout=180))
    with np.load(one) as f1, np.load(two) as f2:
        return {k: f1[k] for k in f1.files}, {k: f2[k] for k in f2.files}, p1, p2, two


@needs_mpi
def test_training_keeps_ranks_bitwise_identical_and_matches_one_process(trained):
    one, two, _, _, _ = trained
    assert two["world"] == 2 and one["world"] == 1
    keys = [k for k in two if k.startswith(("functional/", "module/"))]
    assert len(keys) == 8
    for k in keys:
        ranks = two[k]
        assert ranks.shape[0] == 2
        assert ranks[0].tobytes() == ranks[1].tobytes(), f"{k} differs between ranks"
        # 2 ranks on half-batches of the same global batches == 1 process on whole batches
        np.testing.assert_allclose(ranks[0], one[k][0], rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(two["f_losses"], one["f_losses"], rtol=1e-4)
    np.testing.assert_allclose(two["m_losses"], one["m_losses"], rtol=1e-4)
    assert two["m_losses"][-1] < two["m_losses"][0]


@needs_mpi
def test_logging_and_checkpoint_on_rank_zero_only(trained):
    one, two, _, p2, path = trained
    assert p2.stdout.count("functional: 20 steps on 2 ranks") == 1
    assert p2.stdout.count("module: 20 steps on 2 ranks") == 1
    with np.load(path + ".ckpt.npz") as ck:
        for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
            np.testing.assert_array_equal(ck[k], two[f"module/{k}"][0])


@needs_mpi
def test_broadcast_mismatch_names_the_parameter_on_every_rank(tmp_path):
    prefix = str(tmp_path / "mismatch")
    _ok(run_ranks("mismatch.py", prefix, timeout=60))
    for r in (0, 1):
        with open(f"{prefix}.{r}.txt") as f:
            msg = f.read()
        assert msg.startswith("BroadcastMismatchError: "), msg
        assert "on rank 1 MLP.fc1.weight is float32[6, 9], on the root float32[6, 8]" in msg


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_failing_rank_ends_the_job_within_seconds(how):
    t0 = time.perf_counter()
    try:
        p = run_ranks("fail.py", how, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a failing rank left the other waiting: the job hung for 60 s")
    took = time.perf_counter() - t0
    assert p.returncode != 0
    if how == "raise":
        assert "rank 1 fails on purpose" in p.stderr
        assert "rank 1 of 2 raised RuntimeError" in p.stderr
    else:
        assert "rank 1 of 2 exited with sys.exit(3)" in p.stderr
    assert "MPI_Abort" in p.stderr
    assert "rank 0 was not aborted" not in p.stdout
    assert took < 30, f"the job took {took:.1f} s to end"


@needs_mpi
@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason="numba-cuda is not installed (the cuda extra): no CUDA simulator")
def test_device_arrays_are_staged_through_host(tmp_path):
    path = str(tmp_path / "device.npz")
    env = {"NUMBA_ENABLE_CUDASIM": "1"}
    _ok(run_ranks("device_arrays.py", path, env=env))
    with np.load(path) as d:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(d["a"], x * 1 + x * 2)
        assert float(d["b"]) == 1.0
        assert bool(d["a_on_device"]) and bool(d["w_on_device"])
        assert d["w"][0].tobytes() == d["w"][1].tobytes()
        assert "staged through host memory" in str(d["info"])


# --- one process: the package's logic without MPI -----------------------------------------

def test_import_needle_does_not_import_mpi4py():
    code = ("import sys, needle, needle.nn; needle.nn.SyncBatchNorm; "
            "import needle.distributed as d; d.rank(); print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _pack_all(plan, leaves):
    bufs = plan.buffers()
    got = list(plan.pack(leaves, bufs))
    return bufs, got


def test_plan_buckets_cut_leaves_and_round_trip():
    rng = np.random.default_rng(0)
    leaves = [rng.standard_normal((3, 5)).astype(np.float32), np.arange(7, dtype=np.int64),
              rng.standard_normal(11).astype(np.float32), np.zeros((0, 4), np.float32),
              rng.standard_normal(6).astype(np.float16), rng.standard_normal(2)]
    plan = Plan([(x.shape, x.dtype) for x in leaves], bucket_bytes=16)
    # float32 (15 + 11 + 0 + 6 from float16 = 32 elements), int64 (7), float64 (2)
    assert [(g[0], g[3]) for g in plan.groups] == [
        (np.dtype(np.float32), 32), (np.dtype(np.int64), 7), (np.dtype(np.float64), 2)]
    bufs, got = _pack_all(plan, leaves)
    # 16-byte buckets: 4 float32, 2 int64, 2 float64 elements each, in order
    assert [len(v) for _, v in got] == [4] * 8 + [2, 2, 2, 1] + [2]
    assert [b for b, _ in got] == list(range(len(plan.buckets)))
    flat32 = np.concatenate([leaves[0].ravel(), leaves[2], leaves[4].astype(np.float32)])
    np.testing.assert_array_equal(np.concatenate([v for _, v in got[:8]]), flat32)
    out = plan.unpack(bufs)
    for x, y in zip(leaves, out):
        assert y.dtype == x.dtype and y.shape == x.shape
        np.testing.assert_array_equal(x, y)
    # a mean packs the leaves scaled by 1 / ranks in the same pass; integers cannot be
    floats = [x for x in leaves if x.dtype.kind == "f"]
    fplan = Plan([(x.shape, x.dtype) for x in floats], bucket_bytes=16)
    fbufs = fplan.buffers()
    list(fplan.pack(floats, fbufs, scale=0.25))
    for x, y in zip(floats, fplan.unpack(fbufs)):
        np.testing.assert_array_equal(y, (x.astype(np.float64) * 0.25).astype(x.dtype))
    with pytest.raises(TypeError, match="cannot scale int64 leaves"):
        list(plan.pack(leaves, plan.buffers(), scale=0.5))


def test_plan_reuses_its_buffers_only_when_results_are_dropped():
    leaves = [np.ones(4, np.float32)]
    plan = Plan([((4,), np.float32)])
    bufs = plan.buffers()
    list(plan.pack(leaves, bufs))
    first = plan.unpack(bufs)
    del bufs
    again = plan.buffers()
    assert again[0] is not first[0].base            # a result is alive: a new buffer
    del first, again
    w = weakref.ref(plan.buffers()[0])
    assert plan.buffers()[0] is w()                  # nothing refers to it: reused


def test_plan_names_a_bool_leaf():
    with pytest.raises(TypeError, match=r"tree\['mask'\] has dtype bool"):
        Plan([((3,), np.float32), ((2,), np.bool_)], names=["tree['x']", "tree['mask']"])


def test_byte_plan_round_trips_mixed_dtypes_with_aligned_offsets():
    leaves = [np.arange(3, dtype=np.int8), np.linspace(0, 1, 5), np.float32(2.5),
              np.arange(6, dtype=np.uint16).reshape(2, 3)]
    plan = BytePlan([(np.shape(x), np.asarray(x).dtype) for x in leaves])
    assert all(off % 64 == 0 for off in plan.offsets)
    buf = plan.pack(leaves)
    for x, y in zip(leaves, plan.unpack(buf)):
        np.testing.assert_array_equal(x, y)
        assert y.dtype == np.asarray(x).dtype
    stacked = plan.unpack(np.stack([buf, buf]), lead=(2,))
    np.testing.assert_array_equal(stacked[3], np.stack([leaves[3]] * 2))


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (9, 3, False),
                                                  (2, 3, False), (7, 2, True)])
def test_sampler_logic_without_mpi(n, replicas, drop_last):
    shards = []
    for r in range(replicas):
        s = dist.DistributedSampler(list(range(n)), num_replicas=replicas, rank=r, seed=3,
                                    drop_last=drop_last)
        s.set_epoch(2)
        shards.append(list(s))
        assert len(shards[-1]) == len(s)
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1                                # every rank the same count
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == len(flat) == n - n % replicas      # disjoint
    else:
        assert set(flat) == set(range(n))                            # covering
        assert len(flat) == -(-n // replicas) * replicas             # padded, as PyTorch
    # the same epoch gives the same shards on a new sampler; another epoch another order
    s0 = dist.DistributedSampler(n, num_replicas=replicas, rank=0, seed=3, drop_last=drop_last)
    s0.set_epoch(2)
    assert list(s0) == shards[0]
    s0.set_epoch(3)
    if n > 3:
        assert list(s0) != shards[0]
    unshuffled = list(dist.DistributedSampler(n, num_replicas=replicas, rank=0, shuffle=False,
                                              drop_last=drop_last))
    assert unshuffled == list(range(0, n, replicas))[:len(unshuffled)]


def test_sampler_rejects_a_rank_out_of_range():
    with pytest.raises(ValueError, match=r"rank=2 is not in \[0, 1\]"):
        dist.DistributedSampler(10, num_replicas=2, rank=2)


def test_single_rank_collectives_return_their_input():
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    tree = {"a": np.arange(3, dtype=np.float32), "b": [np.int32(4)]}
    assert dist.all_reduce(tree, op="sum") is tree
    assert dist.broadcast(tree) is tree
    g = dist.all_gather(tree)
    np.testing.assert_array_equal(g["a"], tree["a"][None])
    assert g["b"][0].shape == (1,)
    with pytest.raises(TypeError, match=r"tree\['b'\]\[0\] has dtype int32"):
        dist.all_reduce(tree, op="mean")
    with pytest.raises(ValueError, match="op must be 'mean' or 'sum'"):
        dist.all_reduce(tree, op="max")


def test_all_reduce_inside_jit_names_the_leaf():
    def f(x):
        return dist.all_reduce({"g": x * 2})["g"]
    with pytest.raises(TypeError, match=r"all_reduce: tree\['g'\] is a traced value"):
        needle.jit(f)(np.ones(3, np.float32))


def test_distributed_optimizer_on_one_rank_is_the_optimizer():
    needle.random.seed(0)
    a = needle.nn.Linear(3, 2)
    b = needle.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    g = [np.full(p.shape, 0.5, np.float32) for p in a.parameters()]
    c = needle.nn.Linear(3, 2)
    c.load_state_dict(a.state_dict())
    plain = needle.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    eager = dist.DistributedOptimizer(needle.optim.SGD(b.parameters(), lr=0.1, momentum=0.9),
                                      jit=False)
    compiled = dist.DistributedOptimizer(needle.optim.SGD(c.parameters(), lr=0.1, momentum=0.9))
    for _ in range(3):
        plain.step(g)
        eager.step(g)
        compiled.step(g)
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        np.testing.assert_allclose(r.numpy(), p.numpy(), rtol=1e-6, atol=1e-7)
    compiled.lr = 0.5
    assert float(compiled.optimizer.lr) == 0.5
    assert len(compiled.param_groups) == 1          # the optimizer's own attributes
