"""The public package: needle.distributed's collectives over pytrees:
`all_reduce`, `broadcast`, `all_gather`.

Input: a pytree whose leaves are arrays (numpy arrays and scalars, device
`needle.Array`s, Tensors), Modules and optimizers (their state cells), on
every rank, with the same structure, shapes and dtypes. Output: the
collective's result with the same structure: `all_reduce` and `all_gather`
return new arrays; `broadcast` writes rank 0's values into the cells of
Modules, optimizers and Tensors in place and returns the tree with its plain
arrays replaced.

Each is one MPI call per bucket (buckets.py), never one per leaf:
`all_reduce` packs the leaves into contiguous buffers of about 4 MiB and
starts a nonblocking `Iallreduce` on each as soon as it is full, so the
reduction of one bucket overlaps the packing of the next; `broadcast` and
`all_gather` copy bytes, so all leaves of all dtypes go in one buffer.

Collectives run eagerly on concrete arrays, between compiled calls (inside
`jit` / `grad` a leaf is a tracer: an error names it). Device arrays are
copied to host memory for the MPI call and back (world.info() says so).
With one rank every collective returns its input.
"""
import numpy as np

from ..array import Array
from ..state import gather, is_state
from ..tensor import Tensor, is_traced
from ..tracer import pytree
from .buckets import DEFAULT_BUCKET_BYTES, BytePlan, Plan
from .world import W, init

__all__ = ["all_reduce", "broadcast", "all_gather", "BroadcastMismatchError"]


class BroadcastMismatchError(ValueError):
    """The ranks hold differently shaped models (or trees) at `broadcast`."""


_PLANS = {}


def _plan(specs, bucket_bytes, names):
    key = (tuple(specs), bucket_bytes)
    p = _PLANS.get(key)
    if p is None:
        if len(_PLANS) > 32:
            _PLANS.clear()
        p = _PLANS[key] = Plan(specs, bucket_bytes, names)
    return p


def _leaf_names(tree):
    """A readable path per leaf of `tree` in pytree.tree_flatten order: a
    Module's cells by attribute ("MLP.layers[0].weight")."""
    top, tdef = pytree.tree_flatten(tree, is_leaf=is_state)
    names = []
    for p, leaf in zip(pytree.leaf_paths(tdef), top):
        if is_state(leaf):
            base = f"tree{p}" if p else type(leaf).__name__
            g = gather([leaf], [base])
            names.extend(g.paths)
        else:
            names.append(f"tree{p}")
    return names


def _host(leaves, op, tree):
    """The leaves as numpy arrays; which were device arrays."""
    out, dev = [], []
    for i, x in enumerate(leaves):
        if isinstance(x, Array):
            dev.append(i)
            x = np.asarray(x)
        elif is_traced(x):
            name = _leaf_names(tree)[i]
            raise TypeError(f"needle.distributed.{op}: {name} is a traced value (inside jit, grad "
                            f"or vmap); collectives run eagerly on concrete arrays between "
                            f"compiled calls: call {op} on the jitted function's results")
        elif not isinstance(x, np.ndarray):
            x = np.asarray(x)
        out.append(x)
    return out, dev


def _to_device(outs, dev):
    if dev:
        from ..array import device_put
        for i in dev:
            outs[i] = device_put(outs[i], "cuda")
    return outs


def all_reduce(tree, op="mean", *, bucket_bytes=DEFAULT_BUCKET_BYTES):
    """The elementwise sum (op="sum") or mean (op="mean") of `tree` over all
    ranks, as a new tree of the same structure (a gradient Module stays a
    Module). Integer leaves support "sum" only; float16 reduces in float32."""
    if op not in ("mean", "sum"):
        raise ValueError(f"needle.distributed.all_reduce: op must be 'mean' or 'sum', got {op!r}")
    init()
    leaves, tdef = pytree.tree_flatten(tree)
    host, dev = _host(leaves, "all_reduce", tree)
    if op == "mean":
        for i, x in enumerate(host):
            if x.dtype.kind not in "fc":
                name = _leaf_names(tree)[i]
                raise TypeError(f"needle.distributed.all_reduce: {name} has dtype {x.dtype}; "
                                f"op='mean' needs floating leaves (use op='sum' for integers)")
    if W.size == 1:
        return tree
    specs = [(x.shape, x.dtype) for x in host]
    try:
        plan = _plan(specs, int(bucket_bytes), None)
    except TypeError:
        plan = Plan(specs, bucket_bytes, _leaf_names(tree))      # raises, naming the leaf
    outs = _reduce(plan, host, op)
    return pytree.tree_unflatten(tdef, _to_device(outs, dev))


def _reduce(plan, host, op):
    MPI, comm = W.MPI, W.comm
    bufs = plan.buffers()
    reqs = []
    # a mean sums the leaves scaled by 1 / ranks while packing them (no pass after)
    for _, bucket in plan.pack(host, bufs, scale=1.0 / W.size if op == "mean" else None):
        reqs.append(comm.Iallreduce(MPI.IN_PLACE, bucket, op=MPI.SUM))
        MPI.Request.Testall(reqs)      # lets MPI progress the started buckets while we pack
    MPI.Request.Waitall(reqs)
    return plan.unpack(bufs)


def _state_entries(tree):
    """(top leaves, treedef, cells, names, plain leaf positions, plain names):
    the cells of the Modules / optimizers / Tensors in `tree` (each once) and
    its other leaves."""
    top, tdef = pytree.tree_flatten(tree, is_leaf=is_state)
    paths = pytree.leaf_paths(tdef)
    objs, onames, plain, pnames = [], [], [], []
    for i, (p, leaf) in enumerate(zip(paths, top)):
        if is_state(leaf):
            objs.append(leaf)
            onames.append(f"tree{p}" if p else type(leaf).__name__)
        else:
            plain.append(i)
            pnames.append(f"tree{p}")
    g = gather(objs, onames) if objs else None
    cells = g.cells if g else []
    names = g.paths if g else []
    return top, tdef, cells, names, plain, pnames


def _first_mismatch(mine, root):
    """How this rank's [(path, shape, dtype)] first differs from the root's, or None."""
    for k, (a, b) in enumerate(zip(mine, root)):
        if a != b:
            if a[0] != b[0]:
                return f"array {k} is {a[0]}, on the root {b[0]}"
            return f"{a[0]} is {a[2]}{list(a[1])}, on the root {b[2]}{list(b[1])}"
    if len(mine) != len(root):
        extra = mine[len(root)] if len(mine) > len(root) else root[len(mine)]
        return (f"the tree has {len(mine)} arrays, on the root {len(root)} (the first one "
                f"only one side has: {extra[0]})")
    return None


def broadcast(tree, root=0):
    """Rank `root`'s values of `tree` on every rank: the parameters and
    buffers of Modules, the moments and step count of optimizers and bare
    Tensors are written in place; other array leaves are replaced in the
    returned tree. Before any data moves, the ranks compare the tree's
    paths, shapes and dtypes: a difference raises BroadcastMismatchError on
    every rank, naming the first differing parameter."""
    init()
    top, tdef, cells, names, plain, pnames = _state_entries(tree)
    values = [c._value for c in cells] + [top[i] for i in plain]
    allnames = names + pnames
    for n, v in zip(allnames, values):
        if is_traced(v):
            raise TypeError(f"needle.distributed.broadcast: {n} is a traced value (inside jit, "
                            f"grad or vmap); broadcast concrete state, outside compiled code")
    host = [np.asarray(v) for v in values]
    if W.size == 1:
        return tree
    sig = [(n, tuple(x.shape), x.dtype.name) for n, x in zip(allnames, host)]
    root_sig = W.comm.bcast(sig if W.rank == root else None, root=root)
    msg = _first_mismatch(sig, root_sig)
    msgs = W.comm.allgather(msg)
    bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
    if bad:
        r, m = bad[0]
        raise BroadcastMismatchError(
            f"needle.distributed.broadcast: the model differs between ranks: on rank {r} {m} "
            f"(the root is rank {root}; ranks that differ from it: {[r for r, _ in bad]})")
    plan = BytePlan([(x.shape, x.dtype) for x in host])
    buf = plan.pack(host) if W.rank == root else np.empty(plan.nbytes, np.uint8)
    W.comm.Bcast(buf, root=root)
    if W.rank == root:
        return tree
    new = plan.unpack(buf)
    for c, v in zip(cells, new):
        c._write(v if not isinstance(c._value, Array) else _to_device([v], [0])[0])
    for i, v in zip(plain, new[len(cells):]):
        top[i] = v if not isinstance(top[i], Array) else _to_device([v], [0])[0]
    if not plain:
        return tree
    return pytree.tree_unflatten(tdef, top)


def all_gather(tree):
    """Every rank's `tree`, stacked: each leaf of shape S becomes an array of
    shape (world_size, *S) whose row r is rank r's (JAX's all_gather with
    axis 0). The leaves' shapes and dtypes must agree across ranks."""
    init()
    leaves, tdef = pytree.tree_flatten(tree)
    host, dev = _host(leaves, "all_gather", tree)
    if W.size == 1:
        return pytree.tree_unflatten(tdef, _to_device([x[None] for x in host], dev))
    sig = [(tuple(x.shape), x.dtype.name) for x in host]
    sigs = W.comm.allgather(sig)
    for r, s in enumerate(sigs):
        if s != sig:
            names = _leaf_names(tree)
            k = next((k for k, (a, b) in enumerate(zip(sig, s)) if a != b), min(len(s), len(sig)))
            what = (f"{names[k]} is {sig[k][1]}{list(sig[k][0])} here, {s[k][1]}{list(s[k][0])} "
                    f"on rank {r}") if k < min(len(s), len(sig)) else \
                f"{len(sig)} leaves here, {len(s)} on rank {r}"
            raise ValueError(f"needle.distributed.all_gather: the trees differ between ranks: "
                             f"{what}")
    plan = BytePlan([(x.shape, x.dtype) for x in host])
    send = plan.pack(host)
    recv = np.empty((W.size, plan.nbytes), np.uint8)
    W.comm.Allgather(send, recv)
    return pytree.tree_unflatten(tdef, _to_device(plan.unpack(recv, (W.size,)), dev))
