"""Stage passes (batching): the batching rules of sorting and the scans
(ir/primitives/sort.py), registered into `BATCH_RULES`.

Input: nothing. Output: entries of `rules.BATCH_RULES` for sort, cumprod,
cummax, cummin: the mapped axis is axis 0, so the sorted / scanned axis
moves up by one; an unbatched operand of a sort is repeated along it.
"""
from ...ir.primitives import cummax_p, cummin_p, cumprod_p, sort_p
from .rules import BATCH_RULES, batch_all


def _sort(args, batched, size, *, dimension, is_stable=True, num_keys=1):
    return sort_p.bind(*batch_all(args, batched, size), dimension=dimension + 1,
                       is_stable=is_stable, num_keys=num_keys)


def _cumulative(prim):
    def rule(args, batched, size, *, axis, reverse=False):
        return prim.bind(args[0], axis=axis + 1, reverse=reverse)
    return rule


BATCH_RULES[sort_p] = _sort
for _p in (cumprod_p, cummax_p, cummin_p):
    BATCH_RULES[_p] = _cumulative(_p)
