"""`procedural-cars`: a two-domain car benchmark rendered offline with Mitsuba 3.

The machines this project runs on have neither ShapeNet nor Stanford Cars, and the seed report
never had ground truth for its real domain. This source makes both domains from the same
parametric car generator (`cars.py`), with ground truth everywhere:

- out/synthetic: DPC-like renders (plain materials, transparent background, 5 views per object,
  azimuth U[0, 360), elevation U[-20, 40], DPC camera), per-object clouds, train/val/test split.
- out/photos: photo-like full frames (PBR materials, reflective textured ground, sky, buildings,
  occluders, frame-border cropping, several cars, sensor noise, blur, JPEG) with hint boxes;
  masks, poses and clouds stored for evaluation only.
- with `diagnostic`, each photo frame also has a twin (out/photos/twins/): the frame's cars and
  camera in the synthetic domain's look (plain materials, point lights, transparent
  background), which the normalize stage crops like the real crops into a diagnostic test set.

Work is split in units (an object, a frame) written atomically by `DatasetWriter`, so a killed
build resumes, and rendered over processes with `ctx.map`. Everything derives from the seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from annotated_types import Interval

from aist_core import camera
from aist_core.constraints import Fraction, NonNegativeInt, PositiveInt
from aist_core.context import StageContext
from aist_core.dataset import DatasetWriter, ViewsDataset
from aist_core.interfaces import DatasetSource

from aist_plugins.procedural.cars import FAMILIES


class ProceduralCars(DatasetSource):
    """Procedural cars rendered with Mitsuba 3 in a synthetic (DPC-like) and a photo-like domain.

    Parameters
    - n_objects / views: synthetic objects and views each (DPC: 5 views).
    - image_size: synthetic render size (DPC: 128).
    - points: ground-truth surface samples per object (default 8000, like DPC's clouds).
    - spp: samples per pixel of synthetic renders (32 is noise-free enough for plain materials).
    - splits: train/val/test fractions of synthetic objects (DPC cars: 0.70/0.10/0.20).
    - n_photos / photo_width / photo_height / photo_spp: the photo domain (0 photos: none).
      384x288 keeps most primary cars above the curation filters' sqrt(box area) >= 128.
    - elevation_range: synthetic camera elevations in degrees (DPC: -20 to 40).
    - diagnostic: also render each photo frame's synthetic-looking twin (default True): same
      cars, poses and camera, the synthetic materials and lights, transparent background, at
      `spp` samples (photos.render_photo). The normalize stage crops twins exactly like the real
      crops into `<normalize>/diagnostic/`, a test set with the photos' geometry and the synthetic
      appearance, whose pose/shape score bounds what any appearance translator can recover. The
      photos themselves are byte-identical either way (the twin has its own seeded generator).
    """

    def __init__(
        self,
        n_objects: PositiveInt = 200,
        views: PositiveInt = 5,
        image_size: PositiveInt = 128,
        points: PositiveInt = 8000,
        spp: PositiveInt = 32,
        splits: tuple[Fraction, Fraction, Fraction] = (0.7, 0.1, 0.2),
        n_photos: NonNegativeInt = 200,
        photo_width: PositiveInt = 384,
        photo_height: PositiveInt = 288,
        photo_spp: PositiveInt = 48,
        elevation_range: tuple[Annotated[float, Interval(ge=-90, le=90)], Annotated[float, Interval(ge=-90, le=90)]] = (-20.0, 40.0),
        diagnostic: bool = True,
    ):
        self.n_objects, self.views, self.image_size, self.points, self.spp = n_objects, views, image_size, points, spp
        self.splits = tuple(float(s) for s in splits)
        self.n_photos, self.photo_width, self.photo_height, self.photo_spp = n_photos, photo_width, photo_height, photo_spp
        self.elevation_range = tuple(float(e) for e in elevation_range)
        self.diagnostic = bool(diagnostic)

    @classmethod
    def example(cls) -> "ProceduralCars":
        return cls(n_objects=2, views=2, image_size=32, points=500, spp=4, n_photos=1, photo_width=96, photo_height=72, photo_spp=4)

    def _settings(self) -> dict[str, Any]:
        return dict(vars(self))

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        out = Path(out)
        settings = self._settings()
        summary: dict[str, Any] = {}
        domains = [("synthetic", self.n_objects, _synthetic_unit)]
        if self.n_photos > 0:
            domains.append(("photos", self.n_photos, _photo_unit))
        for domain, count, work in domains:
            writer = DatasetWriter(out / domain, domain, self.image_size if domain == "synthetic" else None)
            jobs = [(str(out / domain), i, ctx.seed, settings) for i in range(count) if not writer.unit_done(_unit_name(domain, i))]
            for _ in ctx.map(work, jobs, description=f"rendering {domain}"):
                pass
            manifest = writer.finish(meta={"generator": "procedural-cars", "settings": settings, "seed": ctx.seed})
            summary[domain] = manifest["counts"]
            for item in manifest["skipped"]:
                ctx.skipped.record(item["path"], item["reason"])
        _contact_sheet(out, ctx)
        return summary


def _unit_name(domain: str, index: int) -> str:
    return f"{'car' if domain == 'synthetic' else 'frame'}{index:05d}"


def split_of(index: int, count: int, fractions: tuple[float, float, float], seed: int) -> str:
    """Deterministic object split: a seeded permutation cut at the fractions."""
    order = np.random.default_rng([seed, 99]).permutation(count)
    rank = int(np.nonzero(order == index)[0][0])
    n_train = int(round(fractions[0] * count))
    n_val = int(round(fractions[1] * count))
    return "train" if rank < n_train else "val" if rank < n_train + n_val else "test"


# ---------------------------------------------------------------------------- workers
def _synthetic_unit(job) -> None:
    """Render one object's views (a process-pool worker: imports inside)."""
    from aist_plugins.procedural.cars import make_car
    from aist_plugins.procedural.scenes import render_synthetic

    root, index, seed, s = job
    rng = np.random.default_rng([seed, 1, index])
    obj = _unit_name("synthetic", index)
    car = make_car(rng, FAMILIES[index % len(FAMILIES)] if rng.uniform() < 0.5 else None)
    split = split_of(index, s["n_objects"], s["splits"], seed)
    records, images = [], {}
    for k in range(s["views"]):
        az, el = float(rng.uniform(0, 360)), float(rng.uniform(*s["elevation_range"]))
        q = camera.quat_from_azel(az, el)
        rel = f"images/{obj}_{k}.png"
        images[rel] = render_synthetic(car, q, s["image_size"], s["spp"], rng)
        records.append({"id": f"{obj}/{k}", "image": rel, "split": split, "object": obj, "view": k, "family": car.family,
                        "quaternion": q.tolist(), "azimuth_deg": az, "elevation_deg": el})
    cloud = car.sample_surface(s["points"], seed=int(rng.integers(1 << 30)))
    DatasetWriter(root, "synthetic", s["image_size"]).write_unit(obj, records, images, {obj: cloud})


def _photo_unit(job) -> None:
    from aist_plugins.procedural.photos import render_photo

    root, index, seed, s = job
    frame = _unit_name("photos", index)
    # The twin's own stream (3), never the frame's (2): the photo must not depend on the twin.
    twin_rng = np.random.default_rng([seed, 3, index]) if s.get("diagnostic") else None
    record, images, clouds = render_photo(frame, np.random.default_rng([seed, 2, index]), s, twin_rng)
    DatasetWriter(root, "photos").write_unit(frame, [record], images, clouds)


# ---------------------------------------------------------------------------- contact sheet
def _contact_sheet(out: Path, ctx: StageContext, columns: int = 6) -> None:
    """A PNG grid: synthetic renders on a checkerboard (to show alpha), then photos."""
    from PIL import Image

    tiles: list[np.ndarray] = []
    tile = 160
    if (out / "synthetic" / "dataset.json").is_file():
        data = ViewsDataset(out / "synthetic")
        for rec in data.records()[: columns * 2 : 2]:
            rgba = data.image(rec).astype(np.float32) / 255
            yy, xx = np.mgrid[: rgba.shape[0], : rgba.shape[1]]
            checker = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 0.85, 0.65)
            tiles.append((rgba[..., :3] * rgba[..., 3:] + checker * (1 - rgba[..., 3:])) * 255)
    if (out / "photos" / "dataset.json").is_file():
        data = ViewsDataset(out / "photos")
        tiles += [data.image(rec, "RGB").astype(np.float32) for rec in data.records()[: columns * 2]]
    if not tiles:
        return
    resized = []
    for t in tiles:
        h, w = t.shape[:2]
        scale = tile / max(h, w)
        img = Image.fromarray(t.clip(0, 255).astype(np.uint8)).resize((max(1, int(w * scale)), max(1, int(h * scale))))
        canvas = Image.new("RGB", (tile, tile), (255, 255, 255))
        canvas.paste(img, ((tile - img.width) // 2, (tile - img.height) // 2))
        resized.append(np.asarray(canvas))
    rows = [resized[i : i + columns] for i in range(0, len(resized), columns)]
    rows = [np.concatenate(r + [np.full_like(resized[0], 255)] * (columns - len(r)), 1) for r in rows]
    Image.fromarray(np.concatenate(rows, 0)).save(out / "contact_sheet.png")
    ctx.figures.append("contact_sheet.png")
