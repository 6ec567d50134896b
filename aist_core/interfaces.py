"""The nine plugin kinds and their contracts.

A plugin is a class that subclasses one of these and is registered under a name (see
`aist_core.registry`). Constructor keyword arguments are the recipe parameters: the recipe loader
checks them against the signature and its type hints, so give every parameter a default and a
plain type (int, float, bool, str, tuple/list of those, Path, or a nested component kind), with
its accepted choices (`Literal[...]`) and ranges (`Annotated[float, Gt(0)]`) declared in the
annotation (`aist_core.constraints`; docs/recipes.md, "Declaring parameters").

Shared conventions:
- Images crossing an interface are NumPy arrays, channels last: photos (H, W, 3) uint8 RGB;
  renders and crops (H, W, 4) uint8 RGBA where alpha == 0 means background.
- Datasets crossing an interface are folders in the AIST views format (`aist_core.dataset`).
- Randomness comes only from `StageContext.seed` or an explicit `np.random.Generator`, so a
  component is deterministic under a seed (up to floating-point non-associativity on GPUs).
- `device` is a constructor parameter ("cpu", "cuda", "cuda:1"); components move their own
  tensors and never assume a GPU.
- The core imports no torch: translators, losses and models import it inside their modules.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from aist_core.constraints import NonNegativeFloat

if TYPE_CHECKING:  # the core never imports torch at run time
    import torch

    from aist_core.context import StageContext

KINDS = (
    "dataset_source",
    "segmenter",
    "filter",
    "normalizer",
    "translator",
    "annotation_loss",
    "shape_pose_model",
    "metric",
    "domain_gap",
)


class Component(abc.ABC):
    """Base of every plugin kind."""

    kind: ClassVar[str] = ""

    @classmethod
    @abc.abstractmethod
    def example(cls) -> "Component":
        """The smallest instance that runs on a CPU in about a second (used by contract tests)."""

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """Problems with recipe parameters that types cannot show (e.g. a missing data folder),
        each "param: what is wrong". Called by `aist check` before any work starts."""
        return []

    PATH_PARAM_NAMES: ClassVar[tuple[str, ...]] = ("root", "path", "weights")
    PATH_PARAM_SUFFIXES: ClassVar[tuple[str, ...]] = ("_root", "_dir", "_path", "_file")

    @classmethod
    def external_inputs(cls, params: dict[str, Any]) -> list[Path]:
        """Files and folders outside the cache that this component reads (list[Path]).

        `params` holds every constructor parameter, defaults filled in (as in the cache key).
        The runner fingerprints these paths (`aist_core.fingerprint`) into the key of the stage
        that uses the component, so adding a photo to a folder reruns that stage. Default: the
        non-empty str/Path values of parameters annotated `Path` or named `root`, `path`,
        `weights` or ending in `_root`, `_dir`, `_path`, `_file`. Override to be exact (e.g. to add a
        weights file a parameter does not name). Raises nothing.
        """
        import inspect
        import typing

        try:
            hints = typing.get_type_hints(cls.__init__)
        except Exception:  # unresolvable annotations: fall back to their text
            hints = {}
        out: list[Path] = []
        for name, param in inspect.signature(cls.__init__).parameters.items():
            hint = hints.get(name, param.annotation)
            by_type = hint is Path or Path in typing.get_args(hint) or (isinstance(hint, str) and "Path" in hint)
            by_name = name in cls.PATH_PARAM_NAMES or name.endswith(cls.PATH_PARAM_SUFFIXES)
            value = params.get(name)
            if (by_type or by_name) and isinstance(value, (str, Path)) and str(value):
                out.append(Path(value).expanduser())
        return out


# --------------------------------------------------------------------------------------------
class DatasetSource(Component):
    """Produces or reads a dataset and writes it in the AIST views format.

    `build(out, ctx)` writes any of:
      out/synthetic/  multi-view RGBA renders with cameras and ground-truth clouds (DPC-like);
      out/photos/     full-frame photos with boxes (ground truth for evaluation only, if known).
    It returns a summary dict of counts (merged into the report). Building is resumable: a second
    call on a partially written `out` finishes the missing items and redoes nothing. Unreadable
    inputs are recorded in `ctx.skipped` with path and reason, never raised.
    """

    kind = "dataset_source"

    @abc.abstractmethod
    def build(self, out: Path, ctx: "StageContext") -> dict[str, Any]:
        """Write out/synthetic/ and/or out/photos/ (views format); resumable; returns counts."""


# --------------------------------------------------------------------------------------------
@dataclass
class Instance:
    """One segmented object in a photo.

    mask: (H, W) bool, same size as the photo; box: (x0, y0, x1, y1) predicted box in pixels,
    x1/y1 exclusive; label: class name in the COCO vocabulary ("car", "truck", ...);
    score: confidence in [0, 1].
    """

    mask: np.ndarray
    box: tuple[float, float, float, float]
    label: str
    score: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def box_area(self) -> float:
        """Area of `box` in square pixels (0 for a degenerate box)."""
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class Segmenter(Component):
    """Finds object instances in photos.

    `segment(images, boxes)` takes a batch of (H, W, 3) uint8 RGB photos and optional per-image
    hint boxes (float array (K, 4) x0, y0, x1, y1, as datasets like Stanford Cars provide; a
    segmenter may ignore them) and returns one list of `Instance` per image, masks at full image
    size. Deterministic for fixed weights and inputs.

    `fit(synthetic, photos, workdir, ctx)` is optional: a segmenter that learns from the
    project's own data (the synthetic renders, with exact masks) trains there before the
    curation stage segments, keeps its weights in `workdir` and reuses them when present.
    Pretrained and weight-free segmenters leave it as it is, doing nothing.
    """

    kind = "segmenter"

    def fit(self, synthetic: Path, photos: Path, workdir: Path, ctx: "StageContext") -> None:
        """Learn from the synthetic views dataset and the photos to segment; default: nothing."""

    @abc.abstractmethod
    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Instance]]:
        """One list of Instances per (H, W, 3) uint8 photo, masks (H, W) bool at full size."""


# --------------------------------------------------------------------------------------------
class Filter(Component):
    """One rejection rule of seed report chapter 3.

    `check(image, instance)` returns None to keep the instance or a short reason string (the
    filter's `reason`) to reject it; the runner counts rejections by reason. Pure and
    deterministic: no state, no randomness.
    """

    kind = "filter"
    reason: ClassVar[str] = ""

    @abc.abstractmethod
    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        """None to keep `instance` of the (H, W, 3) uint8 photo `image`, else this filter's reason."""


# --------------------------------------------------------------------------------------------
class Normalizer(Component):
    """Turns a kept instance into a normalised RGBA crop (seed report 3.2.1 and 4.1.1).

    `fit(synthetic_alphas)` learns what it needs from the synthetic domain (for example the
    foreground/background ratio distribution) from (H, W) uint8 alpha channels.
    `normalize(image, instance, rng, **planned)` returns an (S, S, 4) uint8 RGBA crop, S = `size`,
    with alpha = 255 * mask; all randomness from `rng`.
    `plan(boxes, areas, rng)` is optional: decisions that need every kept instance at once. It
    gets each instance's box (x0, y0, x1, y1) and mask area, in order, and returns one dict of
    keyword arguments for `normalize` per instance, or None (the default: decide per crop).
    `state()` returns JSON-serialisable fitted values for the report.
    """

    kind = "normalizer"
    size: int = 128

    @abc.abstractmethod
    def fit(self, synthetic_alphas: Sequence[np.ndarray]) -> None:
        """Learn from the synthetic domain's (H, W) uint8 alpha channels (e.g. fg/bg ratios)."""

    def plan(self, boxes: Sequence[Sequence[float]], areas: Sequence[int],
             rng: np.random.Generator) -> list[dict[str, Any]] | None:
        """Per-instance keyword arguments for `normalize`, decided over all kept instances at
        once (boxes (x0, y0, x1, y1) in pixels, mask areas in pixels); None: decide per crop."""
        return None

    @abc.abstractmethod
    def normalize(self, image: np.ndarray, instance: Instance, rng: np.random.Generator, **planned: Any) -> np.ndarray:
        """The (S, S, 4) uint8 RGBA crop of `instance` (S = `size`, alpha = 255 * mask)."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable fitted values for the report (default: none)."""
        return {}


# --------------------------------------------------------------------------------------------
class AnnotationLoss(Component):
    """An extra generator loss that keeps annotations through translation (seed report 4.1).

    `forward(source, translated, cache)` takes the generator's input and output, (B, C, H, W)
    float tensors in [-1, 1] on the same device (C = 3, or 4 in true-alpha mode with alpha in
    channel 3), and returns an unweighted, non-negative scalar tensor that is differentiable with
    respect to `translated`. `cache` is a dict shared by all losses for one batch and direction:
    features of the fixed `source` belong there so they are computed once per batch.
    The translator multiplies by `weight_a2b` (G: A -> B, synthetic to real) or `weight_b2a`.
    """

    kind = "annotation_loss"

    def __init__(self, weight_a2b: NonNegativeFloat = 1.0, weight_b2a: NonNegativeFloat = 1.0):
        self.weight_a2b = float(weight_a2b)
        self.weight_b2a = float(weight_b2a)

    def to(self, device: str) -> "AnnotationLoss":
        """Move any tensors or networks the loss holds to `device`; returns self."""
        return self

    @abc.abstractmethod
    def forward(self, source: "torch.Tensor", translated: "torch.Tensor", cache: dict) -> "torch.Tensor":
        """Unweighted non-negative scalar loss of (B, C, H, W) tensors in [-1, 1], C = 3 or 4."""

    def __call__(self, source, translated, cache=None):
        return self.forward(source, translated, {} if cache is None else cache)


# --------------------------------------------------------------------------------------------
class Translator(Component):
    """Unpaired image translation between domain A (synthetic renders) and B (real crops).

    `fit(domain_a, domain_b, workdir, ctx)` trains on the `train` split of two views datasets
    and leaves a checkpoint in `workdir`; it resumes from the last checkpoint there.
    `save(path)` / `load(path)` write and read the trained weights (a folder).
    `stylize(images)` maps a batch of (B, H, W, 4) uint8 RGBA renders of domain A to domain B and
    returns the same shape and dtype; the alpha channel is returned unchanged, so masks carry over.
    Background: where alpha == 0 the returned RGB is black (0, 0, 0), "pure black means
    background" (seed report 4.1.1), unless the class sets `background = "generated"`: its RGB
    there is the generator's own output, left unmasked so the stylize stage can measure the
    mask the generator implies (`alpha_iou`; CycleGAN). Outputs are checked at the plugin
    boundary (`aist_core.boundary.stylize_problems`) and by `TranslatorContract`.
    """

    kind = "translator"
    losses: Sequence[AnnotationLoss] = ()
    background: ClassVar[str] = "black"  # or "generated": see the docstring

    @abc.abstractmethod
    def fit(self, domain_a: Path, domain_b: Path, workdir: Path, ctx: "StageContext") -> None:
        """Train on both views datasets' train splits, checkpointing to and resuming from `workdir`."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the trained weights into the folder `path` (no pickles: safetensors or JSON)."""

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Read weights written by `save`; raises FileNotFoundError naming the missing file."""

    @abc.abstractmethod
    def stylize(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 4) uint8 RGBA renders to domain B, same shape and dtype, alpha unchanged,
        RGB black (0) wherever alpha is 0 (the stylised dataset's masks are read from alpha)."""


# --------------------------------------------------------------------------------------------
class ShapePoseModel(Component):
    """Single-view shape (point cloud) and pose (quaternion) prediction (seed report chapter 5).

    `fit(dataset, workdir, ctx)` trains on the `train` split of a views dataset (multi-view
    objects with masks in alpha), resuming from checkpoints in `workdir`.
    `predict(images)` takes (B, H, W, 4) uint8 RGBA and returns points (B, N, 3) float32 in the
    object frame (within [-0.5, 0.5]^3) and poses (B, 4) float32 unit quaternions [w, x, y, z]
    in the DPC camera convention (`aist_core.camera`).
    """

    kind = "shape_pose_model"

    @abc.abstractmethod
    def fit(self, dataset: Path, workdir: Path, ctx: "StageContext") -> None:
        """Train on the views dataset's train split, checkpointing to and resuming from `workdir`."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the trained weights into the folder `path` (no pickles)."""

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Read weights written by `save`; raises FileNotFoundError naming the missing file."""

    @abc.abstractmethod
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 4) uint8 RGBA -> points (B, N, 3) float32 in [-0.5, 0.5]^3 and poses
        (B, 4) float32 unit quaternions [w, x, y, z] (DPC camera convention)."""


# --------------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """Predictions on one test set, with whatever ground truth exists for it.

    points: per image (N, 3) predicted cloud; quaternions: (M, 4) predicted poses;
    gt_points: per image ground-truth cloud or None; gt_quaternions: (M, 4) or None;
    masks: (M, S, S) bool observed masks (alpha > 0) or None; object_ids: per image (views of
    one object are correlated: intervals resample objects, `aist_core.stats`).
    ids: per image record id, or None; two EvalSets with equal ids hold the same images in the
    same order (what a paired comparison of two models needs).
    frame: "learned" when the model picks its own object frame (unsupervised pose, aligned to
    ground truth before comparing) or "ground_truth" when its poses and clouds are supervised in
    the ground-truth frame (a model says so with `pose_frame = "ground_truth"`; no alignment).
    """

    name: str
    points: list[np.ndarray]
    quaternions: np.ndarray
    object_ids: list[str]
    gt_points: list[np.ndarray] | None = None
    gt_quaternions: np.ndarray | None = None
    masks: np.ndarray | None = None
    ids: list[str] | None = None
    frame: str = "learned"


FRAMES = ("learned", "ground_truth")


class Metric(Component):
    """Numbers from predictions and ground truth (seed report 5.4 and 6.3).

    `fit(validation)` estimates what the metric needs from validation predictions (for example
    the global rotation aligning the model's frame to ground truth); it may do nothing.
    `compute(test)` returns a flat dict of finite floats; a metric whose ground truth is absent
    in `test` returns {} (so it can run on every test set). `needs` names the EvalSet fields used.

    Optional per-image API (what confidence intervals and paired differences are built from):
    `samples(test)` returns {name: (M,) float64 array}, one value per image of `test` in its
    order (NaN where an image has no value, e.g. an empty mask), or {} when the metric has no
    per-image form or its ground truth is absent (the default: no interval).
    `summarize(samples)` turns such arrays, possibly resampled (images repeated or dropped),
    into the same keys and values as `compute`; it ignores NaN and returns {} when nothing is
    left. It depends only on the arrays and the metric's parameters, never on `fit`'s state
    (the alignment is already applied in `samples`). For a metric that implements both,
    compute(test) == summarize(samples(test)).
    """

    kind = "metric"
    needs: ClassVar[tuple[str, ...]] = ()

    def fit(self, validation: EvalSet) -> None:
        """Estimate what the metric needs from validation predictions (default: nothing)."""
        return None

    def applicable(self, test: EvalSet) -> bool:
        """Whether `test` holds every field named in `needs`."""
        return all(getattr(test, name) is not None for name in self.needs)

    @abc.abstractmethod
    def compute(self, test: EvalSet) -> dict[str, float]:
        """Flat dict of finite floats for `test`; {} when its ground truth is absent."""

    def samples(self, test: EvalSet) -> dict[str, np.ndarray]:
        """{name: (M,) float64} per-image values in `test`'s order (NaN: no value); default {}."""
        return {}

    def summarize(self, samples: dict[str, np.ndarray]) -> dict[str, float]:
        """`compute`'s keys from (possibly resampled) per-image arrays, NaN ignored; default {}."""
        return {}


class DomainGap(Component):
    """How far a set of images is from the real crops, on object pixels (seed report 6.3 asks
    whether stylised images look real; this measures it without a downstream model).

    `compute(images, reference, seed)` takes `images` (N, H, W, 4) and `reference` (M, H, W, 4)
    uint8 RGBA of one size (alpha == 0 is background and must not influence the result) and
    returns a JSON-ready dict: finite floats, `[low, high]` intervals as 2-lists, and `None`
    with a "<key>_missing" string reason where a value cannot be computed (e.g. a weights file
    that is not present). Deterministic under `seed`. Raises ValueError when either set is too
    small to measure (the message says how many images it needs).
    """

    kind = "domain_gap"

    @abc.abstractmethod
    def compute(self, images: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, Any]:
        """Gap between (N, H, W, 4) and (M, H, W, 4) uint8 RGBA sets on object pixels (see class doc)."""


KIND_CLASSES: dict[str, type[Component]] = {
    "dataset_source": DatasetSource,
    "segmenter": Segmenter,
    "filter": Filter,
    "normalizer": Normalizer,
    "translator": Translator,
    "annotation_loss": AnnotationLoss,
    "shape_pose_model": ShapePoseModel,
    "metric": Metric,
    "domain_gap": DomainGap,
}
