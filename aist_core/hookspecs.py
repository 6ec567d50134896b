"""The one pluggy hook a plugin implements.

    from aist_core.hookspecs import hookimpl

    @hookimpl
    def aist_register(registry):
        registry.add("annotation_loss", "edge", "my_package.losses:EdgeLoss")

Targets are lazy "module:Class" strings: nothing is imported until a recipe uses the name, so
listing plugins stays fast and a broken plugin cannot break the others. Kinds are the names in
`aist_core.interfaces.KINDS`, spelt with underscores. A module named by an entry point in group
"aist" that has no `@hookimpl def aist_register` (a misspelt name, a missing decorator), or
whose hook adds nothing, is reported by discovery (`aist plugins`) rather than silently ignored.
"""

import pluggy

PROJECT = "aist"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aist_register(registry) -> None:
    """Register components: call `registry.add(kind, name, "module:Class")` for each."""
