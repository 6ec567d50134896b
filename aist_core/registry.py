"""Plugin discovery: entry points in group "aist", one pluggy hook, lazy "module:Class" targets.

Discovery never imports a component module. Each entry point's hook module is imported on its
own. Whatever goes wrong with one plugin -- its module fails to import, its hook raises, it
registers an unknown kind or a target that is not "module:Class", or it registers nothing at
all (no `@hookimpl`, a misspelt hook name), or registers a name that is not a plain name
(`NAME_PATTERN`: lower-case letters, digits, "_", "." and "-"; no newline, "/" or "..", which
could spoof the output or name a path) -- is one warning line on stderr naming its distribution,
printed once per process and kept in `Registry.failures`; the others keep working. That holds
for SystemExit (`sys.exit()` in a plugin) and for a KeyboardInterrupt the plugin raised itself;
a real Ctrl-C (a SIGINT that arrived while the plugin ran) still stops the command. Whatever a
plugin prints while it is imported or registers goes to stderr, so stdout stays clean for
`aist plugins --json`. Set AIST_STRICT_PLUGINS=1 to make any of these fatal (a PluginError).
Two plugins registering the same kind and name are reported with both distributions named; the
first one found keeps the name.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterator

import pluggy

from aist_core import hookspecs
from aist_core.interfaces import KIND_CLASSES, KINDS

ENTRY_POINT_GROUP = "aist"
STRICT_ENV = "AIST_STRICT_PLUGINS"
# A registered name: what recipes write after `use =`, what listings and messages print.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


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
        """Import and return the component class; PluginError naming the plugin when the import fails or the class is not of its kind."""
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, attr)
        except (Exception, SystemExit) as exc:  # the message must name the plugin, whatever went wrong
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
        """The `registry` object a distribution's `aist_register` hook receives."""
        self.distributions[distribution] = version
        return Registrar(self, distribution, version)

    def _add(self, entry: Entry) -> bool:
        """Record one registration; a malformed one is a failure of its distribution (one
        warning line, or a PluginError under AIST_STRICT_PLUGINS=1) and is skipped."""
        problem = _registration_problem(entry)
        if problem:
            _record_failure(self, entry.distribution, problem)
            return False
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
            return False
        self.entries[key] = entry
        return True

    # -- lookup ---------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Registered names of `kind`, sorted."""
        return sorted(name for (k, name) in self.entries if k == kind)

    def get(self, kind: str, name: str) -> Entry:
        """The entry of (kind, name); KeyError listing the available names when there is none."""
        try:
            return self.entries[(kind, name)]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(name), self.names(kind), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no {kind} named {name!r}{hint} available: {', '.join(self.names(kind)) or 'none'}") from None

    def load(self, kind: str, name: str) -> type:
        """The class registered as (kind, name), imported (see `Entry.load`)."""
        return self.get(kind, name).load()

    def create(self, kind: str, name: str, **params: Any):
        """An instance of (kind, name) built with `params` (no recipe validation: tests and scripts)."""
        return self.load(kind, name)(**params)

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self.entries.values(), key=lambda e: (KINDS.index(e.kind), e.name)))


@dataclass
class Registrar:
    """What a plugin's hook receives: `add` records the name under the plugin's distribution."""

    registry: Registry
    distribution: str
    version: str
    added: int = 0  # registrations accepted: a hook that adds nothing is reported
    duplicated: int = 0  # registrations of a name already taken: warned about once, not "added nothing"

    def add(self, kind: str, name: str, target: str) -> None:
        """Register `name` under `kind` ("annotation_loss", ...) with a lazy "module:Class" target."""
        before = len(self.registry.duplicates)
        if self.registry._add(Entry(kind, name, target, self.distribution, self.version)):
            self.added += 1
        elif len(self.registry.duplicates) > before:
            self.duplicated += 1


def _registration_problem(entry: Entry) -> str | None:
    """Why a registration is malformed (unknown kind, bad name or target), or None."""
    if entry.kind not in KINDS:
        close = difflib.get_close_matches(str(entry.kind).replace("-", "_"), KINDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"registry.add: unknown kind {entry.kind!r}{hint} (kinds: {', '.join(KINDS)})"
    if not isinstance(entry.name, str) or not entry.name:
        return f"registry.add: {entry.kind} name must be a non-empty string, got {entry.name!r}"
    if not NAME_PATTERN.fullmatch(entry.name) or ".." in entry.name:
        return (f"registry.add: {entry.kind} name {entry.name!r} is not a plain name (lower-case letters, digits, "
                f"'_', '.', '-'; starting with a letter or digit; no '..'; at most 64 characters)")
    module, sep, attr = entry.target.partition(":") if isinstance(entry.target, str) else ("", "", "")
    if not (sep and all(p.isidentifier() for p in module.split(".")) and all(p.isidentifier() for p in attr.split("."))):
        return f"registry.add: {entry.kind} {entry.name!r}: target {entry.target!r} must be 'module:Class'"
    return None


_PRINTED: set[str] = set()


def _warn(message: str) -> None:
    """Print a warning line on stderr, once per process (discovery may run more than once)."""
    if message not in _PRINTED:
        _PRINTED.add(message)
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
    sources: list[tuple[str, str, str, object]] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else ep.name
        version = ep.dist.version if ep.dist is not None else "unknown"
        where = f"entry point {ep.name} = {ep.value!r}"
        guard = _PluginCode()
        try:
            with guard:
                plugin = ep.load()
            sources.append((dist, version, where, plugin))
        except BaseException as exc:  # SystemExit and a plugin's own KeyboardInterrupt too
            if guard.real_interrupt(exc):
                raise
            _record_failure(registry, dist, f"{where}: {_describe(exc)}")
    for dist, plugin in extra_plugins or []:
        sources.append((dist, "local", f"plugin {getattr(plugin, '__name__', type(plugin).__name__)}", plugin))
    for dist, version, where, plugin in sources:
        guard = _PluginCode()
        try:
            with guard:
                _register(pm, registry, dist, version, where, plugin)
        except PluginError:
            raise  # strict mode: already one line naming the distribution
        except BaseException as exc:  # SystemExit and a plugin's own KeyboardInterrupt too
            if guard.real_interrupt(exc):
                raise
            _record_failure(registry, dist, f"{where}: aist_register raised {_describe(exc)}")
    return registry


def _register(pm: pluggy.PluginManager, registry: Registry, dist: str, version: str, where: str, plugin: object) -> None:
    """Run one plugin's aist_register hook(s) against `registry`."""
    pm.register(plugin, name=f"{dist}:{id(plugin)}")
    impls = [impl for impl in pm.hook.aist_register.get_hookimpls() if impl.plugin is plugin]
    if not impls:
        _record_failure(registry, dist, f"{where} registers nothing: {_missing_hook_hint(plugin)}")
        return
    for impl in impls:
        registrar = registry.registrar(dist, version)
        impl.function(registry=registrar)
        # a hook whose names were all taken already got its duplicate warning: "added no components" would mislead
        if not registrar.added and not registrar.duplicated and not any(f["distribution"] == dist for f in registry.failures):
            _record_failure(registry, dist, f"{where}: aist_register ran but added no components")


class _PluginCode:
    """Around a plugin's import or hook: its stdout goes to stderr (Python's sys.stdout and file
    descriptor 1 both), and a KeyboardInterrupt it raises is told apart from a real Ctrl-C.

    A KeyboardInterrupt is real when a SIGINT arrived while the plugin ran (seen by a SIGINT
    handler installed for the while, in the main thread, where Python's default one is in place)
    or when arrivals could not be watched; otherwise the plugin raised it itself, and it is a
    failure of that plugin like any other exception. Where SIGINT is ignored (a command started
    with `nohup` or in a background job) no Ctrl-C can arrive, so every KeyboardInterrupt is the
    plugin's own.
    """

    def __init__(self) -> None:
        self.watching = self.sigint = self.ignored = False
        self._previous = None
        self._saved_fd: int | None = None
        self._redirect = None

    def real_interrupt(self, exc: BaseException) -> bool:
        """Whether `exc` must propagate: a KeyboardInterrupt from a real Ctrl-C, or one not told apart."""
        return isinstance(exc, KeyboardInterrupt) and (self.sigint or not (self.watching or self.ignored))

    def _on_sigint(self, signum, frame):
        self.sigint = True
        raise KeyboardInterrupt

    def __enter__(self) -> _PluginCode:  # noqa: PYI034 - typing.Self needs Python 3.11
        if threading.current_thread() is threading.main_thread():
            try:
                handler = signal.getsignal(signal.SIGINT)
                if handler is signal.default_int_handler:
                    self._previous = signal.signal(signal.SIGINT, self._on_sigint)
                    self.watching = True
                self.ignored = handler is signal.SIG_IGN
            except (ValueError, OSError):
                pass
        _flush(sys.stdout, sys.__stdout__)
        try:
            self._saved_fd = os.dup(1)
            os.dup2(2, 1)
        except (OSError, ValueError):
            self._saved_fd = None
        self._redirect = contextlib.redirect_stdout(sys.stderr)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._redirect.__exit__(*exc_info)
        _flush(sys.stdout, sys.__stdout__, sys.stderr)  # what the plugin wrote goes out while fd 1 is stderr
        if self._saved_fd is not None:
            try:
                os.dup2(self._saved_fd, 1)
            finally:
                os.close(self._saved_fd)
        if self.watching:
            signal.signal(signal.SIGINT, self._previous)


def _flush(*streams) -> None:
    for stream in streams:
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _describe(exc: BaseException) -> str:
    """"SystemExit: hook exits", or the type alone when the exception has no message."""
    text = _one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing_hook_hint(plugin: object) -> str:
    """Why a hook module registered nothing: a misspelt hook name, or no @hookimpl at all."""
    names = [n for n in dir(plugin) if not n.startswith("__")]
    marked = [n for n in names if getattr(getattr(plugin, n, None), f"{hookspecs.PROJECT}_impl", None) is not None]
    close = difflib.get_close_matches("aist_register", names, n=1, cutoff=0.7)
    if marked:
        return f"@hookimpl function(s) {', '.join(marked)} match no AIST hook; the hook is named aist_register"
    if close:
        return f"{close[0]} is not marked @hookimpl (from aist_core.hookspecs import hookimpl)"
    return "no @hookimpl def aist_register(registry) in the module"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _record_failure(registry: Registry, distribution: str, error: str) -> None:
    """One warning line naming the distribution (printed once per process), kept in
    `registry.failures`; under AIST_STRICT_PLUGINS=1 a PluginError instead."""
    registry.failures.append({"distribution": distribution, "error": error})
    if _strict():
        raise PluginError(f"plugin {distribution} is broken ({STRICT_ENV}=1): {error}")
    _warn(f"aist: warning: plugin {distribution}: {error} -- skipped")


_DEFAULT: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (discovered once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = discover()
    return _DEFAULT
