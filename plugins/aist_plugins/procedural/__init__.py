"""First-party dataset sources (the procedural benchmark). REGISTRY lists (kind, name, "module:Class"); keep imports light."""

REGISTRY: list[tuple[str, str, str]] = [
    # Offline two-domain benchmark rendered with Mitsuba 3 (synthetic + photo-like, ground truth in both).
    ("dataset_source", "procedural-cars", "aist_plugins.procedural.procedural:ProceduralCars"),
]
