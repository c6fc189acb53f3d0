"""needle.models: the course's models (MLPResNet, ResNet9, LanguageModel,
Seq2Seq) written with the module library (needle.nn).

Stage: the public package (above every compiler stage). Input: the course's
constructor arguments. Output: nn.Module instances, trained through
needle.jit / needle.grad like any other Module.
"""
from .mlp_resnet import MLPResNet, ResidualBlock  # noqa: F401
from .resnet9 import ConvBN, ResNet9  # noqa: F401
from .language import LanguageModel  # noqa: F401
from .seq2seq import Seq2Seq  # noqa: F401
