"""The public package: needle.distributed's rank-0-only helpers: logging,
checkpoints, anything a data-parallel script should do once, not once per
rank.

Input: a function, printable values, a Module / optimizer / dict of arrays
and a path. Output: the effect on rank 0 only (a line on stdout, a file);
`save_checkpoint` then waits for rank 0 (a barrier), so no rank reads a
checkpoint that is still being written.
"""
import builtins
import functools

import numpy as np

from .world import barrier, is_main

__all__ = ["main_only", "log", "save_checkpoint"]


def main_only(fn):
    """Decorator: `fn` runs on rank 0 and returns its result there; on the
    other ranks the call does nothing and returns None."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if is_main():
            return fn(*args, **kwargs)
        return None
    return wrapper


def log(*args, **kwargs):
    """print() on rank 0 only (flushed, so lines from mpiexec arrive in order)."""
    if is_main():
        kwargs.setdefault("flush", True)
        builtins.print(*args, **kwargs)


def save_checkpoint(obj, path):
    """Write `obj` to `path` on rank 0, then wait there with every rank.
    obj: a Module (`obj.save(path)`: an .npz of its state_dict), an
    optimizer (its state_dict), or a dict of arrays (np.savez)."""
    if is_main():
        if hasattr(obj, "save"):
            obj.save(path)
        else:
            state = obj.state_dict() if hasattr(obj, "state_dict") else obj
            np.savez(path, **{k: np.asarray(v) for k, v in state.items()})
    barrier()
