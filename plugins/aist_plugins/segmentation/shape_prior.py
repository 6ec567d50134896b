"""A weight-free segmenter that learns the object's shape from the project's synthetic renders.

GrabCut sees colours only: on the procedural photos it misses dark roofs and tyres against dark
asphalt and takes the contact shadow for car, and a dozen colour-model variants all stop near a
median IoU of 0.85 (benchmarks/results/segmentation.md). The synthetic renders know better:
they are the same object class with exact masks. `fit` pastes them onto patches of the photos'
own background (copy_paste.py) and trains a small U-Net (unet.py) to segment the object inside
its hint-box window; `segment` runs it on each photo's hint boxes, maps the probabilities back
and lets GrabCut, seeded by them, settle the edges.

Nothing is downloaded: the segment stage calls `fit` with the experiment's synthetic set and
photos, and the weights are kept in the stage folder (or loaded from `weights`). Training is
checkpointed and resumes where it stopped.

Every instance is labelled `label` with score 1.0, as GrabCut's: the hint box is ground truth
for "there is a car here"; the network's mean confidence is kept in `extra`.

Checkpoints, losses.csv (columns step, bce, dice, total; step counted from 0), the divergence
guard and mixed precision (`precision`, `channels_last`, as the CycleGAN and the DPC have them)
come from `aist_plugins.training`. Training is one process: the network is small (488k
parameters at width 16) and trains in minutes, so it has no DistributedDataParallel path; its
data are in memory but bounded by `max_renders` and `max_background_photos`, not by the
dataset's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Interval, MultipleOf

from aist_core.constraints import Device, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.interfaces import Instance, Segmenter

from ..training import (LOSS_FILE, MixedPrecision, TrainingLog, check_finite_state, default_read_every, evaluating,
                        load_checkpoint, precision_problem, read_weights, save_checkpoint, to_channels_last)
from .copy_paste import CopyPasteSampler, background_patches, window_transform
from .grabcut import clean_mask, grabcut_from_prior, hint_boxes
from .unet import UNet

WEIGHTS = "shape_prior.safetensors"
CHECKPOINT = "checkpoint.pt"
LOSSES = LOSS_FILE


class ShapePriorSegmenter(Segmenter):
    """A U-Net trained on synthetic renders pasted on photo backgrounds, run in each hint box."""

    def __init__(
        self,
        steps: PositiveInt = 3000,
        batch_size: PositiveInt = 16,
        learning_rate: PositiveFloat = 1e-3,
        size: Annotated[int, Ge(8), MultipleOf(8)] = 64,
        context: NonNegativeFloat = 0.25,
        width: PositiveInt = 16,
        threshold: Fraction = 0.5,
        refine_iterations: NonNegativeInt = 3,
        sure: Annotated[float, Interval(ge=0.5, le=1)] = 0.99,
        smoothing: NonNegativeFloat = 1.0,
        max_side: PositiveInt = 320,
        label: str = "car",
        speck_fraction: Fraction = 0.002,
        fill_holes: bool = True,
        max_renders: PositiveInt = 2000,
        max_background_photos: PositiveInt = 300,
        checkpoint_every: PositiveInt = 250,
        weights: str | None = None,
        device: Device = "cpu",
        precision: Literal["fp32", "bf16", "fp16"] = "fp32",
        channels_last: bool = False,
    ):
        """steps: training steps (Adam; the rate drops to 0.3x for the last quarter).
        batch_size: copy-paste pairs per step.
        learning_rate: Adam's step size.
        size: window side in pixels the network sees (divisible by 8). 64 is what was measured
            on the procedural photos (benchmarks/results/segmentation.md); a step at 96 costs 2.9x.
        context: margin around the hint box, as a fraction of its size (as GrabCut's window).
        width: U-Net channels at the top level (488,001 parameters at 16).
        threshold: probability above which a pixel is object (without refinement).
        refine_iterations: GrabCut iterations seeded by the network's probabilities, which
            sharpen its soft edges with colour models (grabcut.grabcut_from_prior); 0 = none.
        sure: probability above which (below 1 - sure) the refinement may not change a pixel.
        smoothing: sigma in pixels of the Gaussian blur before refinement (as GrabCut's).
        max_side: refinement works on the window downscaled to at most this side (as GrabCut's),
            so its cost does not grow with the photo; masks are scaled back.
        label: class name given to every instance (the hint boxes are car boxes).
        speck_fraction: drop mask components under this share of the window; 0 keeps all.
        fill_holes: fill holes enclosed by the mask.
        max_renders: synthetic training images held in memory (evenly spaced over the set).
        max_background_photos: photos that background patches are cut from.
        checkpoint_every: steps between checkpoints of an interrupted training.
        weights: a trained shape_prior.safetensors to use instead of training.
        device: where the network runs.
        precision: training arithmetic: "fp32" (default, unchanged), "bf16" (the network's
            forward under torch.autocast with bfloat16, CPU or CUDA) or "fp16" (float16 autocast
            with a GradScaler, CUDA only); losses and inference stay float32.
        channels_last: the U-Net and its inputs in channels_last (NHWC) memory format.

        Raises ValueError for a size not divisible by 8 or fp16 off CUDA."""
        if size % 8:
            raise ValueError(f"size must be divisible by 8 (the U-Net pools three times), got {size}")
        problem = precision_problem(precision, device)
        if problem:
            raise ValueError(problem)
        self.precision, self.channels_last = precision, bool(channels_last)
        self.steps, self.batch_size, self.learning_rate = int(steps), int(batch_size), float(learning_rate)
        self.size, self.context, self.width = int(size), float(context), int(width)
        self.threshold, self.label = float(threshold), str(label)
        self.refine_iterations, self.sure, self.smoothing = int(refine_iterations), float(sure), float(smoothing)
        self.max_side = int(max_side)
        self.speck_fraction, self.fill_holes = float(speck_fraction), bool(fill_holes)
        self.max_renders, self.max_background_photos = int(max_renders), int(max_background_photos)
        self.checkpoint_every = int(checkpoint_every)
        self.weights = weights
        self.device = device
        self.net = UNet(width).to(device)
        self.trained = False
        if weights is not None:
            self.load(Path(weights))

    @classmethod
    def example(cls) -> "ShapePriorSegmenter":
        """Trained for a few steps on drawn blobs: enough to exercise the contract."""
        from aist_core.testing.fixtures import make_photo

        rng = np.random.default_rng(0)
        blobs = [make_photo(rng, 64, 64) for _ in range(6)]
        renders = [np.dstack([image, mask.astype(np.uint8) * 255]) for image, mask, _ in blobs]
        photos = [make_photo(rng, 64, 192)[::2] for _ in range(8)]  # (image, hint box)
        segmenter = cls(steps=3, batch_size=2, size=32, width=4, checkpoint_every=0)
        segmenter.fit_arrays(renders, photos)
        return segmenter

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """fp16 needs a CUDA device: said by `aist check`, before any work."""
        problem = precision_problem(params.get("precision", "fp32"), params.get("device", "cpu"))
        return [problem] if problem else []

    # ------------------------------------------------------------------ training
    def fit(self, synthetic: Path, photos: Path, workdir: Path, ctx) -> None:
        """Train on `synthetic`'s renders over `photos`' backgrounds; reuse workdir's weights."""
        workdir = Path(workdir)
        if self.weights is not None:
            return  # loaded in __init__
        if (workdir / WEIGHTS).is_file():
            self.load(workdir / WEIGHTS)
            return
        renders = _load_renders(ViewsDataset(synthetic), self.max_renders)
        backgrounds = _load_photos(ViewsDataset(photos), self.max_background_photos)
        if not renders:
            raise ValueError(f"{synthetic}: no readable synthetic renders to learn the object's shape from")
        ctx.log(f"shape prior: training on {len(renders)} renders over {len(backgrounds)} photos' backgrounds")
        try:
            self.fit_arrays(renders, backgrounds, seed=ctx.seed, workdir=workdir, progress=ctx.progress,
                            log_dir=ctx.log_dir)
        except ValueError as exc:  # too little free background: say which photos
            raise ValueError(f"{photos}: {exc}") from None
        self.save(workdir / WEIGHTS)

    def fit_arrays(self, renders: Sequence[np.ndarray], photos: Sequence[tuple[np.ndarray, np.ndarray | None]],
                   seed: int = 0, workdir: Path | None = None, progress=None, log_dir: Path | None = None) -> None:
        """Train from RGBA renders and (RGB photo, hint boxes) pairs in memory.

        With a `workdir`, checkpoints (network, optimiser, step, sampler RNG) are written every
        `checkpoint_every` steps, losses to workdir/losses.csv, and training resumes from the
        last checkpoint. `log_dir` adds TensorBoard scalars. Raises TrainingDiverged
        (`aist_plugins.training`) at the first non-finite loss or when the trained weights hold
        NaN or inf, CheckpointError for a checkpoint of another configuration.
        """
        torch.manual_seed(seed)
        self.net = UNet(self.width).to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        amp = MixedPrecision(self.precision, self.device)
        patches = background_patches(photos, self.size, np.random.default_rng([seed, 1]))
        sampler = CopyPasteSampler(renders, patches, self.size, self.context, np.random.default_rng([seed, 2]))
        if workdir:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        start = self._resume(workdir, optimizer, sampler, amp) if workdir else 0
        self.net.train()
        steps = range(start, self.steps)
        with TrainingLog("shape-prior", workdir, next_step=start, lr=self.learning_rate, log_dir=log_dir,
                         read_every=default_read_every(self.device)) as log:
            for step in progress(steps, total=len(steps), description="training shape prior") if progress else steps:
                rate = self.learning_rate * (0.3 if step >= 0.75 * self.steps else 1.0)
                for group in optimizer.param_groups:  # a lower rate for the last quarter settles the edges
                    group["lr"] = rate
                windows, masks = sampler.batch(self.batch_size)
                terms = self._loss_terms(windows, masks, amp)
                optimizer.zero_grad()
                amp.backward(terms["total"])
                amp.step(optimizer)
                amp.update()
                log.log(step, {k: v.detach() for k, v in terms.items()}, lr=rate)
                if step + 1 == self.steps:  # the last update is in no logged loss: check the trained weights
                    with evaluating(self.net):
                        log.check_trained(step, self._loss_terms(windows, masks, amp))
                if workdir and self.checkpoint_every and (step + 1) % self.checkpoint_every == 0 and step + 1 < self.steps:
                    log.flush()  # checks the losses before anything is saved
                    self._checkpoint(workdir, optimizer, sampler, step + 1, amp)
        # the last step's update is checkpointed nowhere but in the weights `fit` saves: check it
        check_finite_state("shape-prior", self.net.state_dict(), self.steps - 1, self.learning_rate)
        self.net.eval()
        self.trained = True

    def _loss_terms(self, windows: np.ndarray, masks: np.ndarray, amp: MixedPrecision) -> dict[str, torch.Tensor]:
        """`mask_loss_terms` of the network on a sampler batch: (B, S, S, 3) uint8 windows and
        (B, S, S) bool masks. The forward runs under the precision's autocast, the losses in
        float32."""
        with amp.autocast():
            logits = self.net(to_channels_last(_to_tensor(windows, self.device), self.channels_last))
        return mask_loss_terms(logits.float(), torch.from_numpy(masks).to(self.device)[:, None].float())

    def _checkpoint(self, workdir: Path, optimizer, sampler: CopyPasteSampler, step: int, amp: MixedPrecision) -> None:
        state = {"step": step, "net": self.net.state_dict(), "optimizer": optimizer.state_dict(),
                 "sampler_rng": sampler.rng.bit_generator.state, "scaler": amp.state_dict()}
        save_checkpoint(Path(workdir) / CHECKPOINT, state, self._config(), component="shape-prior", step=step - 1,
                        lr=self.learning_rate)

    def _resume(self, workdir: Path, optimizer, sampler: CopyPasteSampler, amp: MixedPrecision) -> int:
        """The step to continue from (0 without a checkpoint); restores network, optimiser and
        sampler RNG. Weights-only loading: a planted pickle raises CheckpointError, unrun."""
        state = load_checkpoint(Path(workdir) / CHECKPOINT, self._config(), self.device)
        if state is None:
            return 0
        self.net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        amp.load_state_dict(state.get("scaler", {}))
        return int(state["step"])

    def _config(self) -> dict:
        """What a checkpoint must match to be resumed (a precision other than fp32 is recorded)."""
        extra = {"precision": self.precision} if self.precision != "fp32" else {}
        return {**extra, "steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "size": self.size, "context": self.context, "width": self.width}

    def save(self, path: Path) -> None:
        """The network's weights to the safetensors file `path`, with size, context and width
        as metadata (checked by `load`)."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"size": str(self.size), "context": str(self.context), "width": str(self.width)}
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path), metadata=metadata)

    def load(self, path: Path) -> None:
        """Weights written by `save`. Raises FileNotFoundError (missing file), WeightsError (a
        damaged or foreign file) or ValueError (weights for another size, context or width),
        each naming the file."""
        from safetensors import safe_open

        if not path.is_file():
            raise FileNotFoundError(f"{path}: shape-prior weights missing (let the segment stage train them)")
        tensors = read_weights(path, self.device)  # first: a damaged file is named here
        with safe_open(str(path), "pt") as handle:
            saved = handle.metadata() or {}
        mine = {"size": str(self.size), "context": str(self.context), "width": str(self.width)}
        if saved != mine:
            raise ValueError(f"{path}: weights for {saved}, this segmenter is {mine}")
        self.net.load_state_dict(tensors)
        self.net.eval()
        self.trained = True

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Instance]]:
        if not self.trained:
            raise RuntimeError("shape-prior segmenter is untrained: run it through the segment stage "
                               "(it trains on the synthetic set) or set weights = 'path/to/shape_prior.safetensors'")
        results = []
        for i, image in enumerate(images):
            hint = hint_boxes(image, None if boxes is None else boxes[i])
            warps = [window_transform(box, self.context, self.size) for box in hint]
            windows = np.stack([extract_window(image, warp, self.size) for warp in warps])
            probabilities = torch.sigmoid(self.net(_to_tensor(windows, self.device)))[:, 0].cpu().numpy()
            instances = [self._instance(image, box, warp, p) for box, warp, p in zip(hint, warps, probabilities)]
            results.append([inst for inst in instances if inst is not None])
        return results

    def _instance(self, image: np.ndarray, box: np.ndarray, warp: np.ndarray, probability: np.ndarray):
        import cv2

        h, w = image.shape[:2]
        full = cv2.warpAffine(probability, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        x0, y0, x1, y1 = _window_bounds(warp, self.size, w, h)
        raw = full > self.threshold
        if self.refine_iterations:
            local = self._refine(image[y0:y1, x0:x1], full[y0:y1, x0:x1], box - [x0, y0, x0, y0])
            if local is not None:
                raw = np.zeros((h, w), bool)
                raw[y0:y1, x0:x1] = local
        # clean inside the window only (speck_fraction is a share of it), as GrabCut does
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = clean_mask(raw[y0:y1, x0:x1].astype(np.uint8), self.speck_fraction,
                                        self.fill_holes).astype(bool)
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        tight = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        extra = {"hint_box": [float(v) for v in box], "mean_probability": float(full[mask].mean())}
        return Instance(mask=mask, box=tight, label=self.label, score=1.0, extra=extra)


    def _refine(self, window: np.ndarray, probability: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """GrabCut seeded by the probabilities on the window, downscaled to `max_side`."""
        import cv2

        height, width = window.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1:
            small = (max(1, round(width * scale)), max(1, round(height * scale)))
            window = cv2.resize(window, small, interpolation=cv2.INTER_AREA)
            probability = cv2.resize(probability, small, interpolation=cv2.INTER_LINEAR)
        mask = grabcut_from_prior(window, probability, box * scale, self.sure, self.refine_iterations, self.smoothing)
        if mask is None or scale == 1:
            return mask
        return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5


def mask_loss_terms(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy plus soft Dice (Milletari et al. 2016): BCE for per-pixel
    calibration, Dice so the thin parts (pillars, wheels) weigh as much as the body.

    logits, target: (B, 1, S, S) float, target 0/1. Returns 0-d tensors "bce" (>= 0), "dice"
    (1 - soft Dice, in [0, 1]) and "total" = bce + 1 - Dice, the loss trained on.
    """
    probability = torch.sigmoid(logits)
    dice = (2 * (probability * target).sum() + 1) / (probability.sum() + target.sum() + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return {"bce": bce, "dice": 1 - dice, "total": bce + 1 - dice}  # total as before the split: same bits


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The scalar training loss of `mask_loss_terms` (its "total")."""
    return mask_loss_terms(logits, target)["total"]


def extract_window(image: np.ndarray, warp: np.ndarray, size: int) -> np.ndarray:
    """The size x size window of an RGB photo under `warp`; blurred first when shrinking a lot,
    so fine texture does not alias (the training windows come from small renders)."""
    import cv2

    shrink = 1.0 / max(1e-6, min(warp[0, 0], warp[1, 1]))
    source = np.ascontiguousarray(image[..., :3])
    if shrink > 1.5:
        x0, y0, x1, y1 = _window_bounds(warp, size, image.shape[1], image.shape[0], margin=int(2 * shrink))
        source = cv2.GaussianBlur(source[y0:y1, x0:x1], (0, 0), 0.5 * shrink)
        warp = warp.copy()
        warp[:, 2] += warp[:, :2] @ np.array([x0, y0], float)  # the crop starts at (x0, y0)
    return cv2.warpAffine(source, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _window_bounds(warp: np.ndarray, size: int, width: int, height: int, margin: int = 0) -> tuple[int, int, int, int]:
    """Integer pixel bounds (x0, y0, x1, y1) of the window, plus `margin`, clipped to the image."""
    x0, y0 = -warp[0, 2] / warp[0, 0], -warp[1, 2] / warp[1, 1]
    x1, y1 = x0 + size / warp[0, 0], y0 + size / warp[1, 1]
    return (max(0, int(np.floor(x0)) - margin), max(0, int(np.floor(y0)) - margin),
            min(width, int(np.ceil(x1)) + margin), min(height, int(np.ceil(y1)) + margin))


def _to_tensor(windows: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(windows)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def _load_renders(synthetic: ViewsDataset, limit: int) -> list[np.ndarray]:
    records = synthetic.records("train") or synthetic.records()
    picked = [records[i] for i in np.linspace(0, len(records) - 1, min(limit, len(records))).astype(int)]
    renders = []
    for record in picked:
        try:
            renders.append(synthetic.image(record, "RGBA"))
        except DatasetError:
            continue  # the normalise stage records unreadable synthetic images
    return renders


def _load_photos(photos: ViewsDataset, limit: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    records = photos.records()
    picked = [records[i] for i in np.linspace(0, len(records) - 1, min(limit, len(records))).astype(int)]
    loaded = []
    for record in picked:
        try:
            image = photos.image(record, "RGB")
        except DatasetError:
            continue  # the segment loop records unreadable photos
        boxes = record.get("boxes")
        loaded.append((image, np.asarray(boxes, float).reshape(-1, 4) if boxes else None))
    return loaded
