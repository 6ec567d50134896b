"""Domain-gap measures between a set of RGBA images and the real crops, on object pixels only.

Three plugins of kind "domain_gap" (interface `aist_core.interfaces.DomainGap`):

- `C2ST` ("c2st"): a classifier two-sample test; a small CNN learns to tell the two sets apart
  and its held-out accuracy is the gap (0.5 = indistinguishable, 1.0 = fully separable).
- `ColourStats` ("colour-stats"): saturation, high-frequency energy and CIELAB means of the
  object pixels of each set, NumPy and OpenCV only.
- `KID` ("kid"): the Kernel Inception Distance through torch-fidelity, from a local Inception
  weights file only (nothing is downloaded; a missing file is reported, not fetched).

Background handling, shared by all three: every image is composited onto pure black with
`aist_core.imaging.composite_black` (alpha == 0 -> RGB (0, 0, 0)), the project's "black means
background" convention, so the RGB of background pixels cannot change any number. The
silhouette itself stays visible (object against black), so a difference in silhouette shape
between the sets is part of the measured gap for C2ST and KID; ColourStats only reads pixels
inside the object.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge

from aist_core.constraints import Device, PositiveFloat, PositiveInt
from aist_core.imaging import composite_black
from aist_core.interfaces import DomainGap

# torch-fidelity's InceptionV3 weights (converted from TensorFlow's 2015-12-05 release); the
# file name is the last part of torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_REQUIREMENT = "torch-fidelity>=0.4.0"


def check_sets(images: np.ndarray, reference: np.ndarray, min_images: int, who: str) -> None:
    """ValueError unless both are (N, H, W, 4) uint8 of one size with at least `min_images` each."""
    for name, batch in (("images", images), ("reference", reference)):
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 4 or batch.dtype != np.uint8:
            raise ValueError(f"{who}: {name} must be (N, H, W, 4) uint8 RGBA, got {batch.shape} {batch.dtype}")
        if len(batch) < min_images:
            raise ValueError(f"{who}: {name} has {len(batch)} images; it needs at least {min_images}")
    if np.asarray(images).shape[1:3] != np.asarray(reference).shape[1:3]:
        raise ValueError(f"{who}: images are {np.asarray(images).shape[1:3]} but reference is "
                         f"{np.asarray(reference).shape[1:3]}; both sets must have one size")


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> list[float]:
    """Wilson score interval of a binomial proportion (95% for the default z), as [low, high]."""
    if total <= 0:
        return [0.0, 1.0]
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]


# --------------------------------------------------------------------------------------------
class C2ST(DomainGap):
    """Classifier two-sample test (Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests",
    ICLR 2017, arXiv:1610.06545): a small CNN is trained to tell `images` from `reference`;
    its accuracy on images it did not train on measures how distinguishable the sets are.

    Inputs: `images` (N, H, W, 4) and `reference` (M, H, W, 4) uint8 RGBA of one size,
    alpha == 0 is background. Each image is composited onto black (background RGB ignored;
    the silhouette stays visible and is part of the gap), resized to `size` x `size` (area
    interpolation) and scaled to [-1, 1].
    Procedure: both sets are subsampled (seeded) to n = min(N, M, max_images) images, so the
    classes are balanced and chance is exactly 0.5. The 2n images are split into `folds`
    stratified folds; for each fold a fresh CNN (3 x [conv 3x3, ReLU, max-pool 2], global
    average pool, linear) is trained on the other folds with Adam for `epochs` epochs (batch 32,
    random horizontal flips) and predicts the held-out fold, so every image is tested once.
    Output (JSON-ready):
      c2st_accuracy        held-out accuracy in [0, 1]; 0.5 = indistinguishable, 1 = separable
      c2st_ci95            [low, high] Wilson 95% interval over the 2n held-out predictions
      c2st_p_value         one-sided p-value of accuracy > 0.5 under the null N(1/2, 1/(4 * 2n))
                           (the paper's approximation)
      c2st_n_heldout       held-out predictions in all (2n: n per set), an int
      c2st_train_accuracy  accuracy on the training folds after training (fold mean); far
                           above c2st_accuracy means the classifier memorised, not generalised
    Deterministic under `seed` on one device (torch's global RNG is forked, not disturbed).
    Raises ValueError for a set with fewer than `min_images` (10) images or bad shapes/dtypes.
    """

    min_images = 10

    def __init__(
        self,
        size: Annotated[int, Ge(8)] = 32,
        epochs: PositiveInt = 30,
        learning_rate: PositiveFloat = 3e-3,
        max_images: Annotated[int, Ge(10)] = 500,  # check_sets needs min_images = 10 per set
        folds: Annotated[int, Ge(2)] = 2,
        batch_size: PositiveInt = 32,
        width: PositiveInt = 16,
        device: Device = "cpu",
    ):
        """size: side the images are resized to (px). epochs: passes over the training folds.
        learning_rate: Adam step size. max_images: cap per set (a random subsample above it).
        folds: cross-validation folds (>= 2; 2 = train on one half, test on the other, swap).
        batch_size: images per Adam step. width: channels of the first conv (doubled per layer).
        device: "cpu", "cuda", "cuda:1"."""
        self.size = int(size)
        self.epochs = int(epochs)
        self.learning_rate = float(learning_rate)
        self.max_images = int(max_images)
        self.folds = int(folds)
        self.batch_size = int(batch_size)
        self.width = int(width)
        self.device = device
        if self.folds < 2:
            raise ValueError(f"c2st: folds must be >= 2, got {self.folds}")
        if self.max_images < self.min_images:
            raise ValueError(f"c2st: max_images must be >= {self.min_images}, got {self.max_images}")

    @classmethod
    def example(cls) -> "C2ST":
        return cls(size=16, epochs=3, width=8)

    def _prepare(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 4) uint8 -> (N, 3, size, size) float32 in [-1, 1], background black."""
        import cv2

        out = np.empty((len(batch), self.size, self.size, 3), dtype=np.float32)
        for i, rgba in enumerate(batch):
            rgb = composite_black(rgba)
            if rgb.shape[:2] != (self.size, self.size):
                rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
            out[i] = rgb
        return (out / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()

    def _network(self):
        import torch.nn as nn

        w, layers, channels = self.width, [], 3
        for k in range(3):
            layers += [nn.Conv2d(channels, w * 2**k, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = w * 2**k
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1)]
        return nn.Sequential(*layers).to(self.device)

    def _train(self, x, y, rng: np.random.Generator):
        import torch

        net = self._network()
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for _ in range(self.epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(order), self.batch_size):
                idx = torch.as_tensor(order[start : start + self.batch_size])
                xb, yb = x[idx], y[idx]
                flip = torch.as_tensor(rng.uniform(size=len(idx)) < 0.5, device=xb.device)
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)  # (B, 3, S, S)
                opt.zero_grad()
                loss_fn(net(xb).squeeze(1), yb).backward()
                opt.step()
        return net.eval()

    @staticmethod
    def _correct(net, x, y) -> int:
        import torch

        with torch.no_grad():
            return int(((net(x).squeeze(1) > 0).float() == y).sum().item())

    def compute(self, images: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, Any]:
        import torch

        check_sets(images, reference, self.min_images, "c2st")
        rng = np.random.default_rng(seed)
        n = min(len(images), len(reference), self.max_images)
        picks = [rng.choice(len(s), n, replace=False) for s in (images, reference)]
        x = np.concatenate([self._prepare(np.asarray(images)[picks[0]]), self._prepare(np.asarray(reference)[picks[1]])])
        y = np.concatenate([np.zeros(n, np.float32), np.ones(n, np.float32)])  # 1 = reference
        # stratified folds: each class is permuted and dealt round-robin into the folds
        fold = np.empty(2 * n, dtype=int)
        for cls in (0, 1):
            fold[cls * n + rng.permutation(n)] = np.arange(n) % self.folds
        xt = torch.as_tensor(x, device=self.device)
        yt = torch.as_tensor(y, device=self.device)
        correct = train_acc = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for k in range(self.folds):
                train = torch.as_tensor(np.nonzero(fold != k)[0], device=self.device)
                test = torch.as_tensor(np.nonzero(fold == k)[0], device=self.device)
                net = self._train(xt[train], yt[train], rng)
                correct += self._correct(net, xt[test], yt[test])
                train_acc += self._correct(net, xt[train], yt[train]) / len(train) / self.folds
        total = 2 * n
        accuracy = correct / total
        z = (accuracy - 0.5) / math.sqrt(0.25 / total)
        return {
            "c2st_accuracy": float(accuracy),
            "c2st_ci95": wilson_interval(int(correct), total),
            "c2st_p_value": float(0.5 * math.erfc(z / math.sqrt(2))),
            "c2st_n_heldout": int(total),
            "c2st_train_accuracy": float(train_acc),
        }


# --------------------------------------------------------------------------------------------
class ColourStats(DomainGap):
    """Object-pixel colour and texture statistics of each set (NumPy + OpenCV only), for
    telling *how* two sets differ: too grey, too smooth, a colour cast.

    Inputs: `images` (N, H, W, 4) and `reference` (M, H, W, 4) uint8 RGBA of one size; object
    pixels are alpha > 0, background RGB is never read. Every statistic is first averaged over
    the object pixels of each image, then over the images of a set (each image weighs the same,
    whatever its object's size); images without object pixels are left out.
    Output, each for `images` and with suffix "_reference" for `reference`:
      saturation       mean HSV saturation, 0-255 (OpenCV's uint8 HSV: 255 * (max - min) / max)
      hf_energy        mean |Laplacian| of the luminance Y = 0.299 R + 0.587 G + 0.114 B (0-255),
                       4-neighbour kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]], over the object mask
                       eroded by `erode_px` pixels (3x3 square), so the silhouette edge and every
                       background pixel stay out of the kernel's reach; in grey levels per pixel.
                       An image whose eroded mask is empty is left out; if all are, the value is
                       None with "hf_energy_missing" (or "hf_energy_reference_missing") saying so
      lab_l, lab_a, lab_b  mean CIELAB (sRGB, D65, as OpenCV converts float RGB, within about 0.2 of
                       the exact formula) of the object pixels; L in 0-100, a and b about -128..127
    and
      lab_mean_distance  Euclidean distance between the two sets' (L, a, b) means (CIE76 delta-E
                         of the mean colours); 0 for identical sets.
    Deterministic (no randomness; `seed` is ignored). Raises ValueError for an empty set, a set
    without any object pixel, or bad shapes/dtypes.
    """

    min_images = 1

    def __init__(self, erode_px: Annotated[int, Ge(1)] = 2):
        """erode_px: object-mask erosion before the Laplacian (>= 1; 1 already keeps every
        background pixel out of the 3x3 kernel, 2 also drops the anti-aliased rim)."""
        self.erode_px = int(erode_px)
        if self.erode_px < 1:
            raise ValueError(f"colour-stats: erode_px must be >= 1, got {self.erode_px}")

    @classmethod
    def example(cls) -> "ColourStats":
        return cls()

    def _stats(self, batch: np.ndarray, name: str) -> dict[str, Any]:
        import cv2

        kernel = np.ones((3, 3), np.uint8)
        sat, hf, lab = [], [], []
        for rgba in batch:
            mask = rgba[..., 3] > 0
            if not mask.any():
                continue
            rgb = composite_black(rgba)
            sat.append(float(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1][mask].mean()))
            lab.append(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[mask].mean(axis=0))
            inner = cv2.erode(mask.astype(np.uint8), kernel, iterations=self.erode_px) > 0
            if inner.any():
                luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
                hf.append(float(np.abs(cv2.Laplacian(luma, cv2.CV_32F, ksize=1))[inner].mean()))
        if not sat:
            raise ValueError(f"colour-stats: {name} has no object pixels (alpha > 0) in any image")
        means = np.mean(lab, axis=0)
        return {"saturation": float(np.mean(sat)), "hf_energy": float(np.mean(hf)) if hf else None,
                "lab": means}

    def compute(self, images: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, Any]:
        check_sets(images, reference, self.min_images, "colour-stats")
        out: dict[str, Any] = {}
        labs = []
        for name, batch, suffix in (("images", images, ""), ("reference", reference, "_reference")):
            stats = self._stats(np.asarray(batch), name)
            out[f"saturation{suffix}"] = stats["saturation"]
            out[f"hf_energy{suffix}"] = stats["hf_energy"]
            if stats["hf_energy"] is None:
                out[f"hf_energy{suffix}_missing"] = (
                    f"no {name} object is wider than 2 * erode_px = {2 * self.erode_px} px after erosion")
            for channel, value in zip(("l", "a", "b"), stats["lab"]):
                out[f"lab_{channel}{suffix}"] = float(value)
            labs.append(stats["lab"])
        out["lab_mean_distance"] = float(np.linalg.norm(labs[0] - labs[1]))
        return out


# --------------------------------------------------------------------------------------------
def default_inception_path() -> Path:
    """Where torch-fidelity itself would cache the weights: torch hub's checkpoints folder."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


class KID(DomainGap):
    """Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", ICLR 2018,
    arXiv:1801.01401), computed by torch-fidelity (github.com/toshas/torch-fidelity,
    requirement "torch-fidelity>=0.4.0"): the unbiased MMD^2 with a cubic polynomial kernel
    between InceptionV3 pool features (2048-d) of the two sets, averaged over `subsets` random
    subsets of `subset_size` images per set.

    Inputs: `images` (N, H, W, 4) and `reference` (M, H, W, 4) uint8 RGBA of one size; each
    image is composited onto black (background RGB ignored, silhouette part of the gap) and
    handed to torch-fidelity as uint8 (3, H, W), which resizes it to 299 x 299 itself
    (TensorFlow-compatible bilinear). The subset size is min(subset_size, N, M), as
    torch-fidelity requires; subsets are drawn with `seed`.
    Weights: torch-fidelity's InceptionV3 file `weights-inception-2015-12-05-6726825d.pth`, read
    from `weights` or else from torch hub's cache (`~/.cache/torch/hub/checkpoints/` unless
    TORCH_HOME says otherwise), always passed as an explicit path, so nothing is downloaded.
    Output: {"kid": mean, "kid_std": std over subsets, "kid_subset_size": int} (unitless, about
    0 for one distribution; small negative values are possible, it is unbiased); or, when the
    file or torch-fidelity is absent, {"kid": None, "kid_missing": one line saying what to
    place or install where}, without touching the network.
    Raises ValueError for a set with fewer than 2 images or bad shapes/dtypes.
    """

    min_images = 2

    def __init__(self, weights: str = "", subset_size: PositiveInt = 1000, subsets: PositiveInt = 100,
                 batch_size: PositiveInt = 32, device: Device = "cpu"):
        """weights: path to weights-inception-2015-12-05-6726825d.pth; "" = torch hub's cache.
        subset_size: images per KID subset (capped at the smaller set's size; torch-fidelity
        and the paper use 1000). subsets: number of random subsets (torch-fidelity: 100).
        batch_size: images per Inception forward pass. device: "cpu" or "cuda" (torch-fidelity
        uses the current CUDA device; "cuda:1" counts as "cuda")."""
        self.weights = str(weights)
        self.subset_size = int(subset_size)
        self.subsets = int(subsets)
        self.batch_size = int(batch_size)
        self.device = device

    @classmethod
    def example(cls) -> "KID":
        return cls(subsets=10)

    def weights_path(self) -> Path:
        """The Inception weights file: `weights` when set, else torch-fidelity's default in the torch hub cache."""
        return Path(self.weights).expanduser() if self.weights else default_inception_path()

    def missing(self) -> str | None:
        """One line saying what is absent (weights file, torch-fidelity), or None."""
        problems = []
        path = self.weights_path()
        if not path.is_file():
            if self.weights:
                problems.append(f"Inception weights not found at {path}; place {INCEPTION_FILE} there "
                                f"(or set weights = \"/path/to/{INCEPTION_FILE}\")")
            else:
                problems.append(f"Inception weights missing; place {INCEPTION_FILE} in {path.parent} "
                                f"(or set weights = \"/path/to/{INCEPTION_FILE}\")")
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            problems.append(f"torch-fidelity is not installed (pip install \"{TORCH_FIDELITY_REQUIREMENT}\")")
        return "; ".join(problems) or None

    def fidelity_arguments(self, images: np.ndarray, reference: np.ndarray, seed: int) -> dict[str, Any]:
        """The keyword arguments of torch_fidelity.calculate_metrics: local weights, no cache,
        no worker processes, no dataset download."""
        subset = min(self.subset_size, len(images), len(reference))
        return dict(
            input1=_as_dataset(images),
            input2=_as_dataset(reference),
            kid=True,
            feature_extractor="inception-v3-compat",
            feature_extractor_weights_path=str(self.weights_path()),
            kid_subset_size=subset,
            kid_subsets=self.subsets,
            rng_seed=int(seed),
            batch_size=self.batch_size,
            cuda=str(self.device).startswith("cuda"),
            cache=False,
            save_cpu_ram=True,  # num_workers = 0: no worker processes
            datasets_download=False,
            verbose=False,
        )

    def compute(self, images: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, Any]:
        check_sets(images, reference, self.min_images, "kid")
        reason = self.missing()
        if reason:
            return {"kid": None, "kid_missing": reason}
        import torch_fidelity

        args = self.fidelity_arguments(np.asarray(images), np.asarray(reference), seed)
        metrics = torch_fidelity.calculate_metrics(**args)
        return {
            "kid": float(metrics["kernel_inception_distance_mean"]),
            "kid_std": float(metrics["kernel_inception_distance_std"]),
            "kid_subset_size": int(args["kid_subset_size"]),
        }


def _as_dataset(batch: np.ndarray):
    """(N, H, W, 4) uint8 RGBA -> a torch Dataset of (3, H, W) uint8 tensors on black, the
    input torch-fidelity's Inception extractor expects."""
    import torch
    from torch.utils.data import Dataset

    class Uint8Images(Dataset):
        def __init__(self, rgb: np.ndarray):
            self.tensors = torch.as_tensor(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))  # (N, 3, H, W)

        def __len__(self) -> int:
            return len(self.tensors)

        def __getitem__(self, i):
            return self.tensors[i]

    return Uint8Images(np.stack([composite_black(rgba) for rgba in batch]))
