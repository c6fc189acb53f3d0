"""Stage tracer: find the user's source line for errors and for the IR.

Input: the current Python stack. Output: "file.py:42 (in f)" of the innermost
frame that is not needle's own code.

needle's own code is told by the module a frame runs in: every stage is a
subpackage of `needle` (pyproject's package-dir mapping), so its frames'
`__name__` is "needle" or starts with "needle.". That needs no import of
the other stages (which the tracer may not import) and no file paths.
"""
import sys


def _is_needle(frame):
    name = frame.f_globals.get("__name__") or ""
    return name == "needle" or name.startswith("needle.")


def user_frame(skip=1):
    f = sys._getframe(skip)
    while f is not None:
        # importlib's frozen frames: an import in progress, not the user's line
        if not _is_needle(f) and not f.f_code.co_filename.startswith("<frozen"):
            return f
        f = f.f_back
    return None


def user_line(skip=2):
    """'path/file.py:42 (in f)' of the user's innermost frame, or ''."""
    f = user_frame(skip)
    if f is None:
        return ""
    return f"{f.f_code.co_filename}:{f.f_lineno} (in {f.f_code.co_name})"
