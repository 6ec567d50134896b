"""First-party dataset sources. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

REGISTRY: list[tuple[str, str, str]] = [
    # Offline two-domain benchmark rendered with Mitsuba 3 (synthetic + photo-like, ground truth in both).
    ("dataset_source", "procedural-cars", "aist_plugins.datasets.procedural:ProceduralCars"),
    # Readers for the formats users bring: DPC's ShapeNet renders, Stanford Cars, a folder of photos.
    ("dataset_source", "dpc", "aist_plugins.datasets.dpc:DPCReader"),
    ("dataset_source", "stanford-cars", "aist_plugins.datasets.stanford:StanfordCarsReader"),
    ("dataset_source", "image-folder", "aist_plugins.datasets.folder:ImageFolderReader"),
]
