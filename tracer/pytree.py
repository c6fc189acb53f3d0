"""Stage tracer: pytrees: nested tuples, lists, dicts, None, namedtuples and
user-registered classes, flattened into leaves plus a hashable structure.

Input: any Python value. Output: (leaves, PyTreeDef); `tree_unflatten`
rebuilds the value; `keystr` paths (`[0]['w']`) name leaves in errors.

Dict children are ordered by sorted keys (as JAX), so structure does not
depend on insertion order.
"""

_REGISTRY = {}


class PyTreeDef:
    __slots__ = ("node_type", "aux", "children", "num_leaves", "_hash")

    def __init__(self, node_type, aux, children):
        self.node_type, self.aux, self.children = node_type, aux, tuple(children)
        self.num_leaves = 1 if node_type is None else sum(c.num_leaves for c in self.children)
        self._hash = hash((node_type, aux, self.children))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (isinstance(other, PyTreeDef) and self._hash == other._hash
                and self.node_type is other.node_type and self.aux == other.aux
                and self.children == other.children)

    def __repr__(self):
        if self.node_type is None:
            return "*"
        name = getattr(self.node_type, "__name__", str(self.node_type))
        return f"PyTreeDef({name}, {list(self.children)})"


LEAF = PyTreeDef(None, None, ())


def register_pytree_node(node_type, flatten, unflatten):
    """flatten(x) -> (children, aux_data); unflatten(aux_data, children) -> x."""
    _REGISTRY[node_type] = (flatten, unflatten)


def _is_namedtuple(t):
    return issubclass(t, tuple) and hasattr(t, "_fields")


register_pytree_node(tuple, lambda t: (t, None), lambda _, c: tuple(c))
register_pytree_node(list, lambda t: (t, None), lambda _, c: list(c))
register_pytree_node(type(None), lambda t: ((), None), lambda _, c: None)


def _dict_flatten(d):
    keys = sorted(d)
    return [d[k] for k in keys], tuple(keys)


register_pytree_node(dict, _dict_flatten, lambda keys, c: dict(zip(keys, c)))


def _node_rule(t):
    rule = _REGISTRY.get(t)
    if rule is None and _is_namedtuple(t):
        rule = (lambda x: (tuple(x), None), lambda _, c, t=t: t(*c))
        _REGISTRY[t] = rule
    return rule


def tree_flatten(tree, is_leaf=None):
    leaves = []
    return leaves, _flatten(tree, leaves, is_leaf)


def _flatten(x, leaves, is_leaf):
    rule = _node_rule(type(x))
    if rule is None or (is_leaf is not None and is_leaf(x)):
        leaves.append(x)
        return LEAF
    children, aux = rule[0](x)
    return PyTreeDef(type(x), aux, [_flatten(c, leaves, is_leaf) for c in children])


def tree_unflatten(treedef, leaves):
    it = iter(leaves)
    out = _unflatten(treedef, it)
    if next(it, _SENTINEL) is not _SENTINEL:
        raise ValueError(f"too many leaves for {treedef}")
    return out


_SENTINEL = object()


def _unflatten(td, it):
    if td.node_type is None:
        x = next(it, _SENTINEL)
        if x is _SENTINEL:
            raise ValueError("too few leaves for the tree structure")
        return x
    return _REGISTRY[td.node_type][1](td.aux, [_unflatten(c, it) for c in td.children])


def tree_leaves(tree, is_leaf=None):
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree, is_leaf=None):
    return tree_flatten(tree, is_leaf)[1]


def tree_map(f, tree, *rest, is_leaf=None):
    leaves, td = tree_flatten(tree, is_leaf)
    others = []
    for r in rest:
        lr, tr = tree_flatten(r, is_leaf)
        if tr != td:
            raise ValueError(f"tree_map: structures differ: {td} vs {tr}")
        others.append(lr)
    return tree_unflatten(td, [f(*xs) for xs in zip(leaves, *others)])


def leaf_paths(treedef):
    """One key-path string per leaf, in flattening order: "[0]['w']"."""
    out = []

    def walk(td, prefix):
        if td.node_type is None:
            out.append(prefix)
            return
        if td.node_type is dict:
            keys = [f"[{k!r}]" for k in td.aux]
        elif _is_namedtuple(td.node_type):
            keys = [f".{f}" for f in td.node_type._fields]
        else:
            keys = [f"[{i}]" for i in range(len(td.children))]
        for k, c in zip(keys, td.children):
            walk(c, prefix + k)

    walk(treedef, "")
    return out


