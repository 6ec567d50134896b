"""A small U-Net (Ronneberger et al., MICCAI 2015) for one-class masks in a box window.

Four levels of two 3x3 conv + batch norm + ReLU, max-pool down, bilinear up with skip
connections, a 1x1 conv to one logit per pixel. Width 16 at the top level gives 488,001
parameters: enough for a car silhouette at 96 px, small enough to train on 2 CPU cores in
minutes. The input side must be divisible by 8.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _double_conv(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> (B, 1, S, S) mask logits."""

    def __init__(self, width: int = 16):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.down = nn.ModuleList(
            [_double_conv(3, widths[0])] + [_double_conv(a, b) for a, b in zip(widths, widths[1:])]
        )
        # each up block sees the upsampled deeper features concatenated with the skip
        self.up = nn.ModuleList([_double_conv(widths[i + 1] + widths[i], widths[i]) for i in (2, 1, 0)])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)
