"""DPC's network (Insafutdinov & Dosovitskiy, NeurIPS 2018, arXiv:1810.09381; github.com/eldar/differentiable-point-clouds): encoder, shared FC layers, shape and pose branches."""

from __future__ import annotations

import torch
from torch import nn

from aist_plugins.shape_pose.quaternions import quat_normalize

LEAK = 0.2


def _conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2), nn.LeakyReLU(LEAK))


class Encoder(nn.Module):
    """conv5x5 s2 16ch, then pairs [conv3x3 s2, conv3x3 s1] with 32/64/128/256 channels.

    Five stride-2 layers: 128 px -> 4x4x256 features, 64 px -> 2x2x256.
    """

    def __init__(self, image_size: int = 128, channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        if image_size % 32:
            raise ValueError(f"image_size {image_size}: must be a multiple of 32 (five stride-2 layers)")
        layers = [_conv(3, 16, 5, 2)]
        cin = 16
        for cout in channels:
            layers += [_conv(cin, cout, 3, 2), _conv(cout, cout, 3, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_features = cin * (image_size // 32) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, F)
        return self.layers(x).flatten(1)


def _mlp(sizes: list[int], final_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if final_act or i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(LEAK))
    return nn.Sequential(*layers)


class DPCNet(nn.Module):
    """Images in [0, 1] -> point clouds, occupancy scales, candidate poses and student pose."""

    def __init__(
        self,
        image_size: int = 128,
        num_points: int = 8000,
        hidden: int = 1024,
        n_candidates: int = 4,
        pose_hidden: int = 32,
    ):
        super().__init__()
        self.num_points = num_points
        self.encoder = Encoder(image_size)
        self.shared = _mlp([self.encoder.out_features, hidden, hidden, hidden], final_act=True)  # three FC 1024
        self.shape_head = nn.Linear(hidden, num_points * 3)
        self.scale_head = nn.Linear(hidden, 1)
        self.pose_trunk = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.pose_heads = nn.ModuleList(
            _mlp([hidden, pose_hidden, pose_hidden, 4], final_act=False) for _ in range(n_candidates)
        )
        self.student_head = _mlp([hidden, pose_hidden, pose_hidden, 4], final_act=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, hidden); the reference feeds x * 2 - 1."""
        return self.shared(self.encoder(images * 2.0 - 1.0))

    def shape(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> points (B, N, 3) in [-0.5, 0.5]^3 and occupancy scale (B,) in (0, 1)."""
        points = torch.tanh(self.shape_head(feats)).view(-1, self.num_points, 3) / 2.0
        scale = torch.sigmoid(self.scale_head(feats)).squeeze(-1)
        return points, scale

    def poses(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> candidates (B, C, 4) and student (B, 4), unit quaternions."""
        trunk = self.pose_trunk(feats)
        candidates = torch.stack([head(trunk) for head in self.pose_heads], dim=1)
        return quat_normalize(candidates), quat_normalize(self.student_head(trunk))
