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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Interval, MultipleOf

from aist_core.constraints import Device, NonNegativeFloat, PositiveFloat, PositiveInt
from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.imaging import resize_rgba
from aist_core.interfaces import ShapePoseModel
from aist_plugins.shape_pose import renderer
from aist_plugins.training import TrainingLog, default_read_every, load_checkpoint, save_checkpoint
from aist_plugins.shape_pose.network import DPCNet
from aist_plugins.shape_pose.quaternions import quat_conj, quat_mul, quat_normalize

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
        device: torch device.
        """
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
        return rgb

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
        b = bv // v
        keep, sigma = self.schedule(step)
        feats = self.net.features(images)  # (B*V, hidden)
        src = torch.randint(0, v, (b,), generator=generator, device=self.device) + torch.arange(b, device=self.device) * v
        points, scale = self.net.shape(feats[src])  # (B, N, 3), (B,)
        candidates, student = self.net.poses(feats)  # (B*V, C, 4), (B*V, 4)
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
        terms["total"].backward()
        self.optimizer.step()
        return {k: t.detach() for k, t in terms.items()}

    # ------------------------------------------------------------------ training
    def fit(self, dataset: Path, workdir: Path, ctx) -> None:
        data = ViewsDataset(dataset)
        objects = {k: v for k, v in data.by_object("train").items() if k is not None}
        usable = {k: recs for k, recs in objects.items() if len(recs) >= 1}
        if not usable:
            raise DatasetError(f"{Path(dataset) / 'views.jsonl'}: no objects in the train split")
        names = sorted(usable)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        start = self._resume(workdir / CHECKPOINT)
        if start == 0:
            self._initialise(ctx.seed)  # a fresh run's weights come from the stage seed too
        with TrainingLog("dpc", workdir, next_step=start, lr=self.learning_rate, log_dir=ctx.log_dir,
                         read_every=default_read_every(self.device), history=self.history) as log:
            for step in ctx.progress(range(start, self.steps), total=self.steps - start, description="dpc"):
                rng = np.random.default_rng([ctx.seed, step])  # per-step streams make resumption exact
                generator = torch.Generator(device=self.device).manual_seed(int(ctx.seed) * 1_000_003 + step)
                batch = None
                for _attempt in range(10):  # a batch that hit an unreadable image is drawn again
                    batch = self._batch(data, usable, names, rng, ctx)
                    if batch is not None or not names:
                        break
                if batch is None:
                    raise DatasetError(f"{Path(dataset) / 'views.jsonl'}: no readable training images left")
                images, masks, quats = batch
                log.log(step, self._update(images, masks, quats, step, generator), lr=self.learning_rate)
                if (step + 1) % self.checkpoint_every == 0 or step + 1 == self.steps:
                    log.flush()  # checks the losses (and fills history) before anything is saved
                    self._checkpoint(workdir / CHECKPOINT, step + 1)
        (workdir / "losses.json").write_text(json.dumps(self.history))

    def _batch(self, data: ViewsDataset, objects: dict, names: list[str], rng: np.random.Generator, ctx):
        """Read batch_objects x views_per_object views; unreadable images are skipped and logged."""
        chosen = rng.choice(len(names), size=self.batch_objects, replace=len(names) < self.batch_objects)
        images, quats = [], []
        for i in chosen:
            recs = objects[names[i]]
            picks = rng.choice(len(recs), size=self.views_per_object, replace=len(recs) < self.views_per_object)
            for j in picks:
                rec = recs[j]
                try:
                    image = data.image(rec, "RGBA")
                except DatasetError as exc:
                    ctx.skipped.record(data.path(rec["image"]), f"unreadable: {exc}")
                    recs.remove(rec)  # never drawn again
                    if not recs:
                        names.remove(names[i])
                    return None
                images.append(image)
                quats.append(rec.get("quaternion"))
        if len({im.shape for im in images}) != 1:
            images = [np.asarray(resize_rgba(im, self.image_size)) for im in images]
        stack = np.stack(images)
        gt = None
        if all(q is not None for q in quats):
            gt = torch.tensor(np.asarray(quats, dtype=np.float32), device=self.device)
        return self.prepare_images(stack), self.prepare_masks(stack), gt

    def _initialise(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = DPCNet(self.image_size, self.num_points, n_candidates=self.n_candidates).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        self.history = []

    def _config(self) -> dict:
        """What a checkpoint must match to be resumed: every parameter that shapes the run
        (architecture, batches, schedules over `steps`, loss weights); not checkpoint_every or
        device."""
        return {"image_size": self.image_size, "num_points": self.num_points, "grid_size": self.grid_size,
                "n_candidates": self.n_candidates, "steps": self.steps, "batch_objects": self.batch_objects,
                "views_per_object": self.views_per_object, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "student_weight": self.student_weight,
                "keep_prob": [self.keep_prob_start, self.keep_prob_end], "sigma": [self.sigma_start, self.sigma_end],
                "supervised_pose": self.supervised_pose, "composite_white": self.composite_white}

    def _checkpoint(self, path: Path, step: int) -> None:
        state = {
            "step": step,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": [[h[k] for k in HISTORY_KEYS] for h in self.history],
        }
        save_checkpoint(path, state, self._config(), component="dpc", step=step - 1, lr=self.learning_rate)

    def _resume(self, path: Path) -> int:
        state = load_checkpoint(path, self._config(), self.device)
        if state is None:
            return 0
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = [dict(zip(HISTORY_KEYS, row)) for row in state["history"]]
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
        from safetensors.torch import load_file

        path = Path(path)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: DPC weights missing (train the shape_pose stage first)")
        config = json.loads((path / "config.json").read_text())
        mine = {"image_size": self.image_size, "num_points": self.num_points, "n_candidates": self.n_candidates}
        if config != mine:
            raise ValueError(f"{path / 'config.json'}: weights were trained with {config}, this model is {mine}")
        self.net.load_state_dict(load_file(str(weights), device=str(self.device)))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        feats = self.net.features(self.prepare_images(images))
        points, _scale = self.net.shape(feats)
        _candidates, student = self.net.poses(feats)
        return points.cpu().numpy().astype(np.float32), student.cpu().numpy().astype(np.float32)


HISTORY_KEYS = ("step", "projection", "student", "weight_decay", "total")
