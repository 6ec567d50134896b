"""The boundary between the core and a plugin: errors that name whose code broke, and outputs
checked against their interface's rules before anything is written.

`checked(component, entry)` puts a built component behind a thin proxy. Every method call goes
through it: an exception raised inside the plugin comes back as a `ComponentError`

    translator 'mine' (from my-dist 0.3): stylize(): IndexError: index 3 is out of bounds

chained to the original (the traceback is kept), and the outputs of the calls the stages use
are checked against the interface docstrings (`aist_core.interfaces`): shapes, dtypes,
channels, value ranges. A violation is a `ComponentError` naming the rule and what came:

    translator 'mine' (from my-dist 0.3): stylize() broke the Translator rule: returned
    (2, 32, 32, 3) uint8, expected (2, 32, 32, 4) like its input

The proxy is transparent where stages rely on it: `isinstance(proxy, Translator)` holds (via
`__class__`), attributes read and write through, a method returning the component itself
(`loss.to(device)`) returns the proxy, and it pickles (to a fresh proxy) for process pools.
Exceptions an interface documents as part of its contract pass through unwrapped
(`DomainGap.compute`'s ValueError for too few images, which the evaluate stage records).

The `*_problems` functions are the rules themselves, one list of "what is wrong" strings per
output; the contract kit (`aist_core.testing`) asserts the same rules, so a plugin that passes
its contract suite passes the boundary. Annotation losses run inside a translator's training
loop, not in a stage: a translator calls them through `call_loss(loss, source, translated,
cache)`, which names the loss in its errors and checks its value (cheap: no device sync).

NumPy only; torch tensors are recognised by duck typing (the core imports no torch).
"""

from __future__ import annotations

import math
import sys
from numbers import Real
from typing import Any, Callable, Sequence

import numpy as np

from aist_core.interfaces import KIND_CLASSES, Instance

# Points of a shape model lie in [-0.5, 0.5]^3 and quaternions are unit: float32 tolerances.
POINT_TOLERANCE = 1e-4
QUATERNION_TOLERANCE = 1e-3


class ComponentError(RuntimeError):
    """A plugin component raised, or returned something its interface does not allow. The
    message starts with `<kind> '<name>' (from <distribution> <version>)`; `__cause__` is the
    original exception when there was one."""

    def __init__(self, origin: "Origin", message: str):
        self.origin = origin
        super().__init__(f"{origin}: {message}")


class Origin:
    """Who a component is: kind, registered name, distribution and version (for messages)."""

    def __init__(self, kind: str, name: str, distribution: str = "unknown", version: str = ""):
        self.kind, self.name, self.distribution, self.version = kind, name, distribution, version

    @classmethod
    def of(cls, entry: Any) -> "Origin":
        """From a registry `Entry` (anything with kind, name, distribution and version)."""
        return cls(entry.kind, entry.name, entry.distribution, entry.version)

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}".strip()
        return f"{self.kind} {self.name!r} (from {dist})"

    def __reduce__(self):
        return (Origin, (self.kind, self.name, self.distribution, self.version))


# ---------------------------------------------------------------------------- the rules
def _describe(value: Any) -> str:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{tuple(shape)} {dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def stylize_problems(images: np.ndarray, out: Any, background: str = "black") -> list[str]:
    """Translator.stylize: (B, H, W, 4) uint8 like its input, alpha unchanged, and RGB black
    (0, 0, 0) where alpha == 0 unless the translator declares `background = "generated"`."""
    images = np.asarray(images)
    if not isinstance(out, np.ndarray):
        return [f"returned {type(out).__name__}, expected a NumPy array {images.shape} uint8 like its input"]
    if out.shape != images.shape or out.dtype != np.uint8:
        return [f"returned {_describe(out)}, expected {images.shape} uint8 like its input"]
    problems = []
    if images.ndim == 4 and images.shape[-1] == 4:
        if not np.array_equal(out[..., 3], images[..., 3]):
            changed = int(np.count_nonzero(out[..., 3] != images[..., 3]))
            problems.append(f"changed the alpha channel at {changed} pixel(s); alpha must be returned unchanged")
        background_mask = images[..., 3] == 0
        if background == "black" and np.any(out[..., :3][background_mask]):
            lit = int(np.count_nonzero(np.any(out[..., :3] > 0, axis=-1) & background_mask))
            problems.append(f"RGB is not black at {lit} pixel(s) where alpha == 0 (background must be (0, 0, 0); "
                            "a translator whose generator paints the background declares background = \"generated\")")
    return problems


def segment_problems(images: Sequence[np.ndarray], result: Any) -> list[str]:
    """Segmenter.segment: one list of Instance per image, (H, W) bool masks at the image's size,
    boxes (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, string labels, scores in [0, 1]."""
    if not isinstance(result, list) or len(result) != len(images):
        got = f"{type(result).__name__} of length {len(result)}" if hasattr(result, "__len__") else type(result).__name__
        return [f"returned {got}, expected a list of {len(images)} lists of Instance (one per image)"]
    problems = []
    for i, (image, instances) in enumerate(zip(images, result)):
        if not isinstance(instances, list):
            problems.append(f"image {i}: got {type(instances).__name__}, expected a list of Instance")
            continue
        for j, inst in enumerate(instances):
            where = f"image {i} instance {j}"
            if not isinstance(inst, Instance):
                problems.append(f"{where}: got {type(inst).__name__}, expected aist_core.interfaces.Instance")
                continue
            mask = np.asarray(inst.mask)
            if mask.shape != tuple(np.shape(image)[:2]) or mask.dtype != bool:
                problems.append(f"{where}: mask is {_describe(mask)}, expected {tuple(np.shape(image)[:2])} bool")
            box = tuple(inst.box) if isinstance(inst.box, (tuple, list, np.ndarray)) else ()
            if len(box) != 4 or not (box[0] <= box[2] and box[1] <= box[3]):
                problems.append(f"{where}: box {inst.box!r} is not (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
            if not isinstance(inst.label, str):
                problems.append(f"{where}: label {inst.label!r} is not a string")
            if not (isinstance(inst.score, Real) and 0.0 <= float(inst.score) <= 1.0):
                problems.append(f"{where}: score {inst.score!r} is not in [0, 1]")
    return problems[:5]


def filter_problems(verdict: Any, reason: str) -> list[str]:
    """Filter.check: None (keep) or the filter's non-empty `reason` string (reject)."""
    if verdict is None or (isinstance(verdict, str) and verdict):
        return []
    return [f"returned {verdict!r}, expected None (keep) or its reason string {reason!r} (reject)"]


def crop_problems(crop: Any, size: int) -> list[str]:
    """Normalizer.normalize: an (S, S, 4) uint8 RGBA crop, S = the normalizer's `size`."""
    if not isinstance(crop, np.ndarray) or crop.shape != (size, size, 4) or crop.dtype != np.uint8:
        return [f"returned {_describe(crop)}, expected ({size}, {size}, 4) uint8 RGBA (size = {size})"]
    return []


def plan_problems(plan: Any, n: int) -> list[str]:
    """Normalizer.plan: None, or one dict of keyword arguments per instance."""
    if plan is None:
        return []
    if not isinstance(plan, list) or len(plan) != n or not all(isinstance(p, dict) for p in plan):
        return [f"returned {type(plan).__name__} of {len(plan) if hasattr(plan, '__len__') else '?'} item(s), "
                f"expected None or a list of {n} dicts (one per instance)"]
    return []


def prediction_problems(images: np.ndarray, result: Any) -> list[str]:
    """ShapePoseModel.predict: (points (B, N, 3) within [-0.5, 0.5]^3, poses (B, 4) unit
    quaternions), finite, B = the number of images."""
    if not (isinstance(result, tuple) and len(result) == 2):
        return [f"returned {type(result).__name__}, expected a tuple (points (B, N, 3), quaternions (B, 4))"]
    points, quats = np.asarray(result[0]), np.asarray(result[1])
    b = len(images)
    problems = []
    if points.ndim != 3 or points.shape[0] != b or points.shape[2] != 3:
        problems.append(f"points are {_describe(points)}, expected ({b}, N, 3)")
    elif not np.all(np.isfinite(points)):
        problems.append("points contain NaN or infinity")
    elif np.abs(points).max(initial=0.0) > 0.5 + POINT_TOLERANCE:
        problems.append(f"points reach {float(np.abs(points).max()):.4g}, expected within [-0.5, 0.5]^3")
    if quats.shape != (b, 4):
        problems.append(f"quaternions are {_describe(quats)}, expected ({b}, 4)")
    elif not np.all(np.isfinite(quats)):
        problems.append("quaternions contain NaN or infinity")
    elif b and np.abs(np.linalg.norm(quats, axis=1) - 1.0).max() > QUATERNION_TOLERANCE:
        problems.append(f"quaternions have norm {float(np.linalg.norm(quats, axis=1).min()):.4g}.."
                        f"{float(np.linalg.norm(quats, axis=1).max()):.4g}, expected unit [w, x, y, z]")
    return problems


def numbers_problems(values: Any) -> list[str]:
    """Metric.compute / summarize: a flat dict {str: finite float}."""
    if not isinstance(values, dict):
        return [f"returned {type(values).__name__}, expected a dict of finite floats"]
    bad = [f"{k!r}: {v!r}" for k, v in values.items()
           if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v))]
    return [f"values that are not finite floats under string keys: {', '.join(bad[:4])}"] if bad else []


def samples_problems(test: Any, samples: Any) -> list[str]:
    """Metric.samples: {name: (M,) float array}, M = the number of images in `test`."""
    if not isinstance(samples, dict):
        return [f"returned {type(samples).__name__}, expected a dict of (M,) arrays"]
    m = len(getattr(test, "points", ()) or ())
    bad = [f"{k!r}: {_describe(np.asarray(v))}" for k, v in samples.items() if np.shape(v) != (m,)]
    return [f"arrays not of shape ({m},), one value per image: {', '.join(bad[:4])}"] if bad else []


def dict_problems(value: Any, allow_none: bool = False) -> list[str]:
    """A summary dict (DatasetSource.build, Normalizer.state, DomainGap.compute)."""
    if isinstance(value, dict) or (allow_none and value is None):
        return []
    return [f"returned {type(value).__name__}, expected a dict"]


def loss_problems(value: Any, translated: Any = None) -> list[str]:
    """AnnotationLoss.forward: a scalar (0-dimensional) tensor, differentiable with respect to
    `translated` when that requires grad. Metadata only: no device synchronisation."""
    ndim = getattr(value, "ndim", None)
    if ndim is None or not hasattr(value, "backward"):
        return [f"returned {type(value).__name__}, expected a scalar torch tensor"]
    if ndim != 0:
        return [f"returned a tensor of shape {tuple(value.shape)}, expected a scalar (shape ()): reduce it, "
                "e.g. .mean()"]
    torch = sys.modules.get("torch")  # under torch.no_grad() nothing requires grad
    grad_on = torch is None or torch.is_grad_enabled()
    if grad_on and getattr(translated, "requires_grad", False) and not getattr(value, "requires_grad", False):
        return ["returned a tensor that does not depend on `translated` (no gradient reaches the generator)"]
    return []


def loss_value(loss: Any, value: Any, translated: Any = None) -> Any:
    """`value` if it is what an AnnotationLoss must return, else a ComponentError naming the
    loss, its registered name and distribution. For a translator's training loop:
    `total += w * boundary.loss_value(loss, loss(source, out, cache), out)`."""
    problems = loss_problems(value, translated)
    if problems:
        raise ComponentError(origin_of(loss), f"forward() broke the AnnotationLoss rule: {'; '.join(problems)}")
    return value


def call_loss(loss: Any, source: Any, translated: Any, cache: dict | None = None) -> Any:
    """`loss(source, translated, cache)` with the boundary's guarantees: an exception inside the
    loss, or a value that is not a scalar tensor differentiable in `translated`, is a
    ComponentError naming the loss (kind, registered name, distribution)."""
    try:
        value = loss(source, translated, cache)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(origin_of(loss), f"forward(): {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    return loss_value(loss, value, translated)


def origin_of(component: Any) -> Origin:
    """Who `component` is: its proxy's origin, else its class looked up in the registry by
    "module:Class" target (the class name and module when it is registered nowhere)."""
    origin = object.__getattribute__(component, "_origin") if isinstance(component, Checked) else None
    if origin is not None:
        return origin
    cls = type(component)
    target = f"{cls.__module__}:{cls.__qualname__}"
    try:
        from aist_core.registry import get_registry

        for entry in get_registry():
            if entry.target == target:
                return Origin.of(entry)
    except Exception:  # naming the culprit must never hide the error being reported
        pass
    return Origin(getattr(component, "kind", "") or "component", cls.__name__, cls.__module__)


# ---------------------------------------------------------------------------- the proxy
# Per kind: method -> check(component, args, kwargs, result) -> problems. Every other method is
# still wrapped for errors; only these outputs have rules the stages rely on.
Check = Callable[[Any, tuple, dict, Any], list]

CHECKS: dict[str, dict[str, Check]] = {
    "dataset_source": {"build": lambda c, a, k, r: dict_problems(r, allow_none=True)},
    "segmenter": {"segment": lambda c, a, k, r: segment_problems(a[0] if a else k["images"], r)},
    "filter": {"check": lambda c, a, k, r: filter_problems(r, c.reason)},
    "normalizer": {
        "normalize": lambda c, a, k, r: crop_problems(r, int(c.size)),
        "plan": lambda c, a, k, r: plan_problems(r, len(a[0] if a else k["boxes"])),
        "state": lambda c, a, k, r: dict_problems(r),
    },
    "translator": {
        "stylize": lambda c, a, k, r: stylize_problems(a[0] if a else k["images"], r, getattr(c, "background", "black")),
    },
    "annotation_loss": {
        "forward": lambda c, a, k, r: loss_problems(r, a[1] if len(a) > 1 else k.get("translated")),
        "__call__": lambda c, a, k, r: loss_problems(r, a[1] if len(a) > 1 else k.get("translated")),
    },
    "shape_pose_model": {"predict": lambda c, a, k, r: prediction_problems(a[0] if a else k["images"], r)},
    "metric": {
        "compute": lambda c, a, k, r: numbers_problems(r),
        "summarize": lambda c, a, k, r: numbers_problems(r),
        "samples": lambda c, a, k, r: samples_problems(a[0] if a else k["test"], r),
    },
    "domain_gap": {"compute": lambda c, a, k, r: dict_problems(r)},
}

# Exceptions an interface documents as part of its contract: passed through unwrapped.
PASSTHROUGH: dict[tuple[str, str], tuple[type[BaseException], ...]] = {
    ("domain_gap", "compute"): (ValueError,),
}


class Checked:
    """A component behind the boundary (see the module docstring). Build with `checked`."""

    __slots__ = ("_component", "_origin")

    def __init__(self, component: Any, origin: Origin):
        object.__setattr__(self, "_component", component)
        object.__setattr__(self, "_origin", origin)

    # isinstance(proxy, Translator) and proxy.__class__ see the component's class.
    @property
    def __class__(self):  # noqa: D401 - a property, not a method
        return type(object.__getattribute__(self, "_component"))

    def __getattr__(self, name: str) -> Any:
        component = object.__getattribute__(self, "_component")
        value = getattr(component, name)
        if name.startswith("__") or not callable(value) or not hasattr(value, "__self__"):
            return value  # data, classes and nested components pass as they are
        return _Method(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_component"), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(object.__getattribute__(self, "_component"), name)

    def __dir__(self):
        return dir(object.__getattribute__(self, "_component"))

    def __repr__(self) -> str:
        return f"<checked {object.__getattribute__(self, '_origin')}: {object.__getattribute__(self, '_component')!r}>"

    def __reduce__(self):
        return (type(self), (object.__getattribute__(self, "_component"), object.__getattribute__(self, "_origin")))


class CheckedCallable(Checked):
    """A checked component that is itself called (an AnnotationLoss: `loss(source, out, cache)`)."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        return _Method(self, "__call__", object.__getattribute__(self, "_component").__call__)(*args, **kwargs)


class _Method:
    """One bound method of a checked component: errors named, output checked."""

    __slots__ = ("proxy", "name", "method")

    def __init__(self, proxy: Checked, name: str, method: Callable):
        self.proxy, self.name, self.method = proxy, name, method

    def __call__(self, *args, **kwargs):
        component = object.__getattribute__(self.proxy, "_component")
        origin: Origin = object.__getattribute__(self.proxy, "_origin")
        call = "calling it" if self.name == "__call__" else f"{self.name}()"
        try:
            result = self.method(*args, **kwargs)
        except ComponentError:
            raise  # already names whose code broke (a nested component)
        except PASSTHROUGH.get((origin.kind, self.name), ()):
            raise
        except Exception as exc:
            raise ComponentError(origin, f"{call}: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
        check = CHECKS.get(origin.kind, {}).get(self.name)
        try:
            problems = check(component, args, kwargs, result) if check else []
        except Exception as exc:  # an output too malformed to inspect is a broken rule too
            problems = [f"returned {_describe(result)}, which cannot be checked ({type(exc).__name__}: {exc})"]
        if problems:
            interface = KIND_CLASSES[origin.kind].__name__
            raise ComponentError(origin, f"{call} broke the {interface} rule: {'; '.join(problems)}")
        return self.proxy if result is component else result

    def __getattr__(self, name: str) -> Any:  # __name__, __doc__, ... of the real method
        return getattr(self.method, name)


def checked(component: Any, entry: Any) -> Checked:
    """`component` behind the boundary; `entry` is its registry Entry (or an Origin)."""
    if isinstance(component, Checked):
        return component
    origin = entry if isinstance(entry, Origin) else Origin.of(entry)
    proxy_class = CheckedCallable if callable(component) else Checked
    return proxy_class(component, origin)


def unwrap(component: Any) -> Any:
    """The component behind a proxy (itself when it is not one)."""
    return object.__getattribute__(component, "_component") if type(component) in (Checked, CheckedCallable) else component
