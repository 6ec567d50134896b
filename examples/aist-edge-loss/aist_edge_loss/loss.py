"""Edge-preservation loss: keep the translated image's edges where the source's edges are.

The alpha loss keeps the outline; the ResNet feature loss keeps coarse content. Neither stops a
generator from moving interior structure (a wheel arch, a window line). Comparing Sobel edge
magnitudes of the luminance penalises exactly that, at a cost of two 3x3 convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aist_core.constraints import NonNegativeFloat
from aist_core.interfaces import AnnotationLoss

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def edge_magnitude(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, 1, H, W) Sobel magnitude of the luminance."""
    luminance = images[:, :3].mean(dim=1, keepdim=True)
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.T]).unsqueeze(1).to(images)  # (2, 1, 3, 3)
    grad = F.conv2d(F.pad(luminance, (1, 1, 1, 1), mode="replicate"), kernels)
    return torch.sqrt(grad.pow(2).sum(dim=1, keepdim=True) + 1e-8)


class EdgeLoss(AnnotationLoss):
    """Mean absolute difference of Sobel edge magnitudes between source and translation.

    The source's edges are computed once per batch and shared through the loss cache.
    """

    def __init__(self, weight_a2b: NonNegativeFloat = 1.0, weight_b2a: NonNegativeFloat = 1.0):
        """weight_a2b: weight of this loss for G (synthetic -> real).
        weight_b2a: weight for F (real -> synthetic)."""
        super().__init__(weight_a2b, weight_b2a)

    @classmethod
    def example(cls) -> "EdgeLoss":
        return cls()

    def forward(self, source: torch.Tensor, translated: torch.Tensor, cache: dict) -> torch.Tensor:
        if "edge:source" not in cache:
            cache["edge:source"] = edge_magnitude(source).detach()
        return (cache["edge:source"] - edge_magnitude(translated)).abs().mean()
