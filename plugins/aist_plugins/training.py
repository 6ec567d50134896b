"""What every first-party trainer shares: checkpoints, the loss log, TensorBoard and the
divergence guard.

Used by the CycleGAN translator (`style/cyclegan.py`), the shape/pose models
(`shape_pose/dpc.py`, `shape_pose/supervised.py`) and the shape-prior segmenter
(`segmentation/shape_prior.py`), so that all four:

- write checkpoints atomically (`torch.save` to `<name>.tmp`, then `os.replace`: a crash leaves
  the previous checkpoint whole) and never one holding a non-finite number
  (`save_checkpoint` checks every floating tensor first);
- read them with `torch.load(weights_only=True)` only, so a planted pickle cannot run code, and
  refuse a checkpoint written for another configuration with one line naming the file
  (`load_checkpoint`);
- log one CSV column per loss term to `<workdir>/losses.csv`, cut back to the checkpoint on a
  resume (`TrainingLog`), and TensorBoard scalars (per term and the learning rate) and sample
  images when `StageContext.log_dir` is set; with `log_dir` None nothing TensorBoard-related is
  imported;
- stop at the first diverged loss with `TrainingDiverged`:
  `<component>: loss term '<term>' is <nan|inf|value> at step <k>; lower the learning rate
  (lr=<value>) or this term's weight`.

They also share the scaling helpers (`MixedPrecision`, `Distributed`, `setup_distributed`,
`make_loader`, `to_device`): mixed precision through `torch.autocast` and `torch.amp.GradScaler`,
several processes through `torch.distributed` and `DistributedDataParallel` when launched under
`torchrun`, and training data streamed from disk through `torch.utils.data.DataLoader`.

"Absurdly large" finite losses count as diverged too: `DIVERGENCE_LIMIT` (1e18). Why that
value: the largest loss any of these trainers produces while training works is a bounded term,
the "image"-normalised alpha loss of the translator, at most weight * (H * W)^2, about 2e13 at
512 px with the largest weight in the recipes (300); DPC's projection loss is at most
0.5 * G^2 (2048 at G = 64), the cycle and identity terms at most 2 * lambda. 1e18 is 5e4 times
beyond that, and within a factor 20 of 1.8e19, the value whose square overflows float32 (3.4e38),
so one more step of growth would make any squared term inf anyway. Unbounded terms
(cross-entropies, LSGAN with a runaway discriminator, weight decay) that reach it have diverged.

That absolute bound alone lets a run that blew up by "only" 1e14 go on and be reported (a
CycleGAN at lr 1e6, a viewpoint model at lr 1e4). So a term also diverges when it grows beyond
`DIVERGENCE_GROWTH` (1e6) times its first logged value in the run (at least 1, so terms that
start at or near zero get room): a working trainer's terms fall or stay within a few times their
starting value (LSGAN and cycle terms are bounded by a few units times their weights, which the
first value already carries), and no schedule in these trainers raises a term a millionfold.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import pickle
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOSS_FILE = "losses.csv"
DIVERGENCE_LIMIT = 1e18
DIVERGENCE_GROWTH = 1e6  # a term this many times its first logged value (floor 1) has diverged


class TrainingDiverged(RuntimeError):
    """A loss term or a weight became non-finite (or beyond `DIVERGENCE_LIMIT`): training stops.

    The message is one line naming the component, the term (or weight), the step and the
    learning rate to lower. Nothing non-finite is checkpointed: the last checkpoint in the
    workdir, if any, is from before the divergence.
    """


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, not weights-only (a pickle carrying
    code), or written for another configuration. The message is one line naming the file."""


# ---------------------------------------------------------------------------- divergence
def describe_value(value: float, limit: float = DIVERGENCE_LIMIT, reference: float | None = None,
                   growth: float = DIVERGENCE_GROWTH) -> str | None:
    """"nan", "inf", "-inf", "<value> (beyond <limit>)" or "<value> (<n> times its first value
    <reference>)" for a diverged value; None for a sane one. `value` is a Python float; `limit` a
    positive float (absolute values above it count); `reference` the term's first logged value
    in the run (None: no relative check), compared as max(|reference|, 1) * `growth`."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) > limit:
        return f"{value:.3g} (beyond {limit:.0e})"
    if reference is not None and math.isfinite(reference) and abs(value) > growth * max(abs(reference), 1.0):
        return f"{value:.3g} ({abs(value) / max(abs(reference), 1.0):.0e} times its first value {reference:.3g})"
    return None


def check_losses(component: str, step: int | str, terms: Mapping[str, float], lr: float,
                 limit: float = DIVERGENCE_LIMIT, reference: Mapping[str, float] | None = None) -> None:
    """Raise `TrainingDiverged` at the first term (in `terms` order) that is NaN, inf, larger
    than `limit` in absolute value, or more than `DIVERGENCE_GROWTH` times its `reference` (the
    term's first logged value; see `describe_value`). `terms` maps term names to Python floats;
    `step` is the step as the trainer logs it; `lr` the configured learning rate (named in the
    message, with the term's weight: either can make a term run away)."""
    for term, value in terms.items():
        problem = describe_value(float(value), limit, None if reference is None else reference.get(term))
        if problem is not None:
            raise TrainingDiverged(f"{component}: loss term '{term}' is {problem} at step {step}; "
                                   f"lower the learning rate (lr={lr:g}) or this term's weight")


def _floating_tensors(state: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) for every floating-point tensor nested in dicts, lists and tuples."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            yield prefix or "tensor", state
    elif isinstance(state, Mapping):
        for key, value in state.items():
            yield from _floating_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from _floating_tensors(value, f"{prefix}.{index}" if prefix else str(index))


def check_finite_state(component: str, state: Any, step: int, lr: float) -> None:
    """Raise `TrainingDiverged` naming the first floating tensor in `state` (nested dicts,
    lists, tuples: network and optimiser state dicts, image pools) that holds NaN or inf.

    One fused reduction per tensor (`torch.isfinite(t).all()`), read back once per tensor:
    cheap next to `torch.save`, which copies every byte anyway."""
    for name, tensor in _floating_tensors(state):
        if tensor.numel() and not bool(torch.isfinite(tensor).all()):
            kind = "nan" if bool(torch.isnan(tensor).any()) else "inf"
            raise TrainingDiverged(f"{component}: weight '{name}' is {kind} after step {step}; "
                                   f"lower the learning rate (lr={lr:g})")


# ---------------------------------------------------------------------------- checkpoints
def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration as JSON would hold it (tuples become lists), for a stable comparison."""
    return json.loads(json.dumps(dict(config), sort_keys=True))


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], config: Mapping[str, Any], *,
                    component: str, step: int, lr: float) -> None:
    """Write `state` plus `config` to `path` atomically, after checking it holds finite numbers.

    state: tensors, state dicts and plain Python values (what `torch.load(weights_only=True)`
        can read back: no custom classes). Its key "config" is reserved.
    config: JSON-serialisable values that must match on resume (`load_checkpoint`).
    step, lr: named in the `TrainingDiverged` line should a weight be non-finite.

    Raises TrainingDiverged (nothing is written: the previous checkpoint stays) when any
    floating tensor in `state` holds NaN or inf.
    """
    path = Path(path)
    check_finite_state(component, state, step, lr)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "config": _plain(config)}, tmp)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint


def load_checkpoint(path: str | os.PathLike, config: Mapping[str, Any], device: str | torch.device = "cpu"
                    ) -> dict[str, Any] | None:
    """The state `save_checkpoint` wrote to `path` (tensors on `device`), or None without a file.

    Read with `torch.load(weights_only=True)` only: tensors and plain Python types, so a planted
    pickle cannot run code. Raises CheckpointError, one line naming the file, when the file is
    unreadable, not a weights-only checkpoint, or written for another `config` (the differing
    keys are listed with both values).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
        # UnpicklingError: a pickle carrying code (weights_only refuses it) or a damaged stream;
        # EOFError, RuntimeError (zip reader), ValueError: a truncated or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable weights-only checkpoint, refused ({first}); "
                              f"delete it or use a new workdir") from None
    if not isinstance(state, dict) or "config" not in state:
        raise CheckpointError(f"{path}: not a checkpoint of this trainer (no configuration recorded); "
                              f"delete it or use a new workdir")
    saved, mine = state["config"], _plain(config)
    if saved != mine:
        keys = sorted(set(saved) | set(mine)) if isinstance(saved, dict) else sorted(mine)
        diff = ", ".join(f"{k}={saved.get(k) if isinstance(saved, dict) else None!r} (now {mine.get(k)!r})"
                         for k in keys if not isinstance(saved, dict) or saved.get(k) != mine.get(k))
        raise CheckpointError(f"{path}: checkpoint of another configuration: {diff}; use a new workdir")
    return state


@contextlib.contextmanager
def evaluating(*nets: torch.nn.Module) -> Iterator[None]:
    """`nets` in eval mode under `torch.no_grad()` for the block, each put back in the mode it
    had: how a trainer evaluates its losses on the trained weights (`TrainingLog.check_trained`)
    without touching gradients or normalisation statistics."""
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


class WeightsError(ValueError):
    """A weights file that cannot be used: unreadable, damaged, not weights, or a pickle that
    would run code. The message is one line naming the file."""


def read_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, name -> tensor on `device`, never unpickling objects.

    `.safetensors` files are read with safetensors; any other file with `torch.load(...,
    weights_only=True)` (a torchvision `.pth` state dict), which refuses pickled code. Raises
    FileNotFoundError for a missing file and WeightsError, naming the file and what the reader
    said, for one that is damaged, foreign or carries code; both before any weight is used.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file missing")
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(str(path), device=str(device))
        else:
            tensors = torch.load(path, map_location=device, weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not a readable weights file, refused ({type(exc).__name__}: {first})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise WeightsError(f"{path}: not a weights file (expected a mapping of names to tensors)")
    return tensors


# ---------------------------------------------------------------------------- loss names
def registered_name(obj: Any, kind: str) -> str:
    """The name `obj`'s class is registered under for `kind` (its recipe `use = ...` name).

    An explicit string attribute `name` on the object wins; then the registry (entry points of
    group "aist", matched on "module:Class"); a class found nowhere gets its class name in
    snake case without a trailing "Loss" (AlphaLoss -> "alpha").
    """
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(obj)
    target = f"{cls.__module__}:{cls.__qualname__}"
    try:
        from aist_core.registry import get_registry

        for entry in get_registry():
            if entry.kind == kind and entry.target == target:
                return entry.name
    except Exception:  # noqa: BLE001, S110 - a broken third-party plugin must not stop training over a column name
        pass  # the class-name fallback below still names the column
    stem = re.sub(r"Loss$", "", cls.__name__) or cls.__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def unique_names(names: Iterable[str]) -> list[str]:
    """`names` with repeats numbered: ["alpha", "alpha", "edge"] -> ["alpha", "alpha_2", "edge"]."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


# ---------------------------------------------------------------------------- the log
def default_read_every(device: str | torch.device) -> int:
    """How many steps of losses to keep on the device before reading them back: 1 on a CPU
    (reading is free), 20 on an accelerator (each read waits for the queued kernels)."""
    return 1 if torch.device(device).type == "cpu" else 20


class TrainingLog:
    """Loss terms per step to `<workdir>/losses.csv` (+ TensorBoard), checked for divergence.

    component: name used in messages ("cyclegan", "dpc", ...).
    workdir: folder of losses.csv (created if missing); None writes no CSV (losses are still
        checked, and go to TensorBoard when `log_dir` is set).
    next_step: the first step this run will log. Rows already in losses.csv with a step >= it
        are dropped (they were logged after the checkpoint being resumed and will be logged
        again); next_step 0 starts a new file.
    lr: the configured learning rate, named in the divergence message.
    log_dir: TensorBoard folder (`StageContext.log_dir`); None = no TensorBoard, and
        `torch.utils.tensorboard` is never imported.
    read_every: steps whose losses stay on the device before one read-back (`flush`); 1 checks
        every step as it comes. A divergence found in a batch is reported at its own step.
    history: a list to append each checked row to (dict: "step", extra columns, terms as
        floats), e.g. a model's `history`.
    limit: absolute value beyond which a finite term counts as diverged (`DIVERGENCE_LIMIT`).

    CSV columns: "step", then the extra columns passed to `log` (e.g. "epoch"), then one per
    loss term in the order of the first row; later rows must have the same terms. Values are
    written as Python floats (repr: exact for float32). TensorBoard tags: "loss/<term>" and
    "learning_rate" per logged step, and whatever `image` is given.

    Use as a context manager: a normal exit flushes and checks what is left, an exception exit
    only closes the TensorBoard writer (rows not yet flushed were logged after the last
    checkpoint, so a resume logs them again).
    """

    def __init__(self, component: str, workdir: str | os.PathLike | None, *, next_step: int, lr: float,
                 log_dir: str | os.PathLike | None = None, read_every: int = 1,
                 history: list[dict[str, float]] | None = None, limit: float = DIVERGENCE_LIMIT):
        self.component, self.lr, self.limit = component, float(lr), float(limit)
        self.read_every = max(1, int(read_every))
        self.history = history
        self.path = None if workdir is None else Path(workdir) / LOSS_FILE
        self.columns: list[str] | None = None
        self.reference: dict[str, float] = {}  # each term's first logged value (the growth check)
        self._pending: list[tuple[int, dict[str, Any], list[str], torch.Tensor, float | None]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate(int(next_step))
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import (
                SummaryWriter,  # only when asked for: an optional extra
            )

            Path(log_dir).mkdir(parents=True, exist_ok=True)
            # purge_step hides events a crashed run wrote after the checkpoint being resumed
            self.writer = SummaryWriter(str(log_dir), purge_step=int(next_step) if next_step > 0 else None)

    def _truncate(self, next_step: int) -> None:
        if not self.path.is_file():
            return
        if next_step <= 0:
            self.path.unlink()
            return
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step") not in (None, "") and float(r["step"]) < next_step]
        if not rows or "step" not in columns:
            self.path.unlink()
            return
        self.columns = columns
        for key, value in rows[0].items():  # a resumed run compares with the run's first values
            with contextlib.suppress(TypeError, ValueError):
                if key != "step":
                    self.reference[key] = float(value)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def log(self, step: int, terms: Mapping[str, torch.Tensor | float], lr: float | None = None,
            **extra: Any) -> None:
        """Record one step: `terms` maps each loss term to a scalar (0-d or 1-element tensor on
        any device, or a float); `lr` is the step's learning rate (TensorBoard only); `extra`
        are further CSV columns (e.g. epoch=3), not checked. Raises TrainingDiverged when a
        flush (every `read_every` steps) finds a diverged term; rows before it are written."""
        names = list(terms)
        # one (T,) float64 row on the tensors' device (float32 -> float64 is exact); plain floats
        # join it there, so a row never mixes devices
        device = next((t.device for t in terms.values() if torch.is_tensor(t)), torch.device("cpu"))
        values = torch.stack([t.detach().reshape(()).to(device=device, dtype=torch.float64) if torch.is_tensor(t)
                              else torch.tensor(float(t), dtype=torch.float64, device=device) for t in terms.values()])
        self._pending.append((int(step), dict(extra), names, values, None if lr is None else float(lr)))
        if len(self._pending) >= self.read_every:
            self.flush()

    def flush(self) -> None:
        """Read pending losses back (one transfer), check them in step order, write the rows.
        Call before every checkpoint so the CSV and `history` match it."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        devices = {v.device for *_rest, v, _lr in pending}
        if len(devices) == 1 and len({len(n) for _s, _e, n, _v, _lr in pending}) == 1:
            read = torch.stack([v for *_rest, v, _lr in pending]).cpu().tolist()
        else:
            read = [v.cpu().tolist() for *_rest, v, _lr in pending]
        rows = []
        try:
            for (step, extra, names, _values, lr), numbers in zip(pending, read):
                terms = dict(zip(names, numbers))
                for term, number in terms.items():
                    if term not in self.reference and math.isfinite(number):
                        self.reference[term] = number
                check_losses(self.component, step, terms, self.lr, self.limit, self.reference)
                rows.append(({"step": step, **extra, **terms}, names, lr))
        finally:  # the rows before a diverged one are kept: they show the run up to it
            self._write(rows)

    def _write(self, rows: list[tuple[dict[str, Any], list[str], float | None]]) -> None:
        if not rows:
            return
        new = self.columns is None
        if new:
            self.columns = list(rows[0][0])
        for row, _names, _lr in rows:
            if list(row) != self.columns:
                raise ValueError(f"{self.path or self.component}: this run logs columns {list(row)}, "
                                 f"earlier rows have {self.columns}; use a new workdir")
        if self.path is not None:
            with self.path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, self.columns)
                if new:
                    writer.writeheader()
                writer.writerows(row for row, _names, _lr in rows)
        for row, names, lr in rows:
            if self.history is not None:
                self.history.append(dict(row))
            if self.writer is not None:
                step = int(row["step"])
                for key in names:  # loss terms only; extra columns such as the epoch are not losses
                    self.writer.add_scalar(f"loss/{key}", row[key], step)
                if lr is not None:
                    self.writer.add_scalar("learning_rate", lr, step)

    def check_trained(self, step: int, terms: Mapping[str, torch.Tensor | float]) -> None:
        """Check loss terms computed on the trained weights, after the last update.

        Every logged loss is computed before its step's update, so the last update is checked
        by none: a learning rate that blows the weights up in the last step (finite, but
        1e6 times too large) would otherwise be saved and reported as a result. The trainer
        evaluates its losses once more (no update, eval mode) before the final checkpoint and
        passes them here: flushed, then checked against the run's first values like every row,
        nothing written. Raises TrainingDiverged naming the term and "the trained weights"."""
        self.flush()
        numbers = {name: float(value) for name, value in terms.items()}
        check_losses(self.component, f"{step} (the trained weights, after the last update)", numbers, self.lr,
                     self.limit, self.reference)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """An (H, W, 3) uint8 image to TensorBoard under `tag` (nothing without `log_dir`)."""
        if self.writer is not None:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or image.dtype != np.uint8:
                raise ValueError(f"{self.component}: TensorBoard image {tag!r} must be (H, W, 3) uint8, "
                                 f"got {image.shape} {image.dtype}")
            self.writer.add_image(tag, image, int(step), dataformats="HWC")

    def close(self, flush: bool = True) -> None:
        """Flush (when `flush`) and close the TensorBoard writer; the CSV is always closed."""
        try:
            if flush:
                self.flush()
        finally:
            if self.writer is not None:
                self.writer.close()
                self.writer = None

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(flush=exc_type is None)


def read_losses(workdir: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of `<workdir>/losses.csv` as floats (every column); [] without the file."""
    path = Path(workdir) / LOSS_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


# ---------------------------------------------------------------------------- mixed precision
PRECISIONS = ("fp32", "bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_problem(precision: str, device: str | torch.device) -> str | None:
    """None when `precision` can train on `device`, else one line "precision: ..." for
    `check_params`. "fp16" needs CUDA (its `torch.amp.GradScaler`); "bf16" and "fp32" run anywhere."""
    if precision not in PRECISIONS:
        return f"precision: must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}"
    kind = torch.device(device).type if isinstance(device, (str, torch.device)) else "cpu"
    if precision == "fp16" and kind != "cuda":
        return (f"precision: 'fp16' needs a CUDA device (torch.amp.GradScaler), device is {str(device)!r}; "
                f"use 'bf16' or 'fp32' there")
    return None


class MixedPrecision:
    """Autocast and loss scaling for one trainer, from its `precision` recipe parameter.

    precision: "fp32" (no autocast, plain `backward` and `optimizer.step`: exactly the float32
        path), "bf16" (`torch.autocast(<device type>, dtype=torch.bfloat16)`: CPU and CUDA, no
        loss scaling needed) or "fp16" (`torch.autocast(..., dtype=torch.float16)` with a
        `torch.amp.GradScaler`: CUDA only).
    device: the training device.

    Raises ValueError (the `precision_problem` line) for an unknown precision or fp16 off CUDA.
    Use: `with amp.autocast(): loss = ...`; `amp.backward(loss)`; `amp.step(optimizer)` per
    optimiser; `amp.update()` once per training step; checkpoint `state_dict()` (the scaler's
    scale and growth tracker; {} without a scaler).
    """

    def __init__(self, precision: str, device: str | torch.device):
        problem = precision_problem(precision, device)
        if problem:
            raise ValueError(problem)
        self.precision = precision
        self.device_type = torch.device(device).type
        self.dtype = _AMP_DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(self.device_type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast region for forward passes and losses (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """`loss.backward()`, through the scaler for fp16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """`optimizer.step()`; for fp16 the scaler unscales and skips a step with inf/NaN grads."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def update(self) -> None:
        """Once per training step, after every `step`: adjusts the fp16 loss scale."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The GradScaler's state (scale, growth tracker: plain numbers) for a checkpoint; {}
        without a scaler (fp32, bf16)."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (nothing to do without a scaler or for {})."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))


def to_channels_last(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """A (B, C, H, W) tensor in `torch.channels_last` memory format when `enabled` (same values,
    NHWC strides: faster convolutions on tensor cores); `x` itself otherwise."""
    return x.contiguous(memory_format=torch.channels_last) if enabled and x.dim() == 4 else x


# ---------------------------------------------------------------------------- several processes
@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` job (rank 0 of 1 when not launched that way).

    rank: global rank in [0, world_size); local_rank: rank on this machine (its CUDA device);
    world_size: number of processes. Only rank 0 writes (checkpoints, losses.csv, samples,
    TensorBoard); every rank reads the same files, so the workdir must be on a filesystem all
    ranks see.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together (world_size > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing in a single process)."""
        if self.enabled:
            torch.distributed.barrier()

    def shard(self, items: list) -> list:
        """This rank's contiguous part of a global batch `items`: ranks take
        ceil(len / world_size) items in turn, so the first ranks' parts are the larger ones.
        Raises ValueError when this rank's part would be empty."""
        if not self.enabled:
            return items
        size = -(-len(items) // self.world_size)
        part = items[self.rank * size:(self.rank + 1) * size]
        if not part:
            raise ValueError(f"a batch of {len(items)} cannot be split over {self.world_size} processes; "
                             f"use a batch size (and dataset size) giving every process at least one item")
        return part

    def mean(self, terms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every term averaged over the ranks (one all-reduce of a stacked float32 row, left on
        the device: nothing is read back); `terms` itself in a single process."""
        if not self.enabled:
            return dict(terms)
        names = list(terms)
        row = torch.stack([terms[n].detach().reshape(()).float() for n in names])
        torch.distributed.all_reduce(row, op=torch.distributed.ReduceOp.SUM)
        row /= self.world_size
        return dict(zip(names, row.unbind()))

    def gather(self, obj: Any) -> list[Any] | None:
        """`obj` of every rank, in rank order, on rank 0 (None elsewhere); [obj] in a single
        process. `obj` must be picklable and hold CPU tensors only."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def wrap(self, module: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
        """`DistributedDataParallel(module)` (gradients averaged over the ranks in backward;
        rank 0's parameters broadcast at wrapping) when several processes run; `module` itself
        otherwise."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device = torch.device(device)
        return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def setup_distributed(device: str | torch.device) -> tuple[Distributed, str]:
    """(this process's `Distributed`, its training device), from the environment `torchrun` sets.

    Without WORLD_SIZE > 1 in the environment: (Distributed(), device) and nothing happens.
    Under `torchrun --nproc-per-node N` (WORLD_SIZE, RANK, LOCAL_RANK set): a CUDA `device`
    becomes "cuda:<LOCAL_RANK>" (one GPU per process) and the default process group is
    initialised once ("nccl" on CUDA, "gloo" otherwise; the rendezvous from MASTER_ADDR and
    MASTER_PORT that torchrun sets). Raises ValueError naming the variable when RANK or
    LOCAL_RANK is missing or not an integer.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Distributed(), str(device)
    values = {}
    for name in ("RANK", "LOCAL_RANK"):
        try:
            values[name] = int(os.environ[name])
        except (KeyError, ValueError):
            raise ValueError(f"WORLD_SIZE={world} but {name}={os.environ.get(name)!r}; launch with torchrun") from None
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", values["LOCAL_RANK"])
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(values["RANK"], world, values["LOCAL_RANK"]), str(device)


# ---------------------------------------------------------------------------- streamed data
def make_loader(dataset: torch.utils.data.Dataset, batch_sampler: Iterable[list], *, num_workers: int,
                device: str | torch.device, seed: int = 0, collate_fn: Any = None) -> torch.utils.data.DataLoader:
    """A `DataLoader` that reads the batches `batch_sampler` lists (one list of dataset keys per
    step) with `num_workers` worker processes (0: in this process), page-locked (`pin_memory`)
    when `device` is CUDA so `to_device` copies run asynchronously. Workers stay alive for the
    whole run and prefetch 2 batches each; the datasets here draw nothing at random, so the
    batches do not depend on `num_workers` (`seed` only fixes the workers' own generators).
    `collate_fn`: how a list of items becomes a batch (None: torch's default, stacking)."""
    workers = int(num_workers)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=workers,
        pin_memory=torch.device(device).type == "cuda", persistent_workers=workers > 0, collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(int(seed)))


def to_device(x: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """`x` on `device`; non-blocking (overlapping the next batch's work) from pinned memory."""
    return x.to(device, non_blocking=True)


class _Probe(torch.utils.data.Dataset):
    """Item i: "" when image i decodes as RGBA, else the DatasetError message."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str:
        from aist_core.dataset import DatasetError, read_image

        try:
            read_image(self.paths[index], "RGBA")
        except DatasetError as exc:
            return str(exc)
        return ""


def unreadable(paths: list[str], num_workers: int = 0) -> list[str]:
    """Per image path, "" when it decodes (`aist_core.dataset.read_image`, RGBA) or the
    DatasetError line saying why not. Decodes each image once and keeps none (`num_workers`
    DataLoader processes; 0: this one), so a trainer can drop unreadable images before drawing
    its seeded batches, with memory that does not grow with the dataset."""
    loader = torch.utils.data.DataLoader(_Probe(list(paths)), batch_size=64, num_workers=int(num_workers),
                                         collate_fn=list)
    return [problem for batch in loader for problem in batch]
