"""`viewpoint-psgn`: a supervised single-view shape and pose model that learns on two CPU cores.

The seed report's conclusion asks whether AIST lets *supervised* models reach real images; DPC
(`dpc`) learns its pose without labels and needs GPU-days. This model uses the synthetic data's
labels directly, so its photo-domain score isolates the domain gap:

- Pose: viewpoint estimation as azimuth classification into `azimuth_bins` bins with a
  per-bin residual, plus elevation regression (Su et al., "Render for CNN", ICCV 2015,
  arXiv:1505.05641; bin-and-delta as in Mousavian et al., "3D Bounding Box Estimation Using
  Deep Learning and Geometry", CVPR 2017, arXiv:1612.00496). Cars are nearly symmetric front to
  back; a classifier keeps both modes apart instead of averaging them as a regressor would.
- Shape: a point-set generation head (Fan, Su, Guibas, "A Point Set Generation Network for 3D
  Object Reconstruction from a Single Image", CVPR 2017, arXiv:1612.00603): fully connected
  layers emit `num_points` points in the canonical object frame, trained with the symmetric
  Chamfer distance to the ground-truth cloud.

Its poses are in the ground-truth frame (`pose_frame = "ground_truth"`), so evaluation applies no
global alignment to them.

Checkpoints, losses.csv (columns step, azimuth, residual, elevation, chamfer, total; step
counted from 0) and the divergence guard come from `aist_plugins.training`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Interval, MultipleOf
from torch import nn

from aist_core import camera
from aist_core.constraints import Device, NonNegativeFloat, PositiveFloat, PositiveInt
from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.imaging import resize_rgba
from aist_core.interfaces import ShapePoseModel
from aist_plugins.training import (TrainingLog, default_read_every, evaluating, load_checkpoint, read_weights,
                                   save_checkpoint)

CHECKPOINT = "viewpoint_psgn_checkpoint.pt"
HISTORY_KEYS = ("step", "azimuth", "residual", "elevation", "chamfer", "total")


# ---------------------------------------------------------------------------- network
def _block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm, then 2x2 max pooling (halves the size)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ViewpointPSGNNet(nn.Module):
    """Encoder (a 5x5 stride-2 stem, 3 conv blocks, global average pool) -> pose and point heads.

    forward(x): x (B, 3, S, S) float in [0, 1] -> dict with
      azimuth_logits (B, K), azimuth_residual (B, K) in bin widths [-0.5, 0.5],
      elevation (B,) radians, points (B, N, 3) in [-0.5, 0.5].
    At 64 px and width 16 the encoder costs ~55 MMAC per image (two CPU cores train it at a
    few steps per second).
    """

    def __init__(self, num_points: int, azimuth_bins: int, width: int = 16):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, width, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        blocks, cin = [stem], width
        for cout in (2 * width, 4 * width, 8 * width):
            blocks.append(_block(cin, cout))
            cin = cout
        self.encoder = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        hidden = 256
        self.trunk = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True))
        self.azimuth = nn.Linear(hidden, 2 * azimuth_bins)  # logits and residuals
        self.elevation = nn.Linear(hidden, 1)
        self.points = nn.Sequential(nn.Linear(hidden, 512), nn.ReLU(inplace=True), nn.Linear(512, num_points * 3))
        self.num_points, self.azimuth_bins = num_points, azimuth_bins

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.encoder(x))
        logits, residual = self.azimuth(h).split(self.azimuth_bins, dim=1)
        return {
            "azimuth_logits": logits,
            "azimuth_residual": 0.5 * torch.tanh(residual),
            "elevation": self.elevation(h)[:, 0],
            "points": 0.5 * torch.tanh(self.points(h)).view(-1, self.num_points, 3),
        }


def chamfer_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance (mean squared nearest-neighbour distance both ways), averaged
    over the batch. pred (B, N, 3), gt (B, M, 3) float; returns a scalar (object units^2)."""
    d = torch.cdist(pred, gt).pow(2)  # (B, N, M)
    return d.min(dim=2).values.mean() + d.min(dim=1).values.mean()


# ---------------------------------------------------------------------------- the plugin
class ViewpointPSGN(ShapePoseModel):
    """Supervised shape and pose from one image: azimuth bins + residual, elevation, PSGN points.

    Trains on the `train` split of a views dataset whose records carry ground-truth quaternions
    (DPC camera convention, `aist_core.camera`) and whose objects have ground-truth clouds.
    Input images are (B, H, W, 4) uint8 RGBA, composited on white (as DPC's renders are) and
    resized to `image_size`. Output: points (B, num_points, 3) float32 in the object frame
    within [-0.5, 0.5]^3 and poses (B, 4) float32 unit quaternions [w, x, y, z].

    Sources: Su et al. 2015 (arXiv:1505.05641) for viewpoint classification, Mousavian et al.
    2017 (arXiv:1612.00496) for bin + residual, Fan et al. 2017 (arXiv:1612.00603) for the
    point-set head and its Chamfer loss.
    """

    pose_frame = "ground_truth"  # supervised poses: evaluation applies no global alignment

    def __init__(
        self,
        image_size: Annotated[int, Ge(32), MultipleOf(16)] = 64,
        num_points: PositiveInt = 512,
        azimuth_bins: PositiveInt = 24,
        width: PositiveInt = 16,
        steps: PositiveInt = 2000,
        batch_size: PositiveInt = 32,
        learning_rate: PositiveFloat = 1e-3,
        weight_decay: NonNegativeFloat = 1e-4,
        shape_weight: NonNegativeFloat = 100.0,
        gt_points: PositiveInt = 512,
        jitter: Annotated[float, Interval(ge=0, lt=0.5)] = 0.08,
        checkpoint_every: PositiveInt = 250,
        device: Device = "cpu",
    ):
        """
        image_size: network input in pixels, a multiple of 16 (four stride-2 stages), >= 32.
        num_points: predicted points per cloud (PSGN: 1024; 512 halves the Chamfer cost).
        azimuth_bins: azimuth classes over 360 degrees (24: 15-degree bins).
        width: channels of the stem (doubling per block: 16 -> 128).
        steps: training steps (optimizer updates).
        batch_size: images per step (random views of random train objects).
        learning_rate: Adam learning rate, cosine-decayed to 0 over `steps`.
        weight_decay: AdamW decoupled weight decay.
        shape_weight: weight of the Chamfer loss (object units^2, ~1e-3 when trained) against
            the pose losses (nats and radians, ~0.1-1).
        gt_points: ground-truth points sampled per object for the Chamfer loss.
        jitter: geometric augmentation, the largest random shift (fraction of the image) and
            scale change (+-) of each training image; 0 turns it off. Real crops are framed
            by a segmenter and padded, so their object is never exactly centred and sized.
        checkpoint_every: steps between resumable checkpoints in the workdir.
        device: torch device ("cpu", "cuda", "cuda:1").

        Raises ValueError for values the network or optimiser cannot take.
        """
        problems = self.check_params(dict(image_size=image_size, num_points=num_points, azimuth_bins=azimuth_bins,
                                          width=width, steps=steps, batch_size=batch_size, gt_points=gt_points,
                                          checkpoint_every=checkpoint_every, learning_rate=learning_rate, jitter=jitter))
        if problems:
            raise ValueError("; ".join(problems))
        self.image_size, self.num_points, self.azimuth_bins, self.width = int(image_size), int(num_points), int(azimuth_bins), int(width)
        self.steps, self.batch_size = int(steps), int(batch_size)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.shape_weight, self.gt_points, self.jitter = float(shape_weight), int(gt_points), float(jitter)
        self.checkpoint_every = int(checkpoint_every)
        self.device = torch.device(device)
        self.history: list[dict[str, float]] = []
        self._build(seed=0)

    @classmethod
    def check_params(cls, params: dict) -> list[str]:
        """The constraints __init__ enforces, visible to `aist check` before any work starts."""
        problems = []
        size = params.get("image_size", 64)
        if not isinstance(size, int) or size < 32 or size % 16:
            problems.append(f"image_size: {size!r} must be a multiple of 16 and >= 32")
        for name in ("num_points", "azimuth_bins", "width", "steps", "batch_size", "gt_points", "checkpoint_every"):
            value = params.get(name, 1)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name}: {value!r} must be an integer >= 1")
        rate = params.get("learning_rate", 1e-3)
        if not (isinstance(rate, (int, float)) and np.isfinite(rate) and rate > 0):
            problems.append(f"learning_rate: {rate!r} must be a positive finite number")
        jitter = params.get("jitter", 0.0)
        if not (isinstance(jitter, (int, float)) and 0 <= jitter < 0.5):
            problems.append(f"jitter: {jitter!r} must be in [0, 0.5)")
        return problems

    @classmethod
    def example(cls) -> "ViewpointPSGN":
        return cls(image_size=32, num_points=64, width=8, steps=2, batch_size=4, gt_points=64, checkpoint_every=1)

    def _build(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = ViewpointPSGNNet(self.num_points, self.azimuth_bins, self.width).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def _config(self) -> dict:
        return {"image_size": self.image_size, "num_points": self.num_points, "azimuth_bins": self.azimuth_bins, "width": self.width}

    # ------------------------------------------------------------------ inputs and targets
    def prepare_images(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 4) uint8 RGBA -> (B, 3, S, S) float in [0, 1], composited on white."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 4 or images.dtype != np.uint8:
            raise ValueError(f"images: expected (B, H, W, 4) uint8 RGBA, got {images.shape} {images.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        rgb = x[:, :3] * x[:, 3:] + (1.0 - x[:, 3:])
        if rgb.shape[-1] != self.image_size or rgb.shape[-2] != self.image_size:
            rgb = F.interpolate(rgb, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return rgb

    def targets(self, quaternions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 4) DPC quaternions -> azimuth bin (B,) long, residual (B,) in bin widths
        [-0.5, 0.5), elevation (B,) radians."""
        azel = np.array([camera.azel_from_quat(q) for q in np.asarray(quaternions, dtype=np.float64)])
        width = 360.0 / self.azimuth_bins
        position = azel[:, 0] / width
        bins = np.floor(position + 0.5).astype(np.int64) % self.azimuth_bins  # bin centres at k * width
        residual = position - np.round(position)
        t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=self.device)  # noqa: E731
        return t(bins, torch.long), t(residual, torch.float32), t(np.radians(azel[:, 1]), torch.float32)

    def decode_poses(self, out: dict[str, torch.Tensor]) -> np.ndarray:
        """Network outputs -> (B, 4) float32 quaternions from the most likely azimuth bin."""
        k = out["azimuth_logits"].argmax(dim=1)
        residual = out["azimuth_residual"].gather(1, k[:, None])[:, 0]
        azimuth = ((k.float() + residual) * (360.0 / self.azimuth_bins)).cpu().numpy() % 360.0
        elevation = np.degrees(out["elevation"].cpu().numpy())
        return np.stack([camera.quat_from_azel(a, e) for a, e in zip(azimuth, elevation)]).astype(np.float32)

    # ------------------------------------------------------------------ training
    def losses(self, images: torch.Tensor, quats: np.ndarray, clouds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for a batch: images (B, 3, S, S), quats (B, 4), clouds (B, M, 3)."""
        out = self.net(images)
        bins, residual, elevation = self.targets(quats)
        terms = {
            "azimuth": F.cross_entropy(out["azimuth_logits"], bins),
            "residual": F.smooth_l1_loss(out["azimuth_residual"].gather(1, bins[:, None])[:, 0], residual, beta=0.1),
            "elevation": F.smooth_l1_loss(out["elevation"], elevation, beta=0.1),
            "chamfer": chamfer_loss(out["points"], clouds),
        }
        terms["total"] = terms["azimuth"] + terms["residual"] + terms["elevation"] + self.shape_weight * terms["chamfer"]
        return terms

    def fit(self, dataset: Path, workdir: Path, ctx) -> None:
        """Train on the train split, resuming from `workdir`. Raises DatasetError (naming the
        file) when the split has no usable image, pose or cloud, TrainingDiverged
        (`aist_plugins.training`) at the first non-finite loss (nothing non-finite is
        checkpointed), and CheckpointError for a checkpoint of another configuration."""
        images, quats, cloud_index, clouds = self._load_train(Path(dataset), ctx)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        start = self._resume(workdir / CHECKPOINT)
        if start == 0:
            self._build(ctx.seed)  # a fresh run's weights come from the stage seed
            self.history = []
        self.net.train()
        with TrainingLog("viewpoint-psgn", workdir, next_step=start, lr=self.learning_rate, log_dir=ctx.log_dir,
                         read_every=default_read_every(self.device), history=self.history) as log:
            for step in ctx.progress(range(start, self.steps), total=self.steps - start, description="viewpoint-psgn"):
                rng = np.random.default_rng([ctx.seed, 7, step])  # per-step streams make resumption exact
                pick = rng.choice(len(images), size=self.batch_size, replace=len(images) < self.batch_size)
                batch = self._augment(images[pick], rng)
                gt = clouds[cloud_index[pick]]
                sub = rng.integers(0, gt.shape[1], size=(len(pick), self.gt_points))
                gt = torch.as_tensor(np.take_along_axis(gt, sub[..., None], axis=1), device=self.device)
                rate = float(self.learning_rate * 0.5 * (1.0 + np.cos(np.pi * step / self.steps)))
                for group in self.optimizer.param_groups:  # cosine decay, a pure function of the step
                    group["lr"] = rate
                self.optimizer.zero_grad(set_to_none=True)
                terms = self.losses(batch, quats[pick], gt)
                terms["total"].backward()
                self.optimizer.step()
                log.log(step, {k: v.detach() for k, v in terms.items()}, lr=rate)
                if step + 1 == self.steps:  # the last update is in no logged loss: check the trained weights
                    with evaluating(self.net):
                        log.check_trained(step, self.losses(batch, quats[pick], gt))
                if (step + 1) % self.checkpoint_every == 0 or step + 1 == self.steps:
                    log.flush()  # checks the losses (and fills history) before anything is saved
                    self._checkpoint(workdir / CHECKPOINT, step + 1)
        self.net.eval()

    def _load_train(self, dataset: Path, ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every usable train view at image_size: images (V, S, S, 4) uint8, quats (V, 4),
        cloud_index (V,) into clouds (O, P, 3) float32. Memory: V * S^2 * 4 bytes."""
        data = ViewsDataset(dataset)
        records = data.records("train")
        images, quats, objects = [], [], []
        object_ids: dict[str, int] = {}
        clouds: list[np.ndarray] = []
        for rec in records:
            obj, q = rec.get("object"), rec.get("quaternion")
            if q is None or not data.has_cloud(obj):
                ctx.skipped.record(data.path(rec["image"]), "no ground-truth pose or cloud (viewpoint-psgn is supervised)")
                continue
            try:
                image = data.image(rec, "RGBA")
            except DatasetError as exc:
                ctx.skipped.record(data.path(rec["image"]), f"unreadable: {exc}")
                continue
            if obj not in object_ids:
                cloud = np.asarray(data.cloud(obj), dtype=np.float32)
                if cloud.ndim != 2 or cloud.shape[1] != 3 or len(cloud) == 0 or not np.isfinite(cloud).all():
                    ctx.skipped.record(data.path(rec["image"]), f"ground-truth cloud of {obj}: shape {cloud.shape} or non-finite values")
                    continue
                object_ids[obj] = len(clouds)
                clouds.append(_fixed_size(cloud, 4096, len(clouds)))
            images.append(resize_rgba(image, self.image_size))
            quats.append(q)
            objects.append(object_ids[obj])
        if not images:
            raise DatasetError(f"{dataset / 'views.jsonl'}: no train view with an image, a pose and a cloud "
                               f"(of {len(records)} train records)")
        return np.stack(images), np.asarray(quats, np.float64), np.asarray(objects), np.stack(clouds)

    def _augment(self, images: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Random shift and scale of each image (white fill), then network input."""
        x = self.prepare_images(images)
        if self.jitter <= 0:
            return x
        b = x.shape[0]
        scale = torch.as_tensor(1.0 + rng.uniform(-self.jitter, self.jitter, b), dtype=torch.float32, device=self.device)
        shift = torch.as_tensor(rng.uniform(-self.jitter, self.jitter, (b, 2)) * 2, dtype=torch.float32, device=self.device)
        theta = torch.zeros(b, 2, 3, device=self.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # sample 1 - x with zero padding, so pixels from outside the image are white
        return 1.0 - F.grid_sample(1.0 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # ------------------------------------------------------------------ checkpoints and weights
    def _run_config(self) -> dict:
        """What a checkpoint must match to be resumed: the architecture (`_config`) and every
        training setting that shapes the run; not checkpoint_every or device."""
        return {**self._config(), "steps": self.steps, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "shape_weight": self.shape_weight, "gt_points": self.gt_points, "jitter": self.jitter}

    def _checkpoint(self, path: Path, step: int) -> None:
        state = {"step": step, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "history": [[h[k] for k in HISTORY_KEYS] for h in self.history]}
        save_checkpoint(path, state, self._run_config(), component="viewpoint-psgn", step=step - 1,
                        lr=self.learning_rate)

    def _resume(self, path: Path) -> int:
        state = load_checkpoint(path, self._run_config(), self.device)  # weights-only; None without a file
        if state is None:
            return 0
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = [dict(zip(HISTORY_KEYS, row)) for row in state["history"]]
        return int(state["step"])

    def save(self, path: Path) -> None:
        """Weights to `path`/model.safetensors and the architecture to `path`/config.json."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps(self._config()))

    def load(self, path: Path) -> None:
        """Read what `save` wrote. Raises FileNotFoundError (missing weights) or ValueError
        (weights of another architecture), each naming the file."""
        path = Path(path)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: viewpoint-psgn weights missing (train the shape_pose stage first)")
        config = json.loads((path / "config.json").read_text())
        if config != self._config():
            raise ValueError(f"{path / 'config.json'}: weights were trained with {config}, this model is {self._config()}")
        self.net.load_state_dict(read_weights(weights, self.device))
        self.net.eval()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        out = self.net(self.prepare_images(images))
        return out["points"].cpu().numpy().astype(np.float32), self.decode_poses(out)


def _fixed_size(cloud: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` points of `cloud` (sampled with replacement only when it has fewer)."""
    rng = np.random.default_rng(seed)
    return cloud[rng.choice(len(cloud), size=count, replace=len(cloud) < count)]
