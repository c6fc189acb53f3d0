"""Stage runtime: config.dump (NEEDLE_DUMP=<dir>) writes every stage of every
compiled function to files.

Input: a function name, its stage graphs and its Executable.
Output: files <dir>/<name>.<n>.<stage>.txt (n counts compilations of name).
"""
import itertools
import os

from ..ir.config import config

_counter = itertools.count()


def dump_stages(name, stage_graphs, exe):
    root = config.dump
    if not root:
        return
    os.makedirs(root, exist_ok=True)
    n = next(_counter)
    texts = {k: str(g) for k, g in stage_graphs.items()}
    for stage in exe.stage_names():
        texts[stage] = exe.stage_text(stage)
    for i, (stage, text) in enumerate(texts.items()):
        with open(os.path.join(root, f"{name}.{n}.{i:02d}-{stage}.txt"), "w") as f:
            f.write(text + "\n")
