"""needle.optim.lr_scheduler (issue 14): StepLR, CosineAnnealingLR,
LinearWarmup and SequentialLR against their formulas written out in numpy
(float64, PyTorch's semantics: the constructor sets epoch 0, each step()
the next), per parameter group; and a schedule changing the lr of a jitted
step every step for 1000 steps compiles once, with the parameters equal
to the numpy recurrence under that schedule."""
import math

import numpy as np
import pytest

import needle
import needle.nn as nn
from needle import optim
from needle.optim import lr_scheduler as sched


class _Quadratic(nn.Module):
    """loss = sum(w^2) / 2, so the gradient is w and SGD gives w *= (1 - lr)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(needle.Tensor(w))

    def forward(self):
        return (self.w.value * self.w.value).sum() / 2


def _opt(lrs=(0.1, 0.3)):
    a, b = nn.Parameter(needle.Tensor(np.ones(2))), nn.Parameter(needle.Tensor(np.ones(3)))
    return optim.SGD([{"params": [a], "lr": lrs[0]}, {"params": [b], "lr": lrs[1]}])


def _expected(formula, bases, n):
    return [[formula(float(np.float32(b)), e) for b in bases] for e in range(n)]


CASES = {
    "step": (lambda o: sched.StepLR(o, step_size=3, gamma=0.5),
             lambda b, e: b * 0.5 ** (e // 3)),
    "cosine": (lambda o: sched.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
               lambda b, e: 0.01 + (b - 0.01) * (1 + np.cos(np.pi * e / 7)) / 2),
    "warmup": (lambda o: sched.LinearWarmup(o, warmup_steps=4, start_factor=0.25),
               lambda b, e: b * (0.25 + 0.75 * min(e, 4) / 4)),
    "warmup_then_cosine": (
        lambda o: sched.SequentialLR(o, [sched.LinearWarmup(o, 3, start_factor=0.1),
                                         sched.CosineAnnealingLR(o, T_max=5)], milestones=[3]),
        lambda b, e: b * (0.1 + 0.9 * e / 3) if e < 3 else
        b * (1 + np.cos(np.pi * (e - 3) / 5)) / 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_matches_its_formula_per_group(name):
    make, formula = CASES[name]
    opt = _opt()
    s = make(opt)
    want = _expected(formula, (0.1, 0.3), 12)
    for e in range(12):
        if e:
            s.step()
        np.testing.assert_allclose(s.get_last_lr(), want[e], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose([float(g["lr"]) for g in opt.param_groups], want[e],
                                   rtol=1e-6, atol=1e-8)        # the float32 lr cells
    assert s.last_epoch == 11


def test_scheduler_state_dict_resumes_the_schedule():
    make, formula = CASES["warmup_then_cosine"]
    a = _opt()
    sa = make(a)
    for _ in range(4):
        sa.step()
    b = _opt()
    sb = make(b)
    sb.load_state_dict(sa.state_dict())
    sa.step()
    sb.step()
    assert sa.get_last_lr() == sb.get_last_lr()
    np.testing.assert_allclose(sb.get_last_lr(), _expected(formula, (0.1, 0.3), 6)[5],
                               rtol=1e-6)


def test_schedule_errors_name_the_argument():
    with pytest.raises(ValueError, match="StepLR: step_size must be >= 1, got 0"):
        sched.StepLR(_opt(), 0)
    o = _opt()
    with pytest.raises(ValueError, match="SequentialLR: 2 schedulers need 1 milestones, got 0"):
        sched.SequentialLR(o, [sched.StepLR(o, 2), sched.StepLR(o, 3)], milestones=[])


def test_a_schedule_never_recompiles_a_jitted_step():
    """1000 jitted steps, the lr changed by the schedule every step: one
    trace; w_final = w0 * prod(1 - lr_t) in float64."""
    w0 = np.array([1.0, -2.0, 0.5])
    model = _Quadratic(w0)
    opt = optim.SGD(model.parameters(), lr=0.01)
    s = sched.SequentialLR(opt, [sched.LinearWarmup(opt, 100, start_factor=0.1),
                                 sched.CosineAnnealingLR(opt, T_max=900)], milestones=[100])

    @needle.jit
    def step(model, opt):
        loss, g = needle.value_and_grad(lambda m: m())(model)
        opt.step(g)
        return loss

    traces = needle.cache_info().traces
    factor = 1.0
    for _ in range(1000):
        factor *= 1.0 - float(np.float32(s.get_last_lr()[0]))
        step(model, opt)
        s.step()
    assert needle.cache_info().traces - traces == 1
    assert int(opt.t.numpy()) == 1000
    np.testing.assert_allclose(model.w.numpy(), w0 * factor, rtol=1e-4)
    assert math.isclose(float(opt.lr), 0.01 * (1 + math.cos(math.pi * 900 / 900)) / 2,
                        abs_tol=1e-9)
