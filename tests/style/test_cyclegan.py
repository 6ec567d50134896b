"""The translator on real rendered RGBA datasets (aist_core.testing.fixtures)."""

import csv

import numpy as np
import pytest
import torch

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset
from aist_plugins.style.cyclegan import CycleGAN
from aist_plugins.style.losses import AlphaLoss, ResNetFeatureLoss


def tiny(**kw):
    params = dict(image_size=32, n_blocks=2, ngf=8, ndf=8, batch_size=2, epochs=1, max_steps=4,
                  sample_every=2, checkpoint_every=2)
    params.update(kw)
    return CycleGAN(**params)


def _images(root, n=4):
    data = ViewsDataset(root)
    return np.stack([data.image(r) for r in data.records()[:n]])


def test_trains_with_both_losses_finite_and_mask_preserved(domains, tmp_path):
    a, b = domains
    translator = tiny(losses=[AlphaLoss(), ResNetFeatureLoss(pretrained=False)])
    translator.fit(a, b, tmp_path, StageContext.for_tests(tmp_path, seed=1))
    with (tmp_path / "losses.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert all(np.isfinite(float(v)) for v in row.values())
        # one column per annotation loss and direction, under the loss's recipe name
        assert all(float(row[f"{name}_{way}"]) > 0 for name in ("alpha", "resnet-feature") for way in ("a2b", "b2a"))
    assert list(rows[0]) == ["step", "epoch", "gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_b", "idt_a", "alpha_a2b",
                             "resnet-feature_a2b", "alpha_b2a", "resnet-feature_b2a", "g_total", "d_a", "d_b"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000
    images = _images(a)
    out = translator.stylize(images)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], images[..., 3])
    assert not np.array_equal(out[..., :3], images[..., :3])


def _weights(translator):
    return {f"{n}.{k}": v.clone() for n in ("g_ab", "g_ba", "d_a", "d_b")
            for k, v in getattr(translator, n).state_dict().items()}


def test_resume_is_exact(domains, tmp_path):
    """4 steps straight == 2 steps, a fresh process-like object resuming, 2 more steps."""
    a, b = domains
    losses = lambda: [AlphaLoss()]  # noqa: E731
    pool = dict(pool_size=3)  # small pool: fills in 2 steps, so the random branch runs after resume
    straight = tiny(losses=losses(), **pool)
    straight.fit(a, b, tmp_path / "straight", StageContext.for_tests(tmp_path / "straight", seed=5))
    first = tiny(losses=losses(), max_steps=2, **pool)
    first.fit(a, b, tmp_path / "resumed", StageContext.for_tests(tmp_path / "resumed", seed=5))
    second = tiny(losses=losses(), **pool)
    calls = []
    step = second._train_step
    second._train_step = lambda *args: calls.append(1) or step(*args)
    second.fit(a, b, tmp_path / "resumed", StageContext.for_tests(tmp_path / "resumed", seed=5))
    assert second.step == straight.step == 4 and len(calls) == 2, "must continue from step 2, not restart"
    w1, w2 = _weights(straight), _weights(second)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    for opt in ("opt_g", "opt_d"):
        s1, s2 = getattr(straight, opt).state_dict()["state"], getattr(second, opt).state_dict()["state"]
        assert all(torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) for i in s1)
    assert all(torch.equal(x, y) for x, y in zip(straight.pool_b.images, second.pool_b.images))
    rows = (tmp_path / "resumed" / "losses.csv").read_text().splitlines()
    assert rows == (tmp_path / "straight" / "losses.csv").read_text().splitlines()


def test_seed_changes_training(domains, tmp_path):
    a, b = domains
    one, two = tiny(max_steps=1), tiny(max_steps=1)
    one.fit(a, b, tmp_path / "1", StageContext.for_tests(tmp_path / "1", seed=0))
    two.fit(a, b, tmp_path / "2", StageContext.for_tests(tmp_path / "2", seed=1))
    assert not torch.equal(one.g_ab.model[1].weight, two.g_ab.model[1].weight)


def test_save_load_roundtrip_and_architecture_check(domains, tmp_path):
    a, b = domains
    translator = tiny(max_steps=1)
    translator.fit(a, b, tmp_path / "w", StageContext.for_tests(tmp_path / "w"))
    translator.save(tmp_path / "weights")
    fresh = tiny()
    fresh.load(tmp_path / "weights")
    images = _images(a)
    assert np.array_equal(fresh.stylize(images), translator.stylize(images))
    with pytest.raises(ValueError, match="architecture"):
        tiny(n_blocks=3).load(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="generators.safetensors"):
        tiny().load(tmp_path / "nowhere")


def test_alpha_mode_and_other_sizes(domains, tmp_path):
    a, b = domains
    translator = tiny(mode="alpha", max_steps=1, losses=[AlphaLoss()])
    translator.fit(a, b, tmp_path, StageContext.for_tests(tmp_path))
    images = _images(a)
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 64 px input, 32 px network
    out = translator.stylize(big)
    assert out.shape == big.shape and np.array_equal(out[..., 3], big[..., 3])


def test_bad_inputs_have_clear_errors(domains, tmp_path):
    with pytest.raises(ValueError, match="RGBA"):
        tiny().stylize(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny(image_size=30)
    a, b = domains
    tiny(max_steps=1).fit(a, b, tmp_path, StageContext.for_tests(tmp_path))
    with pytest.raises(ValueError, match=r"checkpoint\.pt: checkpoint of another configuration: ngf=8 \(now 4\)"):
        tiny(ngf=4, max_steps=2).fit(a, b, tmp_path, StageContext.for_tests(tmp_path))


def test_unreadable_training_image_is_skipped(domains, tmp_path):
    import shutil

    a, b = domains
    broken = tmp_path / "a"
    shutil.copytree(a, broken)
    record = ViewsDataset(broken).records("train")[0]
    (broken / record["image"]).write_bytes(b"not a png")
    ctx = StageContext.for_tests(tmp_path / "w")
    tiny(max_steps=1).fit(broken, b, tmp_path / "w", ctx)
    assert [e["path"] for e in ctx.skipped.entries] == [str(broken / record["image"])]
