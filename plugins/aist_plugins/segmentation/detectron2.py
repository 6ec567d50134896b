"""detectron2 Mask R-CNN (R50-FPN-3x, COCO box/mask AP 41.0/37.2) as an optional Segmenter.

detectron2 has no wheel on the package index; users build it from its git source. It is
imported only when the segmenter is built, and the conversion from its outputs to Instances is
plain functions (`instances_from_detectron2`) that are tested without detectron2 installed.
detectron2 numbers COCO classes contiguously from 0 (car = 2, truck = 7).
"""

from __future__ import annotations

import sys

from typing import Any, Sequence

import numpy as np

from aist_core.constraints import Device, Fraction, PositiveInt
from aist_core.interfaces import Instance, Segmenter

INSTALL_HINT = (
    "detectron2 is not installed; build it from source: "
    "pip install 'git+https://github.com/facebookresearch/detectron2.git' (or use segmenter 'maskrcnn')"
)

# COCO's 80 classes in detectron2's contiguous order (ids 0..79).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def class_name(class_id: int, names: Sequence[str] = COCO_CLASSES) -> str:
    """The COCO class name of a 0-based detectron2 class id ("class_<id>" when out of range)."""
    return names[class_id] if 0 <= class_id < len(names) else f"class_{class_id}"


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device), a detectron2 Boxes/BitMasks wrapper or an array -> ndarray."""
    value = getattr(value, "tensor", value)  # Boxes / BitMasks keep their data in .tensor
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def instances_from_detectron2(instances: Any, names: Sequence[str] = COCO_CLASSES) -> list[Instance]:
    """detectron2 `Instances` (pred_masks (N, H, W), pred_boxes (N, 4) XYXY, scores (N,),
    pred_classes (N,), 0-based COCO ids) -> project Instances with full-size bool masks."""
    masks = _numpy(instances.pred_masks).astype(bool)  # (N, H, W)
    boxes = _numpy(instances.pred_boxes).astype(np.float64).reshape(-1, 4)  # (N, 4)
    scores = _numpy(instances.scores).astype(np.float64).reshape(-1)
    classes = _numpy(instances.pred_classes).astype(np.int64).reshape(-1)
    if not (len(masks) == len(boxes) == len(scores) == len(classes)):
        raise ValueError(f"detectron2 instances disagree in length: masks {len(masks)}, boxes {len(boxes)}, "
                         f"scores {len(scores)}, classes {len(classes)}")
    return [
        Instance(mask=m, box=tuple(float(v) for v in b), label=class_name(int(c), names), score=float(s))
        for m, b, s, c in zip(masks, boxes, scores, classes)
    ]


def outputs_to_instances(outputs: dict[str, Any], names: Sequence[str] = COCO_CLASSES) -> list[Instance]:
    """A DefaultPredictor result {"instances": Instances} -> project Instances."""
    return instances_from_detectron2(outputs["instances"], names)


class Detectron2Segmenter(Segmenter):
    """detectron2's model zoo Mask R-CNN through DefaultPredictor (optional dependency)."""

    def __init__(
        self,
        config: str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
        weights: str | None = None,
        device: Device = "cpu",
        score_threshold: Fraction = 0.7,
        nms_threshold: Fraction = 0.3,
        min_size: PositiveInt = 800,
        max_size: PositiveInt = 1024,
        allow_pickle: bool = False,
    ):
        """config: model-zoo config name (R50-FPN-3x: COCO box/mask AP 41.0/37.2).
        weights: local path to the model's .pkl/.pth; required, because nothing is downloaded.
        device: "cpu" or "cuda[:i]".
        score_threshold / nms_threshold: seed report appendix C, 0.7 and 0.3.
        min_size / max_size: test-time resize (seed: 800-1024).
        allow_pickle: trust `weights` although detectron2 reads checkpoints with pickle, which can
            run code; without it the recipe is refused (a shared cache or a downloaded file must
            not be able to run code unless the recipe says so by name)."""
        problems = self.check_params({"weights": weights, "allow_pickle": allow_pickle})
        if problems:
            raise ValueError(f"detectron2 segmenter: {problems[0]}")
        try:
            from detectron2 import model_zoo
            from detectron2.config import get_cfg
            from detectron2.engine import DefaultPredictor
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        if not weights:
            raise FileNotFoundError(f"detectron2 segmenter: set weights = \"/path/to/model_final.pkl\" for {config} (no downloads)")
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(config))
        print(f"aist: warning: detectron2 segmenter loads {weights} with pickle (allow_pickle = true)", file=sys.stderr)
        cfg.MODEL.WEIGHTS = str(weights)
        cfg.MODEL.DEVICE = device
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = float(nms_threshold)
        cfg.INPUT.MIN_SIZE_TEST = int(min_size)
        cfg.INPUT.MAX_SIZE_TEST = int(max_size)
        cfg.INPUT.FORMAT = "RGB"  # our photos are RGB; tell detectron2 not to expect BGR
        self.predictor = DefaultPredictor(cfg)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """Refuse weights unless `allow_pickle` is set: detectron2's checkpointer unpickles them."""
        if params.get("weights") and not params.get("allow_pickle", False):
            return [f"weights: detectron2 reads {params['weights']} with pickle, which can run code; "
                    "set allow_pickle = true if you trust this file"]
        return []

    @classmethod
    def example(cls) -> "Detectron2Segmenter":
        """Needs detectron2 and local weights; raises the install hint otherwise."""
        return cls()

    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Instance]]:
        return [outputs_to_instances(self.predictor(np.ascontiguousarray(im[..., :3]))) for im in images]
