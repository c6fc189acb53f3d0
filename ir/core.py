"""Stage ir: the graph IR itself: abstract values, Var / Lit / Eqn / Graph, and
the Primitive declaration every operation is made of.

Input: nothing (this is the vocabulary the other stages speak).
Output: the classes `ShapedArray`, `Var`, `Lit`, `Eqn`, `Graph`, `ClosedGraph`,
`Primitive` with its `Traits`, and the registry `PRIMITIVES` (name -> Primitive).

The Graph is in A-normal form: `constvars` (captured arrays, passed in at run
time), `invars`, equations in topological order, `outvars`. Each equation
binds one primitive to atoms (Vars or Lits) with static params and defines
fresh output Vars. A kernel group produced by fusion is an Eqn whose params
hold a sub-Graph.
"""
import itertools
from dataclasses import dataclass, field

import numpy as np

from . import dtypes


class ShapeError(ValueError):
    """Operands whose shapes do not fit the operation."""


@dataclass(frozen=True)
class ShapedArray:
    """Abstract value: what tracing knows of an array."""
    shape: tuple
    dtype: np.dtype
    weak_type: bool = False

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def strong(self):
        return ShapedArray(self.shape, self.dtype, False) if self.weak_type else self

    def update(self, shape=None, dtype=None, weak_type=None):
        return ShapedArray(self.shape if shape is None else tuple(shape),
                           self.dtype if dtype is None else np.dtype(dtype),
                           self.weak_type if weak_type is None else weak_type)

    def str_short(self):
        return f"{dtypes.short_name(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self):
        return self.str_short() + ("{weak}" if self.weak_type else "")


def aval_of(x):
    """The ShapedArray of a concrete value (numpy array, numpy or Python scalar)."""
    dt, weak = dtypes.scalar_type(x)
    return ShapedArray(tuple(np.shape(x)), dt, weak)


_ids = itertools.count()


class Var:
    """A value defined once in a Graph. Identity is object identity."""
    __slots__ = ("aval", "id")

    def __init__(self, aval):
        self.aval = aval
        self.id = next(_ids)

    def __repr__(self):
        return f"Var({self.id}:{self.aval})"


class Lit:
    """A scalar constant written into the graph."""
    __slots__ = ("val", "aval")

    def __init__(self, val, aval=None):
        aval = aval or aval_of(val)
        if aval.shape != ():
            raise ShapeError(f"a literal must be a scalar, got shape {aval.shape}")
        self.aval = aval
        self.val = np.asarray(val, dtype=aval.dtype)[()]

    def __repr__(self):
        return f"Lit({self.val!r}:{self.aval})"


@dataclass(eq=False)
class Eqn:
    prim: "Primitive"
    inputs: list
    params: dict
    outs: list
    source: str = ""          # the user's file:line that bound this primitive

    def __post_init__(self):
        # However the equation was made (bound, rewritten by a pass, written
        # by hand), it holds its params in their canonical form.
        if self.prim.canonicalize_params is not None:
            self.params = self.prim.canonicalize_params(self.params)


@dataclass(eq=False)
class Graph:
    constvars: list
    invars: list
    eqns: list
    outvars: list             # Vars or Lits

    def __str__(self):
        from .printer import pp_graph
        return pp_graph(self)

    @property
    def in_avals(self):
        return [v.aval for v in self.invars]

    @property
    def out_avals(self):
        return [v.aval for v in self.outvars]


@dataclass(eq=False)
class ClosedGraph:
    """A Graph with the values of its constvars."""
    graph: Graph
    consts: list = field(default_factory=list)

    def __str__(self):
        return str(self.graph)


@dataclass(frozen=True)
class Traits:
    """What every stage needs to know of a primitive, declared with it in
    ir/primitives/ (grep a primitive's name in its declaration file to see
    them all). Rules that interpret a primitive (autodiff, batching, emit)
    stay in their stages' tables; these are the facts they and the cost
    models read. Differentiability is owned by passes/autodiff (its rule
    tables and `NOT_DIFFERENTIABLE`), not declared here.

    kind: the family: 'elementwise', 'structural' (moves data),
        'reduction', 'linalg', 'indexing', 'group' (a kernel), 'host' (run
        on the host between kernels: an effect, debug_callback, or
        pure_callback, which has results), 'other'.
    expensive: worth computing once per element: a kernel recomputes it at
        most a few times (fusion's cost model) and keeps it rather than
        computing it again (the CPU emitter's output cache); the
        transcendental functions, pow, atan2, sqrt, rsqrt, and gather (a
        dependent load).
    own_loop: a root with a loop structure of its own (cumsum, the
        scatters): a kernel may compute its operands, but it is the kernel's
        only result and is never inlined into a consumer.
    commutative: a binary operation whose operands may be swapped (simplify
        puts them in a canonical order so CSE sees x*y and y*x as one).
    shape_only: each result element is an element of the first operand,
        moved, repeated, dropped or converted, never combined: an all-zeros
        (all-ones) operand gives an all-zeros (all-ones) result, which
        simplify propagates.
    staged_when_tracing: its result is larger than its operands, so with
        constant operands under an active trace it is recorded rather than
        computed (a kernel makes the elements for free; a captured array
        would be read from memory).
    effectful: running it does something besides computing its results
        (debug_callback prints). Passes keep such an equation and its order
        among the others (DCE, CSE and folding leave it alone), fusion never
        puts it in a kernel, and the runtime runs it as a host step.
    """
    kind: str = "other"
    expensive: bool = False
    own_loop: bool = False
    commutative: bool = False
    shape_only: bool = False
    staged_when_tracing: bool = False
    effectful: bool = False

    @property
    def elementwise(self):
        """One result element from the operand elements at the same index."""
        return self.kind == "elementwise"


class Primitive:
    """An operation of the IR.

    `abstract_eval(*avals, **params) -> [ShapedArray]` and
    `impl(*arrays, **params) -> [np.ndarray]` are declared beside it in
    ir/primitives/, with its `Traits`. Other stages keep their own tables
    keyed by Primitive.

    `canonicalize_params(params) -> params`, when declared, puts params into
    their one canonical form (typed values such as dot_general's
    `DotDimensionNumbers`, defaults filled in); every Eqn applies it, so
    each equation holds that form and no rule restates a default.
    """
    traits = Traits()
    canonicalize_params = None

    def __init__(self, name, traits=Traits(), multiple_results=False):
        self.name = name
        self.traits = traits
        self.multiple_results = multiple_results
        self.abstract_eval = None
        self.impl = None
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} declared twice")
        PRIMITIVES[name] = self

    # Shorthands for the two traits read most (`prim.kind == "reduction"`).
    kind = property(lambda self: self.traits.kind)
    effectful = property(lambda self: self.traits.effectful)

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        return _bind(self, args, params)

    def bind1(self, *args, **params):
        out = self.bind(*args, **params)
        return out if not self.multiple_results else out[0]


PRIMITIVES = {}


def _no_binder(prim, args, params):
    raise RuntimeError(f"{prim.name}.bind: no tracer is installed (import needle)")


# How Primitive.bind evaluates or records an equation: the tracer's `bind`,
# installed by tracer/core.py with set_binder (ir is below the tracer and
# imports no other stage).
_bind = _no_binder


def set_binder(fn):
    """Install fn(prim, args, params) as what Primitive.bind calls."""
    global _bind
    _bind = fn
