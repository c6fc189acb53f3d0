"""Stage tracer: find the user's source line for errors and for the IR.

Input: the current Python stack. Output: "file.py:42 (in f)" of the innermost
frame that is not needle's own code.
"""
import os
import sys

_PKG_DIRS = None


def _pkg_dirs():
    global _PKG_DIRS
    if _PKG_DIRS is None:
        import needle
        from needle import codegen, ir, passes, runtime, tracer
        _PKG_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
                          for m in (needle, tracer, ir, passes, codegen, runtime))
    return _PKG_DIRS


def is_internal(filename):
    return os.path.abspath(filename).startswith(_pkg_dirs())


def user_frame(skip=1):
    f = sys._getframe(skip)
    dirs = _pkg_dirs()
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(dirs) and not fn.startswith("<frozen") and \
                not os.path.abspath(fn).startswith(dirs):
            return f
        f = f.f_back
    return None


def user_line(skip=2):
    """'path/file.py:42 (in f)' of the user's innermost frame, or ''."""
    f = user_frame(skip)
    if f is None:
        return ""
    return f"{f.f_code.co_filename}:{f.f_lineno} (in {f.f_code.co_name})"
