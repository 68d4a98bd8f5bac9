"""mirrorflow.models.VGG16: the architecture of MATH.md §5 (13 convolutions, one
bias, He initialisation) and positive homogeneity of degree depth."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mirrorflow.models import VGG16


@pytest.mark.parametrize("head", [(), (16,), (16, 8)], ids=["linear", "two_layer", "three_layer"])
def test_layers_and_exactly_one_bias(head):
    model = VGG16(3, 10, width=1 / 16, head=head)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 13 and len(linears) == len(head) + 1
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) for m in model.modules())
    biases = [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert biases == ["features.0.bias"]
    assert model.depth == 14 + len(head)
    layers = model.layer_parameters()
    assert len(layers) == model.depth and len(layers[0]) == 2 and all(len(l) == 1 for l in layers[1:])
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def _scale_weights(model: VGG16, c: float) -> None:
    with torch.no_grad():
        for layer in model.weight_layers():
            layer.weight.mul_(c)


@pytest.mark.parametrize("head", [(), (256,)], ids=["linear", "two_layer"])
def test_logits_scale_by_c_to_the_depth_with_the_bias_at_zero(head):
    """With the first-layer bias set to 0, multiplying every weight tensor by
    c > 0 multiplies the logits by c^depth (depth = 13 + linear layers)."""
    torch.manual_seed(0)
    model = VGG16(1, 7, width=1 / 16, head=head).double()
    x = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    before = model(x)
    c = 1.3
    _scale_weights(model, c)
    after = model(x)
    assert before.abs().max() > 0
    torch.testing.assert_close(after, before * c ** model.depth, rtol=1e-10, atol=0)


def test_the_first_bias_breaks_homogeneity():
    torch.manual_seed(1)
    model = VGG16(3, 10, width=1 / 16).double()
    with torch.no_grad():
        model.first_layer().bias.fill_(0.5)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    before = model(x)
    _scale_weights(model, 2.0)
    assert not torch.allclose(model(x), before * 2.0 ** model.depth, rtol=1e-3)


def test_he_initialisation():
    torch.manual_seed(2)
    model = VGG16(3, 10, width=0.5)
    for layer in model.weight_layers()[4:9]:  # 128-256 channels: ≥ 147k weights each
        w = layer.weight.detach().double()
        fan_in = w[0].numel()
        assert abs(float(w.std()) / math.sqrt(2.0 / fan_in) - 1) < 0.02
        assert abs(float(w.mean())) < 0.02 * math.sqrt(2.0 / fan_in)
    assert int(model.first_layer().bias.count_nonzero()) == 0


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="width must be > 0, got 0"):
        VGG16(width=0)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        VGG16(num_classes=1)
    with pytest.raises(ValueError, match=r"head must list positive integer widths, got \(0,\)"):
        VGG16(head=(0,))
    with pytest.raises(ValueError, match="in_channels must be a positive integer, got 0"):
        VGG16(in_channels=0)
