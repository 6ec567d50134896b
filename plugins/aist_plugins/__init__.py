"""AIST's first-party plugins, registered through the same entry-point hook a third party uses.

Each area lists its components in its package's `REGISTRY` as (kind, name, "module:Class");
nothing heavy is imported here, so `aist plugins` stays fast.
"""

from aist_core.hookspecs import hookimpl

AREAS = ("procedural", "readers", "segmentation", "style", "shape_pose", "metrics")


@hookimpl
def aist_register(registry):
    """Register every first-party component listed in each area's REGISTRY (lazy "module:Class" targets)."""
    import importlib

    for area in AREAS:
        for kind, name, target in importlib.import_module(f"aist_plugins.{area}").REGISTRY:
            registry.add(kind, name, target)
