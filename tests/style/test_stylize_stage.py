"""aist_core.stages.stylize on real datasets with a tiny trained translator."""

import shutil

import numpy as np
import pytest

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, read_image
from aist_core.stages.stylize import output_alpha, stylize_dataset
from aist_core.stages.translate import train_translator
from aist_plugins.style.cyclegan import CycleGAN
from aist_plugins.style.losses import AlphaLoss


@pytest.fixture(scope="module")
def trained(domains, tmp_path_factory):
    a, b = domains
    root = tmp_path_factory.mktemp("train")
    translator = CycleGAN(image_size=32, n_blocks=2, ngf=8, ndf=8, batch_size=2, epochs=1, max_steps=2,
                          sample_every=1, losses=[AlphaLoss()])
    ctx = StageContext.for_tests(root / "work")
    summary = train_translator(translator, a, b, root / "out", ctx)
    return translator, summary, root / "out", ctx


def test_train_translator_saves_weights_and_figures(trained):
    translator, summary, out, ctx = trained
    assert (out / "weights" / "generators.safetensors").is_file()
    assert summary["step"] == 2 and np.isfinite(summary["g_total"]) and "alpha_a2b" in summary and "alpha_b2a" in summary
    assert set(ctx.figures) == {"translator_samples.png", "translator_losses.png"}
    assert all((out / f).stat().st_size > 500 for f in ctx.figures)
    assert ctx.report["translator"] == summary


def test_stylize_dataset_copies_annotations_byte_identical(trained, domains, tmp_path):
    translator = trained[0]
    a, _ = domains
    ctx = StageContext.for_tests(tmp_path / "work")
    summary = stylize_dataset(translator, a, tmp_path / "out", ctx, batch_size=5)
    source, out = ViewsDataset(a), ViewsDataset(tmp_path / "out")
    assert summary["images"] == len(source) == len(out) == 12
    assert (tmp_path / "out" / "views.jsonl").read_bytes() == (a / "views.jsonl").read_bytes()
    for cloud in (a / "clouds").iterdir():
        assert (tmp_path / "out" / "clouds" / cloud.name).read_bytes() == cloud.read_bytes()
    assert out.domain == "stylized" and out.records() == source.records()
    ious = []
    for record in source.records():
        before, after = source.image(record), out.image(record)
        assert after.shape == before.shape and np.array_equal(after[..., 3], before[..., 3])
        inside = before[..., 3] > 0
        ious.append((inside & output_alpha(after)).sum() / max(1, (inside | output_alpha(after)).sum()))
    assert summary["alpha_iou"] == pytest.approx(np.mean(ious))
    assert 0 <= summary["alpha_iou"] <= 1
    assert "stylize_samples.png" in ctx.figures and (tmp_path / "out" / "stylize_samples.png").is_file()


def test_stylize_dataset_resumes(trained, domains, tmp_path):
    translator = trained[0]
    a, _ = domains
    out = tmp_path / "out"
    first = stylize_dataset(translator, a, out, StageContext.for_tests(tmp_path / "w"))
    records = ViewsDataset(a).records()
    removed = out / records[3]["image"]
    removed.unlink()
    seen = []

    class Counting:
        def stylize(self, images):
            seen.append(len(images))
            return translator.stylize(images)

    again = stylize_dataset(Counting(), a, out, StageContext.for_tests(tmp_path / "w"))
    assert seen == [1], "only the missing image is stylised again"
    assert again == first and removed.is_file()


def test_unreadable_image_is_skipped_not_fatal(trained, domains, tmp_path):
    translator = trained[0]
    a, _ = domains
    broken = tmp_path / "a"
    shutil.copytree(a, broken)
    bad = ViewsDataset(broken).records()[0]
    (broken / bad["image"]).write_bytes(b"\x89PNG truncated")
    ctx = StageContext.for_tests(tmp_path / "w")
    summary = stylize_dataset(translator, broken, tmp_path / "out", ctx)
    assert summary["images"] == 11
    assert ctx.skipped.entries[0]["path"] == str(broken / bad["image"])
    assert "unreadable" in ctx.skipped.entries[0]["reason"]
    assert ViewsDataset(tmp_path / "out").meta["skipped"][0]["path"] == str(broken / bad["image"])
    assert not (tmp_path / "out" / bad["image"]).exists()


def test_output_alpha_threshold():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0, 2] = 1  # one grey level in one channel counts as object
    assert output_alpha(rgba).tolist() == [[True, False], [False, False]]
