"""Stage codegen: the emissions a backend's cost model made, kept for the
compile. Fusion judges a candidate group by emitting its loop nest
(`Backend.judge`); the groups it builds are later compiled
(`Backend.emit`): rendering the judge's emission replaces a second one.

Input: sub-Graphs with their emitters (`keep`, from judge); pairs of a
judged sub-Graph and the group fusion built equal to it (`alias`, from
fusion through Backend.same_group); sub-Graphs (`get`, from emit). Output:
the emitter kept for that sub-Graph object, or None (a group never judged:
it is emitted afresh).

Fusion (passes/fusion.py) judges a candidate as the sub-Graph it would
build (canonical order, so the same text), and tells the backend which
judged candidate each group it builds is equal to (the same structure, up
to the names of its Vars), so identity is the key: no structural hashing,
and an entry lives as long as its sub-Graph (weakly keyed: the candidates
fusion did not keep go with it; a kept emitter holds a Graph of its own).
After the first render, the KernelSource is kept instead of the emitter
(its text is what any later emit of the group gives).
"""
import dataclasses
import threading
import weakref


class Emissions:
    def __init__(self):
        self.kept = weakref.WeakKeyDictionary()   # sub-Graph -> emitter or KernelSource
        self.lock = threading.Lock()              # eager ops may compile from threads
        self.hits = self.misses = 0

    def keep(self, sub, emitter):
        with self.lock:
            self.kept[sub] = emitter

    def get(self, sub):
        """The emitter (or KernelSource, a copy) kept for `sub`, or None."""
        with self.lock:
            found = self.kept.get(sub)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        if hasattr(found, "source"):              # a fresh object per emit: the runtime
            return dataclasses.replace(found, dims=list(found.dims))   # annotates its own
        return found

    def alias(self, judged, sub):
        """`sub` is `judged` up to the names of its Vars: keep for it what
        was kept for `judged` (fusion builds each group anew)."""
        with self.lock:
            found = self.kept.get(judged)
            if found is not None:
                self.kept[sub] = found

    def rendered(self, sub, ks):
        """Keep the KernelSource `ks` rendered for `sub` in place of its emitter."""
        with self.lock:
            if sub in self.kept:
                self.kept[sub] = dataclasses.replace(ks, dims=list(ks.dims))
