"""CycleGAN networks exactly as the stock implementation (Zhu et al., ICCV 2017, arXiv:1703.10593; github.com/junyanz/pytorch-CycleGAN-and-pix2pix: models/networks.py).

ResNet generator: c7s1-ngf, d2*ngf, d4*ngf, n_blocks x R4*ngf, u2*ngf, u*ngf, c7s1-3, tanh.
70x70 PatchGAN: C64 (no norm) - C128 - C256 - C512 (stride 1) - 1 channel, LeakyReLU 0.2.
InstanceNorm is non-affine without running statistics and every convolution keeps its bias,
as in the stock code (`use_bias = norm_layer == nn.InstanceNorm2d`), so the parameter counts
match: 11,378,179 (9 blocks, ngf 64) and 2,764,737 (ndf 64, 3 layers).
"""

from __future__ import annotations

import torch
from torch import nn


def make_activation(name: str) -> nn.Module:
    """"relu" as the stock code, "leaky_relu" (slope 0.01) as the seed report (4.1)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {name!r}")


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """[pad, conv3x3, IN, act, pad, conv3x3, IN] + skip (no dropout: stock `--no_dropout`)."""

    def __init__(self, dim: int, activation: str):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), make_activation(activation),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """(B, C, H, W) in [-1, 1] -> (B, C, H, W) in [-1, 1]; H and W multiples of 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 activation: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=True), _norm(ngf), make_activation(activation),
        ]
        for mult in (1, 2):  # two stride-2 downsamplings: ngf -> 2 ngf -> 4 ngf
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                       _norm(ngf * mult * 2), make_activation(activation)]
        layers += [ResnetBlock(ngf * 4, activation) for _ in range(n_blocks)]
        for mult in (4, 2):  # two stride-2 upsamplings back to ngf
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=True),
                       _norm(ngf * mult // 2), make_activation(activation)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: (B, C, H, W) -> (B, 1, h, w) raw scores (no sigmoid: LSGAN)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=True),
                       _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_normal(net: nn.Module, generator: torch.Generator, gain: float = 0.02) -> None:
    """Stock `init_weights(..., 'normal')`: conv weights N(0, gain), biases 0 (seeded)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * gain)
                if module.bias is not None:
                    module.bias.zero_()


def count_parameters(net: nn.Module) -> int:
    """Number of scalar parameters of `net` (trainable or not)."""
    return sum(p.numel() for p in net.parameters())
