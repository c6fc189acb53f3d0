"""Stage runtime: the plan cache: the fused graph of a traced program, on
disk beside the kernels, so that a new process running the same program
skips the passes and fusion.

Input: the traced ClosedGraph, the device's backend name, the function's
name and the settings that change lowering (from needle/lowering.py, which
also gives `source_version` the folders of the stages that lower).
Output: `key(...)`, a hex digest naming the plan (None when the program
holds something the format does not: a callback's function, a user
object); `load(key, traced)`, the fused ClosedGraph or None; `save(key,
traced, fused)`.

A plan is data only: primitives by name (looked up in ir's registry), avals
as (dtype, shape, weak), params as plain values, needle's own NamedTuple and
Enum param types by module and name (only from needle modules already
imported), sub-graphs recursively, and each captured constant as its
position among the traced program's constants (`("arg", i)`) or, for an
array a pass computed (constant folding), its bytes. It is pickled as plain
containers and unpickled with no class allowed at all, so loading a file
never runs code.

The key digests the traced program's structure (every equation, its params,
literals and source line, Vars numbered in order of appearance, constants'
types but not their values), the backend, the name, the lowering settings,
and the version: the sha256 of the source of the lowering stages (ir,
passes, codegen, this file, needle/lowering.py), numpy's and Python's
versions. A plan holding
folded constants also records a digest of the traced constants' values and
is used only when the current ones match.

Files live in the kernel cache's checked `__pycache__` folder
(kernel_cache.kernel_folder: the same trust rules), as
`plan_<key>.pkl`: a magic line, the sha256 of the body, the body (the key
and the plan), written atomically. A file that is damaged, names another
key, or does not decode into a graph of the traced program's types is
deleted and the program lowered normally (NEEDLE_LOG_COMPILES says so).
"""
import enum
import hashlib
import io
import os
import pickle
import sys
import threading

import numpy as np

from ..ir.config import config
from ..ir.core import PRIMITIVES, ClosedGraph, Eqn, Graph, Lit, Primitive, ShapedArray, Var
from . import kernel_cache

MAGIC = b"needle plan 1\n"
stats = {"hits": 0, "misses": 0, "saved": 0, "rejected": 0}     # this process's counts


class Unsupported(Exception):
    """A value the plan format does not hold."""


# --- encoding -----------------------------------------------------------------------

def _dtype(dt):
    return (dt.str, dt.name)


class _Encoder:
    """A ClosedGraph as nested tuples of plain values. Vars are numbered in
    the order first met, across sub-graphs (a Var shared by two graphs stays
    one Var); `avals` holds each number's type."""

    def __init__(self, consts):
        self.const_pos = {id(c): i for i, c in reversed(list(enumerate(consts)))}
        self.vars, self.avals = {}, []
        self.derived = False            # an array not among the traced constants

    def var(self, v):
        n = self.vars.get(v)
        if n is None:
            n = self.vars[v] = len(self.avals)
            self.avals.append((tuple(int(d) for d in v.aval.shape), _dtype(v.aval.dtype),
                               bool(v.aval.weak_type)))
        return n

    def atom(self, x):
        if isinstance(x, Var):
            return self.var(x)
        return ("L", _dtype(x.aval.dtype), np.asarray(x.val, x.aval.dtype).tobytes(),
                x.aval.weak_type)

    def graph(self, g):
        eqns = tuple((e.prim.name, tuple(map(self.atom, e.inputs)),
                      tuple((k, self.value(v)) for k, v in e.params.items()),
                      tuple(map(self.var, e.outs)), e.source) for e in g.eqns)
        return (tuple(map(self.var, g.constvars)), tuple(map(self.var, g.invars)), eqns,
                tuple(map(self.atom, g.outvars)))

    def closed(self, cg):
        return self.graph(cg.graph), tuple(map(self.array, cg.consts))

    def array(self, c):
        i = self.const_pos.get(id(c))
        if i is not None:
            return ("arg", i)
        if type(c) is not np.ndarray:
            raise Unsupported(f"a constant of type {type(c).__qualname__}")
        self.derived = True
        return ("a", _dtype(c.dtype), tuple(map(int, c.shape)), np.ascontiguousarray(c).tobytes())

    def value(self, v):
        t = type(v)
        if v is None or t in (bool, int, float, str, bytes):
            return v
        if t in (tuple, list):
            return ("t" if t is tuple else "l", tuple(map(self.value, v)))
        if t is dict:
            return ("d", tuple((self.value(k), self.value(x)) for k, x in v.items()))
        if t in (set, frozenset):
            items = sorted(map(self.value, v), key=repr)
            return ("s" if t is set else "f", tuple(items))
        if isinstance(v, np.dtype):
            return ("dt", _dtype(v))
        if isinstance(v, np.generic):
            return ("n", _dtype(v.dtype), v.tobytes())
        if t is np.ndarray:
            return self.array(v)
        if t is ClosedGraph:
            return ("C", self.closed(v))
        if t is Graph:
            return ("G", self.graph(v))
        if isinstance(v, Primitive):
            return ("P", v.name)
        mod = getattr(t, "__module__", "") or ""
        if mod.startswith("needle."):
            if isinstance(v, enum.Enum):
                return ("E", mod, t.__qualname__, self.value(v.value))
            if isinstance(v, tuple) and hasattr(t, "_fields"):
                return ("N", mod, t.__qualname__, tuple(map(self.value, v)))
        raise Unsupported(f"a parameter of type {mod}.{t.__qualname__}")


# --- decoding -----------------------------------------------------------------------

class _NoClasses(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a plan names {module}.{name}: plans hold plain data only")


def _make_dtype(d):
    s, name = d
    dt = np.dtype(s)
    if dt.name != name:
        raise ValueError(f"dtype {s!r} reads as {dt.name}, not {name}")
    return dt


def _needle_class(mod, qualname):
    if not mod.startswith("needle.") or mod not in sys.modules:
        raise ValueError(f"a plan names class {mod}.{qualname}, not of a loaded needle module")
    obj = sys.modules[mod]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Decoder:
    def __init__(self, avals, consts):
        self.vars = [Var(ShapedArray(tuple(s), _make_dtype(d), bool(w))) for s, d, w in avals]
        self.consts = consts

    def atom(self, x):
        if isinstance(x, int):
            return self.vars[x]
        tag, d, raw, weak = x
        if tag != "L":
            raise ValueError(f"a literal tagged {tag!r}")
        dt = _make_dtype(d)
        return Lit(np.frombuffer(raw, dt)[0], ShapedArray((), dt, bool(weak)))

    def graph(self, data):
        constvars, invars, eqns, outvars = data
        var = self.vars.__getitem__
        out = []
        for name, ins, params, outs, source in eqns:
            prim = PRIMITIVES[name]
            out.append(Eqn(prim, [self.atom(x) for x in ins],
                           {k: self.value(v) for k, v in params}, [var(n) for n in outs],
                           source))
        return Graph([var(n) for n in constvars], [var(n) for n in invars], out,
                     [self.atom(x) for x in outvars])

    def closed(self, data):
        g, consts = data
        return ClosedGraph(self.graph(g), [self.array(c) for c in consts])

    def array(self, c):
        if c[0] == "arg":
            return self.consts[c[1]]
        _, d, shape, raw = c
        return np.frombuffer(raw, _make_dtype(d)).reshape(shape).copy()

    def value(self, v):
        if not isinstance(v, tuple):
            return v
        tag = v[0]
        if tag in ("t", "l", "s", "f"):
            items = [self.value(x) for x in v[1]]
            return {"t": tuple, "l": list, "s": set, "f": frozenset}[tag](items)
        if tag == "d":
            return {self.value(k): self.value(x) for k, x in v[1]}
        if tag == "dt":
            return _make_dtype(v[1])
        if tag == "n":
            return np.frombuffer(v[2], _make_dtype(v[1]))[0]
        if tag in ("arg", "a"):
            return self.array(v)
        if tag == "C":
            return self.closed(v[1])
        if tag == "G":
            return self.graph(v[1])
        if tag == "P":
            return PRIMITIVES[v[1]]
        if tag == "E":
            cls = _needle_class(v[1], v[2])
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise ValueError(f"{v[1]}.{v[2]} is not an Enum")
            return cls(self.value(v[3]))
        if tag == "N":
            cls = _needle_class(v[1], v[2])
            if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
                raise ValueError(f"{v[1]}.{v[2]} is not a NamedTuple")
            return cls(*[self.value(x) for x in v[3]])
        raise ValueError(f"a value tagged {tag!r}")


# --- keys ---------------------------------------------------------------------------

_versions = {}
_version_lock = threading.Lock()


def source_version(folders):
    """The sha256 of every .py file under `folders` (the stages that lower a
    program; a file counts as itself), with numpy's and Python's versions;
    once per process."""
    folders = tuple(folders)
    with _version_lock:
        v = _versions.get(folders)
        if v is None:
            h = hashlib.sha256(f"{np.__version__} {sys.version_info[:3]}".encode())
            for top in folders:
                if os.path.isfile(top):
                    with open(top, "rb") as fh:
                        h.update(os.path.basename(top).encode() + b"\0" + fh.read())
                    continue
                for root, dirs, files in os.walk(top):
                    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                    for f in sorted(files):
                        if f.endswith(".py"):
                            path = os.path.join(root, f)
                            h.update(os.path.relpath(path, top).encode() + b"\0")
                            with open(path, "rb") as fh:
                                h.update(fh.read())
            v = _versions[folders] = h.hexdigest()
        return v


def key(traced, backend, name, settings, version):
    """The plan's name: a digest of the traced program's structure and what
    else decides its lowering; None when the program holds a value the plan
    format does not (nothing is cached for it)."""
    try:
        enc = _Encoder(traced.consts)
        body = enc.closed(traced)
    except Exception as e:              # Unsupported, or anything odd: never break lowering
        _log(f"{name}: not cached ({e})")
        return None
    types = tuple(f"{type(c).__module__}.{type(c).__qualname__}" for c in traced.consts)
    blob = pickle.dumps((version, backend, name, tuple(settings), types, enc.avals, body),
                        protocol=4)
    return hashlib.sha256(blob).hexdigest()[:32]


def _const_digest(consts):
    h = hashlib.sha256()
    for c in consts:
        a = np.ascontiguousarray(np.asarray(c))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- files --------------------------------------------------------------------------

def _path(backend, k):
    return os.path.join(kernel_cache.kernel_folder(backend), "__pycache__", f"plan_{k}.pkl")


def _log(msg):
    if config.log_compiles:
        print(f"needle: plan cache: {msg}", file=sys.stderr)


def _reject(path, why):
    stats["rejected"] += 1
    try:
        os.unlink(path)
    except OSError:
        pass
    _log(f"{os.path.basename(path)}: {why}; deleted it, lowering the program again")


def load(k, traced, backend):
    """The fused ClosedGraph stored under key `k` for the traced program
    `traced`, or None (absent, for other constant values, or rejected)."""
    path = _path(backend, k)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        stats["misses"] += 1
        return None
    head = len(MAGIC) + 32
    body = data[head:]
    if data[:len(MAGIC)] != MAGIC or data[len(MAGIC):head] != hashlib.sha256(body).digest():
        _reject(path, "damaged (its checksum does not match)")
        return None
    try:
        stored_key, const_digest, avals, plan = _NoClasses(io.BytesIO(body)).load()
        if stored_key != k:
            raise ValueError(f"it holds the plan of key {stored_key}")
        if const_digest is not None and const_digest != _const_digest(traced.consts):
            stats["misses"] += 1
            _log(f"plan_{k}: made for other values of the captured constants; lowering again")
            return None
        fused = _Decoder(avals, traced.consts).closed(plan)
        _conforms(traced.graph, fused.graph)
    except Exception as e:                  # any fault of the file: lower normally
        _reject(path, f"unusable ({type(e).__name__}: {e})")
        return None
    stats["hits"] += 1
    _log(f"plan_{k}: loaded the fused program (no passes, no fusion)")
    return fused


def _conforms(traced, fused):
    """The fused graph takes and gives the traced program's types."""
    for what, a, b in (("inputs", traced.invars, fused.invars),
                       ("results", traced.outvars, fused.outvars)):
        if [v.aval.strong() for v in a] != [v.aval.strong() for v in b]:
            raise ValueError(f"its {what} differ from the program's")


def save(k, traced, fused, backend):
    """Store `fused` under key `k`; False when it holds a value the format
    does not, or the cache cannot be written (nothing is stored then)."""
    try:
        enc = _Encoder(traced.consts)
        plan = enc.closed(fused)
        digest = _const_digest(traced.consts) if enc.derived else None
        body = pickle.dumps((k, digest, enc.avals, plan), protocol=4)
        kernel_cache.write_atomic(_path(backend, k),
                                  MAGIC + hashlib.sha256(body).digest() + body)
    except Exception as e:              # Unsupported, OSError: the program still runs
        _log(f"plan_{k}: not stored ({e})")
        return False
    stats["saved"] += 1
    return True
