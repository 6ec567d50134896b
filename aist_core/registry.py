"""Plugin discovery: entry points in group "aist", one pluggy hook, lazy "module:Class" targets.

Discovery never imports a component module. Each entry point's hook module is imported on its
own; one that fails is reported in a single warning line naming its distribution and the
exception, and the others keep working (set AIST_STRICT_PLUGINS=1 to make it fatal). Two
plugins registering the same kind and name are reported with both distributions named; the
first one found keeps the name.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterator

import pluggy

from aist_core import hookspecs
from aist_core.interfaces import KIND_CLASSES, KINDS

ENTRY_POINT_GROUP = "aist"
STRICT_ENV = "AIST_STRICT_PLUGINS"


class PluginError(RuntimeError):
    """A plugin could not be loaded or does not honour its kind."""


@dataclass
class Entry:
    kind: str
    name: str
    target: str  # "module:Class"
    distribution: str
    version: str

    def load(self) -> type:
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, attr)
        except Exception as exc:  # the message must name the plugin, whatever went wrong
            raise PluginError(
                f"{self.kind} {self.name!r} from {self.distribution}: cannot load {self.target} ({type(exc).__name__}: {exc})"
            ) from exc
        base = KIND_CLASSES[self.kind]
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise PluginError(f"{self.kind} {self.name!r} from {self.distribution}: {self.target} is not a {base.__name__}")
        return cls


@dataclass
class Registry:
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    distributions: dict[str, str] = field(default_factory=dict)

    # -- registration ---------------------------------------------------------------------
    def registrar(self, distribution: str, version: str) -> "Registrar":
        self.distributions[distribution] = version
        return Registrar(self, distribution, version)

    def _add(self, entry: Entry) -> None:
        if entry.kind not in KINDS:
            raise PluginError(f"{entry.distribution}: unknown kind {entry.kind!r}; kinds are {', '.join(KINDS)}")
        if ":" not in entry.target:
            raise PluginError(f"{entry.distribution}: target {entry.target!r} must be 'module:Class'")
        key = (entry.kind, entry.name)
        if key in self.entries:
            first = self.entries[key]
            self.duplicates.append(
                {"kind": entry.kind, "name": entry.name, "kept": first.distribution, "ignored": entry.distribution}
            )
            _warn(
                f"aist: {entry.kind} {entry.name!r} is registered by both {first.distribution} and "
                f"{entry.distribution}; using {first.distribution}"
            )
            return
        self.entries[key] = entry

    # -- lookup ---------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.entries if k == kind)

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self.entries[(kind, name)]
        except KeyError:
            raise KeyError(f"no {kind} named {name!r}; available: {', '.join(self.names(kind)) or 'none'}") from None

    def load(self, kind: str, name: str) -> type:
        return self.get(kind, name).load()

    def create(self, kind: str, name: str, **params: Any):
        return self.load(kind, name)(**params)

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self.entries.values(), key=lambda e: (KINDS.index(e.kind), e.name)))


@dataclass
class Registrar:
    """What a plugin's hook receives: `add` records the name under the plugin's distribution."""

    registry: Registry
    distribution: str
    version: str

    def add(self, kind: str, name: str, target: str) -> None:
        self.registry._add(Entry(kind, name, target, self.distribution, self.version))


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() not in ("", "0", "false", "no")


def discover(extra_plugins: list[tuple[str, object]] | None = None) -> Registry:
    """Build a registry from every installed entry point in group "aist".

    `extra_plugins` adds (distribution name, module-or-object with a hookimpl) pairs, for tests.
    """
    registry = Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: list[tuple[str, str, object]] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else ep.name
        version = ep.dist.version if ep.dist is not None else "unknown"
        try:
            sources.append((dist, version, ep.load()))
        except Exception as exc:
            _record_failure(registry, dist, f"{type(exc).__name__}: {exc}")
    for dist, plugin in extra_plugins or []:
        sources.append((dist, "local", plugin))
    for dist, version, plugin in sources:
        try:
            pm.register(plugin, name=f"{dist}:{id(plugin)}")
            for impl in pm.hook.aist_register.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(registry=registry.registrar(dist, version))
        except PluginError:
            raise
        except Exception as exc:
            _record_failure(registry, dist, f"{type(exc).__name__}: {exc}")
    return registry


def _record_failure(registry: Registry, distribution: str, error: str) -> None:
    registry.failures.append({"distribution": distribution, "error": error})
    if _strict():
        raise PluginError(f"plugin {distribution} failed to load: {error}")
    warnings.warn(f"aist: plugin {distribution} failed to load and is skipped: {error}", stacklevel=3)
    _warn(f"aist: warning: plugin {distribution} failed to load and is skipped: {error}")


_DEFAULT: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (discovered once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = discover()
    return _DEFAULT
