"""torchvision Mask R-CNN (ResNet-50 FPN, v1 and v2) as a Segmenter.

COCO weights come from torchvision's cache (torch.hub.get_dir()/checkpoints/<file>) or an
explicit `weights` path; nothing is ever downloaded. `pretrained=False` builds random weights
(seeded), which is what the tests and benchmarks use on machines without the file.
Seed report settings (appendix C): confidence 0.7, NMS 0.3, images resized to 800-1024.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch

from aist_core.constraints import Device, Fraction, PositiveInt, Seed
from aist_core.interfaces import Instance, Segmenter


class WeightsMissing(FileNotFoundError):
    """COCO weights are not where they were looked for; the message says where to place them."""


def checkpoint_dir() -> Path:
    """Where torchvision looks for downloaded weights: <torch hub dir>/checkpoints (never downloaded by AIST)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


class MaskRCNNSegmenter(Segmenter):
    """torchvision `maskrcnn_resnet50_fpn` (COCO box/mask AP 37.9/34.6)."""

    builder: ClassVar[str] = "maskrcnn_resnet50_fpn"
    weights_enum: ClassVar[str] = "MaskRCNN_ResNet50_FPN_Weights"

    def __init__(
        self,
        pretrained: bool = True,
        weights: str | None = None,
        device: Device = "cpu",
        score_threshold: Fraction = 0.7,
        nms_threshold: Fraction = 0.3,
        min_size: PositiveInt = 800,
        max_size: PositiveInt = 1024,
        mask_threshold: Fraction = 0.5,
        detections_per_image: PositiveInt = 100,
        batch_size: PositiveInt = 2,
        seed: Seed = 0,
    ):
        """pretrained: load COCO weights (from `weights` or torchvision's cache); False = random.
        weights: explicit path to a torchvision Mask R-CNN state dict (.pth); None = the cache.
        device: "cpu", "cuda", "cuda:1".
        score_threshold: detections below it are dropped (seed: DETECTION_MIN_CONFIDENCE 0.7).
        nms_threshold: per-class box NMS IoU (seed: DETECTION_NMS_THRESHOLD 0.3).
        min_size / max_size: the model resizes the short side to min_size, long side at most
            max_size (seed: IMAGE_MIN_DIM 800, IMAGE_MAX_DIM 1024).
        mask_threshold: mask probability that counts as object (torchvision's convention, 0.5).
        detections_per_image: cap per image (seed: DETECTION_MAX_INSTANCES 100).
        batch_size: images per forward pass; the caller's batch is split into these.
        seed: seeds the random weights when pretrained is False, so runs are reproducible."""
        import torchvision.models.detection as det

        self.device = device
        self.mask_threshold = float(mask_threshold)
        self.batch_size = max(1, int(batch_size))
        weights_enum = getattr(det, self.weights_enum).COCO_V1
        self.categories: list[str] = list(weights_enum.meta["categories"])  # 91 names, 0 = background
        kwargs = dict(
            min_size=int(min_size),
            max_size=int(max_size),
            box_score_thresh=float(score_threshold),
            box_nms_thresh=float(nms_threshold),
            box_detections_per_img=int(detections_per_image),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = getattr(det, self.builder)(weights=None, weights_backbone=None, num_classes=91, **kwargs)
        if pretrained:
            model.load_state_dict(self._load_state(weights, weights_enum.url.rsplit("/", 1)[-1]))
        self.model = model.eval().to(device)

    @classmethod
    def example(cls) -> "MaskRCNNSegmenter":
        return cls(pretrained=False, min_size=64, max_size=96, score_threshold=0.0, detections_per_image=5)

    def _load_state(self, weights: str | None, file_name: str) -> dict:
        path = Path(weights) if weights else checkpoint_dir() / file_name
        if not path.is_file():
            where = f"{path}" if weights else f"{file_name} into {checkpoint_dir()}"
            raise WeightsMissing(
                f"{self.builder}: COCO weights not found at {path}; place {where} "
                f"(or set weights = \"/path/to/{file_name}\", or pretrained = false for random weights)"
            )
        from aist_plugins.training import read_weights

        return read_weights(path)  # a truncated, foreign or pickle-carrying file: WeightsError naming it

    def label_name(self, label: int) -> str:
        """The COCO category name of a torchvision label id ("class_<id>" when out of range)."""
        return self.categories[label] if 0 <= label < len(self.categories) else f"class_{label}"

    @torch.inference_mode()
    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Instance]]:
        results: list[list[Instance]] = []
        for start in range(0, len(images), self.batch_size):
            batch = [self._to_tensor(im) for im in images[start : start + self.batch_size]]
            for output in self.model(batch):
                results.append(self._instances(output))
        return results

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        rgb = np.ascontiguousarray(np.asarray(image)[..., :3])  # (H, W, 3) uint8
        return torch.from_numpy(rgb).permute(2, 0, 1).to(self.device, torch.float32) / 255.0  # (3, H, W)

    def _instances(self, output: dict[str, torch.Tensor]) -> list[Instance]:
        masks = (output["masks"][:, 0] >= self.mask_threshold).cpu().numpy()  # (N, H, W) bool
        boxes = output["boxes"].cpu().numpy()  # (N, 4) x0, y0, x1, y1
        scores = output["scores"].cpu().numpy()
        labels = output["labels"].cpu().numpy()
        return [
            Instance(mask=m, box=tuple(float(v) for v in b), label=self.label_name(int(c)), score=float(s))
            for m, b, s, c in zip(masks, boxes, scores, labels)
        ]


class MaskRCNNv2Segmenter(MaskRCNNSegmenter):
    """torchvision `maskrcnn_resnet50_fpn_v2` (COCO box/mask AP 47.4/41.8; ~1.5x slower)."""

    builder = "maskrcnn_resnet50_fpn_v2"
    weights_enum = "MaskRCNN_ResNet50_FPN_V2_Weights"
