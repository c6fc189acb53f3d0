"""needle.models.mlp_resnet: the course's hw2 MLPResNet and its ResidualBlock.

Stage: the public package (needle/). Input: the course's constructor
arguments (dim, hidden_dim, num_blocks, num_classes, norm, drop_prob). Output:
nn.Sequential Modules built exactly as the course builds them (same layers,
same order, so same parameter order and state_dict names); called on (B, dim)
features they return (B, num_classes) logits.
"""
from .. import nn

__all__ = ["ResidualBlock", "MLPResNet"]


class ResidualBlock(nn.Sequential):
    """Residual(Linear(dim, hidden_dim) -> norm(hidden_dim) -> ReLU ->
    Dropout(drop_prob) -> Linear(hidden_dim, dim) -> norm(dim)) -> ReLU."""

    def __init__(self, dim, hidden_dim, norm=nn.BatchNorm1d, drop_prob=0.1, device=None,
                 dtype="float32"):
        kw = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Residual(nn.Sequential(
                nn.Linear(dim, hidden_dim, **kw),
                norm(hidden_dim, **kw),
                nn.ReLU(),
                nn.Dropout(drop_prob),
                nn.Linear(hidden_dim, dim, **kw),
                norm(dim, **kw),
            )),
            nn.ReLU(),
        )


class MLPResNet(nn.Sequential):
    """Linear(dim, hidden_dim) -> ReLU -> num_blocks x ResidualBlock(hidden_dim,
    hidden_dim // 2, norm, drop_prob) -> Linear(hidden_dim, num_classes)."""

    def __init__(self, dim, hidden_dim=100, num_blocks=3, num_classes=10, norm=nn.BatchNorm1d,
                 drop_prob=0.1, device=None, dtype="float32"):
        kw = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Linear(dim, hidden_dim, **kw),
            nn.ReLU(),
            *[ResidualBlock(hidden_dim, hidden_dim // 2, norm, drop_prob, **kw)
              for _ in range(num_blocks)],
            nn.Linear(hidden_dim, num_classes, **kw),
        )
