"""First-party render plugins. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

REGISTRY: list[tuple[str, str, str]] = []
