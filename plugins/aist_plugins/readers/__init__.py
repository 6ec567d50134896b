"""First-party readers for the data users bring. REGISTRY lists (kind, name, "module:Class")."""

REGISTRY: list[tuple[str, str, str]] = [
    ("dataset_source", "dpc", "aist_plugins.readers.dpc:DPCData"),
    ("dataset_source", "stanford-cars", "aist_plugins.readers.photos:StanfordCars"),
    ("dataset_source", "image-folder", "aist_plugins.readers.photos:ImageFolder"),
    ("dataset_source", "coco-photos", "aist_plugins.readers.coco_photos:CocoPhotos"),
]
