"""The kernel cache is code: needle trusts only a folder nobody else can write,
runs nothing it did not write itself (no timestamp .pyc, no module that
shadows another, no pickle in an untrusted folder), and a damaged or unusable
cache never breaks a program (runtime/kernel_cache.py).

Each scenario runs in a child process (a fresh import system, and a timeout
should anything hang); one child checks several cases and prints one JSON
line that several tests read. The tests run as root here, which ignores
permission bits: an unwritable folder is simulated by making OS calls that
would change it fail (EROFS, EACCES, ENOSPC).
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

# Run in each child: helpers to call a kernel as a new process would and to
# make a folder's writes fail.
PRELUDE = r'''
import builtins, contextlib, errno, glob, hashlib, io, json, os, pickle, shutil, sys, warnings
import numba
import numpy as np
import needle
from needle.runtime import kernel_cache

BASE = sys.argv[1]
X = np.arange(6, dtype=np.float32)
F1, WANT1 = (lambda x: x * 2.0 + 1.0), X * 2 + 1
F2, WANT2 = (lambda x: (x - 3.0) * x), (X - 3) * X


def run(fn, want, cache):
    """Call a fresh jit of `fn` with NEEDLE_CACHE_DIR=cache, having forgotten
    the kernels this process loaded: what happened."""
    needle.config.update("cache_dir", cache)
    kernel_cache.clear_memory_cache()
    for m in [m for m in sys.modules if m.startswith("nk_")]:
        del sys.modules[m]
    before, log = needle.cache_info(), io.StringIO()
    with warnings.catch_warnings(record=True) as w, contextlib.redirect_stderr(log):
        warnings.simplefilter("always")
        try:
            ok = bool(np.allclose(needle.jit(fn)(X), want))
        except Exception as e:
            ok = f"{type(e).__name__}: {e}"[:2000]
    after = needle.cache_info()
    return {"ok": ok, "compiled": after.kernels_compiled - before.kernels_compiled,
            "loaded": after.kernels_loaded - before.kernels_loaded, "log": log.getvalue(),
            "warnings": [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]}


def one(pattern):
    [path] = glob.glob(pattern)
    return path


def reseal(cache):
    """Rewrite needle's records of Numba's files to match them, as someone who
    can write the folder could (so only the folder rule stops what follows)."""
    for rec in glob.glob(os.path.join(cache, "*", "__pycache__", "*.sha256")):
        folder = os.path.dirname(rec)
        names = [line.split("  ", 1)[1] for line in open(rec).read().splitlines()]
        with open(rec, "w") as f:
            for n in names:
                data = open(os.path.join(folder, n), "rb").read()
                f.write(f"{hashlib.sha256(data).hexdigest()}  {n}\n")


@contextlib.contextmanager
def failing_writes(root, code):
    """OS calls that would change anything under `root` raise OSError(code):
    a read-only (EROFS), permission-less (EACCES) or full (ENOSPC) folder."""
    root = os.path.abspath(root)
    real = {n: getattr(os, n) for n in ("open", "mkdir", "replace", "rename", "unlink",
                                        "remove", "rmdir", "chmod", "utime")}
    real_open = builtins.open

    def under(*paths):
        return any(isinstance(p, (str, bytes, os.PathLike)) and
                   os.path.abspath(os.fsdecode(p)).startswith(root) for p in paths)

    def fail(p):
        raise OSError(code, os.strerror(code), os.fsdecode(p))

    def guard(name):
        def call(*a, **k):
            if under(*a[:2]):
                fail(a[0])
            return real[name](*a, **k)
        return call

    def os_open(p, flags, *a, **k):
        if under(p) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(p)
        return real["open"](p, flags, *a, **k)

    def open_(p, mode="r", *a, **k):
        if under(p) and any(c in mode for c in "wax+"):
            fail(p)
        return real_open(p, mode, *a, **k)

    for n in real:
        setattr(os, n, os_open if n == "open" else guard(n))
    builtins.open = open_
    try:
        yield
    finally:
        for n, f in real.items():
            setattr(os, n, f)
        builtins.open = real_open


out = {}
'''


def run_child(tmp_path, body, timeout=180):
    """Run PRELUDE + body in a new process; its `out`, and what it left in
    its temp folder (private caches are removed at exit)."""
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    env.pop("NEEDLE_LOG_COMPILES", None)
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]), tmp_left=os.listdir(tmp))


def assert_fine(r, compiled=None, loaded=None):
    """The call's result was right, its one kernel compiled or loaded (as
    many times as given)."""
    assert r["ok"] is True, r
    assert r["compiled"] + r["loaded"] == 1, r
    if compiled is not None:
        assert r["compiled"] == compiled, r
    if loaded is not None:
        assert r["loaded"] == loaded, r


# --- what may run: a trusted cache, planted files, untrusted folders -------------

SECURITY = r'''
marker = os.path.join(BASE, "marker")
mine = os.path.join(BASE, "mine")
os.umask(0)                                   # needle's modes must not depend on it
out["first"] = run(F1, WANT1, mine)
out["modes"] = {os.path.relpath(os.path.join(d, n), mine):
                [n in dirs, os.stat(os.path.join(d, n)).st_mode & 0o777]
                for d, dirs, files in os.walk(mine) for n in dirs + files}

# A timestamp .pyc of a rogue module whose header matches the kernel's source,
# and a module named like a standard one, both in the trusted cache.
src = one(os.path.join(mine, "cpu", "nk_*.py"))
st = os.stat(src)
import importlib.util, marshal
code = compile(f"open({marker!r}, 'a').write('pyc ')\n" + open(src).read(), src, "exec")
header = (importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
          + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
          + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
os.makedirs(os.path.dirname(importlib.util.cache_from_source(src)), exist_ok=True)
with open(importlib.util.cache_from_source(src), "wb") as f:
    f.write(header + marshal.dumps(code))
with open(os.path.join(mine, "cpu", "wave.py"), "w") as f:
    f.write(f"open({marker!r}, 'a').write('wave ')\n")
out["again"] = run(F1, WANT1, mine)
assert "wave" not in sys.modules
import wave
out["wave"] = wave.__file__
out["wave_is_stdlib"] = not wave.__file__.startswith(BASE) and hasattr(wave, "open")


class Rogue:
    def __reduce__(self):
        return (exec, (f"open({marker!r}, 'a').write('pickle ')",))


def plant(name, damage, pickle_file):
    """A copy of the trusted cache, a rogue pickle in it, then made untrusted."""
    d = os.path.join(BASE, name)
    shutil.copytree(mine, d)
    for target in glob.glob(os.path.join(d, "cpu", "__pycache__", "*." + pickle_file)):
        with open(target, "wb") as f:
            if pickle_file == "nbi":             # what Numba reads first: its version
                pickle.dump(numba.__version__, f)
            f.write(pickle.dumps(Rogue()))
    reseal(d)
    damage(d)
    return d


untrusted = {
    "owner": plant("owned_by_nobody", lambda d: os.chown(d, 65534, 65534), "nbi"),
    "world": plant("world_writable", lambda d: os.chmod(os.path.join(d, "cpu"), 0o777), "nbc"),
    "group": plant("group_writable",
                   lambda d: os.chmod(os.path.join(d, "cpu", "__pycache__"), 0o770), "nbi"),
}
for k, d in untrusted.items():
    out[k] = dict(run(F1, WANT1, d), dir=d)
out["marker"] = open(marker).read() if os.path.exists(marker) else None
out["sys_path"] = [p for p in sys.path if p.startswith(os.path.join(BASE, ""))]
'''


@pytest.fixture(scope="module")
def security(tmp_path_factory):
    return run_child(tmp_path_factory.mktemp("security"), SECURITY)


def test_nothing_planted_runs(security):
    """A timestamp .pyc matching the source's mtime and size, a `wave.py` in
    the cache folder and rogue pickles in untrusted folders: none of them run."""
    assert security["marker"] is None, security["marker"]
    assert security["sys_path"] == []
    assert security["wave_is_stdlib"], security["wave"]
    assert_fine(security["first"], compiled=1)
    assert_fine(security["again"], compiled=0, loaded=1)     # the planted .pyc is ignored


def test_folders_and_files_are_private_whatever_the_umask(security):
    modes = security["modes"]
    assert any(p.endswith(".nbc") for p in modes) and any(p.endswith(".nbi") for p in modes)
    for path, (is_dir, mode) in modes.items():
        assert mode == (0o700 if is_dir else 0o600), (path, oct(mode))


@pytest.mark.parametrize("case, reason", [("owner", "owned by"), ("world", "writable"),
                                          ("group", "writable")])
def test_untrusted_folder_is_not_used(security, case, reason):
    """Owned by someone else, or writable by group or others: a warning names
    the folder and why, and the kernel is compiled in a private cache (the
    process's one: the first case compiles, the others load)."""
    r = security[case]
    assert_fine(r)
    [w] = r["warnings"]
    assert r["dir"] in w and reason in w, w


def test_private_caches_are_removed_at_exit(security, unusable):
    assert security["tmp_left"] == [] and unusable["tmp_left"] == []


# --- damaged files: detected, deleted, recompiled, logged -----------------------

DAMAGED = r'''
needle.config.update("log_compiles", True)
cache = os.path.join(BASE, "cache")
out["first"] = run(F1, WANT1, cache)
pyc = os.path.join(cache, "cpu", "__pycache__")


def write(pattern, data):
    folder = os.path.join(cache, "cpu") if pattern.startswith("nk_") else pyc
    with open(one(os.path.join(folder, pattern)), "wb") as f:
        f.write(data)


def truncate(pattern):
    path = one(os.path.join(pyc, pattern))
    data = open(path, "rb").read()
    write(pattern, data[: len(data) // 2])


cases = {
    "garbage nbc": lambda: write("*.nbc", os.urandom(3000)),
    "truncated nbc": lambda: truncate("*.nbc"),
    "empty nbc": lambda: write("*.nbc", b""),
    "garbage nbi": lambda: write("*.nbi", os.urandom(300)),
    "truncated nbi": lambda: truncate("*.nbi"),
    "empty nbi": lambda: write("*.nbi", b""),
    "non-UTF-8 source": lambda: write("nk_*.py", b"\xff\xfe\x00garbage \xc3\x28\n"),
    "garbage code": lambda: write("*.code", os.urandom(500)),
    "truncated code": lambda: truncate("*.code"),
    # matching needle's record: only Numba's loading finds it broken
    "garbage nbc, record rewritten": lambda: (write("*.nbc", os.urandom(3000)), reseal(cache)),
    "garbage nbi, record rewritten": lambda: (
        write("*.nbi", pickle.dumps(numba.__version__) + b"junk"), reseal(cache)),
}
for name, damage in cases.items():
    damage()
    out[name] = [run(F1, WANT1, cache), run(F1, WANT1, cache)]
'''

NEXT = r'''
out["next"] = run(F1, WANT1, os.path.join(BASE, "cache"))
'''


def test_damaged_files_are_deleted_and_recompiled_once(tmp_path):
    got = run_child(tmp_path, DAMAGED)
    assert_fine(got.pop("first"), compiled=1)
    del got["tmp_left"]
    for name, (damaged, after) in got.items():
        # Numba's files are compiled again; a damaged module (or code) file is
        # rewritten, and the machine code of the restored source still loads.
        assert_fine(damaged, compiled=1 if " nb" in name else 0)
        assert "needle: kernel cache: nk_" in damaged["log"], (name, damaged)
        assert_fine(after, compiled=0, loaded=1)
        assert "kernel cache" not in after["log"], (name, after)
    assert_fine(run_child(tmp_path, NEXT)["next"], compiled=0, loaded=1)


# --- unusable folders: warn once, compile privately; a read-only cache is used --

UNUSABLE = r'''
# First, a filesystem with 1-second timestamps: a module file written within
# the second the folder was last listed leaves the folder's mtime unchanged.
coarse = os.path.join(BASE, "coarse")
cpu = os.path.join(coarse, "cpu")
real_replace = os.replace


def replace(a, b, **k):
    real_replace(a, b, **k)
    if os.path.dirname(os.path.abspath(b)) == cpu:
        os.utime(cpu, ns=(10**18, 10**18))


os.replace = replace
run(F1, WANT1, coarse)
os.utime(cpu, ns=(10**18, 10**18))
import importlib.util
importlib.util.find_spec("no_such_module")      # the folder is listed at that mtime
out["coarse"] = run(F2, WANT2, coarse)
os.replace = real_replace

a_file = os.path.join(BASE, "a_file")
open(a_file, "w").close()
out["file"] = dict(run(F1, WANT1, a_file), dir=a_file)

denied = os.path.join(BASE, "denied")
with failing_writes(denied, errno.EACCES):
    out["eacces"] = dict(run(F1, WANT1, denied), dir=denied)
    out["eacces again"] = run(F2, WANT2, denied)             # warned once only

full = os.path.join(BASE, "full")                 # the module file fits; Numba's files do not
os.makedirs(os.path.join(full, "cpu", "__pycache__"))
with failing_writes(os.path.join(full, "cpu", "__pycache__"), errno.ENOSPC):
    out["enospc"] = dict(run(F1, WANT1, full), dir=full)

shipped = os.path.join(BASE, "shipped")
run(F1, WANT1, shipped)
with failing_writes(shipped, errno.EROFS):
    out["read-only"] = run(F1, WANT1, shipped)
    out["read-only, new kernel"] = dict(run(F2, WANT2, shipped), dir=shipped)
'''


@pytest.fixture(scope="module")
def unusable(tmp_path_factory):
    return run_child(tmp_path_factory.mktemp("unusable"), UNUSABLE)


@pytest.mark.parametrize("case, reason", [("file", "Not a directory"),
                                          ("eacces", "Permission denied"),
                                          ("enospc", "No space left on device"),
                                          ("read-only, new kernel", "Read-only file system")])
def test_unusable_folder_warns_once_and_compiles_privately(unusable, case, reason):
    r = unusable[case]
    assert_fine(r)
    [w] = r["warnings"]
    assert r["dir"] in w and reason in w, w


def test_warned_once_per_folder(unusable):
    assert_fine(unusable["eacces again"])
    assert unusable["eacces again"]["warnings"] == []


def test_read_only_populated_cache_is_used(unusable):
    r = unusable["read-only"]
    assert_fine(r, compiled=0, loaded=1)
    assert r["warnings"] == []


def test_module_written_within_the_same_second_is_found(unusable):
    assert_fine(unusable["coarse"], compiled=1)


# --- in this process --------------------------------------------------------------

def test_cache_folder_follows_xdg(config):
    """The environment as `import needle` reads it (a Config of a mapping),
    and the kernel cache's root following the option."""
    from needle.ir.config import Config
    from needle.runtime import cache_dir

    def root(**env):
        return Config(env).cache_dir
    assert root(XDG_CACHE_HOME="/xdg/cache") == "/xdg/cache/needle"
    assert root(XDG_CACHE_HOME="relative/ignored") == \
        os.path.join(os.path.expanduser("~"), ".cache", "needle")  # the spec: absolute only
    assert root() == os.path.join(os.path.expanduser("~"), ".cache", "needle")
    assert root(XDG_CACHE_HOME="/xdg/cache", NEEDLE_CACHE_DIR="/mine") == "/mine"
    config.update("cache_dir", "/mine")
    assert cache_dir() == "/mine"


def test_cpu_target_is_configured_once_features_are_set(monkeypatch):
    """A second caller racing the prewarm thread waits for the features
    instead of compiling with Numba's defaults."""
    import llvmlite.binding as ll
    import numba
    from needle.runtime import cpu_target, prewarm

    prewarm.wait()                      # this process's own prewarm thread is done

    class Features(dict):
        def flatten(self):
            return "+avx512f"

    def slow_features():
        time.sleep(0.3)
        return Features(avx512f=True)

    monkeypatch.setattr(cpu_target, "_done", False)
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "")     # restored afterwards ...
    monkeypatch.delenv("NUMBA_CPU_FEATURES")         # ... and unset meanwhile
    monkeypatch.setattr(numba.config, "CPU_FEATURES", numba.config.CPU_FEATURES)
    monkeypatch.setattr(ll, "get_host_cpu_features", slow_features)
    first = threading.Thread(target=cpu_target.configure)
    first.start()
    time.sleep(0.05)
    cpu_target.configure()
    seen = os.environ.get("NUMBA_CPU_FEATURES")
    first.join()
    assert seen == "+avx512f,-prefer-256-bit"
    assert numba.config.CPU_FEATURES == seen
