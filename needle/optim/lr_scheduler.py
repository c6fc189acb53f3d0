"""The public package: `needle.optim.lr_scheduler`, learning-rate schedules
with PyTorch's semantics.

Input: an optimizer (its groups' learning rates at construction are the
base rates) and the schedule's options. Output: at construction and at
every `scheduler.step()` (once per epoch or per step, as the user
chooses) each group's lr cell is written with the schedule's value for
the current count (`last_epoch`), in closed form; `get_last_lr()` gives
them. Writing the lr cell changes an input of a jitted step, never the
compiled program.

StepLR(opt, step_size, gamma=0.1): base * gamma ** (epoch // step_size).
CosineAnnealingLR(opt, T_max, eta_min=0): eta_min + (base - eta_min) *
  (1 + cos(pi * epoch / T_max)) / 2.
LinearWarmup(opt, warmup_steps, start_factor=1/3, end_factor=1.0) (also
  as LinearLR(opt, start_factor, end_factor, total_iters)): base * (start
  + (end - start) * min(epoch, warmup_steps) / warmup_steps).
SequentialLR(opt, schedulers, milestones): schedulers[i] from milestone
  i-1 on, counting from 0 there (PyTorch's SequentialLR).
"""
import bisect
import math

import weakref

import numpy as np

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "LinearWarmup", "LinearLR",
           "SequentialLR"]


# optimizer -> its groups' learning rates when the first scheduler met it
# (PyTorch's "initial_lr"; kept out of the optimizer, whose attributes are
# part of a jitted step's structure)
_INITIAL = weakref.WeakKeyDictionary()


class LRScheduler:
    """Base: `lr_at(base_lr, epoch)` per subclass; `step()`, `get_last_lr()`,
    `state_dict()` / `load_state_dict()`."""

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        groups = optimizer.param_groups
        init = _INITIAL.get(optimizer)
        if init is None or len(init) != len(groups):
            if last_epoch != -1:
                raise KeyError(f"{type(self).__name__}: last_epoch={last_epoch} needs the "
                               f"optimizer's initial lr (make the schedulers with "
                               f"last_epoch=-1 first, or load_state_dict)")
            init = _INITIAL[optimizer] = [float(np.asarray(g["lr"])) for g in groups]
        self.base_lrs = list(init)
        self.last_epoch = last_epoch
        self._last_lr = [float(g["lr"]) for g in groups]
        self._attached = True
        self.step()

    def lr_at(self, base_lr, epoch):
        raise NotImplementedError

    def get_lr(self):
        """The rates for the current count (closed form)."""
        return [self.lr_at(b, self.last_epoch) for b in self.base_lrs]

    def step(self):
        self.last_epoch += 1
        lrs = self.get_lr()
        if self._attached:
            for g, lr in zip(self.optimizer.param_groups, lrs):
                g["lr"] = lr
        self._last_lr = [float(v) for v in lrs]

    def get_last_lr(self):
        """The rates the last step() set (a list, one per group)."""
        return list(self._last_lr)

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if int(step_size) < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be > 0, got {T_max}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return self.eta_min + (base_lr - self.eta_min) * \
            (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearLR(LRScheduler):
    """PyTorch's LinearLR: the factor goes linearly from start_factor to
    end_factor over total_iters steps, then stays."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1 or total_iters < 1:
            raise ValueError(f"{type(self).__name__}: need 0 < start_factor <= 1, "
                             f"0 <= end_factor <= 1 and at least 1 step, got "
                             f"start_factor={start_factor}, end_factor={end_factor}, "
                             f"steps={total_iters}")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        frac = min(epoch, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class LinearWarmup(LinearLR):
    """Linear warm-up over `warmup_steps` steps from start_factor * lr to lr."""

    def __init__(self, optimizer, warmup_steps, start_factor=1.0 / 3, end_factor=1.0,
                 last_epoch=-1):
        super().__init__(optimizer, start_factor, end_factor, warmup_steps, last_epoch)


class SequentialLR(LRScheduler):
    """schedulers[0] until milestones[0], then schedulers[1] counting from 0,
    ... (PyTorch's SequentialLR). The schedulers must share the optimizer;
    only this one writes the lr after construction."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        schedulers, milestones = list(schedulers), [int(m) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need "
                             f"{len(schedulers) - 1} milestones, got {len(milestones)}")
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must increase, got {milestones}")
        for i, s in enumerate(schedulers):
            if s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: schedulers[{i}] belongs to another optimizer")
            s._attached = False
        self.schedulers, self.milestones = schedulers, milestones
        super().__init__(optimizer, last_epoch)

    def _pick(self, epoch):
        i = bisect.bisect_right(self.milestones, epoch)
        return self.schedulers[i], epoch - (self.milestones[i - 1] if i else 0)

    def lr_at(self, base_lr, epoch):
        s, e = self._pick(epoch)
        return s.lr_at(base_lr, e)

    def state_dict(self):
        d = super().state_dict()
        d["schedulers"] = [s.state_dict() for s in self.schedulers]
        return d

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        for s, sd in zip(self.schedulers, state_dict.pop("schedulers")):
            s.load_state_dict(sd)
        super().load_state_dict(state_dict)
