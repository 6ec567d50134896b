"""Segmenters on real pixels: GrabCut on drawn cars, torchvision Mask R-CNN with random (and,
when present, COCO) weights, and the detectron2 conversion functions without detectron2."""

import re

import numpy as np
import pytest
import torch
from seg_fixtures import draw_car, textured_background

from aist_core.imaging import mask_iou
from aist_core.interfaces import Instance
from aist_plugins.segmentation import detectron2 as d2
from aist_plugins.segmentation.grabcut import GrabCutSegmenter, gmm_log_likelihood
from aist_plugins.segmentation.maskrcnn import MaskRCNNSegmenter, MaskRCNNv2Segmenter, WeightsMissing, checkpoint_dir
from aist_plugins.training import WeightsError


def photo_with_car(seed=0, shape=(200, 280), box=(50, 60, 230, 150)):
    rng = np.random.default_rng(seed)
    car, mask = draw_car(shape, box, (30, 90, 200), rng)
    return np.where(mask[..., None], car, textured_background(shape, rng)), mask


def check_contract(images, results):
    assert len(results) == len(images)
    for image, instances in zip(images, results):
        for inst in instances:
            assert isinstance(inst, Instance)
            assert inst.mask.shape == image.shape[:2] and inst.mask.dtype == bool
            assert 0.0 <= inst.score <= 1.0 and isinstance(inst.label, str)
            x0, y0, x1, y1 = inst.box
            assert 0 <= x0 <= x1 <= image.shape[1] and 0 <= y0 <= y1 <= image.shape[0]


def test_grabcut_recovers_drawn_car_from_hint_box():
    image, gt = photo_with_car()
    seg = GrabCutSegmenter()
    (instances,) = seg.segment([image], [np.array([[50, 60, 230, 150]])])
    assert len(instances) == 1
    check_contract([image], [instances])
    assert instances[0].label == "car" and instances[0].score == 1.0
    assert mask_iou(instances[0].mask, gt) > 0.85
    (again,) = seg.segment([image], [np.array([[50, 60, 230, 150]])])
    assert np.array_equal(again[0].mask, instances[0].mask)  # deterministic


def test_grabcut_without_hints_uses_inset_frame_and_batches():
    image, _ = photo_with_car(1)
    results = GrabCutSegmenter.example().segment([image, image[:100, :150]], None)
    check_contract([image, image[:100, :150]], results)


def empty_box_lines(mask, box) -> int:
    x0, y0, x1, y1 = box
    inside = mask[y0:y1, x0:x1]
    return int((~inside.any(1)).sum() + (~inside.any(0)).sum())


def test_grabcut_tightness_prior_fills_empty_box_rows():
    """The hint box is tight, so every box row and column should hold a car pixel. Plain GrabCut
    drops a wheel or roof row on some of these drawn cars; pinpointing restores them without
    costing accuracy elsewhere."""
    box = (50, 60, 230, 150)
    empty, ious = {0: 0, 5: 0}, {0: [], 5: []}  # by tightness_rounds: 0 is plain GrabCut
    for seed in range(6):
        image, gt = photo_with_car(seed, box=box)
        for rounds in empty:
            (inst,) = GrabCutSegmenter(tightness_rounds=rounds).segment([image], [np.array([box], float)])[0]
            empty[rounds] += empty_box_lines(inst.mask, box)
            ious[rounds].append(mask_iou(inst.mask, gt))
    plain_empty, prior_empty = empty[0], empty[5]
    assert plain_empty > 0  # the case the prior exists for occurs on these cars
    assert prior_empty < plain_empty
    assert np.mean(ious[5]) >= np.mean(ious[0]) - 0.002


def test_gmm_log_likelihood_reads_opencv_model_layout():
    model = np.zeros((1, 65))
    model[0, 0] = 1.0  # one component, the other four empty
    model[0, 5:8] = (10.0, 20.0, 30.0)  # its mean
    model[0, 20:29] = np.diag([4.0, 4.0, 4.0]).ravel()  # its covariance
    pixels = np.array([[10.0, 20.0, 30.0], [12.0, 20.0, 30.0]])
    expected = -0.5 * (np.array([0.0, 1.0]) + np.log(64.0) + 3 * np.log(2 * np.pi))
    assert gmm_log_likelihood(model, pixels) == pytest.approx(expected)


def test_maskrcnn_random_weights_end_to_end():
    seg = MaskRCNNSegmenter(pretrained=False, min_size=96, max_size=128, score_threshold=0.0,
                            detections_per_image=4, batch_size=2)
    images = [photo_with_car(s, shape=(90, 120), box=(20, 25, 100, 70))[0] for s in range(3)]
    results = seg.segment(images)
    check_contract(images, results)
    assert sum(len(r) for r in results) > 0  # threshold 0 keeps the random detections
    assert all(inst.label in seg.categories for r in results for inst in r)
    again = MaskRCNNSegmenter(pretrained=False, min_size=96, max_size=128, score_threshold=0.0,
                              detections_per_image=4).segment(images[:1])
    assert [i.score for i in again[0]] == pytest.approx([i.score for i in results[0]], rel=1e-4)  # seeded weights (batching shifts ~1e-6)


def test_maskrcnn_labels_follow_torchvision_coco_ids():
    seg = MaskRCNNSegmenter.example()
    assert seg.label_name(3) == "car" and seg.label_name(8) == "truck" and seg.label_name(0) == "__background__"


def test_missing_weights_one_clear_line(tmp_path):
    with pytest.raises(WeightsMissing) as err:
        MaskRCNNSegmenter(pretrained=True, weights=str(tmp_path / "nope.pth"), min_size=64, max_size=64)
    assert "nope.pth" in str(err.value) and "\n" not in str(err.value)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")  # there, but damaged: another error (a rerun repeats it)
    with pytest.raises(WeightsError, match=f"^{re.escape(str(bad))}: not a readable weights file"):
        MaskRCNNSegmenter(pretrained=True, weights=str(bad), min_size=64, max_size=64)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [MaskRCNNSegmenter, MaskRCNNv2Segmenter])
def test_maskrcnn_coco_weights_when_present(cls):
    import torchvision.models.detection as det

    name = getattr(det, cls.weights_enum).COCO_V1.url.rsplit("/", 1)[-1]
    if not (checkpoint_dir() / name).is_file():
        pytest.skip(f"COCO weights {name} not in {checkpoint_dir()} (no downloads here)")
    seg = cls(pretrained=True, min_size=320, max_size=480)
    image, _ = photo_with_car()
    check_contract([image], seg.segment([image]))


# ----------------------------------------------------------------------------- detectron2
class FakeBoxes:
    def __init__(self, tensor):
        self.tensor = tensor


class FakeInstances:
    """Duck-typed detectron2 Instances holding torch tensors."""

    def __init__(self, n, h, w):
        self.pred_masks = torch.zeros(n, h, w, dtype=torch.bool)
        for k in range(n):
            self.pred_masks[k, 5 * k : 5 * k + 10, 3:20] = True
        self.pred_boxes = FakeBoxes(torch.tensor([[3.0, 5.0 * k, 20.0, 5.0 * k + 10] for k in range(n)]).reshape(n, 4))
        self.scores = torch.linspace(0.9, 0.5, n)
        self.pred_classes = torch.tensor([2, 7, 0][:n])


def test_detectron2_conversion_without_detectron2():
    instances = d2.outputs_to_instances({"instances": FakeInstances(3, 40, 30)})
    assert [i.label for i in instances] == ["car", "truck", "person"]  # 0-based contiguous ids
    assert instances[0].mask.shape == (40, 30) and instances[0].mask.dtype == bool
    assert instances[1].box == (3.0, 5.0, 20.0, 15.0)
    assert instances[2].score == pytest.approx(0.5)
    assert d2.outputs_to_instances({"instances": FakeInstances(0, 8, 8)}) == []
    assert d2.class_name(99) == "class_99"


def test_detectron2_length_mismatch_is_an_error():
    broken = FakeInstances(2, 10, 10)
    broken.scores = torch.tensor([0.9])
    with pytest.raises(ValueError, match="disagree"):
        d2.instances_from_detectron2(broken)


def test_detectron2_missing_says_how_to_install():
    try:
        import detectron2  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError) as err:
            d2.Detectron2Segmenter()
        assert "git+https://github.com/facebookresearch/detectron2" in str(err.value)
    else:
        pytest.skip("detectron2 is installed here")
