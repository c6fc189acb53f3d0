"""Test helper for tests/distributed/*.py (run under mpiexec by
tests/test_distributed.py): a small course-style MLP Module, its loss, and
deterministic data. Input: sizes and seeds. Output: the Module, the loss,
float32 features and int32 labels."""
import numpy as np

import needle.nn as nn


class MLP(nn.Module):
    def __init__(self, n_in=6, hidden=8, n_out=3):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(nn.relu(self.fc1(x)))


def loss(model, x, y):
    """Mean softmax cross-entropy of the batch."""
    return nn.SoftmaxLoss()(model(x), y)


def data(n=16, n_in=6, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in)).astype(np.float32),
            rng.integers(0, n_out, n).astype(np.int32))


def params_of(model):
    """{name: numpy array} of the model's parameters."""
    return {n: np.array(p.numpy(), copy=True) for n, p in model.named_parameters()}
