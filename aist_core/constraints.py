"""Parameter constraints, declared once in a component's signature and checked by `aist check`.

A plugin declares what each constructor parameter accepts with its type annotation:

    from typing import Annotated, Literal
    from annotated_types import Ge, Gt, Interval, MultipleOf
    from aist_core.constraints import Device, Fraction, PositiveFloat, PositiveInt, Seed

    def __init__(self, mode: Literal["black", "alpha"] = "black",
                 image_size: Annotated[int, Ge(24), MultipleOf(4)] = 256,
                 lr: PositiveFloat = 2e-4, keep: Fraction = 0.5, seed: Seed = 0,
                 device: Device = "cpu"): ...

`typing.Literal[...]` lists the accepted choices; `typing.Annotated[T, ...]` carries range
metadata: the `annotated_types` objects (`Gt`, `Ge`, `Lt`, `Le`, `Interval`, `MultipleOf`,
`Len`), pydantic's `Field(gt=0)`, or `Matches` below. The recipe loader validates each value
with pydantic's `TypeAdapter` before any work starts, so `aist check` refuses what the run
would refuse. Every float must be finite (TOML's `nan` and `inf` are refused everywhere).
Rules across parameters (`max_images >= min_images`) and checks against the world (a data folder
that must exist) belong in the component's `check_params` classmethod.

Nothing here imports pydantic at module level, so plugin modules stay cheap to import; the
validator is built when a recipe is checked.
"""

from __future__ import annotations

import functools
import math
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import Ge, Gt, Interval, Le, Lt, MultipleOf

__all__ = [
    "SEED_LIMIT",
    "Device",
    "Fraction",
    "Matches",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Seed",
    "StageSeed",
    "check_value",
    "describe",
]

SEED_LIMIT = 2**32  # np.random.seed / RandomState take 0 <= seed < 2**32


@dataclass(frozen=True)
class Matches:
    """A string constraint: the whole value matches `pattern`; `description` says what is accepted
    in words (it is the error message and what `aist show` prints)."""

    pattern: str
    description: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str) -> str:
        if not re.fullmatch(self.pattern, value):
            raise ValueError(f"must be {self.description}")
        return value


PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Fraction = Annotated[float, Interval(ge=0, le=1)]
Seed = Annotated[int, Interval(ge=0, lt=SEED_LIMIT)]
StageSeed = Annotated[int, Interval(ge=-1, lt=SEED_LIMIT)]  # -1: the recipe's seed
Device = Annotated[str, Matches(r"cpu|mps|(cuda|xpu)(:\d+)?", 'a torch device: "cpu", "cuda", "cuda:N" or "mps"')]


# ---------------------------------------------------------------------------- checking
def _adapter(hint: Any) -> Any:
    """pydantic's validator for `hint`, floats finite; cached when the hint is hashable."""
    try:
        return _cached_adapter(hint)
    except TypeError:  # unhashable metadata: build it each time
        return _build_adapter(hint)


def _build_adapter(hint: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(hint, config=ConfigDict(allow_inf_nan=False))


_cached_adapter = functools.lru_cache(maxsize=512)(_build_adapter)


def check_value(value: Any, hint: Any) -> str | None:
    """None when `value` satisfies `hint`'s constraints, else "what is wrong" in one line.

    `hint` is the full annotation (`typing.get_type_hints(..., include_extras=True)`); the plain
    type is checked by the recipe loader first, so this reports ranges, choices and patterns.
    A hint pydantic cannot build a validator for is not checked (its type check still applies).
    """
    from pydantic import PydanticSchemaGenerationError, ValidationError

    huge = _beyond_float32(value)
    if huge is not None:  # the networks compute in float32: such a value is inf there
        return f"must be within float32's range (|x| <= {FLOAT32_MAX:.2e}), got {huge!r}"
    try:
        adapter = _adapter(hint)
    except (PydanticSchemaGenerationError, TypeError):  # annotations pydantic has no schema for
        return None if _finite(value) else f"must be a finite number, got {value!r}"
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        message = error["msg"].removeprefix("Value error, ")
        message = re.sub(r"^Input should be", "must be", message)
        items = [str(part) for part in error["loc"] if isinstance(part, int)]
        return f"{'item ' + ']['.join(items) + ' ' if items else ''}{message}, got {error['input']!r}"
    return None


FLOAT32_MAX = 3.4028234663852886e38


def _beyond_float32(value: Any) -> float | None:
    """The first float in `value` (a number or a list/tuple of them) whose magnitude float32
    cannot hold, else None."""
    if isinstance(value, float) and math.isfinite(value) and abs(value) > FLOAT32_MAX:
        return value
    if isinstance(value, (list, tuple)):
        return next((v for v in (_beyond_float32(item) for item in value) if v is not None), None)
    return None


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def describe(hint: Any) -> str:
    """What a parameter accepts, in words, for `aist show`: choices, ranges and patterns
    ("one of 'black', 'alpha'", "> 0", "in [0, 1]", "multiple of 4"); "" when unconstrained."""
    parts: list[str] = []
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        inner = describe(base)
        if inner:
            parts.append(inner)
        for item in metadata:
            parts += _describe_metadata(item)
    elif origin is typing.Literal:
        parts.append("one of " + ", ".join(repr(a) for a in typing.get_args(hint)))
    elif origin is not None:
        inner = [d for d in (describe(a) for a in typing.get_args(hint)) if d]
        parts += inner
    return "; ".join(dict.fromkeys(parts))


def _describe_metadata(item: Any) -> list[str]:
    if isinstance(item, Interval):
        low = f"[{item.ge}" if item.ge is not None else f"({item.gt}" if item.gt is not None else "(-inf"
        high = f"{item.le}]" if item.le is not None else f"{item.lt})" if item.lt is not None else "inf)"
        return [f"in {low}, {high}"]
    symbols = {Gt: ("gt", ">"), Ge: ("ge", ">="), Lt: ("lt", "<"), Le: ("le", "<=")}
    for cls, (attr, symbol) in symbols.items():
        if isinstance(item, cls):
            return [f"{symbol} {getattr(item, attr)}"]
    if isinstance(item, MultipleOf):
        return [f"multiple of {item.multiple_of}"]
    if isinstance(item, Matches):
        return [item.description]
    metadata = getattr(item, "metadata", None)  # pydantic FieldInfo: Field(gt=0, ...)
    if isinstance(metadata, list):
        return [d for m in metadata for d in _describe_metadata(m)]
    return [str(item)]


# ---------------------------------------------------------------------------- documentation
def parameter_docs(cls: type) -> dict[str, str]:
    """Each parameter's documentation from the docstrings' `name: text` lines (the convention:
    in the `__init__` docstring, or the class docstring; continuation lines follow until a blank
    line or the next entry; `a / b: text` and `a, b: text` document both). Returns {parameter: its text on one line}."""
    import inspect

    from aist_core.interfaces import KIND_CLASSES

    names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    # the __init__ in use, then the class and its plugin bases (an inherited __init__ is often
    # documented on the base that defines it), never the interfaces
    bases = [c for c in cls.__mro__ if c is not object and c not in KIND_CLASSES.values() and c.__name__ != "Component"]
    texts = [inspect.getdoc(cls.__init__) or ""] + [inspect.cleandoc(c.__dict__.get("__doc__") or "") for c in bases]
    entry = re.compile(r"^(\s*)(?:- )?`?([A-Za-z_]\w*(?:`?\s*[/,]\s*`?[A-Za-z_]\w*)*)`?:\s+(.*)$")
    docs: dict[str, str] = {}
    for text in texts:
        current: list[str] = []
        indent = 0
        for line in text.splitlines() + [""]:
            match = entry.match(line)
            keys = [k.strip(" `") for k in re.split(r"[/,]", match.group(2))] if match else []
            if match and keys and all(k in names for k in keys):
                current, indent = keys, len(match.group(1))
                for key in keys:
                    docs.setdefault(key, "")
                _append_doc(docs, current, match.group(3))
            elif current and line.strip() and (len(line) - len(line.lstrip()) > indent or not match):
                _append_doc(docs, current, line.strip())
            else:
                current = []
    # several parameters documented on one line: "size: side in px. epochs: passes over ..."
    for key in list(docs):
        for other, text in re.findall(r"(?:^|\.\s)([a-z_]\w*):\s+(.*?)(?=\.\s[a-z_]\w*:\s|$)", docs[key]):
            if other in names and other != key and not docs.get(other):
                docs[other] = text.rstrip(".") + "."
        head = re.split(r"\.\s[a-z_]\w*:\s", docs[key])[0]
        docs[key] = head if head.endswith(".") or head.endswith(")") else head + ("." if head else "")
    return {k: v for k, v in docs.items() if v}


def _append_doc(docs: dict[str, str], keys: list[str], text: str) -> None:
    for key in keys:
        docs[key] = f"{docs[key]} {text}".strip()
