"""Annotation losses of seed report 4.1: keep the mask (alpha) and the content (ResNet features)
through translation. Both are the squared L1 norm of a difference, |a - b|_1^2.

Normalisation (`normalize`):
- "pixel" (default): per image, the L1 norm divided by the number of elements compared
  (H*W for the alpha map, C*h*w for features), i.e. the mean absolute difference, then squared,
  then averaged over the batch:  mean_b ( mean_i |a_bi - b_bi| )^2.
  Values lie in [0, 1] for alpha, about the size of the cycle loss's per-pixel L1 terms, so
  the seed report's weights (alpha 2, ResNet 1.75 against lambda_cycle 10) stay in a sensible
  range and do not depend on the image size.
- "image": the plain squared L1 norm of each image, mean over the batch:
  mean_b ( sum_i |a_bi - b_bi| )^2. At 256 px a 1% alpha error is already (655)^2 ~ 4e5, which
  would swamp every other term at the seed report's weights; kept for experiments only.
  Measured (benchmarks/results/style.md): at 64 px, weight 2, it holds the mask but stops the
  translation (the discriminators win, outputs stay grey).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from aist_core.constraints import Device, NonNegativeFloat, PositiveFloat, PositiveInt
from aist_core.interfaces import AnnotationLoss

NORMALIZATIONS = ("pixel", "image")
RESNET18_FILE = "resnet18-f37072fd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def squared_l1(a: torch.Tensor, b: torch.Tensor, normalize: str, weights: torch.Tensor | None = None
               ) -> torch.Tensor:
    """|a - b|_1^2 per image (B, ...) with the normalisation above; scalar.

    `weights` (shaped like a) scales each element's absolute difference before the norm.
    """
    difference = (a - b).abs()
    if weights is not None:
        difference = difference * weights
    per_image = difference.flatten(1)  # (B, N)
    norm = per_image.mean(1) if normalize == "pixel" else per_image.sum(1)
    return (norm**2).mean()


def _check_normalize(normalize: str) -> str:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    return normalize


def hard_alpha(images: torch.Tensor) -> torch.Tensor:
    """Seed report Alpha: 1 where any RGB channel > -1 (background is pure black), (B, H, W).

    In true-alpha mode (4 channels) the alpha channel itself, thresholded at -1.
    Used for the fixed source and for metrics; it has no gradient.
    """
    if images.shape[1] == 4:
        return (images[:, 3] > -1).to(images.dtype)
    return (images[:, :3].amax(1) > -1).to(images.dtype)


def soft_alpha(images: torch.Tensor, softness: float) -> torch.Tensor:
    """Differentiable Alpha: d / (d + softness), d = distance above black (max channel + 1).

    Exactly 0 on pure black and close to 1 once a pixel is clearly not black (0.83 at d = 0.1
    with softness 0.02). Unlike a steep sigmoid its gradient softness / (d + softness)^2 decays
    only polynomially, so a background pixel the generator painted bright still feels a pull
    back to black, and a foreground pixel painted black a push out of it.
    """
    level = images[:, 3] if images.shape[1] == 4 else images[:, :3].amax(1)
    distance = (level + 1).clamp_min(0)
    return distance / (distance + softness)


def halo_ring(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """Background pixels within `radius` px (chessboard distance) of the object; (B, H, W) 0/1."""
    grown = F.max_pool2d(alpha[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0]
    return grown - alpha


def edge_band(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within `radius` px (chessboard) of the outline, on either side; (B, H, W) 0/1."""
    return halo_ring(alpha, radius) + halo_ring(1 - alpha, radius)


class AlphaLoss(AnnotationLoss):
    """|Alpha(x) - Alpha(G(x))|_1^2 (seed report 4.1.1).

    Alpha(x) of the fixed source is the exact hard definition (it needs no gradient); Alpha of
    the translation is the soft indicator `soft_alpha`, because a hard threshold has zero
    gradient almost everywhere. Metrics use the hard definition on the uint8 output.
    """

    def __init__(self, weight_a2b: NonNegativeFloat = 2.0, weight_b2a: NonNegativeFloat = 2.0, normalize: Literal["pixel", "image"] = "pixel",
                 softness: PositiveFloat = 0.02, edge_weight: NonNegativeFloat = 0.0, edge_radius: PositiveInt = 2,
                 device: Device = "cpu"):
        """
        weight_a2b: weight of the A->B term; 2 is the seed report's constrained experiment 2.
        weight_b2a: weight of the B->A term; 2 as experiment 2.
        normalize: "pixel" or "image" (module docstring); "pixel" keeps the weights meaningful.
        softness: distance from black at which the soft alpha is 0.5; 0.02 (~2.5 grey levels)
            is steep enough to separate black from the darkest colour-corrected pixel.
        edge_weight: extra weight of the pixels along the silhouette's outline (within
            edge_radius px, on either side): each one's difference counts 1 + edge_weight
            times. 0 (default) is the seed report's loss. The option aims at the error that
            is left once the mask is roughly right: a one-pixel halo of painted background,
            which weighting the outer ring alone only moves inside (the rim turns black);
            measured in benchmarks/results/style.md.
        edge_radius: half-width of that band in pixels.
        device: unused (no tensors of its own); accepted so every torch component takes it.
        """
        super().__init__(weight_a2b, weight_b2a)
        self.normalize = _check_normalize(normalize)
        self.softness = float(softness)
        if edge_weight < 0 or edge_radius < 1:
            raise ValueError(f"edge_weight must be >= 0 and edge_radius >= 1, got {edge_weight}, {edge_radius}")
        self.edge_weight, self.edge_radius = float(edge_weight), int(edge_radius)
        self.device = device

    @classmethod
    def example(cls) -> "AlphaLoss":
        return cls()

    def forward(self, source, translated, cache):
        target = cache.get("alpha_source")
        if target is None:
            target = cache["alpha_source"] = hard_alpha(source.detach())  # (B, H, W)
        weights = 1 + self.edge_weight * edge_band(target, self.edge_radius) if self.edge_weight else None
        return squared_l1(target, soft_alpha(translated, self.softness), self.normalize, weights)


class ResNetFeatureLoss(AnnotationLoss):
    """|Phi(x) - Phi(G(x))|_1^2 with Phi = torchvision ResNet-18 without avgpool and fc.

    Inputs in [-1, 1] are mapped to [0, 1] and normalised with the ImageNet mean and std
    (Phi's training statistics); only the RGB channels are used. Phi is frozen and in eval mode
    (batch norm uses its running statistics). The features of the fixed source are computed once
    per batch and kept in the shared cache.
    """

    def __init__(self, weight_a2b: NonNegativeFloat = 1.75, weight_b2a: NonNegativeFloat = 1.75, normalize: Literal["pixel", "image"] = "pixel",
                 pretrained: bool = True, weights: str | None = None, device: Device = "cpu"):
        """
        weight_a2b: weight of the A->B term; 1.75 is the seed report's experiment 2.
        weight_b2a: weight of the B->A term; 1.75 as experiment 2.
        normalize: "pixel" or "image" (module docstring).
        pretrained: load ImageNet weights (the seed report's Phi); false runs with random ones.
        weights: explicit path to resnet18 weights; None looks in torchvision's cache.
        device: where Phi runs.
        """
        super().__init__(weight_a2b, weight_b2a)
        self.normalize = _check_normalize(normalize)
        self.pretrained = bool(pretrained)
        self.device = device
        self.calls = 0  # images batches passed through Phi (tests check the cache)
        self.phi = _build_phi(pretrained, weights).to(device)
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @classmethod
    def example(cls) -> "ResNetFeatureLoss":
        return cls(pretrained=False)

    def to(self, device: str) -> "ResNetFeatureLoss":
        self.device = device
        self.phi.to(device)
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 512, H/32, W/32)."""
        self.calls += 1
        rgb = (images[:, :3] + 1) / 2
        return self.phi((rgb - self._mean) / self._std)

    def forward(self, source, translated, cache):
        target = cache.get("resnet18_source")
        if target is None:
            with torch.no_grad():
                target = cache["resnet18_source"] = self.features(source)
        return squared_l1(target, self.features(translated), self.normalize)


def _build_phi(pretrained: bool, weights: str | None) -> torch.nn.Module:
    from torchvision.models import resnet18

    with torch.random.fork_rng(devices=[]):  # random weights deterministic, global RNG untouched
        torch.manual_seed(0)
        net = resnet18(weights=None)
    if pretrained:
        path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: ResNet-18 ImageNet weights missing; place {RESNET18_FILE} in "
                f"{path.parent} (or set weights = path, or pretrained = false)")
        from aist_plugins.training import read_weights  # names the file when it is not weights

        net.load_state_dict(read_weights(path))
    phi = torch.nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
    phi.eval()
    for p in phi.parameters():
        p.requires_grad_(False)
    return phi
