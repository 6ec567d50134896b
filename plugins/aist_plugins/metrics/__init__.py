"""First-party metrics plugins. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

_M = "aist_plugins.metrics"

REGISTRY: list[tuple[str, str, str]] = [
    # seed report 5.4: Chamfer precision / coverage (x100, Euclidean), after global alignment
    ("metric", "chamfer", f"{_M}.chamfer:Chamfer"),
    # seed report 5.4: pose accuracy at 30 degrees and median error, after the same alignment
    ("metric", "pose", f"{_M}.pose:PoseAccuracy"),
    # seed report 6.3: XOR of the predicted silhouette with the observed mask / mask area
    ("metric", "mask-xor", f"{_M}.mask_xor:MaskXor"),
    # seed report 6.3 (do stylised images look real?): domain gap on object pixels
    ("domain_gap", "c2st", f"{_M}.domain_gap:C2ST"),  # classifier two-sample test accuracy
    ("domain_gap", "colour-stats", f"{_M}.domain_gap:ColourStats"),  # saturation, HF energy, Lab
    ("domain_gap", "kid", f"{_M}.domain_gap:KID"),  # Kernel Inception Distance (torch-fidelity)
]
