"""First-party segmentation plugins. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

_SEG = "aist_plugins.segmentation"

REGISTRY: list[tuple[str, str, str]] = [
    # segmenters: photo -> instances (mask, box, label, score)
    ("segmenter", "maskrcnn", f"{_SEG}.maskrcnn:MaskRCNNSegmenter"),
    ("segmenter", "maskrcnn-v2", f"{_SEG}.maskrcnn:MaskRCNNv2Segmenter"),
    ("segmenter", "detectron2", f"{_SEG}.detectron2:Detectron2Segmenter"),
    ("segmenter", "grabcut", f"{_SEG}.grabcut:GrabCutSegmenter"),
    ("segmenter", "shape-prior", f"{_SEG}.shape_prior:ShapePriorSegmenter"),
    ("segmenter", "coco-annotations", f"{_SEG}.coco_annotations:CocoAnnotationsSegmenter"),
    # filters: the rejection rules of seed report chapter 3, one rule each
    ("filter", "label", f"{_SEG}.filters:LabelFilter"),
    ("filter", "score", f"{_SEG}.filters:ScoreFilter"),
    ("filter", "min-size", f"{_SEG}.filters:MinSizeFilter"),
    ("filter", "fill-ratio", f"{_SEG}.filters:FillRatioFilter"),
    ("filter", "grayscale", f"{_SEG}.filters:GrayscaleFilter"),
    ("filter", "occlusion", f"{_SEG}.filters:OcclusionFilter"),
    ("filter", "cropping", f"{_SEG}.filters:CroppingFilter"),
    # normaliser: colour correction, square pad, ratio pad, resize (seed report 3.2.1, 4.1.1)
    ("normalizer", "aist", f"{_SEG}.normalizer:AistNormalizer"),
]
