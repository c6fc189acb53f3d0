"""The public package: `needle.autograd`, the course's autograd internals
that its users' code touches (issue 16). Not needle.autodiff, which is the
JAX-style API (grad, vjp, ...).

Input: Tensors. Output: the course's names: `Tensor`, `Value` (= Tensor),
`TensorTuple`, `Op` / `TensorOp` / `TensorTupleOp`, `find_topo_sort`,
`compute_gradient_of_variables`, `no_grad`, and `TENSOR_COUNTER`, the
number of live Tensors (read at each access).

`Tensor.op` / `Tensor.inputs` link a Tensor made by a needle.ops operation
to its inputs (a layer's result or a leaf has op None), which is the graph
`find_topo_sort` walks. Gradients do not come from walking it:
`Tensor.backward()` differentiates the recorded lazy graph with needle's
autodiff pass (needle/lazy.py); the ops' `gradient` methods are there for
code that calls them.
"""
from .lazy import enable_grad, no_grad  # noqa: F401
from .ops import Op, TensorOp, TensorTupleOp  # noqa: F401
from .tensor import TENSOR_COUNT, Tensor, TensorTuple

__all__ = ["Tensor", "Value", "TensorTuple", "Op", "TensorOp", "TensorTupleOp",
           "find_topo_sort", "compute_gradient_of_variables", "no_grad", "enable_grad",
           "TENSOR_COUNTER"]

Value = Tensor
LAZY_MODE = True


def __getattr__(name):
    if name == "TENSOR_COUNTER":
        return TENSOR_COUNT[0]
    raise AttributeError(f"module 'needle.autograd' has no attribute {name!r}")


def find_topo_sort(node_list):
    """The Tensors reachable from `node_list` through `inputs`, each after
    its inputs (the course's post-order depth-first search)."""
    order, seen = [], set()
    for root in node_list:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for x in reversed(node.inputs):
                if id(x) not in seen:
                    stack.append((x, False))
    return order


def compute_gradient_of_variables(output_tensor, out_grad):
    """The course's entry point: `output_tensor.backward(out_grad)`."""
    output_tensor.backward(out_grad)
