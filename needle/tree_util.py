"""needle.tree_util: JAX's pytree functions (tree_map, tree_flatten, ...).

Input: nested containers. Output: leaves and structures; see tracer/pytree.py.
"""
from .tracer.pytree import (PyTreeDef, leaf_paths, register_pytree_node,  # noqa: F401
                             tree_flatten, tree_leaves, tree_map, tree_structure,
                             tree_unflatten)
