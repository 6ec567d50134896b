"""The translator on real rendered RGBA datasets (aist_core.testing.fixtures)."""

import csv
import os

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


def _checkpoint_weights(workdir):
    state = torch.load(workdir / "checkpoint.pt", weights_only=True)
    return {f"{n}.{k}": v for n, sd in state["nets"].items() for k, v in sd.items()}


def test_streamed_batches_do_not_depend_on_workers(domains, tmp_path):
    """Images come from disk through a DataLoader: 2 worker processes train bit for bit as 0."""
    a, b = domains
    runs = {}
    for workers in (0, 2):
        work = tmp_path / str(workers)
        tiny(max_steps=3, num_workers=workers, losses=[AlphaLoss()]).fit(a, b, work, StageContext.for_tests(work, seed=3))
        runs[workers] = _checkpoint_weights(work)
    assert all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
    assert (tmp_path / "0" / "losses.csv").read_text() == (tmp_path / "2" / "losses.csv").read_text()


def test_batch_sampler_resumes_mid_epoch_with_the_seeded_order():
    from aist_plugins.style.data import CycleBatchSampler, epoch_order
    from aist_plugins.training import Distributed

    full = list(CycleBatchSampler(seed=4, n_a=7, n_b=5, batch_size=3, start=0, stop=9))
    assert [len(keys) for keys in full] == [3, 3, 1] * 3  # 7 images an epoch: 3 steps
    order_a, order_b, flips = epoch_order(4, 1, 7, 7, 5)
    assert full[3] == list(zip(order_a[:3].tolist(), order_b[:3].tolist(), flips[0][:3].tolist(), flips[1][:3].tolist()))
    assert list(CycleBatchSampler(4, 7, 5, 3, start=4, stop=9)) == full[4:]
    halves = [list(CycleBatchSampler(4, 7, 5, 3, 0, 2, dist=Distributed(rank, 2))) for rank in (0, 1)]
    assert [h0 + h1 for h0, h1 in zip(*halves)] == full[:2] and [len(k) for k in halves[0]] == [2, 2]


def test_precision_parameters(domains, tmp_path):
    a, b = domains
    assert CycleGAN.check_params({"precision": "fp16"}) == [
        "precision: 'fp16' needs a CUDA device (torch.amp.GradScaler), device is 'cpu'; use 'bf16' or 'fp32' there"]
    assert CycleGAN.check_params({"precision": "fp16", "device": "cuda"}) == []
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        tiny(precision="fp16")
    defaults = tiny()
    assert (defaults.precision, defaults.channels_last, defaults.compile) == ("fp32", False, False)
    fp32 = tiny(max_steps=2)
    fp32.fit(a, b, tmp_path / "fp32", StageContext.for_tests(tmp_path / "fp32", seed=2))
    bf16 = tiny(max_steps=2, precision="bf16", channels_last=True, losses=[AlphaLoss()])
    bf16.fit(a, b, tmp_path / "bf16", StageContext.for_tests(tmp_path / "bf16", seed=2))
    assert bf16.g_ab.model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert bf16.g_ab.model[1].weight.dtype == torch.float32  # autocast: weights stay float32
    rows = list(csv.DictReader((tmp_path / "bf16" / "losses.csv").open()))
    assert len(rows) == 2 and all(np.isfinite(float(v)) for r in rows for v in r.values())
    # the bf16 forward differs from fp32 yet trains the same networks to nearby losses
    one = next(iter(csv.DictReader((tmp_path / "fp32" / "losses.csv").open())))
    assert float(rows[0]["cycle_a"]) == pytest.approx(float(one["cycle_a"]), rel=0.05)
    assert float(rows[0]["cycle_a"]) != float(one["cycle_a"])
    with pytest.raises(ValueError, match=r"checkpoint of another configuration: precision=None \(now 'bf16'\)"):
        tiny(max_steps=3, precision="bf16").fit(a, b, tmp_path / "fp32", StageContext.for_tests(tmp_path / "fp32"))


@pytest.mark.skipif(not os.environ.get("AIST_TEST_COMPILE"),
                    reason="torch.compile of the tiny CycleGAN takes ~140 s on a 2-core CPU (measured, inductor "
                           "C++ build); set AIST_TEST_COMPILE=1 to run it")
def test_compile_builds_on_cpu(domains, tmp_path):
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    a, b = domains
    translator = tiny(max_steps=1, compile=True, n_blocks=1)
    translator.fit(a, b, tmp_path, StageContext.for_tests(tmp_path, seed=1))
    assert translator.step == 1 and (tmp_path / "checkpoint.pt").is_file()


def test_training_holds_a_bounded_number_of_images_whatever_the_dataset_size(tmp_path, monkeypatch):
    """The translate stage streams: the decoded training images alive at once stay bounded by the
    batches in flight, for 8 or 48 training images per domain (the memory benchmark,
    benchmarks/bench_translate_memory.py, measures the process: 1.003x from 1k to 10k images)."""
    import weakref

    from aist_core.testing.fixtures import make_views_dataset
    from aist_plugins.style import data

    peaks = {}
    for n_objects in (2, 12):  # 4 train views each: 8 and 48 images per domain
        a = make_views_dataset(tmp_path / f"a{n_objects}", n_objects=n_objects, views=6, size=32, seed=0)
        b = make_views_dataset(tmp_path / f"b{n_objects}", n_objects=n_objects, views=6, size=32, seed=1, domain="crops")
        alive, peak = [0], [0]

        def counted(*args, _real=data.preprocess, **kw):
            image = _real(*args, **kw)
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
            return image

        monkeypatch.setattr(data, "preprocess", counted)
        tiny(max_steps=6, epochs=2).fit(a, b, tmp_path / f"w{n_objects}", StageContext.for_tests(tmp_path / f"w{n_objects}"))
        monkeypatch.undo()
        peaks[n_objects] = peak[0]
    assert 0 < peaks[12] <= 2 * 2 * 2, peaks  # batch 2 x 2 domains, and one batch being collated
    assert peaks[12] == peaks[2], peaks
