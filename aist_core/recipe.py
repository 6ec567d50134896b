"""TOML recipes: load, override, validate against component signatures, before any work starts.

    schema = 1
    seed = 0
    [dataset]                  # one table per stage
    use = "procedural-cars"    # the component, by registered name
    n_objects = 60             # every other key: a keyword parameter of that component
    [[filter]]                 # stages with several components use arrays of tables
    use = "score"
    [[translate.losses]]       # nested components (a parameter typed list[AnnotationLoss])
    use = "alpha"
    [experiments.exp2]         # optional: named variants, deep-merged onto the stages above
    train_on = "stylized"

Errors read `recipe.toml:LINE: key.path: what is wrong`, list the accepted names and offer a
"did you mean". No dotted import paths and no code: `use` only takes registered names.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import os
import re
import stat
import sys
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from aist_core.constraints import Fraction, PositiveInt, Seed, StageSeed, check_value
from aist_core.interfaces import KIND_CLASSES, Component
from aist_core.registry import PluginError, Registry

SCHEMA = 1
# The largest recipe file read (a recipe is a few KiB of TOML): refuses /dev/zero and the like.
MAX_RECIPE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class StageSpec:
    """What the runner needs to know about a stage table: its component kind and own options."""

    kind: str | None  # component kind picked with `use`; None: the stage has no component
    multiple: bool = False  # an array of tables, one component each (filters)
    options: dict[str, Any] = field(default_factory=dict)  # stage options and their defaults
    required: bool = False
    # constraints of stage options, as for component parameters (aist_core.constraints)
    constraints: dict[str, Any] = field(default_factory=dict)


STAGES: dict[str, StageSpec] = {
    "dataset": StageSpec("dataset_source", required=True),
    "photos": StageSpec("dataset_source"),
    "segment": StageSpec("segmenter", options={"batch_size": 4}, constraints={"batch_size": PositiveInt}),
    "filter": StageSpec("filter", multiple=True),
    "normalize": StageSpec("normalizer", options={"test_fraction": 0.2}, constraints={"test_fraction": Fraction}),
    # seed = -1: the recipe's seed. A stage seed varies one stage (translator or shape/pose
    # model initialisation and data order) while every other stage keeps its cached output.
    "translate": StageSpec("translator", options={"seed": -1}, constraints={"seed": StageSeed}),
    "stylize": StageSpec(None, options={"batch_size": 16}, constraints={"batch_size": PositiveInt}),
    "shape_pose": StageSpec("shape_pose_model", options={"seed": -1}, required=True, constraints={"seed": StageSeed}),
    # metrics: Metric tables; domain_gap: DomainGap tables (images vs the real crops);
    # baseline: the experiment every other one is compared with (the first one when absent)
    "evaluate": StageSpec(None, options={"metrics": [], "domain_gap": [], "baseline": "baseline"}),
}
# Stage options that are arrays of component tables, and the kind of their components.
COMPONENT_LIST_OPTIONS = {"metrics": "metric", "domain_gap": "domain_gap"}
TOP_LEVEL = {"schema", "seed", "name", "description", "experiments", "tensorboard"} | set(STAGES)
EXPERIMENT_KEYS = {"train_on"} | set(STAGES)
TRAIN_ON = ("synthetic", "stylized")
# Recipe and experiment names become folder and file names: a plain identifier, no separators,
# no "..", not starting with "." or "-" (hidden files, command-line options).
PLAIN_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class RecipeError(ValueError):
    """One or more problems in a recipe; `str()` has one line per problem."""

    def __init__(self, problems: list[str]):
        # one line each, whatever a key or a file name holds (newlines, NUL, bidi controls)
        self.problems = [escape_controls(p) for p in problems]
        super().__init__("\n".join(self.problems))


def escape_controls(text: str) -> str:
    """`text` with control, format and line-separator characters written as Python escapes
    ("\\n", "\\x00", "\\u202e"): a printed problem stays one readable line."""
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else ch
                   for ch in text)


def _key(*parts: Any) -> str:
    """A key path for messages: printable parts as they are, a part with control or invisible
    characters quoted as TOML writes it, escapes and all (`experiments."ok\\nname"`), so the
    message stays one line and the odd key is visible as one."""
    return ".".join(p if isinstance(p, str) and p.isprintable() else escape_controls(json.dumps(str(p), ensure_ascii=False))
                    for p in parts)


# ---------------------------------------------------------------------------- line numbers
class LineIndex:
    """Maps key paths ("translate.losses[1].weight_a2b") to the line that set them.

    A small scanner over the TOML text (tomllib keeps no positions): table headers, array-of-
    table headers and `key = value` lines, which is all a recipe uses.
    """

    HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
    KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"']+)\s*=")

    def __init__(self, text: str):
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        prefix = ""
        for lineno, line in enumerate(text.splitlines(), 1):
            header = self.HEADER.match(line)
            if header:
                name = _unquote(header.group(2))
                if header.group(1) == "[[":
                    counters[name] = counters.get(name, -1) + 1
                    prefix = f"{name}[{counters[name]}]"
                else:
                    prefix = name
                self.lines.setdefault(prefix, lineno)
                continue
            key = self.KEY.match(line)
            if key:
                path = f"{prefix}.{_unquote(key.group(1))}" if prefix else _unquote(key.group(1))
                self.lines.setdefault(path, lineno)

    def line(self, path: str) -> int | None:
        """The line that set `path`, else its nearest enclosing table's; None when unknown."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return None


@dataclass
class _ExperimentView:
    """A recipe while one experiment is validated: a key path such as "translate.lr" is located
    where its value came from: the experiment's own table ("experiments.NAME.translate.lr",
    named in the location) or the base table, or the `--set` that set either."""

    recipe: "Recipe"
    experiment: str

    @property
    def path(self) -> Path:
        """The recipe file."""
        return self.recipe.path

    @property
    def data(self) -> dict[str, Any]:
        """The recipe's data (all experiments)."""
        return self.recipe.data

    def where(self, key_path: str) -> str:
        """`Recipe.where` of the experiment's key when the experiment sets it (or a table above
        it), with "(experiments.NAME)" after a file location; else of the base key."""
        own = f"experiments.{self.experiment}.{key_path}"
        parts = own.split(".")
        if _has_path(self.recipe.data, parts):  # the experiment sets this key (a list it replaces holds it too)
            place = self.recipe.where(own)
            return place if place.startswith("--set") else f"{place} (experiments.{self.experiment})"
        return self.recipe.where(key_path)


def _has_path(data: Any, parts: list[str]) -> bool:
    """Whether nested tables hold the dotted key `parts` ("name[i]" steps into an array)."""
    node = data
    for part in parts:
        index = re.fullmatch(r"(.+)\[(\d+)\]", part)
        name = index.group(1) if index else part
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
        if index:
            if not isinstance(node, list) or int(index.group(2)) >= len(node):
                return False
            node = node[int(index.group(2))]
    return True


def _unquote(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


# ---------------------------------------------------------------------------- loading
@dataclass
class Recipe:
    """A loaded recipe: its file, its data (after `--set` overrides) and where each key stands.

    `overrides` maps each key path set by `--set` to the argument as given ("KEY=VALUE"), or by
    another option to its words ("--device cuda:1"), so a problem with such a value names the
    option rather than a line of the file."""

    path: Path
    data: dict[str, Any]
    index: LineIndex
    overrides: dict[str, str] = field(default_factory=dict)

    def where(self, key_path: str) -> str:
        """Where a key path's value comes from: "--set KEY=VALUE" when an override set it (or a
        table above it), else "recipe.toml:LINE" (just the file when the line is unknown)."""
        parts = key_path.split(".")
        for end in range(len(parts), 0, -1):
            given = self.overrides.get(".".join(parts[:end]))
            if given is not None:  # "KEY=VALUE" from --set, or an option's own words ("--device cuda:x")
                return given if given.startswith("--") else f"--set {given}"
        line = self.index.line(key_path)
        return f"{self.path}:{line}" if line else str(self.path)

    def in_experiment(self, experiment: str) -> "_ExperimentView":
        """This recipe as seen while validating one experiment's merged tables."""
        return _ExperimentView(self, experiment)

    @property
    def name(self) -> str:
        """The run folder's name: `name`, else the file name (both validated as plain names)."""
        return self.data.get("name") or self.path.stem

    @property
    def tensorboard(self) -> bool:
        """Whether training stages log to TensorBoard (validated by `validate`)."""
        return self.data.get("tensorboard", False) is True

    @property
    def seed(self) -> int:
        """The recipe's seed (0 when absent), validated to fit the random generators."""
        return int(self.data.get("seed", 0))

    def experiments(self) -> dict[str, dict[str, Any]]:
        """Each experiment's full stage tables (base deep-merged with its overrides)."""
        base = {k: v for k, v in self.data.items() if k in STAGES}
        variants = self.data.get("experiments") or {"main": {}}
        out = {}
        for name, override in variants.items():
            start = copy.deepcopy(base)
            for stage, table in override.items():
                # An experiment that swaps a stage's component gets only the parameters it sets
                # (the base component's parameters mean nothing to another component); the
                # stage's own options (seed, batch sizes) are still inherited.
                if stage in STAGES and isinstance(table, dict) and isinstance(start.get(stage), dict) \
                        and "use" in table and table["use"] != start[stage].get("use"):
                    start[stage] = {k: v for k, v in start[stage].items() if k in STAGES[stage].options}
            merged = _deep_merge(start, {k: v for k, v in override.items() if k in STAGES})
            default_train_on = "stylized" if "translate" in merged else "synthetic"
            merged["train_on"] = override.get("train_on", default_train_on)
            out[name] = merged
        return out


def _deep_merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe and apply `--set key.path=value` overrides (values parsed as TOML)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise RecipeError([f"{path}: cannot read recipe (a directory, not a TOML file)"])
        if not stat.S_ISREG(mode):  # a FIFO would block, a device (/dev/zero) never end
            raise RecipeError([f"{path}: cannot read recipe (not a regular file: {_file_kind(mode)})"])
        with open(path, "rb") as handle:
            raw = handle.read(MAX_RECIPE_BYTES + 1)
        if len(raw) > MAX_RECIPE_BYTES:
            raise RecipeError([f"{path}: cannot read recipe (larger than {MAX_RECIPE_BYTES // 2**20} MiB; "
                               "a recipe is a small TOML file)"])
        text = raw.decode("utf-8")
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read recipe ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([f"{path}: cannot read recipe (not UTF-8 text: byte {exc.start}; a binary file?)"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError([f"{path}: invalid TOML: {exc}"]) from None
    except RecursionError:
        raise RecipeError([f"{path}: invalid TOML: nested too deeply"]) from None
    recipe = Recipe(path, data, LineIndex(text))
    for item in overrides or []:
        _apply_override(recipe, item)
        recipe.overrides[item.partition("=")[0].strip()] = item.strip()
    return recipe


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


# A `--set` key path: dot-separated bare keys, each optionally indexed (`filter[1].min_side`).
SET_KEY = re.compile(r"[A-Za-z0-9_-]+(\[\d+\])?(\.[A-Za-z0-9_-]+(\[\d+\])?)*")


def _apply_override(recipe: Recipe, item: str) -> None:
    """Set one `key.path=value`; `name[i]` steps into an existing array of tables."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError([f"--set {item!r}: expected key.path=value"])
    if not SET_KEY.fullmatch(key):
        raise RecipeError([f"--set {key!r}: malformed key path: dot-separated bare keys (letters, digits, '_', '-'), "
                           "each optionally indexed with [i]; no empty or quoted parts"])
    try:
        parsed = tomllib.loads(f"v = {raw.strip()}")
    except tomllib.TOMLDecodeError:
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in raw.strip()):
            raise RecipeError([f"--set {key}: value {raw.strip()!r} is not one TOML value (it holds a line break "
                               "or control character)"]) from None
        parsed = {"v": raw.strip()}  # bare words are strings: --set dataset.use=dpc
    except RecursionError:
        raise RecipeError([f"--set {key}: value nested too deeply"]) from None
    if set(parsed) != {"v"}:  # "1e-4\nname = '../x'" would set a second key
        raise RecipeError([f"--set {key}: value {raw.strip()!r} is more than one TOML value (it sets "
                           f"{', '.join(repr(k) for k in parsed if k != 'v')} too); give one value"])
    value = parsed["v"]
    node: Any = recipe.data
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        index = re.fullmatch(r"(.+)\[(\d+)\]", part)
        name = index.group(1) if index else part
        if not name or not isinstance(node, dict):
            raise RecipeError([f"--set {key}: {'.'.join(parts[:i]) or key} is not a table"])
        if index:
            array = node.get(name)
            if not isinstance(array, list):
                raise RecipeError([f"--set {key}: {name} is not an array of tables"])
            position = int(index.group(2))
            if position >= len(array):
                raise RecipeError([f"--set {key}: index {position} out of range ({name} has {len(array)} entries)"])
            if last:
                array[position] = value
            else:
                node = array[position]
        elif last:
            node[name] = value
        else:
            node = node.setdefault(name, {})


# ---------------------------------------------------------------------------- validation
@dataclass
class ComponentSpec:
    """A validated component choice: kind, registered name and its keyword parameters."""

    kind: str
    name: str
    params: dict[str, Any]

    def build(self, registry: Registry) -> Component:
        """Instantiate the component, nested components first, Path-typed strings as Paths."""
        cls = registry.load(self.kind, self.name)
        hints = _hints(cls)
        params = {}
        for key, value in self.params.items():
            if _is_spec_list(value):
                value = [spec.build(registry) for spec in value]
            elif isinstance(value, str) and _accepts_path(hints.get(key)):
                value = Path(value).expanduser()
            params[key] = value
        return cls(**params)

    def resolved(self, registry: Registry) -> dict[str, Any]:
        """Name, all parameters with defaults filled in, and the plugin's version: the cache key."""
        entry = registry.get(self.kind, self.name)
        defaults = {
            name: p.default
            for name, p in inspect.signature(entry.load().__init__).parameters.items()
            if p.default is not inspect.Parameter.empty and name != "self"
        }
        params = {**defaults, **self.params}
        return {
            "use": self.name,
            "distribution": f"{entry.distribution}=={entry.version}",
            "params": {
                k: ([s.resolved(registry) for s in v] if _is_spec_list(v) else _plain(v)) for k, v in sorted(params.items())
            },
        }


def _accepts_path(hint: Any) -> bool:
    return hint is Path or Path in typing.get_args(hint)


def _is_spec_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, ComponentSpec) for v in value)


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class ValidatedStage:
    name: str
    components: list[ComponentSpec]  # one, several (filter), or none (stylize, evaluate)
    options: dict[str, Any]


def validate(recipe: Recipe, registry: Registry) -> dict[str, dict[str, Any]]:
    """Check the whole recipe; return {experiment: {"train_on": ..., stage: ValidatedStage}}.

    Raises RecipeError listing every problem found, each with file, line and key path.
    """
    problems: list[str] = []
    data = recipe.data
    if data.get("schema") != SCHEMA:
        problems.append(f"{recipe.where('schema')}: schema: expected schema = {SCHEMA}, got {data.get('schema')!r}")
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(_unknown(recipe, key, key, sorted(TOP_LEVEL), "top-level key", shown=_key(key)))
    problems += _check_tensorboard(recipe)
    problems += _check_top_level(recipe)
    experiments = data.get("experiments", {})
    if not isinstance(experiments, dict):
        problems.append(f"{recipe.where('experiments')}: experiments: must be a table of [experiments.NAME] tables, "
                        f"got {experiments!r}")
        experiments = {}
    for name, override in experiments.items():
        if not PLAIN_NAME.fullmatch(name):
            problems.append(f"{recipe.where(f'experiments.{name}')}: {_key('experiments', name)}: {_name_rule('experiment name', name)}")
        if not isinstance(override, dict):
            problems.append(f"{recipe.where(f'experiments.{name}')}: {_key('experiments', name)}: must be a table")
            continue
        for key in override:
            if key not in EXPERIMENT_KEYS:
                problems.append(_unknown(recipe, f"experiments.{name}.{key}", key, sorted(EXPERIMENT_KEYS), "experiment key",
                                         shown=_key("experiments", name, key)))
        if override.get("train_on", "synthetic") not in TRAIN_ON:
            problems.append(
                f"{recipe.where(f'experiments.{name}.train_on')}: {_key('experiments', name, 'train_on')}: "
                f"{override['train_on']!r} is not one of {', '.join(TRAIN_ON)}"
            )
    if problems:
        raise RecipeError(problems)

    out: dict[str, dict[str, Any]] = {}
    for exp_name, tables in recipe.experiments().items():
        prefix = "" if "experiments" not in data else f"experiments.{exp_name}."
        stages: dict[str, Any] = {"train_on": tables.pop("train_on")}
        for stage, spec in STAGES.items():
            if stage not in tables:
                if spec.required:
                    problems.append(f"{recipe.path}: {stage}: missing [{stage}] table (required)")
                continue
            located = recipe.in_experiment(exp_name) if "experiments" in data else recipe
            stages[stage] = _validate_stage(located, registry, stage, spec, tables[stage], problems)
        if stages["train_on"] == "stylized" and "translate" not in stages:
            problems.append(f"{recipe.path}: {prefix}train_on: 'stylized' needs a [translate] table")
        if "translate" in stages and "normalize" not in stages:
            problems.append(f"{recipe.path}: translate: needs real crops: add [segment], [[filter]] and [normalize]")
        out[exp_name] = stages
    baseline = (data.get("evaluate") or {}).get("baseline") if isinstance(data.get("evaluate"), dict) else None
    if baseline is not None and baseline not in out:  # else the report would silently compare with another
        problems.append(f"{recipe.where('evaluate.baseline')}: evaluate.baseline: {baseline!r} is not an experiment "
                        f"of this recipe; experiments: {', '.join(out)}")
    problems = list(dict.fromkeys(problems))
    if problems:
        raise RecipeError(problems)
    return out


def _name_rule(what: str, name: Any) -> str:
    return (f"{what} {name!r} is not a plain name: letters, digits, '_', '.', '-' (up to 100, not starting "
            "with '.' or '-', no '..'); it becomes a folder or file name")


def _check_top_level(recipe: Recipe) -> list[str]:
    """`seed` fits the random generators, `name` and `description` are strings and the run folder's
    name (`name`, else the file name) is a plain name that cannot leave the runs folder."""
    problems = []
    data = recipe.data
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        problems.append(f"{recipe.where('seed')}: seed: expected a non-negative integer, got {seed!r}")
    elif (problem := check_value(seed, Seed)) is not None:
        problems.append(f"{recipe.where('seed')}: seed: {problem}")
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str):
            problems.append(f"{recipe.where('name')}: name: expected a string, got {name!r}")
        elif not PLAIN_NAME.fullmatch(name):
            problems.append(f"{recipe.where('name')}: name: {_name_rule('run name', name)}")
    elif not PLAIN_NAME.fullmatch(recipe.path.stem):
        problems.append(f"{recipe.path}: name: the file name {recipe.path.stem!r} cannot name the run folder; "
                        "set name = \"...\" (letters, digits, '_', '.', '-')")
    if not isinstance(data.get("description", ""), str):
        problems.append(f"{recipe.where('description')}: description: expected a string, got {data['description']!r}")
    return problems


def _check_tensorboard(recipe: Recipe) -> list[str]:
    """`tensorboard = true` logs every training stage to <run>/tensorboard/; it needs the
    `tensorboard` package (`pip install aist[tensorboard]`), checked here, before any work."""
    value = recipe.data.get("tensorboard", False)
    if not isinstance(value, bool):
        return [f"{recipe.where('tensorboard')}: tensorboard: expected true or false, got {value!r}"]
    if value:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            return [f"{recipe.where('tensorboard')}: tensorboard: true needs the tensorboard package, which is not "
                    "installed (pip install 'aist[tensorboard]')"]
    return []


def _validate_stage(recipe, registry, stage, spec, table, problems) -> ValidatedStage:
    options = dict(spec.options)
    components: list[ComponentSpec] = []
    if spec.multiple:
        tables = table if isinstance(table, list) else [table]
        for i, sub in enumerate(tables):
            c = _validate_component(recipe, registry, spec.kind, sub, f"{stage}[{i}]", problems, set())
            if c:
                components.append(c)
        return ValidatedStage(stage, components, options)
    if not isinstance(table, dict):
        problems.append(f"{recipe.where(stage)}: {stage}: must be a table")
        return ValidatedStage(stage, [], options)
    own = {k: v for k, v in table.items() if k in spec.options}
    for key, value in own.items():
        if key in COMPONENT_LIST_OPTIONS:
            sub_tables = value if isinstance(value, list) else [value]
            own[key] = [
                c
                for i, sub in enumerate(sub_tables)
                if (c := _validate_component(recipe, registry, COMPONENT_LIST_OPTIONS[key], sub, f"{stage}.{key}[{i}]", problems, set()))
            ]
        elif not _type_ok(value, type(spec.options[key])):
            problems.append(f"{recipe.where(f'{stage}.{key}')}: {stage}.{key}: expected {type(spec.options[key]).__name__}, got {value!r}")
        elif key in spec.constraints and (problem := check_value(value, spec.constraints[key])) is not None:
            problems.append(f"{recipe.where(f'{stage}.{key}')}: {stage}.{key}: {problem}")
    options.update(own)
    if spec.kind is None:
        for key in table:
            if key not in spec.options:
                problems.append(_unknown(recipe, f"{stage}.{key}", key, sorted(spec.options), "option", shown=_key(stage, key)))
        return ValidatedStage(stage, [], options)
    rest = {k: v for k, v in table.items() if k not in spec.options}
    c = _validate_component(recipe, registry, spec.kind, rest, stage, problems, set(spec.options))
    return ValidatedStage(stage, [c] if c else [], options)


def _validate_component(recipe, registry, kind, table, path, problems, stage_options) -> ComponentSpec | None:
    if not isinstance(table, dict):
        problems.append(f"{recipe.where(path)}: {path}: must be a table with use = \"name\"")
        return None
    name = table.get("use")
    available = registry.names(kind)
    if "use" not in table:
        problems.append(f"{recipe.where(path)}: {path}.use: missing; pick a {kind}: {', '.join(available) or 'none installed'}")
        return None
    if not isinstance(name, str):
        problems.append(f"{recipe.where(f'{path}.use')}: {path}.use: must be a string (a registered name), got {name!r}; "
                        f"pick a {kind}: {', '.join(available) or 'none installed'}")
        return None
    if name not in available:
        problems.append(_unknown(recipe, f"{path}.use", name, available, kind))
        return None
    try:
        cls = registry.load(kind, name)
    except PluginError as exc:
        problems.append(f"{recipe.where(f'{path}.use')}: {path}.use: {exc}")
        return None
    signature = {
        k: p
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    hints = _hints(cls)
    constraints = _hints(cls, extras=True)
    params: dict[str, Any] = {}
    for key, value in table.items():
        if key == "use":
            continue
        key_path = f"{path}.{key}"
        if key not in signature:
            problems.append(_unknown(recipe, key_path, key, sorted(set(signature) | stage_options), "parameter",
                                     f" of {kind} {name!r}", shown=f"{path}.{_key(key)}"))
            continue
        nested_kind = _component_kind(hints.get(key))
        if nested_kind:
            subs = value if isinstance(value, list) else [value]
            params[key] = [
                c
                for i, sub in enumerate(subs)
                if (c := _validate_component(recipe, registry, nested_kind, sub, f"{key_path}[{i}]", problems, set()))
            ]
            continue
        hint = hints.get(key, inspect.Parameter.empty)
        if not _type_ok(value, hint):
            problems.append(f"{recipe.where(key_path)}: {key_path}: {_type_problem(value, hint)}")
            continue
        value = _coerce(value, hint)
        # ranges, choices and patterns declared in the annotation (aist_core.constraints)
        if key in constraints and (problem := check_value(value, constraints[key])) is not None:
            problems.append(f"{recipe.where(key_path)}: {key_path}: {problem}")
            continue
        params[key] = value
    # A component may check its parameters against the world (a data folder that must exist),
    # so a recipe pointing at missing data is refused before any work starts.
    for problem in getattr(cls, "check_params", lambda _params: [])(params):
        key, _, message = problem.partition(": ")
        problems.append(f"{recipe.where(f'{path}.{key}')}: {path}.{key}: {message}")
    return ComponentSpec(kind, name, params)


def _unknown(recipe: Recipe, key_path: str, given: str, accepted: list[str], what: str, owner: str = "",
             shown: str | None = None) -> str:
    """`shown`: the key path as printed, when it differs from the one looked up (`_key`)."""
    message = f"{recipe.where(key_path)}: {shown or key_path}: unknown {what} {given!r}{owner}"
    close = difflib.get_close_matches(given, accepted, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" (accepted: {', '.join(accepted) or 'none'})"


# ---------------------------------------------------------------------------- types
def _hints(cls: type, extras: bool = False) -> dict[str, Any]:
    """The constructor's resolved annotations; with `extras`, `Annotated[...]` metadata is kept."""
    try:
        return typing.get_type_hints(cls.__init__, include_extras=extras)
    except Exception:  # unresolvable annotations: fall back to no type checking for them
        return {}


def _type_problem(value: Any, hint: Any) -> str:
    """"expected float, got 'high'", or for a choice "'x' is not one of a, b; did you mean 'a'?"."""
    choices = [a for a in typing.get_args(hint) if typing.get_origin(hint) is typing.Literal]
    if not choices and typing.get_origin(hint) in (typing.Union, types.UnionType):
        choices = [c for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal for c in typing.get_args(a)]
    if choices:
        message = f"{value!r} is not one of {', '.join(repr(c) for c in choices)}"
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
        return message + (f"; did you mean {close[0]!r}?" if close else "")
    return f"expected {_hint_name(hint)}, got {value!r}"


def _component_kind(hint: Any) -> str | None:
    for arg in (hint, *typing.get_args(hint)):
        if inspect.isclass(arg) and issubclass(arg, Component):
            for kind, base in KIND_CLASSES.items():
                if issubclass(arg, base):
                    return kind
    return None


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is inspect.Parameter.empty or hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        return not args or all(_type_ok(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path or (inspect.isclass(hint) and issubclass(hint, Path)):
        return isinstance(value, str)
    if inspect.isclass(hint):
        return isinstance(value, hint)
    return True


def _coerce(value: Any, hint: Any) -> Any:
    """TOML lists become tuples where the parameter is a tuple; Path-typed strings stay strings
    in the cache key and become Paths when the component is built."""
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def default_device(recipe: Recipe, registry: Registry, device: str) -> list[str]:
    """`aist run --device DEVICE`: every stage component (base tables and experiments' swapped
    ones) whose constructor takes a `device` parameter and whose table does not set one gets
    DEVICE; a table that names its device keeps it. Returns the key paths set. Unknown stages or
    components are left for `validate` to report. DEVICE "cpu" changes no stage key (it is the
    components' default)."""
    changed: list[str] = []

    def visit(table: Any, path: str, kind: str | None) -> None:
        if not isinstance(table, dict) or not isinstance(table.get("use"), str) or kind is None or "device" in table:
            return
        try:
            cls = registry.load(kind, table["use"])
        except (KeyError, PluginError):
            return
        if "device" in inspect.signature(cls.__init__).parameters:
            table["device"] = device
            changed.append(f"{path}.device")
            recipe.overrides[f"{path}.device"] = f"--device {device}"  # a bad value names the option, not a line

    def stage_tables(tables: dict[str, Any], prefix: str) -> None:
        for stage, spec in STAGES.items():
            table = tables.get(stage)
            if isinstance(table, list):
                for i, sub in enumerate(table):
                    visit(sub, f"{prefix}{stage}[{i}]", spec.kind)
            else:
                visit(table, f"{prefix}{stage}", spec.kind)
            if isinstance(table, dict):
                for option, kind in COMPONENT_LIST_OPTIONS.items():
                    for i, sub in enumerate(table.get(option) or []):
                        visit(sub, f"{prefix}{stage}.{option}[{i}]", kind)

    stage_tables(recipe.data, "")
    for name, override in (recipe.data.get("experiments") or {}).items():
        if isinstance(override, dict):
            stage_tables(override, f"experiments.{name}.")
    return changed
