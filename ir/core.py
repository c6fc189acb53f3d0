"""Stage ir: the graph IR itself: abstract values, Var / Lit / Eqn / Graph, and
the Primitive declaration every operation is made of.

Input: nothing (this is the vocabulary the other stages speak).
Output: the classes `ShapedArray`, `Var`, `Lit`, `Eqn`, `Graph`, `ClosedGraph`,
`Primitive`, and the registry `PRIMITIVES` (name -> Primitive).

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


class Primitive:
    """An operation of the IR.

    `abstract_eval(*avals, **params) -> [ShapedArray]` and
    `impl(*arrays, **params) -> [np.ndarray]` are declared beside it in
    ir/primitives/. Other stages keep their own tables keyed by Primitive.

    `effectful`: running it does something besides computing its results
    (debug_callback prints). Passes keep such an equation and its order among
    the others (DCE, CSE and folding leave it alone), fusion never puts it in
    a kernel, and the runtime runs it as a host step between kernels.
    """
    effectful = False

    def __init__(self, name, multiple_results=False, kind="other", effectful=False):
        self.name = name
        self.multiple_results = multiple_results
        self.kind = kind          # 'elementwise', 'structural', 'reduction', 'linalg', 'indexing', 'group'
        self.effectful = effectful
        self.abstract_eval = None
        self.impl = None
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} declared twice")
        PRIMITIVES[name] = self

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        from ..tracer.core import bind
        return bind(self, args, params)

    def bind1(self, *args, **params):
        out = self.bind(*args, **params)
        return out if not self.multiple_results else out[0]


PRIMITIVES = {}
