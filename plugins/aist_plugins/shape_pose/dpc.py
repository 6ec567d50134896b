"""DPC: unsupervised shape and pose from multi-view silhouettes (Insafutdinov & Dosovitskiy 2018).

Training batches are objects x views. Each object's shape comes from one of its views (picked at
random), its poses from every view; the shape is rendered from each view's pose candidates and
compared with that view's mask (downsampled to the grid size). The best candidate per view
wins; the student head learns the winner's pose. With `supervised_pose` the ground-truth camera
renders the shape instead (no candidates) and the student learns the ground-truth pose, which
makes short runs meaningful.

Pairing: the seed report (5.2) describes shape-from-one-view / pose-from-another pairs; this
follows the DPC code's per-view loss with one shape per object (B * V * C projections a step).

Checkpoints, losses.csv (columns step, projection, student, weight_decay, total; step counted
from 0) and the divergence guard come from `aist_plugins.training`.

Scale: training views are read from disk by a `torch.utils.data.DataLoader` (`num_workers`
processes; pinned memory on CUDA) in the seeded order of `DPCBatchSampler` (per step
np.random.default_rng([seed, step]), as before), so decoding overlaps training and memory does
not grow with the dataset. Unreadable train images are found by one decoding pass at the start
(`training.unreadable`) and left out before any batch is drawn (recorded in ctx.skipped); with
every image readable the batches are exactly those of the former in-loop reading.
`precision` ("fp32" default and unchanged, "bf16" on CPU or CUDA, "fp16" with a GradScaler on
CUDA) autocasts the network only: the renderer and the losses stay float32. `channels_last` and
`compile` (torch.compile of the network forward) are opt-in.

Several processes: under `torchrun --nproc-per-node N` the network trains under
DistributedDataParallel ("nccl" on CUDA, one GPU per process; "gloo" on CPU). The global batch
stays batch_objects x views_per_object: each rank takes its contiguous share of every seeded
batch's objects (ceil(batch_objects / N); batch_objects must be at least N), gradients are
averaged over the ranks and the logged losses are the ranks' mean. The per-step generator (shape
view, point dropout) is seeded by (seed, step, rank), rank 0's as in one process, so N processes
train on the same batches as one but not bit for bit like it. Only rank 0 writes (checkpoint,
losses.csv, losses.json, TensorBoard); a killed job resumes exactly when relaunched with the
same number of processes (the checkpoint records it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Interval, MultipleOf

from aist_core.constraints import (
    Device,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.imaging import resize_rgba
from aist_core.interfaces import ShapePoseModel
from aist_plugins.shape_pose import renderer
from aist_plugins.shape_pose.network import DPCNet
from aist_plugins.shape_pose.quaternions import quat_conj, quat_mul, quat_normalize
from aist_plugins.training import (
    Distributed,
    MixedPrecision,
    TrainingLog,
    default_read_every,
    evaluating,
    load_checkpoint,
    make_loader,
    precision_problem,
    read_weights,
    save_checkpoint,
    setup_distributed,
    to_channels_last,
    unreadable,
)

CHECKPOINT = "dpc_checkpoint.pt"


class DPC(ShapePoseModel):
    """Differentiable point clouds (Insafutdinov & Dosovitskiy, NeurIPS 2018, arXiv:1810.09381;
    github.com/eldar/differentiable-point-clouds): shape and pose from single images, learnt from
    multi-view silhouettes; see the module docstring.

    Input: (B, H, W, 4) uint8 RGBA. Output of `predict`: points (B, num_points, 3) float32 within
    [-0.5, 0.5]^3 in the learnt object frame and poses (B, 4) float32 unit quaternions
    [w, x, y, z] (the student head). `fit` resumes from `workdir`; it raises DatasetError
    (naming views.jsonl) without readable train images, TrainingDiverged at the first
    non-finite loss, CheckpointError for a checkpoint of another configuration.
    """

    def __init__(
        self,
        image_size: Annotated[int, Ge(32), MultipleOf(32)] = 128,
        num_points: PositiveInt = 8000,
        grid_size: PositiveInt = 64,
        n_candidates: PositiveInt = 4,
        steps: PositiveInt = 600_000,
        batch_objects: PositiveInt = 4,
        views_per_object: PositiveInt = 4,
        learning_rate: PositiveFloat = 1e-4,
        weight_decay: NonNegativeFloat = 1e-3,
        student_weight: NonNegativeFloat = 20.0,
        keep_prob_start: Annotated[float, Interval(gt=0, le=1)] = 0.07,
        keep_prob_end: Annotated[float, Interval(gt=0, le=1)] = 1.0,
        sigma_start: PositiveFloat = 3.0,
        sigma_end: PositiveFloat = 0.2,
        supervised_pose: bool = False,
        composite_white: bool = True,
        checkpoint_every: PositiveInt = 1000,
        num_workers: NonNegativeInt = 0,
        precision: Literal["fp32", "bf16", "fp16"] = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        device: Device = "cpu",
    ):
        """
        image_size: input resolution, 64 or 128 (reference renders are 128 px).
        num_points: points per predicted cloud (reference: 8000).
        grid_size: renderer grid G; silhouettes and target masks are G x G (reference: 64).
        n_candidates: pose candidate heads of the ensemble (reference: 4).
        steps: training steps (reference: 600k; short CPU runs use hundreds).
        batch_objects: objects per batch (seed report: 4; DPC paper code: 8).
        views_per_object: views per object in a batch (reference: 4).
        learning_rate: Adam learning rate (reference: 1e-4).
        weight_decay: L2 weight on weights, 0.5 * wd * sum(w^2), biases excluded (reference: 1e-3).
        student_weight: weight of the student distillation loss (reference: 20).
        keep_prob_start / keep_prob_end: point-dropout keep probability, linear over training
            (DPC reference code: 0.07 -> 1.0; the seed report reads the same setting
            as a 7% drop rate, i.e. keep 0.93 -> 1.0: set keep_prob_start = 0.93 for that).
        sigma_start / sigma_end: Gaussian smoothing sigma in voxels, linear over training
            (reference: 3.0 -> 0.2).
        supervised_pose: render with ground-truth cameras and learn shape only (short runs).
        composite_white: network input is RGB composited on white with alpha, as the reference's
            renders are; set false to feed RGB as stored.
        checkpoint_every: steps between resumable checkpoints in the workdir.
        num_workers: DataLoader worker processes decoding training views (0: in the training
            process). The batches do not depend on it.
        precision: "fp32" (default, unchanged), "bf16" (network forward under torch.autocast
            with bfloat16, CPU or CUDA) or "fp16" (float16 autocast + GradScaler, CUDA only).
        channels_last: the image encoder and its inputs in channels_last (NHWC) memory format.
        compile: torch.compile the image encoder (slow first steps; a C++ compiler on CPU).
        device: torch device.

        Raises ValueError for fp16 off CUDA (the `check_params` line).
        """
        problems = self.check_params({"precision": precision, "device": device})
        if problems:
            raise ValueError("; ".join(problems))
        self.num_workers, self.precision = int(num_workers), precision
        self.channels_last, self.compile = bool(channels_last), bool(compile)
        self.image_size = int(image_size)
        self.num_points = int(num_points)
        self.grid_size = int(grid_size)
        self.n_candidates = int(n_candidates)
        self.steps = int(steps)
        self.batch_objects = int(batch_objects)
        self.views_per_object = int(views_per_object)
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.student_weight = float(student_weight)
        self.keep_prob_start, self.keep_prob_end = float(keep_prob_start), float(keep_prob_end)
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)
        self.supervised_pose = bool(supervised_pose)
        self.composite_white = bool(composite_white)
        self.checkpoint_every = int(checkpoint_every)
        self.device = torch.device(device)
        self.net = DPCNet(self.image_size, self.num_points, n_candidates=self.n_candidates).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        self.history: list[dict[str, float]] = []
        self._amp = MixedPrecision(self.precision, self.device)
        self._set_up_network()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """What types cannot show: fp16 needs a CUDA device."""
        problem = precision_problem(params.get("precision", "fp32"), params.get("device", "cpu"))
        return [problem] if problem else []

    distributed = True  # under torchrun, fit trains on every process (the runner runs it on all ranks)

    def _set_up_network(self, dist: Distributed | None = None) -> None:
        """After (re)building `net`: its memory format and the forward module (under
        DistributedDataParallel with several processes, compiled when asked)."""
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        forward = (dist or Distributed()).wrap(_DPCForward(self.net, self.views_per_object), self.device)
        self._forward = torch.compile(forward) if self.compile else forward

    @property
    def pose_frame(self) -> str:
        """"ground_truth" when poses are supervised (no global alignment at evaluation), else
        "learned" (an unsupervised model picks its own frame)."""
        return "ground_truth" if self.supervised_pose else "learned"

    @classmethod
    def example(cls) -> "DPC":
        return cls(image_size=64, num_points=256, grid_size=16, steps=2, batch_objects=1, views_per_object=2)

    # ------------------------------------------------------------------ inputs
    def prepare_images(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 4) uint8 RGBA -> (B, 3, S, S) float in [0, 1] on the model's device."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 4 or images.dtype != np.uint8:
            raise ValueError(f"images: expected (B, H, W, 4) uint8 RGBA, got {images.shape} {images.dtype}")
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (B, 4, H, W)
        rgb, alpha = x[:, :3], x[:, 3:]
        if self.composite_white:
            rgb = rgb * alpha + (1.0 - alpha)
        if rgb.shape[-1] != self.image_size or rgb.shape[-2] != self.image_size:
            rgb = F.interpolate(rgb, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return to_channels_last(rgb, self.channels_last)

    def prepare_masks(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 4) uint8 -> (B, G, G) alpha / 255 area-downsampled to the grid size."""
        alpha = torch.from_numpy(np.ascontiguousarray(images[..., 3])).to(self.device).float()[:, None] / 255.0
        return F.adaptive_avg_pool2d(alpha, self.grid_size)[:, 0]

    # ------------------------------------------------------------------ schedules
    def schedule(self, step: int) -> tuple[float, float]:
        """(keep_prob, sigma) at `step`, both linear over the run."""
        t = min(1.0, step / max(1, self.steps - 1))
        keep = self.keep_prob_start + (self.keep_prob_end - self.keep_prob_start) * t
        sigma = self.sigma_start + (self.sigma_end - self.sigma_start) * t
        return keep, sigma

    # ------------------------------------------------------------------ one step
    def losses(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        gt_quats: torch.Tensor | None,
        step: int,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """images (B*V, 3, S, S), masks (B*V, G, G), gt_quats (B*V, 4) or None -> loss terms.

        Views of an object are consecutive; the shape of each object comes from a random view.
        """
        bv = images.shape[0]
        v = self.views_per_object
        keep, sigma = self.schedule(step)
        with self._amp.autocast():  # the network only; renderer and losses in float32
            points, scale, candidates, student = self._forward(images, generator)
        points, scale, candidates, student = points.float(), scale.float(), candidates.float(), student.float()
        out: dict[str, torch.Tensor] = {}
        if self.supervised_pose:
            if gt_quats is None:
                raise ValueError("supervised_pose needs ground-truth quaternions in the records")
            sil = renderer.render_silhouettes(
                points.repeat_interleave(v, 0), gt_quats, self.grid_size, sigma, scale.repeat_interleave(v), keep, generator
            )  # (B*V, G, G)
            out["projection"] = 0.5 * ((sil - masks) ** 2).sum() / bv
            target = gt_quats
        else:
            c = self.n_candidates
            sil = renderer.render_silhouettes(
                points.repeat_interleave(v * c, 0),
                candidates.reshape(bv * c, 4),
                self.grid_size,
                sigma,
                scale.repeat_interleave(v * c),
                keep,
                generator,
            ).view(bv, c, self.grid_size, self.grid_size)
            errors = ((sil - masks[:, None]) ** 2).sum(dim=(-1, -2))  # (B*V, C)
            winner = errors.argmin(dim=1)
            out["projection"] = 0.5 * errors.gather(1, winner[:, None]).sum() / bv
            target = candidates[torch.arange(bv, device=self.device), winner]
        w = quat_normalize(quat_mul(target.detach(), quat_conj(student)))[:, 0]
        out["student"] = self.student_weight * (1.0 - w * w).mean()
        out["weight_decay"] = 0.5 * self.weight_decay * sum((p * p).sum() for n, p in self.net.named_parameters() if n.endswith("weight"))
        out["total"] = out["projection"] + out["student"] + out["weight_decay"]
        return out

    def train_step(self, images, masks, gt_quats, step, generator=None) -> dict[str, float]:
        """One Adam update on a batch (arguments as `losses`); the loss terms as floats."""
        return {k: float(t) for k, t in self._update(images, masks, gt_quats, step, generator).items()}

    def _update(self, images, masks, gt_quats, step, generator=None) -> dict[str, torch.Tensor]:
        """One Adam update; the loss terms as detached 0-d tensors, left on the device."""
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(images, masks, gt_quats, step, generator)
        self._amp.backward(terms["total"])
        self._amp.step(self.optimizer)
        self._amp.update()
        return {k: t.detach() for k, t in terms.items()}

    # ------------------------------------------------------------------ training
    def fit(self, dataset: Path, workdir: Path, ctx) -> None:
        """Train on `dataset`'s train split for `steps` steps, resuming from `workdir`; see the
        class and module docstrings (also for runs under torchrun). Raises DatasetError without
        readable train images, TrainingDiverged at the first non-finite loss, CheckpointError for
        a checkpoint of another configuration (or process count), ValueError when batch_objects
        is smaller than the number of processes."""
        dist, device = setup_distributed(self.device)
        if device != str(self.device):
            self.device = torch.device(device)
            self.net.to(self.device)
        dist.barrier()  # every rank past its launcher's clean-up before anyone reads the workdir
        if dist.world_size > self.batch_objects:
            raise ValueError(f"dpc: batch_objects {self.batch_objects} cannot give each of {dist.world_size} "
                             f"processes an object; use batch_objects >= {dist.world_size}")
        data = ViewsDataset(dataset)
        objects = {k: v for k, v in data.by_object("train").items() if k is not None}
        if not objects:
            raise DatasetError(f"{Path(dataset) / 'views.jsonl'}: no objects in the train split")
        records = [rec for recs in objects.values() for rec in recs]
        paths = [str(data.path(rec["image"])) for rec in records]
        problems = unreadable(paths, self.num_workers)
        for path, problem in zip(paths, problems):
            if problem:
                ctx.skipped.record(Path(path), f"unreadable: {problem}")
        index, start_at = {}, 0
        for name, recs in objects.items():  # record positions per object, unreadable ones left out
            index[name] = [start_at + i for i in range(len(recs)) if not problems[start_at + i]]
            start_at += len(recs)
        names = sorted(k for k, idx in index.items() if idx)
        if not names:
            raise DatasetError(f"{Path(dataset) / 'views.jsonl'}: no readable training images left")
        workdir = Path(workdir)
        if dist.is_main:
            workdir.mkdir(parents=True, exist_ok=True)
        start = self._resume(workdir / CHECKPOINT, dist)
        if start == 0:
            self._initialise(ctx.seed)  # a fresh run's weights come from the stage seed too
        self._set_up_network(dist)  # DDP broadcasts rank 0's weights (all ranks start equal anyway)
        sampler = DPCBatchSampler(ctx.seed, [index[n] for n in names], self.batch_objects, self.views_per_object,
                                  start, self.steps, dist if dist.enabled else None)
        views = _Views(paths, [rec.get("quaternion") for rec in records])
        loader = make_loader(views, sampler, num_workers=self.num_workers, device=self.device, seed=ctx.seed,
                             collate_fn=_CollateViews(self.image_size))
        if dist.enabled and dist.is_main:
            ctx.log(f"dpc: {dist.world_size} processes, step {start} of {self.steps}")
        # every rank checks the (all-reduced, identical) losses at the same steps; rank 0 writes
        with TrainingLog("dpc", workdir if dist.is_main else None, next_step=start, lr=self.learning_rate,
                         log_dir=ctx.log_dir if dist.is_main else None, read_every=default_read_every(self.device),
                         history=self.history) as log:
            steps = ctx.progress(range(start, self.steps), total=self.steps - start, description="dpc")
            offset = dist.rank << 53  # seeds < 2**32: (seed, step) < 2**53, so ranks never share a stream
            for step, (stack, quats) in zip(steps, loader):
                generator = torch.Generator(device=self.device).manual_seed(int(ctx.seed) * 1_000_003 + step + offset)
                stack = stack.numpy()
                images, masks = self.prepare_images(stack), self.prepare_masks(stack)
                gt = None if quats is None else quats.to(self.device, non_blocking=True)
                log.log(step, dist.mean(self._update(images, masks, gt, step, generator)), lr=self.learning_rate)
                if step + 1 == self.steps:  # the last update is in no logged loss: check the trained weights
                    with evaluating(self.net):
                        log.check_trained(step, dist.mean(self.losses(images, masks, gt, step, generator)))
                if (step + 1) % self.checkpoint_every == 0 or step + 1 == self.steps:
                    log.flush()  # checks the losses (and fills history) before anything is saved
                    if dist.is_main:
                        self._checkpoint(workdir / CHECKPOINT, step + 1, dist.world_size)
                    dist.barrier()  # the checkpoint is complete before any rank goes on
        if dist.is_main:
            (workdir / "losses.json").write_text(json.dumps(self.history))
        dist.barrier()

    def _initialise(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = DPCNet(self.image_size, self.num_points, n_candidates=self.n_candidates).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        self.history = []
        self._amp = MixedPrecision(self.precision, self.device)  # a fresh loss scale
        self._set_up_network()

    def _config(self, world_size: int = 1) -> dict:
        """What a checkpoint must match to be resumed: every parameter that shapes the run
        (architecture, batches, schedules over `steps`, loss weights); not checkpoint_every or
        device, num_workers, channels_last or compile. A precision other than fp32 is recorded."""
        extra = {"precision": self.precision} if self.precision != "fp32" else {}
        if world_size > 1:
            extra["world_size"] = world_size
        return {**extra, "image_size": self.image_size, "num_points": self.num_points, "grid_size": self.grid_size,
                "n_candidates": self.n_candidates, "steps": self.steps, "batch_objects": self.batch_objects,
                "views_per_object": self.views_per_object, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "student_weight": self.student_weight,
                "keep_prob": [self.keep_prob_start, self.keep_prob_end], "sigma": [self.sigma_start, self.sigma_end],
                "supervised_pose": self.supervised_pose, "composite_white": self.composite_white}

    def _checkpoint(self, path: Path, step: int, world_size: int = 1) -> None:
        state = {
            "step": step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": [[h[k] for k in HISTORY_KEYS] for h in self.history],
        }
        if self.precision == "fp16":
            state["scaler"] = self._amp.state_dict()
        save_checkpoint(path, state, self._config(world_size), component="dpc", step=step - 1, lr=self.learning_rate)

    def _resume(self, path: Path, dist: Distributed | None = None) -> int:
        state = load_checkpoint(path, self._config((dist or Distributed()).world_size), self.device)
        if state is None:
            return 0
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = [dict(zip(HISTORY_KEYS, row)) for row in state["history"]]
        self._amp.load_state_dict(state.get("scaler", {}))
        return int(state["step"])

    # ------------------------------------------------------------------ weights
    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / "model.safetensors"))
        config = {"image_size": self.image_size, "num_points": self.num_points, "n_candidates": self.n_candidates}
        (path / "config.json").write_text(json.dumps(config))

    def load(self, path: Path) -> None:
        path = Path(path)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: DPC weights missing (train the shape_pose stage first)")
        config = json.loads((path / "config.json").read_text())
        mine = {"image_size": self.image_size, "num_points": self.num_points, "n_candidates": self.n_candidates}
        if config != mine:
            raise ValueError(f"{path / 'config.json'}: weights were trained with {config}, this model is {mine}")
        self.net.load_state_dict(read_weights(weights, self.device))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        feats = self.net.features(self.prepare_images(images))
        points, _scale = self.net.shape(feats)
        _candidates, student = self.net.poses(feats)
        return points.cpu().numpy().astype(np.float32), student.cpu().numpy().astype(np.float32)


HISTORY_KEYS = ("step", "projection", "student", "weight_decay", "total")


class DPCBatchSampler(torch.utils.data.Sampler):
    """DPC's seeded batches for steps [start, stop): per step, batch_objects objects and
    views_per_object views of each, drawn with np.random.default_rng([seed, step]) (with
    replacement only where there are fewer than asked), as lists of record positions.

    objects: per object (in name order), the positions of its readable views. Each step's draw
    depends only on (seed, step), so a resumed run sees the batches of an uninterrupted one.
    dist: under several processes (a `training.Distributed`), each rank gets its contiguous share
    of every batch's objects, all their views (`Distributed.shard`).
    """

    def __init__(self, seed: int, objects: list[list[int]], batch_objects: int, views_per_object: int,
                 start: int, stop: int, dist: Distributed | None = None):
        self.seed, self.objects = int(seed), objects
        self.batch_objects, self.views_per_object = int(batch_objects), int(views_per_object)
        self.start, self.stop, self.dist = int(start), int(stop), dist

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            n = len(self.objects)
            chosen = rng.choice(n, size=self.batch_objects, replace=n < self.batch_objects)
            groups = []
            for i in chosen:
                views = self.objects[i]
                picks = rng.choice(len(views), size=self.views_per_object, replace=len(views) < self.views_per_object)
                groups.append([views[j] for j in picks])
            if self.dist is not None:
                groups = self.dist.shard(groups)
            yield [key for group in groups for key in group]


class _Views(torch.utils.data.Dataset):
    """Record position -> ((H, W, 4) uint8 RGBA read from disk, its quaternion or None)."""

    def __init__(self, paths: list[str], quaternions: list):
        self.paths, self.quaternions = paths, quaternions

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from aist_core.dataset import read_image

        return read_image(self.paths[index], "RGBA"), self.quaternions[index]


class _CollateViews:
    """A batch of `_Views` items -> ((B*V, H, W, 4) uint8 tensor, (B*V, 4) float32 tensor or None
    when a view has no quaternion); views of differing sizes are all resized to `image_size`."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, items):
        images = [image for image, _q in items]
        if len({im.shape for im in images}) != 1:
            images = [np.asarray(resize_rgba(im, self.image_size)) for im in images]
        quats = [q for _image, q in items]
        gt = torch.from_numpy(np.asarray(quats, dtype=np.float32)) if all(q is not None for q in quats) else None
        return torch.from_numpy(np.stack(images)), gt


class _DPCForward(torch.nn.Module):
    """The network's forward for one step (what DistributedDataParallel wraps): images (B*V, 3, S,
    S), views of an object consecutive -> points (B, N, 3) and scale (B,) from one random view per
    object (drawn with `generator`), pose candidates (B*V, C, 4) and student poses (B*V, 4)."""

    def __init__(self, net: DPCNet, views_per_object: int):
        super().__init__()
        self.net, self.views = net, views_per_object

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        v = self.views
        b = images.shape[0] // v
        feats = self.net.features(images)  # (B*V, hidden)
        src = torch.randint(0, v, (b,), generator=generator, device=images.device) + torch.arange(b, device=images.device) * v
        points, scale = self.net.shape(feats[src])  # (B, N, 3), (B,)
        candidates, student = self.net.poses(feats)  # (B*V, C, 4), (B*V, 4)
        return points, scale, candidates, student
