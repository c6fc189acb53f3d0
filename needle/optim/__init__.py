"""The public package: `needle.optim`, the course library's optimizers and
an optax-shaped functional core.

Input: parameters (a list of Parameters, parameter groups, or any pytree of
arrays for the functional core) and their gradients. Output: updated
parameters: in place for the classes (`SGD`, `Adam`, `AdamW`: state cells,
so a jitted `step(model, opt, x, y)` takes and writes them back), as new
arrays for the functional core (`sgd`, `adam`, `adamw`, `chain`,
`clip_by_global_norm`, `apply_updates`). `needle.optim.lr_scheduler`
holds the learning-rate schedules (they write the lr cells, so a schedule
never recompiles a jitted step).
"""
from . import lr_scheduler  # noqa: F401
from .optimizers import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from .transforms import (EmptyState, GradientTransformation, ScaleByAdamState,  # noqa: F401
                         ScaleByScheduleState, TraceState, adam, adamw,
                         add_decayed_weights, apply_updates, chain, clip_by_global_norm,
                         global_norm, scale, scale_by_adam, scale_by_learning_rate, sgd,
                         trace)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "lr_scheduler",
           "GradientTransformation", "sgd", "adam", "adamw", "chain", "clip_by_global_norm",
           "apply_updates", "global_norm", "scale", "scale_by_adam", "scale_by_learning_rate",
           "trace", "add_decayed_weights"]
