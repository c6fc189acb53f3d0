"""Stage ir (the bottom of the layering, so that every stage may read it):
needle's configuration, `needle.config`.

Input: the NEEDLE_* environment variables, read once, when `import needle`
first imports this module; later `config.update(name, value)` calls.
Output: `config.<name>`, the current value of each option, read by the
stages at the moment they use it (so an update takes effect for every later
compile, kernel load or call, as the OPTIONS table below says), and
watchers called on an update for the few options that act at once.

This module is the only place that reads a NEEDLE_* variable; the README's
"Environment variables" table documents each one (tests/test_config.py
checks both). As in JAX, a change of `os.environ` after `import needle` is
not seen: use `needle.config.update`. An update changes this process only
(a child started with `spawn` reads the environment again). Options are
process-wide, not per thread.

    needle.config.update("debug_nans", True)     # as NEEDLE_DEBUG_NANS=1
    needle.config.cache_dir                       # the kernel cache's root
    with needle.config.override(log_compiles=True): ...
"""
import contextlib
import os

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _bool(v):
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        try:
            return int(s) != 0          # NEEDLE_LOG_COMPILES=2: any other integer is "on"
        except ValueError:
            raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE[1:])}") from None
    if isinstance(v, (bool, int)):
        return bool(v)
    raise TypeError(f"expected a bool, got {type(v).__name__}")


def _int(v):
    """An int from an int or a string ('65536', '5e6': float notation, for
    byte counts, as long as it is integral)."""
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            f = float(v)
            if not f.is_integer():
                raise ValueError(f"{v!r} is not an integer") from None
            return int(f)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an int, got {type(v).__name__}")
    return v


def _positive_int(v):
    n = _int(v)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {n}")
    return n


def _nonnegative_int(v):
    n = _int(v)
    if n < 0:
        raise ValueError(f"expected 0 or a positive integer, got {n}")
    return n


def _positive_float(v):
    f = float(v) if isinstance(v, str) else v
    if isinstance(f, bool) or not isinstance(f, (int, float)):
        raise TypeError(f"expected a number, got {type(v).__name__}")
    if not f > 0:
        raise ValueError(f"expected a positive number, got {f}")
    return float(f)


def _path(v):
    p = os.fspath(v)
    if not p:
        raise ValueError("expected a folder, got an empty string")
    return p


def _cuda_cc(v):
    """(major, minor) from (8, 0), '8.0', '80', 'sm_90' or '9.0'."""
    if isinstance(v, str):
        s = v.strip().lower().replace("sm_", "")
        major, minor = s.split(".") if "." in s else (s[:-1], s[-1])
        return int(major), int(minor)
    major, minor = v
    return int(major), int(minor)


def _default_cache_dir(environ):
    # XDG base directory spec: $XDG_CACHE_HOME counts only when absolute.
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "needle")


class Option:
    """One configuration entry: its Python name, its environment variable,
    how a value is parsed (from the variable's text or a Python value), its
    default (a value, or a function of the environment), whether it may be
    None (meaning "the default that the stage using it works out"), and
    whether it acts at import only."""

    def __init__(self, name, env, parse, default, doc, optional=False, import_only=False):
        self.name, self.env, self.parse, self.default = name, env, parse, default
        self.doc, self.optional, self.import_only = doc, optional, import_only

    def convert(self, value, origin):
        if value is None and self.optional:
            return None
        try:
            return self.parse(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"needle config: {origin}={value!r}: {e}") from None


OPTIONS = [
    Option("cache_dir", "NEEDLE_CACHE_DIR", _path, _default_cache_dir,
           "root folder of the kernel cache; read at each kernel load or compile"),
    Option("log_compiles", "NEEDLE_LOG_COMPILES", _bool, False,
           "log every trace and why the cache missed, and kernel-cache repairs"),
    Option("plan_cache", "NEEDLE_PLAN_CACHE", _bool, True,
           "keep each program's fused graph in the kernel cache, so that a new "
           "process lowering the same program skips the passes and fusion"),
    Option("dump", "NEEDLE_DUMP", _path, None,
           "folder to which every stage of every compiled function is written",
           optional=True),
    Option("checks", "NEEDLE_CHECKS", _bool, False,
           "run ir.check_graph after every pass of every jit compile"),
    Option("debug_nans", "NEEDLE_DEBUG_NANS", _bool, False,
           "check jitted results for NaN, naming the operation that made one "
           "(as needle.debug_nans; takes effect at once)"),
    Option("trace_cache_size", "NEEDLE_TRACE_CACHE_SIZE", _positive_int, 64,
           "compiled signatures each jitted function keeps"),
    Option("pool_bytes", "NEEDLE_POOL_BYTES", _positive_int, None,
           "byte budget of the CPU buffer pool (None: 1 GiB, or a quarter of RAM "
           "if less; takes effect at once)", optional=True),
    Option("parallel_min_size", "NEEDLE_PARALLEL_MIN_SIZE", _int, 1 << 16,
           "elements of work per thread: a CPU kernel touching at least twice this "
           "many splits its rows across threads"),
    Option("num_threads", "NEEDLE_NUM_THREADS", _positive_int, None,
           "threads a large CPU kernel runs on (None: the cores this process may "
           "use); the pool starts at the first split kernel", optional=True),
    Option("compile_workers", "NEEDLE_COMPILE_WORKERS", _nonnegative_int, None,
           "CPU kernels a new program compiles at once when two or more are missing "
           "from the disk cache: this process and N-1 worker processes (None: "
           "the cores this process may use, whatever num_threads is; 0 or 1: "
           "in-process, one after another)", optional=True),
    Option("compile_timeout", "NEEDLE_COMPILE_TIMEOUT", _positive_float, 600.0,
           "seconds a compile worker may take to start or to compile one kernel; "
           "after that it is killed and the kernel compiled in this process, "
           "with a warning naming it"),
    Option("cuda_cc", "NEEDLE_CUDA_CC", _cuda_cc, None,
           "compute capability (major, minor) of PTX and ptxas reports "
           "(None: the GPU's, else (9, 0))", optional=True),
    Option("prewarm", "NEEDLE_PREWARM", _bool, True,
           "import Numba's CPU target in a background thread at `import needle` "
           "(read at import only)", import_only=True),
]


class Config:
    """needle's options (see OPTIONS). Read one as an attribute
    (`config.cache_dir`); change it with `update(name, value)`, or for a
    block with `override(name=value, ...)`."""

    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        options = {o.name: o for o in OPTIONS}
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_watchers", {name: [] for name in options})
        object.__setattr__(self, "_environ", dict(environ))    # the snapshot read
        for o in OPTIONS:
            text = environ.get(o.env)
            if text:                    # set and not empty (VAR= counts as unset)
                value = o.convert(text, o.env)
            else:
                value = o.default(environ) if callable(o.default) else o.default
            object.__setattr__(self, o.name, value)

    def _option(self, name):
        o = self._options.get(name)
        if o is None:
            raise AttributeError(f"needle config has no option {name!r}; "
                                 f"known: {', '.join(self._options)}")
        return o

    def __getattr__(self, name):        # only for names that are not options
        if name.startswith("_"):        # protocols (copy, pickle) and a half-made Config
            raise AttributeError(name)
        self._option(name)
        raise AttributeError(name)      # pragma: no cover (every option is set)

    def __setattr__(self, name, value):
        raise AttributeError(f"needle.config.{name} is read-only: use "
                             f"needle.config.update({name!r}, value)")

    def update(self, name, value):
        """Set option `name` (as JAX's `jax.config.update`). For the options
        whose default is worked out (cache_dir, dump, pool_bytes, cuda_cc),
        None restores that built-in default, as with the variable unset."""
        o = self._option(name)
        if o.import_only:
            raise ValueError(f"needle config: {name} acts at `import needle` only: set "
                             f"{o.env} in the environment before importing needle")
        if value is None and callable(o.default):
            value = o.default(self._environ)
        else:
            value = o.convert(value, name)     # None stays None where optional
        object.__setattr__(self, name, value)
        for fn in self._watchers[name]:
            fn(value)

    @contextlib.contextmanager
    def override(self, **values):
        """Set options for the `with` block, restoring them after (process-
        wide: meant for tests and scripts, not for concurrent threads)."""
        old = {name: getattr(self, self._option(name).name) for name in values}
        try:
            for name, value in values.items():
                self.update(name, value)
            yield self
        finally:
            for name, value in old.items():
                self.update(name, value)

    def watch(self, name, fn):
        """Call fn(new value) after every update of option `name` (for the
        options a stage applies at once: the buffer pool's budget, debug_nans)."""
        self._watchers[self._option(name).name].append(fn)

    def options(self):
        """The Option entries, in the README table's order."""
        return list(OPTIONS)

    def values(self):
        """{name: current value}."""
        return {name: getattr(self, name) for name in self._options}

    def __repr__(self):
        return "needle.config(" + ", ".join(f"{k}={v!r}" for k, v in self.values().items()) + ")"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._options))


config = Config()
