"""The public API documents itself: every public module, class and function in aist_core and
aist_plugins has a docstring of its own. A method that overrides a documented method of a base
class (an interface's `build`, `segment`, `compute`...) inherits that documentation, as
`inspect.getdoc` and Sphinx do; contract-suite `test_*` methods are named for what they check.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

PACKAGES = ("aist_core", "aist_plugins")
OPTIONAL = {"aist_plugins.segmentation.detectron2"}  # imports detectron2 only when used


def _modules():
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            yield importlib.import_module(info.name)


def _inherited_doc(cls: type, name: str) -> bool:
    return any(getattr(base.__dict__.get(name), "__doc__", None) for base in cls.__mro__[1:])


def undocumented() -> list[str]:
    missing = []
    for module in _modules():
        if not module.__doc__:
            missing.append(f"{module.__name__} (module)")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) and not obj.__doc__:
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(obj):
                if not obj.__dict__.get("__doc__"):
                    missing.append(f"{module.__name__}.{name} (class)")
                for attr, member in vars(obj).items():
                    func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    func = func.fget if isinstance(func, property) else func
                    if attr.startswith(("_", "test_")) or not inspect.isfunction(func) or func.__name__ == "<lambda>":
                        continue
                    if not func.__doc__ and not _inherited_doc(obj, attr):
                        missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


def test_every_public_name_has_its_own_docstring():
    pytest.importorskip("torch")
    missing = undocumented()
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
