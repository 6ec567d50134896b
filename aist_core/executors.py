"""Executors behind `StageContext.map`: where a batch stage's work units run.

- `LocalExecutor` (defined in `aist_core.context`, re-exported here): this process or a local
  process pool.
- `RayExecutor`: Ray tasks on a local Ray instance or on the cluster named by `RAY_ADDRESS`.

Both return results in the order of the items, so a stage's outputs do not depend on where it
ran. Work units write their own outputs atomically (`DatasetWriter.write_unit`), so resuming a
killed stage is the stage's business (it skips finished units) and works the same under either.
A Ray cluster must see the same filesystem paths as the driver (a shared cache folder) and have
`aist` and its plugins installed on every node.

`make_executor(name, workers)` is what the runner calls with `aist run --executor local|ray`.
Ray is imported only when a `RayExecutor` first maps, so the core stays importable without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aist_core.context import Executor, LocalExecutor

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "RayMissing", "make_executor", "ray_available"]

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = "pip install 'aist[ray]'"


class RayMissing(ImportError):
    """`--executor ray` was asked for and Ray is not importable."""


def ray_available() -> bool:
    """True when `import ray` succeeds (without keeping a failed import around)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayMissing(f"the ray executor needs Ray: {RAY_INSTALL_HINT} ({exc})") from None
    return ray


@dataclass
class RayExecutor:
    """Runs `fn` over items as Ray tasks, at most `max_in_flight` submitted and not yet yielded.

    - Connects to `address`, else `$RAY_ADDRESS`, else starts (once per process) a local Ray
      instance with `workers` CPUs and no dashboard. An instance already initialised in this
      process (`ray.init` by the caller) is used as it is.
    - `fn` must be a picklable top-level function (as for a process pool); each item becomes one
      task asking for `num_cpus` CPUs.
    - Results come back in item order. Completed tasks are collected with `ray.wait` as they
      finish, so a slow unit at the head does not stop the others from running, and the window
      (default: twice the cluster's CPUs, at least 4) keeps 37k items from being submitted at once.
    - A failing task raises its exception (Ray's `RayTaskError` subclasses the original type);
      tasks still pending are cancelled when the map fails or is abandoned.
    """

    distributed: ClassVar[bool] = True  # stages holding a model ship it to workers (`stages.fans_out`)
    workers: int = 1
    address: str | None = None
    max_in_flight: int | None = None
    num_cpus: float = 1

    def _connect(self, ray) -> None:
        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(self.workers)), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)

    def window(self, ray) -> int:
        """How many tasks may be submitted and not yet yielded."""
        if self.max_in_flight:
            return max(1, int(self.max_in_flight))
        cpus = int(ray.cluster_resources().get("CPU", 1) // max(self.num_cpus, 1e-9))
        return max(4, 2 * cpus)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], description: str = "") -> Iterator[Any]:
        """Yield `fn(item)` for every item in item order, running them as Ray tasks (see the class doc)."""
        items = list(items)
        if not items:
            return
        ray = _import_ray()
        self._connect(ray)
        # One remote wrapper for any callable (functools.partial too); `fn` is shipped once.
        task = ray.remote(num_cpus=self.num_cpus, max_retries=0)(_apply)
        fn_ref = ray.put(fn)
        window = self.window(ray)
        order: deque = deque()  # refs in item order, submitted and not yet yielded
        done: dict[Any, Any] = {}  # finished refs -> results, waiting for their turn
        running: set = set()  # submitted refs not yet finished
        submitted = 0
        try:
            while order or submitted < len(items):
                while submitted < len(items) and len(order) < window:
                    ref = task.remote(fn_ref, items[submitted])
                    order.append(ref)
                    running.add(ref)
                    submitted += 1
                head = order[0]
                if head not in done:
                    ready, _ = ray.wait(list(running), num_returns=1)
                    for ref in ready:
                        running.discard(ref)
                        done[ref] = ray.get(ref)  # raises the task's exception
                    continue
                order.popleft()
                yield done.pop(head)
        finally:
            for ref in running:
                with contextlib.suppress(Exception):  # best effort: the task may have finished meanwhile
                    ray.cancel(ref)


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    """The Ray task: `fn(item)` (Ray resolves `fn` from the object store)."""
    return fn(item)


def make_executor(name: str, workers: int) -> Executor:
    """The executor for `aist run --executor NAME`; ValueError for an unknown name, `RayMissing`
    when `ray` is asked for and not installed (checked here, before any stage runs)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        _import_ray()
        return RayExecutor(workers)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
