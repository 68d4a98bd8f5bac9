"""VGG-16 as used for the mirror-descent vision experiments (MATH.md §5).

Thirteen 3×3 convolutions with ReLU and five 2×2 max-pools, no batch norm, a
bias only in the first convolution, He initialisation and the standard
parameterisation (no width-dependent multipliers). With the first bias at zero
the network is positively homogeneous of degree ``depth`` = 13 + the number of
linear layers in the head: scaling every weight by c > 0 scales the logits by
c^depth (ReLU and max-pool commute with positive scaling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["VGG16", "VGG16_CHANNELS"]

#: Output channels of the 13 convolutions; "M" is a 2×2 max-pool.
VGG16_CHANNELS: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                         512, 512, 512, "M", 512, 512, 512, "M")


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class VGG16(nn.Module):
    """VGG-16 for 32×32 inputs.

    Args:
        in_channels: 3 for CIFAR-10, 1 for Fashion-MNIST.
        num_classes: number of logits.
        width: multiplier of every layer's width (e.g. 1/8 for CPU-sized runs);
            each layer keeps at least one channel.
        head: widths of the hidden linear layers of the classifier, each followed
            by ReLU; ``()`` (the default) is one linear layer from the 512·width
            features to the logits, ``(512, 512)`` the classic three-layer head
            (hidden widths are scaled by ``width`` too).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        head: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"VGG16: in_channels must be a positive integer, got {in_channels!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"VGG16: num_classes must be an integer >= 2, got {num_classes!r}")
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"VGG16: width must be > 0, got {width!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in head):
            raise ValueError(f"VGG16: head must list positive integer widths, got {tuple(head)!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for entry in VGG16_CHANNELS:
            if entry == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = _scaled(entry, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=not layers), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        classifier: list[nn.Module] = []
        for hidden in head:
            out = _scaled(hidden, width)
            classifier += [nn.Linear(channels, out, bias=False), nn.ReLU()]
            channels = out
        classifier.append(nn.Linear(channels, num_classes, bias=False))
        self.classifier = nn.Sequential(*classifier)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation (normal, fan-in, gain √2) of every weight; the one
        bias starts at zero. Uses torch's global generator."""
        for layer in self.weight_layers():
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.first_layer().bias)

    def weight_layers(self) -> list[nn.Module]:
        """The convolutions and linear layers, input to output."""
        return [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def first_layer(self) -> nn.Conv2d:
        return self.features[0]

    def last_layer(self) -> nn.Linear:
        return self.classifier[-1]

    @property
    def depth(self) -> int:
        """The homogeneity degree: 13 convolutions + the linear layers."""
        return len(self.weight_layers())

    def layer_parameters(self) -> list[list[torch.Tensor]]:
        """The parameters of each layer (the first lists its weight and bias), as
        :func:`mirrorflow.diagnostics.layerwise_margin` takes them."""
        return [[p for p in layer.parameters()] for layer in self.weight_layers()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
