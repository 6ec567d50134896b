"""The colour-transfer translator (Reinhard et al. 2001) on small views datasets made here.

Source renders: grey-ish objects with random shading on a varied (noise) background.
Target crops: saturated red-ish objects with another spread on an extreme pure-green background,
plus test-split crops with blue objects: neither may reach the target statistics.
"""

import json
import textwrap

import cv2
import numpy as np
import pytest

from aist_core.context import StageContext
from aist_core.dataset import DatasetError, DatasetWriter, ViewsDataset, write_image
from aist_core.stages.stylize import stylize_dataset
from aist_core.stages.translate import train_translator
from aist_core.testing import TranslatorContract
from aist_plugins.style.colour_transfer import STATS_FILE, ColourTransfer

SIZE = 24
GREEN = (0, 255, 0)


class TestColourTransferContract(TranslatorContract):
    component_class = ColourTransfer


# ---------------------------------------------------------------------------- data made here
def _object_mask(rng):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.uniform(9, 15, size=2)
    ry, rx = rng.uniform(5, 9, size=2)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0  # (S, S) bool


def _shading(rng):
    """A random linear light gradient in [-1, 1] over the image, (S, S)."""
    yy, xx = np.mgrid[:SIZE, :SIZE] / (SIZE - 1) * 2 - 1
    angle = rng.uniform(0, 2 * np.pi)
    return np.cos(angle) * xx + np.sin(angle) * yy


def _source_image(rng):
    inside = _object_mask(rng)
    grey = rng.uniform(100, 150) + 25 * _shading(rng) + rng.normal(0, 5, size=(SIZE, SIZE))
    rgb = grey[..., None] + rng.normal(0, 3, size=(SIZE, SIZE, 3))  # slightly tinted per pixel
    background = rng.integers(0, 256, size=(SIZE, SIZE, 3))  # varied, must not matter
    return _rgba(np.where(inside[..., None], rgb, background), inside)


def _target_image(rng, base=(185, 55, 45)):
    inside = _object_mask(rng)
    light = 1 + 0.3 * _shading(rng) + rng.normal(0, 0.05, size=(SIZE, SIZE))
    rgb = np.array(base) * light[..., None] + rng.normal(0, 10, size=(SIZE, SIZE, 3))
    return _rgba(np.where(inside[..., None], rgb, GREEN), inside)


def _rgba(rgb, inside):
    out = np.zeros((SIZE, SIZE, 4), np.uint8)
    out[..., :3] = np.clip(np.rint(rgb), 0, 255)
    out[..., 3] = inside * 255
    return out


def _write(root, domain, images):
    """images: list of (split, rgba); returns the dataset folder."""
    writer = DatasetWriter(root, domain, image_size=SIZE)
    for i, (split, image) in enumerate(images):
        rel = f"images/img_{i:03d}.png"
        writer.write_unit(f"u{i:03d}", [{"id": f"img_{i:03d}", "image": rel, "split": split}], {rel: image})
    writer.finish()
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(7)
    a = _write(root / "a", "synthetic", [("train", _source_image(rng)) for _ in range(8)])
    b = _write(root / "b", "crops", [("train", _target_image(rng)) for _ in range(8)]
               + [("test", _target_image(rng, base=(30, 60, 220))) for _ in range(3)])
    return a, b


def _images(root, split="train"):
    data = ViewsDataset(root)
    return np.stack([data.image(r) for r in data.records(split)])


def _lab_stats(images, everything=False):
    """Pooled Lab mean and std over object pixels (or every pixel) of (N, S, S, 4) uint8."""
    keep = np.ones(images.shape[:3], bool) if everything else images[..., 3] > 0
    rgb = images[..., :3][keep].astype(np.float32).reshape(-1, 1, 3) / 255
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)
    return lab.mean(axis=0), lab.std(axis=0)


def _fitted(data, tmp_path, **params):
    a, b = data
    translator = ColourTransfer(**params)
    translator.fit(a, b, tmp_path / "work", StageContext.for_tests(tmp_path / "work"))
    return translator


# ---------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("per_image", [True, False])
def test_stylised_objects_take_the_target_statistics(data, tmp_path, per_image):
    a, b = data
    translator = _fitted(data, tmp_path, per_image=per_image)
    source = _images(a)
    target_mean, target_std = _lab_stats(_images(b))
    source_mean, source_std = _lab_stats(source)
    assert np.abs(source_mean - target_mean).max() > 30, "the test data must start far apart"
    assert np.abs(source_std - target_std).max() > 3

    out = translator.stylize(source)
    assert out.shape == source.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], source[..., 3]), "alpha must be byte-identical"
    background = source[..., 3] == 0
    assert not out[..., :3][background].any(), "background RGB must be pure black (the translators' convention)"
    assert np.any(out[..., :3] > 0, axis=-1)[~background].all(), "no object pixel may read as background"
    mean, std = _lab_stats(out)
    np.testing.assert_allclose(mean, target_mean, atol=0.6)
    np.testing.assert_allclose(std, target_std, atol=0.6)


def test_fit_uses_object_pixels_of_the_train_split_only(data, tmp_path):
    a, b = data
    translator = _fitted(data, tmp_path)
    train, every_split = _images(b, "train"), _images(b, ["train", "test"])
    target_mean, target_std = _lab_stats(train)
    np.testing.assert_allclose(translator.target["mean"], target_mean, atol=1e-3)
    np.testing.assert_allclose(translator.target["std"], target_std, atol=1e-3)
    assert translator.target["images"] == len(train) and translator.target["pixels"] == int((train[..., 3] > 0).sum())
    # the ways it could go wrong are far away: green background in, or the blue test crops in
    assert np.abs(_lab_stats(train, everything=True)[0] - target_mean).max() > 10
    assert np.abs(_lab_stats(every_split)[0] - target_mean).max() > 10
    np.testing.assert_allclose(translator.source["mean"], _lab_stats(_images(a))[0], atol=1e-3)


def test_strength_interpolates_between_identity_and_full_transfer(data, tmp_path):
    a, _ = data
    source = _images(a)
    assert np.array_equal(_fitted(data, tmp_path, strength=0.0).stylize(source), source)
    half = _fitted(data, tmp_path, strength=0.5, per_image=False)
    source_mean, source_std = _lab_stats(source)
    target_mean, target_std = np.array(half.target["mean"]), np.array(half.target["std"])
    mean, std = _lab_stats(half.stylize(source))
    np.testing.assert_allclose(mean, (source_mean + target_mean) / 2, atol=0.6)
    np.testing.assert_allclose(std, (source_std + target_std) / 2, atol=0.6)


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_outside_unit_interval_is_refused(strength):
    with pytest.raises(ValueError, match="strength"):
        ColourTransfer(strength=strength)
    assert ColourTransfer.check_params({"strength": strength})[0].startswith("strength: ")
    assert ColourTransfer.check_params({"strength": 1}) == []


def test_recipe_check_refuses_bad_strength(tmp_path):
    from aist_core.recipe import RecipeError, load, validate
    from aist_core.registry import discover

    path = tmp_path / "recipe.toml"
    path.write_text(textwrap.dedent("""\
        schema = 1
        [dataset]
        use = "procedural-cars"
        [translate]
        use = "colour-transfer"
        strength = 2.0
        [shape_pose]
        use = "dpc"
        """))
    with pytest.raises(RecipeError, match=r"recipe.toml:6: translate.strength: must be less than or equal to 1, got 2.0"):
        validate(load(path), discover())


def test_flat_source_and_empty_images(data, tmp_path):
    translator = _fitted(data, tmp_path)
    rng = np.random.default_rng(3)
    flat = _source_image(rng)
    inside = flat[..., 3] > 0
    flat[..., :3][inside] = (128, 128, 128)
    empty = _source_image(rng)
    empty[..., 3] = 0
    out = translator.stylize(np.stack([flat, empty]))
    colours = np.unique(out[0, ..., :3][inside], axis=0)
    assert len(colours) == 1, "a flat source stays flat (no blown-up noise)"
    np.testing.assert_allclose(_lab_stats(out[:1])[0], translator.target["mean"], atol=1.0)
    assert np.array_equal(out[1], empty), "an image without object pixels is returned unchanged"


def test_save_load_roundtrip_is_json_and_identical(data, tmp_path):
    a, _ = data
    source = _images(a)
    for per_image in (True, False):
        translator = _fitted(data, tmp_path, per_image=per_image)
        translator.save(tmp_path / f"weights{per_image}")
        assert [p.name for p in (tmp_path / f"weights{per_image}").iterdir()] == [STATS_FILE]
        saved = json.loads((tmp_path / f"weights{per_image}" / STATS_FILE).read_text())
        assert saved["target"]["mean"] == translator.target["mean"]
        fresh = ColourTransfer(per_image=per_image)
        fresh.load(tmp_path / f"weights{per_image}")
        assert np.array_equal(fresh.stylize(source), translator.stylize(source))


def test_errors_name_the_problem(data, tmp_path):
    with pytest.raises(RuntimeError, match="fit"):
        ColourTransfer().stylize(np.zeros((1, 4, 4, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match=STATS_FILE):
        ColourTransfer().load(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / STATS_FILE).write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a colour-transfer"):
        ColourTransfer().load(tmp_path / "bad")
    with pytest.raises(ValueError, match="RGBA"):
        _fitted(data, tmp_path).stylize(np.zeros((4, 4, 4), np.uint8))


def test_unusable_images_are_recorded_and_an_objectless_domain_is_refused(data, tmp_path):
    a, _ = data
    rng = np.random.default_rng(5)
    empty = _target_image(rng)
    empty[..., 3] = 0
    b = _write(tmp_path / "b", "crops", [("train", _target_image(rng)), ("train", empty),
                                         ("train", _target_image(rng)), ("train", _target_image(rng))])
    (b / "images" / "img_002.png").write_bytes(b"not a png")
    write_image(b / "images" / "img_003.png", _target_image(rng)[..., :3])  # RGB: no mask
    ctx = StageContext.for_tests(tmp_path / "work")
    translator = ColourTransfer()
    translator.fit(a, b, tmp_path / "work", ctx)
    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"].split(":")[0] for entry in ctx.skipped.entries}
    assert reasons == {"img_001.png": "no object pixels", "img_002.png": "unreadable", "img_003.png": "no alpha"}
    assert translator.target["images"] == 1

    nothing = _write(tmp_path / "nothing", "crops", [("train", empty), ("test", _target_image(rng))])
    with pytest.raises(DatasetError, match=str(nothing)):
        ColourTransfer().fit(a, nothing, tmp_path / "work2", StageContext.for_tests(tmp_path / "work2"))


def test_translate_and_stylize_stages_run_with_it(domains, tmp_path):
    """The stage glue as the runner calls it: fit + save to out/weights, then load + stylise."""
    a, b = domains  # black backgrounds, as the real renders: the output mask must survive
    ctx = StageContext.for_tests(tmp_path / "work")
    translator = ColourTransfer()
    summary = train_translator(translator, a, b, tmp_path / "translate", ctx)
    assert summary["target_L_mean"] == pytest.approx(translator.target["mean"][0])
    assert summary["source_b_std"] == pytest.approx(translator.source["std"][2])
    assert ctx.report["translator"] == summary
    fresh = ColourTransfer()
    fresh.load(tmp_path / "translate" / "weights")
    result = stylize_dataset(fresh, a, tmp_path / "stylized", StageContext.for_tests(tmp_path / "work2"))
    assert result["images"] == len(ViewsDataset(a)) and result["alpha_iou"] == 1.0
    out = _images(tmp_path / "stylized", ["train", "val", "test"])
    source = _images(a, ["train", "val", "test"])
    assert np.array_equal(out[..., 3], source[..., 3]) and not np.array_equal(out, source)
