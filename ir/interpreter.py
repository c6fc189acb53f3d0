"""Stage ir: the numpy reference interpreter, the executable definition of
what a Graph means. Every backend is tested against it.

Input: a Graph, its const values and argument values.
Output: the list of output values.

`eval_graph` evaluates by binding primitives, so evaluating a graph while an
outer trace is active records into that trace (this is how grad under jit
works). `run_numpy` evaluates on concrete numpy arrays directly.
"""
import numpy as np

from .core import Lit


def _read(env, v):
    return v.val if isinstance(v, Lit) else env[v]


def eval_graph(graph, consts, args):
    """Evaluate through `Primitive.bind`: concrete values run numpy, tracers
    are recorded into their trace."""
    env = dict(zip(graph.constvars, consts))
    env.update(zip(graph.invars, args))
    for e in graph.eqns:
        outs = e.prim.bind(*[_read(env, x) for x in e.inputs], **e.params)
        if not e.prim.multiple_results:
            outs = [outs]
        env.update(zip(e.outs, outs))
    return [_read(env, v) for v in graph.outvars]


def run_numpy(graph, consts, args):
    """Evaluate on numpy arrays with each primitive's numpy implementation."""
    env = dict(zip(graph.constvars, consts))
    env.update(zip(graph.invars, args))
    with np.errstate(all="ignore"):
        for e in graph.eqns:
            ins = [np.asarray(_read(env, x)) for x in e.inputs]
            env.update(zip(e.outs, e.prim.impl(*ins, **e.params)))
    return [np.asarray(_read(env, v)) for v in graph.outvars]
