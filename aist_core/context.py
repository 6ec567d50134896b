"""What a component gets from the runner while it works: seed, scratch space, progress, the
executor seam and a place to record skipped inputs and report values.

The executor is the one seam between "what a stage computes" and "where it runs": batch stages
(render, segment, stylise) call `ctx.map`, so a distributed engine can replace `LocalExecutor`
without touching a component or a recipe.
"""

from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """What batch stages fan out through: `map(fn, items)` runs `fn` on every item somewhere
    (this process, a process pool, a Ray cluster) and yields the results in the items' order."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], description: str = "") -> Iterator[R]:
        """Yield `fn(item)` for every item, in order; `fn` must be a picklable top-level function."""


@dataclass
class LocalExecutor:
    """Runs `fn` over items in this process (workers <= 1) or in a process pool.

    Results come back in order. `fn` must be a picklable top-level function when workers > 1.
    """

    workers: int = 1

    def map(self, fn, items, description=""):
        """Yield `fn(item)` in order: inline for one worker or one item, else through a process pool.

        Pool workers die with the process that started them (`die_with_parent`): a run killed
        with SIGKILL leaves no orphaned workers holding memory.
        """
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
            return
        with ProcessPoolExecutor(max_workers=self.workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            yield from pool.map(fn, items)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG).

    A process-pool initializer: without it, `kill -9` of a run leaves its workers running on
    as orphans until they notice the broken pipe, each holding its imports and data (hundreds
    of MB). `parent_pid`: the pid of the process that started this one; should it have died
    before the request was made (the race prctl leaves open), this process exits at once.
    A no-op on other systems, and where prctl is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect


class Progress(Protocol):
    """A progress display: wraps an iterator, yields its items unchanged."""
    def __call__(self, items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]: ...


def plain_progress(items, total=None, description=""):
    """No display: yield the items unchanged (tests, --quiet)."""
    yield from items


def rich_progress(items, total=None, description=""):
    """A rich progress bar on stderr; plain iteration when stderr is not a terminal (a log file
    would otherwise fill with the bar's blank redraw lines)."""
    import sys

    if not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import track

    yield from track(items, total=total, description=description or "working", transient=True)


def reason_counts(entries: Iterable[dict[str, str]]) -> dict[str, int]:
    """Skipped entries [{"path", "reason"}] counted by the reason's name: its text before the
    first " (" or ":" ("grayscale image (single channel)" -> "grayscale image"), sorted by name."""
    counts: dict[str, int] = {}
    for entry in entries:
        key = entry["reason"].split(" (")[0].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


@dataclass
class SkipLog:
    """Inputs a stage could not use: each recorded with path and reason, none silently lost."""

    entries: list[dict[str, str]] = field(default_factory=list)

    def record(self, path: str | os.PathLike, reason: str) -> None:
        """Record that the input at `path` was skipped; `reason` is "<name>" or "<name> (<detail>)"
        / "<name>: <detail>". The same (path, reason) twice is one entry: a test set read once
        per model must not count its bad file once per model."""
        entry = {"path": str(path), "reason": reason}
        if entry not in self.entries:
            self.entries.append(entry)

    def counts(self) -> dict[str, int]:
        """How many entries per reason name (`reason_counts`)."""
        return reason_counts(self.entries)


@dataclass
class StageContext:
    """Handed to every component call that does real work.

    - `workdir`: scratch space that survives a crash of the run (checkpoints live here), keyed
      like the stage output, so a rerun of the same stage finds it again.
    - `seed`: the stage's seed; components derive all randomness from it.
    - `report`: values the stage wants in `report.json` (flat or nested, JSON-serialisable).
    - `figures`: PNG files (relative to the stage output) the human report should show.
    - `log_dir`: where a training stage writes TensorBoard event files (scalars per loss term,
      learning rate, sample grids); None when the recipe did not ask for TensorBoard
      (`tensorboard = true`). A side channel: it never changes a stage's outputs.
    """

    workdir: Path
    seed: int = 0
    device: str = "cpu"
    executor: Executor = field(default_factory=LocalExecutor)
    progress: Progress = plain_progress
    skipped: SkipLog = field(default_factory=SkipLog)
    report: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    log: Callable[[str], None] = print
    log_dir: Path | None = None

    def map(self, fn, items, description=""):
        """`executor.map(fn, items)` shown through `progress`; results in the items' order."""
        items = list(items)
        return self.progress(self.executor.map(fn, items, description), total=len(items), description=description)

    @classmethod
    def for_tests(cls, workdir: str | os.PathLike, seed: int = 0) -> "StageContext":
        """A quiet context on `workdir` (created) with `seed`, the local in-process executor and no progress."""
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        return cls(workdir=path, seed=seed, log=lambda _msg: None)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write strict JSON under a temporary name and rename, so a crash never leaves half a file.

    Non-finite floats (NaN, inf; Python or NumPy) become null, because NaN is not JSON (RFC 8259)
    and strict readers (browsers, jq, most languages) reject it; a writer that knows why a value
    is missing should say so next to it ("<key>_missing": reason). NumPy arrays and scalars
    become lists and numbers, Paths strings. Raises TypeError for anything else that JSON cannot
    hold, and ValueError (json's allow_nan=False) should a non-finite number still get through.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(strict_json(data), indent=2, sort_keys=True, allow_nan=False, default=_json_default)
    tmp.write_text(text)
    os.replace(tmp, path)


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, NumPy values made plain Python,
    tuples made lists (dict keys and other types are left to json.dumps)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # NumPy arrays and scalars
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
