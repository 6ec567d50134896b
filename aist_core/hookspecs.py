"""The one pluggy hook a plugin implements.

    from aist_core.hookspecs import hookimpl

    @hookimpl
    def aist_register(registry):
        registry.add("annotation_loss", "edge", "my_package.losses:EdgeLoss")

Targets are lazy "module:Class" strings: nothing is imported until a recipe uses the name, so
listing plugins stays fast and a broken plugin cannot break the others.
"""

import pluggy

PROJECT = "aist"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aist_register(registry) -> None:
    """Register components: call `registry.add(kind, name, "module:Class")` for each."""
