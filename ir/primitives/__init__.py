"""Stage ir: every primitive of needle, declared once with its abstract-eval
rule (shapes and dtypes, with errors naming the primitive and the shapes) and
its numpy implementation.

Input: nothing. Output: Primitive objects, importable by name
(`from needle.ir.primitives import add_p`), all listed in `ir.core.PRIMITIVES`.

Primitives are strict, like JAX's lax: operands of a binary op have equal
shapes (a 0-d operand may stand beside any shape) and equal dtypes. Broadcasting
and type promotion happen above, in needle.numpy, which inserts broadcast_in_dim
and convert_element_type.
"""
from .elementwise import *  # noqa: F401,F403
from .bits import *  # noqa: F401,F403
from .special import *  # noqa: F401,F403
from .structural import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .linalg_decomp import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .group import *  # noqa: F401,F403
from .debug import *  # noqa: F401,F403
from .control import *  # noqa: F401,F403
from .sort import *  # noqa: F401,F403
from .callback import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
