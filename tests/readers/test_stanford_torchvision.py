"""The stanford-cars reader on the layout torchvision.datasets.StanfordCars reads:
<root>/stanford_cars/{cars_train,cars_test}/, devkit/cars_train_annos.mat, devkit/cars_meta.mat,
and the test annotations with classes at stanford_cars/cars_test_annos_withlabels.mat."""

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, write_image
from aist_core.testing.fixtures import make_photo
from aist_plugins.readers.photos import StanfordCars, stanford_layout


def _annotations(rows):
    """A struct array "annotations" as the devkit stores it (fields 1x1, fname a string)."""
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    table = np.array([tuple(np.array([[v]]) if not isinstance(v, str) else np.array([v]) for v in r) for r in rows], dtype=dtype)
    return {"annotations": table.reshape(1, -1)}


def write_torchvision_layout(root: Path, n: int = 3, seed: int = 0) -> dict[str, list]:
    """<root>/stanford_cars/ as torchvision expects it; returns the written boxes per subset."""
    base = root / "stanford_cars"
    rng = np.random.default_rng(seed)
    boxes = {}
    for subset in ("train", "test"):
        rows, boxes[subset] = [], []
        for i in range(n):
            image, _, box = make_photo(rng, 120, 160)
            fname = f"{i + 1:05d}.jpg"
            write_image(base / f"cars_{subset}" / fname, image)
            x0, y0, x1, y1 = (int(v) for v in box[0])
            rows.append((x0 + 1, y0 + 1, x1, y1, 10 * (i + 1) + (subset == "test"), fname))
            boxes[subset].append([float(x0), float(y0), float(x1), float(y1)])
        target = base / "devkit" / "cars_train_annos.mat" if subset == "train" else base / "cars_test_annos_withlabels.mat"
        target.parent.mkdir(parents=True, exist_ok=True)
        savemat(target, _annotations(rows))
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([[f"class {i}" for i in range(1, 197)]], dtype=object)})
    return boxes


@pytest.mark.parametrize("point_at", ["torchvision root", "stanford_cars folder"])
def test_torchvision_layout_reads_boxes_and_test_classes(tmp_path, point_at):
    boxes = write_torchvision_layout(tmp_path / "tv")
    root = tmp_path / "tv" if point_at == "torchvision root" else tmp_path / "tv" / "stanford_cars"
    assert StanfordCars.check_params({"root": str(root)}) == []
    assert stanford_layout(root, "test")[0].name == "cars_test_annos_withlabels.mat"
    summary = StanfordCars(root=str(root), min_side=0).build(tmp_path / "out", StageContext.for_tests(tmp_path / "w"))
    assert summary["photos"]["images"] == 6
    data = ViewsDataset(tmp_path / "out" / "photos")
    for subset in ("train", "test"):
        for i in range(3):
            rec = next(r for r in data.records() if r["id"] == f"{subset}_{i + 1:05d}")
            assert rec["boxes"] == [boxes[subset][i]]
            assert rec["class"] == 10 * (i + 1) + (subset == "test")  # the test split's labels are read too
            assert data.image(rec, "RGB").shape == (120, 160, 3)


def test_withlabels_file_is_preferred_over_the_unlabelled_devkit_file(tmp_path):
    write_torchvision_layout(tmp_path / "tv")
    base = tmp_path / "tv" / "stanford_cars"
    savemat(base / "devkit" / "cars_test_annos.mat", _annotations([(1, 1, 10, 10, 0, "00001.jpg")]))  # no classes
    annotations, images = stanford_layout(tmp_path / "tv", "test")
    assert annotations == base / "cars_test_annos_withlabels.mat" and images == base / "cars_test"


def test_missing_test_annotations_is_one_clear_problem(tmp_path):
    write_torchvision_layout(tmp_path / "tv")
    (tmp_path / "tv" / "stanford_cars" / "cars_test_annos_withlabels.mat").unlink()
    problems = StanfordCars.check_params({"root": str(tmp_path / "tv")})
    assert len(problems) == 1 and problems[0].startswith("root: ") and "stanford_cars/cars_test_annos_withlabels.mat not found" in problems[0]
    assert StanfordCars.check_params({"root": str(tmp_path / "tv"), "subsets": ("train",)}) == []
