"""needle.models.resnet9: the course's hw4 ResNet9 for 32x32 RGB images.

Stage: the public package (needle/). Input: (B, 3, 32, 32) NCHW images (an
array or a Tensor). Output: (B, 10) logits, the kind given.

ConvBN = Conv -> BatchNorm2d -> ReLU. The course's exact architecture:
ConvBN 3-16 k7 s4, ConvBN 16-32 k3 s2, Residual(ConvBN 32-32, ConvBN 32-32),
ConvBN 32-64 k3 s2, ConvBN 64-128 k3 s2, Residual(ConvBN 128-128, ConvBN
128-128), Flatten, Linear 128-128, ReLU, Linear 128-10: 431,946 parameters.
A 32x32 image shrinks to 8, 4, 2 and 1 pixels, so Flatten gives 128 features.
"""
from .. import nn

__all__ = ["ConvBN", "ResNet9"]


class ConvBN(nn.Module):
    """Conv(a, b, k, stride=s) -> BatchNorm2d(b) -> ReLU (the course's)."""

    def __init__(self, a, b, k, s, device=None, dtype="float32"):
        super().__init__()
        self.conv = nn.Conv(a, b, k, stride=s, device=device, dtype=dtype)
        self.bn = nn.BatchNorm2d(b, device=device, dtype=dtype)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class ResNet9(nn.Module):
    def __init__(self, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.model = nn.Sequential(
            ConvBN(3, 16, 7, 4, **kw),
            ConvBN(16, 32, 3, 2, **kw),
            nn.Residual(nn.Sequential(ConvBN(32, 32, 3, 1, **kw), ConvBN(32, 32, 3, 1, **kw))),
            ConvBN(32, 64, 3, 2, **kw),
            ConvBN(64, 128, 3, 2, **kw),
            nn.Residual(nn.Sequential(ConvBN(128, 128, 3, 1, **kw),
                                      ConvBN(128, 128, 3, 1, **kw))),
            nn.Flatten(),
            nn.Linear(128, 128, **kw),
            nn.ReLU(),
            nn.Linear(128, 10, **kw),
        )

    def forward(self, x):
        return self.model(x)
