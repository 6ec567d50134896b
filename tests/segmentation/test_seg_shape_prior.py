"""The shape-prior segmenter: copy-paste pairs, training that resumes exactly, weights that are
checked on load, and the curation stage training it from the synthetic set."""

import re

import numpy as np
import pytest
import torch

from aist_core.context import StageContext
from aist_core.testing.fixtures import make_photo
from seg_fixtures import make_photos, make_synthetic
from aist_plugins.segmentation import shape_prior as sp
from aist_plugins.segmentation.copy_paste import CopyPasteSampler, background_patches, window_transform
from aist_plugins.segmentation.shape_prior import ShapePriorSegmenter
from aist_plugins.training import CheckpointError, read_losses

RED = (255, 0, 0)


def drawn_inputs(n_renders=6, n_photos=8, seed=0):
    rng = np.random.default_rng(seed)
    renders = []
    for _ in range(n_renders):
        image, mask, _ = make_photo(rng, 64, 64)
        renders.append(np.dstack([image, mask.astype(np.uint8) * 255]))
    photos = [make_photo(rng, 64, 192)[::2] for _ in range(n_photos)]
    return renders, photos


def tiny(**overrides):
    settings = dict(steps=6, batch_size=2, size=32, width=4, checkpoint_every=3)
    return ShapePriorSegmenter(**{**settings, **overrides})


def test_window_transform_puts_the_box_inside_the_context_margin():
    warp = window_transform((10, 20, 110, 70), context=0.25, size=96)
    corners = np.array([[10, 20, 1], [110, 70, 1]], float) @ warp.T
    margin = 96 * 0.25 / 1.5
    assert np.allclose(corners, [[margin, margin], [96 - margin, 96 - margin]])


def test_background_patches_never_touch_a_hint_box():
    rng = np.random.default_rng(0)
    photos = []
    for _ in range(10):
        image = np.full((80, 200, 3), 90, np.uint8)
        x0 = int(rng.integers(20, 120))
        image[10:70, x0 : x0 + 60] = RED  # the "object": any red pixel in a patch is a leak
        photos.append((image, np.array([[x0, 10, x0 + 60, 70]], float)))
    photos.append((np.full((80, 200, 3), 255, np.uint8), None))  # no boxes: unknown object, skipped
    patches = background_patches(photos, 24, rng)
    assert len(patches) >= 10
    assert not np.any(np.all(patches == RED, axis=-1)) and not np.any(patches == 255)


def test_sampler_pairs_are_deterministic_and_masks_follow_the_render():
    renders, photos = drawn_inputs()
    patches = background_patches(photos, 32, np.random.default_rng(1))
    first = CopyPasteSampler(renders, patches, 32, 0.25, np.random.default_rng(2)).batch(4)
    second = CopyPasteSampler(renders, patches, 32, 0.25, np.random.default_rng(2)).batch(4)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    windows, masks = first
    assert windows.shape == (4, 32, 32, 3) and windows.dtype == np.uint8 and masks.dtype == bool
    # the object fills the middle of the window (its box sits inside the context margin)
    assert masks[:, 8:24, 8:24].mean() > 0.4 and masks[:, :3].mean() < 0.05


def test_sampler_refuses_photos_without_free_background():
    renders, _ = drawn_inputs()
    full = [(np.zeros((40, 40, 3), np.uint8), np.array([[0, 0, 40, 40]], float))]
    with pytest.raises(ValueError, match="background patches"):
        CopyPasteSampler(renders, background_patches(full, 32, np.random.default_rng(0)), 32, 0.25,
                         np.random.default_rng(0))


def test_untrained_segmenter_says_how_to_get_weights():
    image, _, box = make_photo(np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="run it through the segment stage"):
        tiny().segment([image], [box])


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    renders, photos = drawn_inputs()
    straight = tiny()
    straight.fit_arrays(renders, photos, seed=3, workdir=tmp_path / "straight")

    crashed = tiny()
    calls = {"n": 0}
    real_batch = CopyPasteSampler.batch

    def batch_then_crash(self, n):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at step 3
            raise KeyboardInterrupt
        return real_batch(self, n)

    monkeypatch.setattr(CopyPasteSampler, "batch", batch_then_crash)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit_arrays(renders, photos, seed=3, workdir=tmp_path / "crashed")
    monkeypatch.setattr(CopyPasteSampler, "batch", real_batch)
    resumed = tiny()
    resumed.fit_arrays(renders, photos, seed=3, workdir=tmp_path / "crashed")

    for name, tensor in straight.net.state_dict().items():
        assert torch.equal(tensor, resumed.net.state_dict()[name]), name
    steps = [line.split(",")[0] for line in (tmp_path / "crashed" / sp.LOSSES).read_text().splitlines()[1:]]
    assert steps == [str(i) for i in range(6)], "each step logged once"


def test_saved_weights_reload_and_refuse_another_architecture(tmp_path):
    renders, photos = drawn_inputs()
    trained = tiny()
    trained.fit_arrays(renders, photos)
    trained.save(tmp_path / sp.WEIGHTS)
    image, _, box = make_photo(np.random.default_rng(4))
    again = tiny(weights=str(tmp_path / sp.WEIGHTS))
    assert np.array_equal(trained.segment([image], [box])[0][0].mask, again.segment([image], [box])[0][0].mask)
    with pytest.raises(ValueError, match=str(tmp_path / sp.WEIGHTS)):
        tiny(width=8, weights=str(tmp_path / sp.WEIGHTS))
    with pytest.raises(FileNotFoundError, match="missing"):
        tiny(weights=str(tmp_path / "absent.safetensors"))


def test_curation_stage_trains_the_prior_once_from_the_synthetic_set(tmp_path):
    from aist_core.coco import read_coco
    from aist_core.stages.segment import segment_photos

    photos = make_photos(tmp_path / "photos", n=6)  # with a grayscale photo and a corrupt file
    synthetic = make_synthetic(tmp_path / "synthetic", n=12, size=32)
    segmenter = tiny(steps=4)
    ctx = StageContext.for_tests(tmp_path / "work")
    summary = segment_photos(photos, segmenter, tmp_path / "seg", ctx, batch_size=4, synthetic_dir=synthetic)
    weights = tmp_path / "seg" / "segmenter" / sp.WEIGHTS
    assert weights.is_file() and segmenter.trained
    assert summary["skipped"] == 1 and len(read_coco(tmp_path / "seg" / "segmentations.json")["annotations"]) >= 5
    stamp = weights.stat().st_mtime_ns
    for part in (tmp_path / "seg" / "parts").iterdir():
        part.unlink()  # segment again: the prior is reused, not retrained
    segment_photos(photos, tiny(steps=4), tmp_path / "seg", ctx, batch_size=4, synthetic_dir=synthetic)
    assert weights.stat().st_mtime_ns == stamp


def test_refinement_sharpens_a_soft_prior_at_any_photo_size():
    """GrabCut seeded by a too-large, blurred version of the true mask recovers the sharp mask,
    on the full window and on one downscaled to max_side (big photos), returned at full size."""
    import cv2
    from seg_fixtures import draw_car, textured_background

    from aist_core.imaging import mask_iou

    rng = np.random.default_rng(0)
    shape, box = (480, 640), (80, 120, 560, 380)
    car, truth = draw_car(shape, box, (40, 80, 190), rng)
    image = np.where(truth[..., None], car, textured_background(shape, rng))
    grown = cv2.dilate(truth.astype(np.uint8), np.ones((25, 25), np.uint8))
    soft = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), 6)  # a prior 12 px too wide, vague edges
    assert mask_iou(soft > 0.5, truth) < 0.9
    for max_side in (1000, 160):
        refined = tiny(max_side=max_side)._refine(image, soft, np.array(box, float))
        assert refined.shape == truth.shape
        assert mask_iou(refined, truth) > max(0.95, mask_iou(soft > 0.5, truth))


def test_fit_names_the_photos_when_boxes_leave_no_background(tmp_path):
    from aist_core.dataset import DatasetWriter

    writer = DatasetWriter(tmp_path / "photos", domain="photos")
    image = np.full((40, 40, 3), 120, np.uint8)
    writer.write_unit("u", [{"id": "p0", "image": "images/p0.png", "split": "train", "boxes": [[0, 0, 40, 40]]}],
                      images={"images/p0.png": image})
    writer.finish()
    synthetic = make_synthetic(tmp_path / "synthetic", n=4, size=32)
    with pytest.raises(ValueError, match=f"{tmp_path / 'photos'}: .*background patches"):
        tiny().fit(synthetic, tmp_path / "photos", tmp_path / "work", StageContext.for_tests(tmp_path / "ctx"))


class _Planted:
    def __reduce__(self):  # what a hostile checkpoint in a shared cache would carry
        import os

        return (os.system, ("touch planted-pickle-ran",))


def test_a_planted_pickle_checkpoint_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"step": 1, "payload": _Planted()}, tmp_path / sp.CHECKPOINT)
    segmenter = ShapePriorSegmenter(steps=2)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(tmp_path / sp.CHECKPOINT))}: not a readable weights-only checkpoint"):
        segmenter._resume(tmp_path, torch.optim.Adam(segmenter.net.parameters()), None, None)
    assert not (tmp_path / "planted-pickle-ran").exists()


def test_mixed_precision_trains_and_fp16_off_cuda_is_refused(tmp_path):
    # bf16 on CPU: finite and learning (the mean loss of the last 10 of 40 steps is below the first 10's)
    renders, photos = drawn_inputs()
    segmenter = tiny(steps=40, batch_size=4, precision="bf16", channels_last=True, checkpoint_every=20)
    segmenter.fit_arrays(renders, photos, seed=0, workdir=tmp_path / "bf16")
    totals = [row["total"] for row in read_losses(tmp_path / "bf16")]
    assert len(totals) == 40 and all(np.isfinite(totals))
    assert np.mean(totals[-10:]) < np.mean(totals[:10]), totals
    # the precision is part of what a checkpoint must match: an fp32 run does not resume a bf16 one
    with pytest.raises(CheckpointError, match="precision"):
        tiny(steps=40, batch_size=4, checkpoint_every=20)._resume(tmp_path / "bf16", None, None, None)
    assert ShapePriorSegmenter.check_params({"precision": "fp16"}) == [
        "precision: 'fp16' needs a CUDA device (torch.amp.GradScaler), device is 'cpu'; use 'bf16' or 'fp32' there"]
    with pytest.raises(ValueError, match="fp16"):
        ShapePriorSegmenter(precision="fp16")
