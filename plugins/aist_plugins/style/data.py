"""Images of a views dataset as generator inputs: uint8 RGBA <-> float tensors in [-1, 1].

Mode "black" (seed report 4.1.1): colour-correct (object pixels that are pure black become
(1, 1, 1)), then set the background to pure black, so "black" means "background" and
Alpha(x) = any RGB channel > -1 recovers the mask. Mode "alpha": the true alpha is a 4th channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aist_core.dataset import DatasetError, ViewsDataset, read_image
from aist_core.imaging import color_correct, composite_black

from ..training import unreadable

MODES = ("black", "alpha")


def to_network_input(rgba: np.ndarray, mode: str) -> np.ndarray:
    """(..., H, W, 4) uint8 RGBA -> (..., H, W, C) uint8 as the networks see it (C = 3 or 4)."""
    if mode == "alpha":
        return np.asarray(rgba, dtype=np.uint8)
    flat = rgba.reshape(-1, *rgba.shape[-3:])
    out = np.stack([composite_black(color_correct(image)) for image in flat])
    return out.reshape(*rgba.shape[:-1], 3)


def to_tensor(images: np.ndarray, size: int | None, device: str) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, size, size) float in [-1, 1], resized if needed."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
    return resize(x, size)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of (B, C, H, W) to (size, size)."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8, rounding to nearest."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def preprocess(rgba: np.ndarray, mode: str, size: int) -> torch.Tensor:
    """(H, W, 4) uint8 RGBA -> (C, size, size) uint8 as the translator trains on it: converted
    for `mode`, resized (bilinear, antialiased), rounded back to uint8 (kept compact)."""
    x = to_tensor(to_network_input(rgba[None], mode), size, "cpu")
    return ((x + 1) * 127.5).round().to(torch.uint8)[0]


class DomainImages(torch.utils.data.Dataset):
    """The readable train images of one views dataset, read from disk one per index.

    Item i: the i-th readable train image as (C, size, size) uint8 (`preprocess`). Nothing but
    the image paths stays in memory, so memory does not grow with the dataset (the old
    `load_domain` held every image: ~10 GB at paper scale).

    root: a views dataset; mode: "black" or "alpha" (see the module docstring); size: side in px.
    ctx: the stage context; unreadable images go to `ctx.skipped` and are left out, found by
        one pass at construction that decodes every image and keeps none (`num_workers`
        processes), so the indices, and with them the seeded batches, are those of the images
        that can be read, as when everything was loaded.

    Raises DatasetError "<root>: no readable train images (of N train records)" when none can
    be read, and "<path>: unreadable image (...)" from `__getitem__` for an image that became
    unreadable after the scan.
    """

    def __init__(self, root: str | Path, mode: str, size: int, ctx, num_workers: int = 0):
        data = ViewsDataset(root)
        records = data.records("train")
        self.root, self.mode, self.size = Path(root), mode, int(size)
        paths = [str(data.path(r["image"])) for r in records]
        problems = unreadable(paths, num_workers)
        for path, problem in zip(paths, problems):
            if problem:
                ctx.skipped.record(Path(path), f"unreadable: {problem}")
        self.paths = [path for path, problem in zip(paths, problems) if not problem]
        if not self.paths:
            raise DatasetError(f"{root}: no readable train images (of {len(records)} train records)")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return preprocess(read_image(self.paths[index], "RGBA"), self.mode, self.size)


class PairedDomains(torch.utils.data.Dataset):
    """Keys (index into A, index into B, flip A, flip B) -> (A image, B image, flip A, flip B),
    images (C, S, S) uint8; a DataLoader collates a list of keys into (B, C, S, S) uint8
    batches and (B,) bool flips."""

    def __init__(self, domain_a: DomainImages, domain_b: DomainImages):
        self.a, self.b = domain_a, domain_b

    def __getitem__(self, key: tuple[int, int, bool, bool]) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
        index_a, index_b, flip_a, flip_b = key
        return self.a[index_a], self.b[index_b], flip_a, flip_b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))


def epoch_order(seed: int, epoch: int, length: int, n_a: int, n_b: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffled A indices (stock: index % len(A)), random B indices and flips for one epoch:
    (length,) int64, (length,) int64, (2, length) bool.

    Drawn from a generator seeded by (seed, epoch), so a resumed epoch sees the same batches.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order_a = torch.randperm(length, generator=generator) % n_a
    order_b = torch.randint(0, n_b, (length,), generator=generator)
    flips = torch.rand(2, length, generator=generator) < 0.5
    return order_a, order_b, flips


class CycleBatchSampler(torch.utils.data.Sampler):
    """The translator's seeded batches, as `PairedDomains` keys, for steps [start, stop).

    Step k is batch k % steps_per_epoch of epoch k // steps_per_epoch (`epoch_order`), so a run
    resumed at any step sees the batches an uninterrupted run would (mid-epoch too), whatever
    the number of DataLoader workers. Under several processes (`dist`, a
    `training.Distributed`) each rank gets its contiguous part of every global batch
    (`Distributed.shard`): the global batch stays `batch_size`.
    """

    def __init__(self, seed: int, n_a: int, n_b: int, batch_size: int, start: int, stop: int, dist=None):
        self.seed, self.n_a, self.n_b, self.batch_size = int(seed), int(n_a), int(n_b), int(batch_size)
        self.length = max(self.n_a, self.n_b)  # stock: an epoch covers the larger domain
        self.steps_per_epoch = -(-self.length // self.batch_size)
        self.start, self.stop, self.dist = int(start), int(stop), dist

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        cached = None
        for step in range(self.start, self.stop):
            epoch, index = divmod(step, self.steps_per_epoch)
            if cached is None or cached[0] != epoch:
                cached = (epoch, *epoch_order(self.seed, epoch, self.length, self.n_a, self.n_b))
            _epoch, order_a, order_b, flips = cached
            chunk = slice(index * self.batch_size, (index + 1) * self.batch_size)
            keys = list(zip(order_a[chunk].tolist(), order_b[chunk].tolist(),
                            flips[0][chunk].tolist(), flips[1][chunk].tolist()))
            yield keys if self.dist is None else self.dist.shard(keys)


def batch_from_uint8(images: torch.Tensor, device: str) -> torch.Tensor:
    """(B, C, H, W) uint8 -> float32 in [-1, 1] on `device` (copied non-blocking: from pinned
    memory the copy overlaps other work)."""
    return images.to(device, non_blocking=True).float() / 127.5 - 1
