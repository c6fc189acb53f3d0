"""The public package: needle.distributed's buckets: how the leaves of a
pytree are laid into a few contiguous buffers, so that a collective is one
MPI call per bucket, not one per leaf. Pure numpy; no MPI here.

Input: the leaves' (shape, dtype) and a bucket size in bytes. Output: a
`Plan`: one contiguous buffer per reduction dtype holding its leaves one
after another, each leaf at an offset (so a leaf is never split and its
result is a view of the buffer), and the buffer cut into buckets of about
`bucket_bytes` (element ranges that may cut through a leaf). `pack` copies
the leaves in and yields each bucket as soon as its last element is
written, so the caller can start that bucket's reduction while it packs the
next; `unpack` returns the leaves as views (cast back where the reduction
dtype differs).

Reduction dtypes: a leaf reduces in its own dtype, except float16, which
reduces in float32 (MPI has no standard half type) and is cast back. Bool
leaves cannot be summed (an error naming the leaf).

Buffers are reused from call to call while no result of the last call is
still referenced (the results are views of them); otherwise a new buffer is
allocated, so a result kept by the caller is never overwritten.
"""
import sys

import numpy as np

__all__ = ["Plan", "reduce_dtype", "DEFAULT_BUCKET_BYTES"]

DEFAULT_BUCKET_BYTES = 4 << 20


def reduce_dtype(dtype, what="leaf"):
    """The dtype a leaf of `dtype` is reduced in (a TypeError for bool and objects)."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return np.dtype(np.float32)
    if dt.kind in "fiuc":
        return dt
    raise TypeError(f"needle.distributed: {what} has dtype {dt}, which MPI cannot sum "
                    f"(use a numeric dtype)")


class Plan:
    """The layout of a list of leaves in reduction buffers (module docstring).

    specs: [(shape, dtype)] per leaf; names: [path] per leaf for errors.
    groups: [(reduction dtype, [leaf index], [offset], total elements)];
    buckets: [(group, start, stop)] element ranges of each group's buffer,
    in the order pack yields them."""

    def __init__(self, specs, bucket_bytes=DEFAULT_BUCKET_BYTES, names=None):
        names = names or [f"leaf {i}" for i in range(len(specs))]
        by_dtype = {}
        self.specs = [(tuple(s), np.dtype(d)) for s, d in specs]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s, _ in self.specs]
        for i, (shape, dt) in enumerate(self.specs):
            rdt = reduce_dtype(dt, names[i])
            by_dtype.setdefault(rdt, []).append(i)
        self.groups = []
        self.buckets = []
        for g, (rdt, leaves) in enumerate(by_dtype.items()):
            offsets, total = [], 0
            for i in leaves:
                offsets.append(total)
                total += self.sizes[i]
            self.groups.append((rdt, leaves, offsets, total))
            per = max(1, int(bucket_bytes) // rdt.itemsize)
            for start in range(0, total, per):
                self.buckets.append((g, start, min(total, start + per)))
        self.nbytes = sum(t * rdt.itemsize for rdt, _, _, t in self.groups)
        self._buffers = [None] * len(self.groups)

    def __repr__(self):
        gs = ", ".join(f"{rdt.name}: {len(ls)} leaves, {t} elements"
                       for rdt, ls, _, t in self.groups)
        return f"Plan({len(self.buckets)} buckets; {gs})"

    # -- buffers ---------------------------------------------------------------
    def buffers(self):
        """One buffer per group: the last call's when nothing refers to it
        any more (its results were dropped), else a new one."""
        for g, (rdt, _, _, total) in enumerate(self.groups):
            b = self._buffers[g]
            # references: the list slot, `b` and getrefcount's argument; a live result adds one
            if b is None or sys.getrefcount(b) > 3:
                self._buffers[g] = np.empty(total, rdt)
        return list(self._buffers)

    # -- packing -----------------------------------------------------------------------
    def pack(self, leaves, bufs, scale=None):
        """Copy each leaf into its place (times `scale`, in the same pass,
        when given: a mean is the sum of the leaves scaled by 1 / ranks);
        yields (bucket index, the bucket's view of its buffer) as soon as a
        bucket is complete, in bucket order within a group, groups one after
        another."""
        b = 0
        for g, (rdt, idx, offs, total) in enumerate(self.groups):
            buf = bufs[g]
            if scale is not None and rdt.kind not in "fc":
                raise TypeError(f"needle.distributed: cannot scale {rdt} leaves (a mean of "
                                f"integers); reduce them with op='sum'")
            factor = None if scale is None else rdt.type(scale)
            for i, off in zip(idx, offs):
                x = leaves[i]
                n = x.size
                if factor is None:
                    buf[off:off + n] = x.reshape(-1)
                else:
                    np.multiply(x.reshape(-1), factor, out=buf[off:off + n])
                end = off + n
                while b < len(self.buckets) and self.buckets[b][0] == g and \
                        self.buckets[b][2] <= end:
                    _, s, e = self.buckets[b]
                    yield b, buf[s:e]
                    b += 1
            while b < len(self.buckets) and self.buckets[b][0] == g:   # empty leaves at the end
                _, s, e = self.buckets[b]
                yield b, buf[s:e]
                b += 1

    def unpack(self, bufs):
        """The leaves, in order, as views of the buffers (a copy cast back to
        the leaf's dtype where it was reduced in another)."""
        out = [None] * len(self.specs)
        specs, sizes = self.specs, self.sizes
        for g, (rdt, idx, offs, _) in enumerate(self.groups):
            buf = bufs[g]
            for i, off in zip(idx, offs):
                shape, dt = specs[i]
                v = buf[off:off + sizes[i]].reshape(shape)
                out[i] = v if dt == rdt else v.astype(dt)
        return out


class BytePlan:
    """The layout of leaves of any dtypes in one uint8 buffer, each at an
    offset aligned to 64 bytes, for the collectives that copy rather than
    reduce (broadcast, all_gather): one buffer, one MPI call."""

    ALIGN = 64

    def __init__(self, specs):
        self.specs = [(tuple(s), np.dtype(d)) for s, d in specs]
        self.offsets, total = [], 0
        for shape, dt in self.specs:
            self.offsets.append(total)
            nb = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            total += -(-nb // self.ALIGN) * self.ALIGN
        self.nbytes = total

    def pack(self, leaves, buf=None):
        buf = np.empty(self.nbytes, np.uint8) if buf is None else buf
        for (shape, dt), off, x in zip(self.specs, self.offsets, leaves):
            nb = x.size * dt.itemsize
            buf[off:off + nb].view(dt)[:] = np.asarray(x, dt).reshape(-1)
        return buf

    def unpack(self, buf, lead=()):
        """The leaves as copies out of `buf` (shape lead + (nbytes,): one
        row per rank after all_gather), each of shape lead + leaf shape."""
        out = []
        for (shape, dt), off in zip(self.specs, self.offsets):
            nb = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            raw = np.array(buf[..., off:off + nb])         # a copy: results own their memory
            out.append(raw.view(dt).reshape(tuple(lead) + shape))
        return out
