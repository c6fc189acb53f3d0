"""Stage codegen: the backend-neutral pieces of loop-nest emission, shared by
every backend's emitter (codegen/cpu, codegen/cuda).

Input: nothing (building blocks). Output: `Scope` (a block of generated code:
the function body or one loop, with its lines and nested loops), `Idx` (an
index expression and the scope it is valid in), `KernelSource` (the module
text of one kernel with its signature, runtime sizes and float literals),
and `reshape_groups` (how a reshape maps runs of axes).
"""
import hashlib
from dataclasses import dataclass, field


def reshape_groups(xs, os_):
    """Pair runs of input axes with runs of output axes of equal size, in
    order ((32, 576) -> (32, 9, 64): [0]~[0], [1]~[1, 2]); size-1 axes join a
    neighbouring run. None if a size is 0."""
    if 0 in xs or 0 in os_:
        return None
    groups, i, j = [], 0, 0
    while i < len(xs) and j < len(os_):
        gi, gj = [i], [j]
        a, b = xs[i], os_[j]
        i, j = i + 1, j + 1
        while a != b:
            if a < b:
                a *= xs[i]
                gi.append(i)
                i += 1
            else:
                b *= os_[j]
                gj.append(j)
                j += 1
        groups.append((gi, gj))
    rest_in, rest_out = list(range(i, len(xs))), list(range(j, len(os_)))
    if rest_in or rest_out:             # only size-1 axes can be left
        if groups:
            groups[-1] = (groups[-1][0] + rest_in, groups[-1][1] + rest_out)
        else:
            groups.append((rest_in, rest_out))
    return groups


class Scope:
    """A block of generated code: the function body or one loop."""

    def __init__(self, header, parent, extent=1):
        self.header = header
        self.parent = parent
        self.level = 0 if parent is None else parent.level + 1
        # How many times this block runs (for fusion's recompute guard).
        self.count = extent * (1 if parent is None else parent.count)
        self.items = []          # lines (str) and child Scopes
        self.open = []           # open child scopes, innermost last

    def emit(self, line):
        if self.open:
            pos = next(i for i, it in enumerate(self.items) if it is self.open[-1])
            self.items.insert(pos, line)
        else:
            self.items.append(line)

    def child(self, header, extent=1):
        s = Scope(header, self, extent)
        self.emit(s)
        self.open.append(s)
        return s

    def close(self, s):
        assert self.open and self.open[-1] is s
        self.open.pop()

    def chain(self):
        s, out = self, []
        while s is not None:
            out.append(s)
            s = s.parent
        return out

    def render(self, indent):
        pad = "    " * indent
        lines = []
        if self.header:
            lines.append(pad + self.header)
            indent += 1
            pad = "    " * indent
        for it in self.items:
            if isinstance(it, Scope):
                lines.extend(it.render(indent))
            else:
                lines.extend(pad + ln for ln in it.split("\n"))
        if self.header and len(lines) == 1:
            lines.append(pad + "pass")
        return lines


@dataclass
class KernelSource:
    name: str
    source: str
    signature: str
    dims: list = field(default_factory=list)      # concrete sizes, in slot order
    parallel: bool = False
    # (input position, output position) pairs: the input is read only at the
    # very element the kernel stores, and only that output's value reads it,
    # so the output may overwrite the input in place (donation).
    aligned: tuple = ()
    # Float literals passed at run time, after dims: [(value, dtype name)].
    lits: tuple = ()
    # CPU: the dims slot of the extent of the kernel's outermost loop when its
    # rows are independent (the kernel then takes lo, hi last and runs rows
    # lo..hi: the runtime may split them across threads); None otherwise.
    split: int = None

    @property
    def key(self):
        return hashlib.sha256(self.source.encode()).hexdigest()[:24]


class Idx:
    """One index entry: expression text and the scope it is valid in."""
    __slots__ = ("text", "scope")

    def __init__(self, text, scope):
        self.text, self.scope = text, scope
