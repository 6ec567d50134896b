"""First-party metrics plugins. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

_M = "aist_plugins.metrics"

REGISTRY: list[tuple[str, str, str]] = [
    # seed report 5.4: Chamfer precision / coverage (x100, Euclidean), after global alignment
    ("metric", "chamfer", f"{_M}.chamfer:Chamfer"),
    # seed report 5.4: pose accuracy at 30 degrees and median error, after the same alignment
    ("metric", "pose", f"{_M}.pose:PoseAccuracy"),
    # seed report 6.3: XOR of the predicted silhouette with the observed mask / mask area
    ("metric", "mask-xor", f"{_M}.mask_xor:MaskXor"),
]
