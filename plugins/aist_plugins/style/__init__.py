"""First-party style plugins. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

REGISTRY: list[tuple[str, str, str]] = []
