"""The stock CycleGAN image pool (Shrivastava et al.), with its state saveable for exact resume."""

from __future__ import annotations

import torch


class ImagePool:
    """History of generated images the discriminator also sees.

    Until `size` images are stored, each new image is stored and returned. Then, per image, with
    probability 0.5 a random stored image is returned and replaced by the new one, otherwise the
    new one is returned. size 0 disables the pool. Randomness comes from a private generator.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) detached fakes -> (B, C, H, W) mix of new and historical fakes."""
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self.rng).item() > 0.5:
                index = int(torch.randint(0, self.size, (1,), generator=self.rng).item())
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        """The stored images (K, C, H, W) on the CPU and the pool's RNG state, for an exact resume."""
        stored = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stored, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict, device: str) -> None:
        """Restore what `state_dict` returned, images moved to `device`."""
        stored = state["images"]
        self.images = [image.to(device) for image in stored] if stored.numel() else []
        self.rng.set_state(state["rng"])
