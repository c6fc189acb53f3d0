"""Packaging: the stage folders (tracer/, ir/, passes/, codegen/, runtime/)
are mapped into the single `needle` package by pyproject.toml. An editable
install finds a subpackage that pyproject forgets to list, a wheel does not;
so every folder holding an `__init__.py` must be listed. Also: every module
starts with a docstring, and no module imports a stage by its bare folder name
(that would load a second copy of it, with a second primitive registry).
"""
import ast
import os
import re
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ["needle", "tracer", "ir", "passes", "codegen", "runtime"]


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _package_dirs():
    """{folder relative to the root: the package name it installs as}."""
    setuptools = _pyproject()["tool"]["setuptools"]
    roots = {d.replace("\\", "/").rstrip("/"): pkg for pkg, d in setuptools["package-dir"].items()}
    out = {}
    for top in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
            if "__init__.py" not in filenames:
                continue
            rel = os.path.relpath(dirpath, ROOT).replace(os.sep, "/")
            parts = rel.split("/")
            assert parts[0] in roots, f"{parts[0]}/ has no [tool.setuptools.package-dir] entry"
            out[rel] = ".".join([roots[parts[0]]] + parts[1:])
    return out


def _modules():
    for top in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    yield os.path.relpath(os.path.join(dirpath, fn), ROOT)


def test_every_stage_folder_is_mapped_into_needle():
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapping.get("needle") == "needle"
    for stage in FOLDERS[1:]:
        assert mapping.get(f"needle.{stage}") == stage, stage
    assert set(mapping) == {"needle"} | {f"needle.{s}" for s in FOLDERS[1:]}, \
        "no other top-level import names are installed"


def test_every_package_folder_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = _package_dirs()
    missing = {f"{folder}/ -> {pkg}" for folder, pkg in found.items() if pkg not in listed}
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    stale = listed - set(found.values())
    assert not stale, f"listed in pyproject.toml but not a folder with __init__.py: {stale}"


@pytest.mark.parametrize("path", list(_modules()))
def test_module_starts_with_a_docstring(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    first = tree.body[0] if tree.body else None
    assert isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None),
                                                      ast.Constant) \
        and isinstance(first.value.value, str) and first.value.value.strip(), \
        f"{path} must start with a docstring (its stage, what it takes, what it returns)"


_BARE = re.compile(r"^\s*(import|from)\s+(tracer|ir|passes|codegen|runtime)(\.|\s|$)", re.M)


@pytest.mark.parametrize("path", list(_modules()))
def test_no_stage_is_imported_by_its_bare_name(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        bad = _BARE.findall(f.read())
    assert not bad, f"{path}: import stages as needle.<stage> or relatively, not {bad}"


def test_one_primitive_registry_after_importing_everything():
    import needle
    from needle.ir import PRIMITIVES
    from needle.ir.primitives import add_p
    assert PRIMITIVES["add"] is add_p
    assert needle.ir.core.PRIMITIVES is PRIMITIVES
