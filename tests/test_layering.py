"""The layering of DESIGN.md ("Layering"), pinned by reading the imports.

Every import statement of every .py file in the stage folders (module level
and inside functions), and every `import` line of generated code held in
their string constants (a kernel module imports what its code generator
names), is resolved to a module of needle through pyproject's
`[tool.setuptools.package-dir]` mapping; the stage it lands in must be one
its file's stage may import:

    ir -> (nothing)   tracer -> ir   passes -> ir, tracer   codegen -> ir
    runtime -> ir, codegen   needle/ -> anything

A stage always imports itself. A stage imported by its bare folder name
(`import ir`) is an error too: it loads a second copy of that stage. The
arrows left form no cycle between stages.

PENDING lists the known upward arrows being removed (issue 10); the test
also fails when one no longer occurs, so the list only shrinks.
"""
import ast
import os
import re
import sys
from collections import namedtuple

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:                                       # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALLOWED = {
    "ir": set(),
    "tracer": {"ir"},
    "passes": {"ir", "tracer"},
    "codegen": {"ir"},
    "runtime": {"ir", "codegen"},
    "needle": {"ir", "tracer", "passes", "codegen", "runtime"},
}

# Known upward arrows still to remove, as (file, "stage -> stage"), each with
# a comment saying why it is there and what removes it, e.g.
#     ("runtime/compile.py", "runtime -> passes"),   # calls fusion.partition
# The change that removes the arrow deletes its entry (the test fails while a
# listed arrow no longer occurs). Issue 10 emptied it: runtime/compile.py,
# runtime/cuda_runtime.py -> passes (fusion is now a pipeline entry),
# runtime/cuda_array.py -> tracer, passes (the device Array moved to needle/),
# passes/fusion.py -> codegen (the Backend is passed down as a value),
# ir/core.py -> tracer (the tracer installs its bind), tracer/source.py ->
# needle and every stage, generated CUDA code -> runtime.cuda_sim.
PENDING = set()

Import = namedtuple("Import", "file line module generated")
Violation = namedtuple("Violation", "file line arrow module why")


def package_dirs(root=ROOT):
    """{package name: folder relative to root}, from pyproject.toml."""
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {pkg: folder.rstrip("/") for pkg, folder in mapping.items()}


def read_sources(root=ROOT, dirs=None):
    """{relative path: text} of every .py file under the mapped folders."""
    out = {}
    for folder in (dirs or package_dirs(root)).values():
        for d, subdirs, files in os.walk(os.path.join(root, folder)):
            subdirs[:] = [s for s in subdirs if s != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(d, name)
                    with open(path, encoding="utf-8") as f:
                        out[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return out


def module_name(path, dirs):
    """needle's dotted name of file `path` (relative, '/'-separated)."""
    best = None
    for pkg, folder in dirs.items():
        if path.startswith(folder + "/") and (best is None or len(folder) > len(dirs[best])):
            best = pkg
    rest = path[len(dirs[best]) + 1:-len(".py")].split("/")
    if rest[-1] == "__init__":
        rest = rest[:-1]
    return ".".join([best] + rest)


def stage_of(module):
    """The stage a needle module belongs to; None outside needle."""
    parts = module.split(".")
    if parts[0] != "needle":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "needle"


# `import needle...` / `from needle... import` at the start of a line of code
# held in a string (a kernel module's source, or a piece of it).
_GENERATED = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import\s+([\w., ]+)|import\s+([\w.]+))",
                        re.M)


def _docstrings(tree):
    """ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def imports(path, text, dirs, modules):
    """Every needle module file `path` imports: Import(file, line, module, generated)."""
    me = module_name(path, dirs)
    package = me if path.endswith("/__init__.py") else me.rpartition(".")[0]

    def resolve(level, base, names):
        if level:
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - level + 1] + ([base] if base else []))
        # `from needle import runtime` imports the stage, not just `needle`
        return [f"{base}.{n}" if f"{base}.{n}" in modules else base for n in names] or [base]

    tree = ast.parse(text, path)
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield Import(path, node.lineno, a.name, False)
        elif isinstance(node, ast.ImportFrom):
            for m in resolve(node.level, node.module or "", [a.name for a in node.names]):
                yield Import(path, node.lineno, m, False)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs and "import" in node.value:
            for hit in _GENERATED.finditer(node.value):
                line = node.lineno + node.value.count("\n", 0, hit.start())
                if hit.group(3):
                    found = [hit.group(3)]
                else:
                    dots = len(hit.group(1)) - len(hit.group(1).lstrip("."))
                    found = resolve(dots, hit.group(1).lstrip("."),
                                    [n.strip() for n in hit.group(2).split(",") if n.strip()])
                for m in found:
                    yield Import(path, line, m, True)


def check(sources, dirs):
    """(violations, {(stage, stage): [Import]} of the arrows between stages)."""
    modules = {module_name(p, dirs) for p in sources}
    bare = {folder.split("/")[0] for pkg, folder in dirs.items() if pkg != "needle"}
    violations, arrows = [], {}
    for path, text in sorted(sources.items()):
        src = stage_of(module_name(path, dirs))
        for imp in dict.fromkeys(imports(path, text, dirs, modules)):    # once per line
            what = "generated code imports" if imp.generated else "imports"
            if imp.module.split(".")[0] in bare:
                violations.append(Violation(path, imp.line, f"{src} -> {imp.module}", imp.module,
                                            f"{what} a stage by its bare folder name (a second "
                                            f"copy of it): use needle.{imp.module} or a "
                                            f"relative import"))
                continue
            dst = stage_of(imp.module)
            if dst is None or dst == src:
                continue
            arrows.setdefault((src, dst), []).append(imp)
            if dst not in ALLOWED[src]:
                violations.append(Violation(path, imp.line, f"{src} -> {dst}", imp.module,
                                            f"{what} {imp.module}: an upward arrow"))
    return violations, arrows


def cycles(arrows):
    """The sets of stages that import each other, directly or through
    others (strongly connected components of more than one stage), sorted."""
    graph = {}
    for a, b in arrows:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())

    def reach(a):
        seen, todo = set(), [a]
        while todo:
            for b in graph[todo.pop()]:
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    reaches = {a: reach(a) for a in graph}
    comps = {frozenset(b for b in reaches[a] if a in reaches[b]) | {a} for a in graph}
    return sorted(sorted(c) for c in comps if len(c) > 1)


def report(sources, dirs, pending=frozenset()):
    """The failures of the layering rule, as lines of text; [] when it holds."""
    violations, arrows = check(sources, dirs)
    lines = [f"{v.file}:{v.line}: {v.arrow}: {v.why}" for v in violations
             if (v.file, v.arrow) not in pending]
    occurring = {(v.file, v.arrow) for v in violations}
    lines += [f"{f}: PENDING entry {arrow!r} no longer occurs: delete it from PENDING"
              for f, arrow in sorted(pending - occurring)]
    kept = {k: v for k, v in arrows.items()
            if not all((i.file, f"{k[0]} -> {k[1]}") in pending for i in v)}
    for comp in cycles(kept):
        where = "; ".join(f"{a} -> {b} at {imps[0].file}:{imps[0].line}"
                          for (a, b), imps in sorted(kept.items()) if a in comp and b in comp)
        lines.append(f"cycle between stages {', '.join(comp)} ({where})")
    return lines


# --- the tests -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree():
    dirs = package_dirs()
    return read_sources(ROOT, dirs), dirs


@pytest.fixture(scope="module")
def pending(tree):
    """The PENDING entries that occur (the tests below add arrows to the tree;
    only test_stages_import_only_downward judges PENDING itself)."""
    violations, _ = check(*tree)
    return frozenset(PENDING & {(v.file, v.arrow) for v in violations})


def test_stages_import_only_downward(tree):
    sources, dirs = tree
    problems = report(sources, dirs, PENDING)
    assert not problems, "layering (DESIGN.md, 'Layering'):\n" + "\n".join(problems)


def test_every_stage_folder_is_read(tree):
    sources, dirs = tree
    for stage in ALLOWED:
        assert any(stage_of(module_name(p, dirs)) == stage for p in sources), stage
    assert "ir/core.py" in sources and "codegen/cuda/emit.py" in sources


def _with(sources, path, line, text):
    """A copy of `sources` with `text` inserted before line `line` of `path`."""
    lines = sources[path].splitlines(keepends=True)
    lines.insert(line - 1, text + "\n")
    return dict(sources, **{path: "".join(lines)})


def _end_of_imports(text):
    """The line after the module's last top-level import (a spot to add one)."""
    tree = ast.parse(text)
    return max(n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))) + 1


def test_an_added_upward_import_fails_naming_file_line_and_arrow(tree, pending):
    sources, dirs = tree
    line = _end_of_imports(sources["ir/check.py"])
    bad = _with(sources, "ir/check.py", line, "from ..passes import dce")
    problems = report(bad, dirs, pending)
    assert problems[0] == \
        f"ir/check.py:{line}: ir -> passes: imports needle.passes.dce: an upward arrow"
    # passes import ir, so the new arrow also closes a cycle
    assert problems[1].startswith("cycle between stages ir, passes, tracer "
                                  f"(ir -> passes at ir/check.py:{line}; passes -> ir at ")
    assert len(problems) == 2


def test_function_level_absolute_and_package_imports_are_read(tree, pending):
    sources, dirs = tree
    src = "def f():\n    import needle.runtime\n    from needle import passes\n    return 1\n"
    bad = dict(sources, **{"codegen/extra.py": src})
    problems = [p for p in report(bad, dirs, pending) if not p.startswith("cycle")]
    assert problems == [
        "codegen/extra.py:2: codegen -> runtime: imports needle.runtime: an upward arrow",
        "codegen/extra.py:3: codegen -> passes: imports needle.passes: an upward arrow"]


def test_generated_code_is_read(tree, pending):
    """A kernel module's text importing the runtime is codegen depending on runtime."""
    sources, dirs = tree
    src = 'TEXT = (\n    "if config.ENABLE_CUDASIM:\\n"\n' \
          '    "    from needle.runtime.cuda_sim import math")\n'
    bad = dict(sources, **{"codegen/cuda/extra.py": src})
    problems = [p for p in report(bad, dirs, pending) if not p.startswith("cycle")]
    assert problems == [
        "codegen/cuda/extra.py:3: codegen -> runtime: generated code imports "
        "needle.runtime.cuda_sim: an upward arrow"]


def test_bare_folder_imports_fail(tree, pending):
    sources, dirs = tree
    bad = dict(sources, **{"passes/extra.py": "import ir.core\n"})
    [problem] = report(bad, dirs, pending)
    assert problem.startswith("passes/extra.py:1: passes -> ir.core: imports a stage by its "
                              "bare folder name")


def test_a_cycle_between_stages_fails_and_pending_entries_must_occur(tree, pending):
    sources, dirs = tree
    bad = dict(sources, **{"tracer/extra.py": "from ..passes import dce\n"})
    problems = report(bad, dirs, pending | {("runtime/gone.py", "runtime -> passes")})
    assert problems[0] == ("tracer/extra.py:1: tracer -> passes: imports needle.passes.dce: "
                           "an upward arrow")
    assert problems[1] == ("runtime/gone.py: PENDING entry 'runtime -> passes' no longer "
                           "occurs: delete it from PENDING")
    assert problems[2].startswith("cycle between stages passes, tracer (passes -> tracer at ")
    assert problems[2].endswith("; tracer -> passes at tracer/extra.py:1)")
    assert len(problems) == 3


def test_a_pending_arrow_is_allowed_while_it_occurs(tree, pending):
    sources, dirs = tree
    bad = dict(sources, **{"runtime/extra.py": "def f():\n    from ..passes import dce\n"})
    assert report(bad, dirs, pending) == [
        "runtime/extra.py:2: runtime -> passes: imports needle.passes.dce: an upward arrow"]
    assert report(bad, dirs, pending | {("runtime/extra.py", "runtime -> passes")}) == []
