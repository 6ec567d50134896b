"""The trainers' shared machinery (aist_plugins.training) and the four trainers on it: atomic,
weights-only, configuration-checked checkpoints; losses.csv with one column per term; the
divergence guard; TensorBoard only when StageContext.log_dir is set."""

from __future__ import annotations

import csv
import re
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aist_plugins import training
from aist_plugins.training import CheckpointError, TrainingDiverged, TrainingLog

from aist_core.context import StageContext
from aist_core.interfaces import AnnotationLoss

torch.set_num_threads(1)  # 2 shared cores: small convolutions crawl with more threads

DIVERGED = r"^{component}: loss term '{term}' is {what} at step {step}; lower the learning rate \(lr={lr}\) or this term's weight$"


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_no_nonfinite_checkpoint(path):
    """No file, or one whose every floating tensor is finite (loaded weights-only)."""
    if path.is_file():
        state = torch.load(path, weights_only=True)
        bad = [name for name, t in training._floating_tensors(state) if not torch.isfinite(t).all()]
        assert not bad, bad


# ---------------------------------------------------------------------------- the helpers
@pytest.mark.parametrize("value, what", [(float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf"),
                                          (3e19, r"3e\+19 \(beyond 1e\+18\)")])
def test_check_losses_names_component_term_step_and_lr(value, what):
    training.check_losses("dpc", 7, {"projection": 0.5, "student": 1e17}, lr=1e-4)  # sane: no error
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="dpc", term="student", what=what,
                                                               step=7, lr="0.0001")):
        training.check_losses("dpc", 7, {"projection": 0.5, "student": value, "total": value}, lr=1e-4)


def test_a_term_that_grows_a_millionfold_over_its_first_value_has_diverged():
    reference = {"gan": 0.4, "alpha": 1e-3}  # a near-zero start still gets room up to 1e6
    training.check_losses("cyclegan", 5, {"gan": 3.9e5, "alpha": 9e5}, lr=2e-4, reference=reference)  # sane
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="cyclegan", term="gan", step=5, lr="0.0002",
                                                               what=r"1\.7e\+14 \(2e\+14 times its first value 0\.4\)")):
        training.check_losses("cyclegan", 5, {"gan": 1.7e14, "alpha": 0.5}, lr=2e-4, reference=reference)


def test_the_log_compares_each_term_with_its_first_value_also_after_a_resume(tmp_path):
    with training.TrainingLog("psgn", tmp_path, next_step=0, lr=1e4) as log:
        log.log(0, {"total": 7.9})
        log.log(1, {"total": 3.0})
    with pytest.raises(TrainingDiverged, match=r"'total' is 3\.13e\+16 .* at step 2"):
        with training.TrainingLog("psgn", tmp_path, next_step=2, lr=1e4) as log:  # a resume reads the first row back
            log.log(2, {"total": 3.13e16})


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    path = tmp_path / "ck.pt"
    good = {"step": 1, "model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}}}
    training.save_checkpoint(path, good, {"a": 1}, component="x", step=1, lr=0.1)
    bad = {"step": 2, "model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"exp_avg": torch.tensor([0, np.nan, 0])}}}}
    with pytest.raises(TrainingDiverged, match=r"^x: weight 'optimizer\.state\.0\.exp_avg' is nan after step 2; "
                                               r"lower the learning rate \(lr=0\.1\)$"):
        training.save_checkpoint(path, bad, {"a": 1}, component="x", step=2, lr=0.1)
    assert training.load_checkpoint(path, {"a": 1})["step"] == 1  # the previous checkpoint is intact
    assert not (tmp_path / "ck.pt.tmp").exists()


def test_checkpoint_round_trip_and_configuration_check(tmp_path):
    path = tmp_path / "ck.pt"
    assert training.load_checkpoint(path, {"width": 8}) is None
    training.save_checkpoint(path, {"step": 3, "w": torch.arange(4.0)}, {"width": 8, "sizes": (1, 2)},
                             component="x", step=3, lr=1.0)
    state = training.load_checkpoint(path, {"width": 8, "sizes": (1, 2)})
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: checkpoint of another configuration: "
                                              r"width=8 \(now 16\); use a new workdir$"):
        training.load_checkpoint(path, {"width": 16, "sizes": (1, 2)})


class _Planted:
    def __reduce__(self):  # what a hostile checkpoint in a shared cache would carry
        import os

        return (os.system, ("touch planted-pickle-ran",))


def test_a_planted_pickle_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 1, "config": {}, "payload": _Planted()}, path)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: not a readable weights-only checkpoint, refused"):
        training.load_checkpoint(path, {})
    assert not (tmp_path / "planted-pickle-ran").exists()
    path.write_bytes(b"\x00 truncated")
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        training.load_checkpoint(path, {})


def test_weights_files_are_read_without_unpickling_and_named_when_refused(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from aist_plugins.style.losses import ResNetFeatureLoss

    monkeypatch.chdir(tmp_path)
    good = {"w": torch.arange(3.0)}
    torch.save(good, tmp_path / "good.pth")
    save_file(good, str(tmp_path / "good.safetensors"))
    for name in ("good.pth", "good.safetensors"):
        assert torch.equal(training.read_weights(tmp_path / name)["w"], good["w"])
    torch.save({"w": _Planted()}, tmp_path / "evil.pth")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)  # a header length far beyond the file
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"w": [1, 2]}, tmp_path / "lists.pth")
    for name in ("evil.pth", "garbage.safetensors", "empty.pth", "lists.pth"):
        with pytest.raises(training.WeightsError, match=f"^{re.escape(str(tmp_path / name))}: not a "):
            training.read_weights(tmp_path / name)
    assert not (tmp_path / "planted-pickle-ran").exists()
    # a component given such a file says which file, not only that unpickling failed
    with pytest.raises(training.WeightsError, match=re.escape(str(tmp_path / "evil.pth"))):
        ResNetFeatureLoss(pretrained=True, weights=str(tmp_path / "evil.pth"))
    assert not (tmp_path / "planted-pickle-ran").exists()


def test_a_damaged_translator_weights_file_is_named(domains, tmp_path):
    from aist_plugins.style.cyclegan import WEIGHTS

    translator = tiny_cyclegan(max_steps=1)
    translator.fit(*domains, tmp_path / "work", StageContext.for_tests(tmp_path))
    translator.save(tmp_path / "saved")
    (tmp_path / "saved" / WEIGHTS).write_bytes(b"\x80\x04 a pickle where safetensors should be")
    with pytest.raises(training.WeightsError, match=f"^{re.escape(str(tmp_path / 'saved' / WEIGHTS))}: not a readable"):
        tiny_cyclegan(max_steps=1).load(tmp_path / "saved")


def test_log_keeps_terms_on_device_reads_in_batches_and_reports_the_right_step(tmp_path):
    history = []
    log = TrainingLog("x", tmp_path, next_step=0, lr=0.5, read_every=3, history=history)
    log.log(0, {"a": torch.tensor(1.0), "b": 2.0}, epoch=0)
    log.log(1, {"a": torch.tensor(1.5), "b": torch.tensor(2.5)}, epoch=0)
    assert not (tmp_path / training.LOSS_FILE).exists() and history == []  # still pending
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="x", term="b", what="inf", step=3, lr="0.5")):
        log.log(2, {"a": torch.tensor(1.0), "b": torch.tensor(3.0)}, epoch=1)  # third row: flushed, fine
        log.log(3, {"a": torch.tensor(1.0), "b": torch.tensor(float("inf"))}, epoch=1)
        log.log(4, {"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, epoch=1)
        log.log(5, {"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, epoch=1)  # flush finds step 3
    rows = read_csv(tmp_path / training.LOSS_FILE)
    assert list(rows[0]) == ["step", "epoch", "a", "b"]
    assert [r["step"] for r in rows] == ["0", "1", "2"] and [h["step"] for h in history] == [0, 1, 2]
    # a resume from step 2 drops the rows logged after it; a fresh start drops them all
    TrainingLog("x", tmp_path, next_step=2, lr=0.5).close()
    assert [r["step"] for r in read_csv(tmp_path / training.LOSS_FILE)] == ["0", "1"]
    TrainingLog("x", tmp_path, next_step=0, lr=0.5).close()
    assert not (tmp_path / training.LOSS_FILE).exists()


def test_no_tensorboard_import_without_log_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # any import now raises
    with TrainingLog("x", tmp_path, next_step=0, lr=1.0, log_dir=None) as log:
        log.log(0, {"a": torch.tensor(1.0)}, lr=1.0)
        log.image(0, "samples", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImportError):
        TrainingLog("x", tmp_path, next_step=0, lr=1.0, log_dir=tmp_path / "tb")


# ---------------------------------------------------------------------------- the translator
@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    from aist_core.testing.fixtures import make_views_dataset

    root = tmp_path_factory.mktemp("domains")
    a = make_views_dataset(root / "a", n_objects=4, views=2, size=32, seed=0)
    b = make_views_dataset(root / "b", n_objects=4, views=2, size=32, seed=1, domain="crops", tint=(0.9, 0.3, 0.2))
    return a, b


class EdgeLoss(AnnotationLoss):
    """A test loss with an explicit recipe name; NaN from its `nan_at`-th call on."""

    name = "edge"

    def __init__(self, nan_at: int = 0):
        super().__init__(0.5, 0.25)
        self.calls, self.nan_at = 0, nan_at

    @classmethod
    def example(cls):
        return cls()

    def forward(self, source, translated, cache):
        self.calls += 1
        loss = (translated - source).abs().mean()
        return loss * float("nan") if self.nan_at and self.calls >= self.nan_at else loss


def tiny_cyclegan(**kw):
    from aist_plugins.style.cyclegan import CycleGAN

    params = dict(image_size=32, n_blocks=1, ngf=4, ndf=4, batch_size=2, epochs=1, max_steps=4,
                  sample_every=0, checkpoint_every=2)
    return CycleGAN(**{**params, **kw})


def test_cyclegan_logs_each_annotation_loss_under_its_recipe_name(domains, tmp_path):
    from aist_plugins.style.losses import AlphaLoss

    translator = tiny_cyclegan(max_steps=2, losses=[AlphaLoss(), EdgeLoss(), AlphaLoss(weight_a2b=1.0)])
    translator.fit(*domains, tmp_path, StageContext.for_tests(tmp_path))
    rows = read_csv(tmp_path / "losses.csv")
    names = ("alpha", "edge", "alpha_2")
    assert list(rows[0])[8:] == [f"{n}_a2b" for n in names] + [f"{n}_b2a" for n in names] + ["g_total", "d_a", "d_b"]
    for row in rows:  # each column holds that loss alone, weighted: alpha and alpha_2 differ by 2x
        assert float(row["alpha_a2b"]) == pytest.approx(2 * float(row["alpha_2_a2b"]), rel=1e-6)
        assert float(row["edge_a2b"]) > 0 and float(row["edge_b2a"]) > 0


@pytest.mark.parametrize("read_every", [1, 3])
def test_cyclegan_stops_at_a_nan_loss_and_keeps_the_last_good_checkpoint(domains, tmp_path, monkeypatch, read_every):
    """read_every 3 is what an accelerator does (losses read back in batches): the NaN of step 3
    is found when step 4's checkpoint flushes the log, and reported at step 3 all the same."""
    from aist_plugins.style import cyclegan
    from aist_plugins.style.cyclegan import CHECKPOINT

    monkeypatch.setattr(cyclegan, "default_read_every", lambda device: read_every)
    edge = EdgeLoss(nan_at=5)  # two calls per step (a2b, b2a): the 5th is step 3's a2b term
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="cyclegan", term="edge_a2b", what="nan",
                                                               step=3, lr="0.0002")):
        tiny_cyclegan(losses=[edge]).fit(*domains, tmp_path, StageContext.for_tests(tmp_path))
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["step"] == 2  # step 3's NaN update was never saved
    assert_no_nonfinite_checkpoint(tmp_path / CHECKPOINT)
    assert [r["step"] for r in read_csv(tmp_path / "losses.csv")] == ["1", "2"]


def test_cyclegan_with_a_huge_learning_rate_diverges_without_a_bad_checkpoint(domains, tmp_path):
    from aist_plugins.style.cyclegan import CHECKPOINT

    with pytest.raises(TrainingDiverged, match=r"^cyclegan: (loss term '\w+' is .+ at|weight '\S+' is (nan|inf) after) "
                                               r"step \d; lower the learning rate \(lr=1e\+30\)( or this term's weight)?$"):
        tiny_cyclegan(lr=1e30, checkpoint_every=1).fit(*domains, tmp_path, StageContext.for_tests(tmp_path))
    assert_no_nonfinite_checkpoint(tmp_path / CHECKPOINT)


def test_cyclegan_refuses_to_checkpoint_non_finite_weights_behind_finite_losses(domains, tmp_path, monkeypatch):
    """Losses are computed before the update: a NaN update shows in the loss one step late,
    and the checkpoint check catches it before that."""
    from aist_plugins.style.cyclegan import CHECKPOINT

    translator = tiny_cyclegan()
    real = translator._train_step

    def poisoned(*args):
        row, visuals = real(*args)
        if translator.step == 1:  # the update of step 2 (step counts completed steps)
            with torch.no_grad():
                next(translator.g_ab.parameters()).view(-1)[0] = float("nan")
        return row, visuals

    translator._train_step = poisoned
    with pytest.raises(TrainingDiverged, match=r"^cyclegan: weight 'nets\.g_ab\.\S+' is nan after step 2"):
        translator.fit(*domains, tmp_path, StageContext.for_tests(tmp_path))
    assert not (tmp_path / CHECKPOINT).exists()


def test_cyclegan_writes_tensorboard_scalars_and_samples_when_asked(domains, tmp_path):
    from aist_plugins.style.losses import AlphaLoss
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ctx = StageContext.for_tests(tmp_path / "work")
    ctx.log_dir = tmp_path / "tb"
    tiny_cyclegan(max_steps=2, sample_every=1, losses=[AlphaLoss()]).fit(*domains, ctx.workdir, ctx)
    assert list(ctx.log_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(ctx.log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/gan_ab", "loss/cycle_a", "loss/alpha_a2b", "loss/alpha_b2a", "loss/d_b", "learning_rate"} <= scalars
    assert "loss/epoch" not in scalars and "loss/step" not in scalars
    assert [e.step for e in events.Scalars("loss/alpha_a2b")] == [1, 2]
    assert [e.value for e in events.Scalars("learning_rate")] == pytest.approx([2e-4, 2e-4])
    csv_values = [float(r["alpha_a2b"]) for r in read_csv(ctx.workdir / "losses.csv")]
    assert [e.value for e in events.Scalars("loss/alpha_a2b")] == pytest.approx(csv_values, rel=1e-6)
    assert "samples" in events.Tags()["images"] and len(events.Images("samples")) == 2


def test_cyclegan_without_log_dir_imports_no_tensorboard(domains, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    tiny_cyclegan(max_steps=1, sample_every=1).fit(*domains, tmp_path, StageContext.for_tests(tmp_path))
    assert (tmp_path / "losses.csv").is_file() and not list(tmp_path.rglob("events.out.tfevents.*"))


# ---------------------------------------------------------------------------- shape and pose
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from aist_plugins.shape_pose.toy_data import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "views", {"train": 4, "val": 1, "test": 1}, views=2,
                             image_size=32, cloud_points=200, seed=1)


def _nan_from(monkeypatch, cls, term, step_at):
    """Make `cls.losses`'s `term` (and so the total) NaN from the `step_at`-th call (0-based)."""
    real, calls = cls.losses, {"n": 0}

    def losses(self, *args, **kw):
        terms = real(self, *args, **kw)
        if calls["n"] >= step_at:
            terms[term] = terms[term] * float("nan")
            terms["total"] = terms["total"] + terms[term]  # the NaN reaches the gradient too
        calls["n"] += 1
        return terms

    monkeypatch.setattr(cls, "losses", losses)


def test_dpc_stops_at_a_nan_loss_and_keeps_the_last_good_checkpoint(toy, tmp_path, monkeypatch):
    from aist_plugins.shape_pose.dpc import CHECKPOINT, DPC

    _nan_from(monkeypatch, DPC, "student", 2)
    model = DPC(image_size=64, num_points=64, grid_size=8, steps=6, batch_objects=1, views_per_object=2,
                checkpoint_every=2, supervised_pose=True)
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="dpc", term="student", what="nan",
                                                               step=2, lr="0.0001")):
        model.fit(toy, tmp_path, StageContext.for_tests(tmp_path))
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 2
    assert_no_nonfinite_checkpoint(tmp_path / CHECKPOINT)
    rows = read_csv(tmp_path / "losses.csv")
    assert list(rows[0]) == ["step", "projection", "student", "weight_decay", "total"] and len(rows) == 2


def test_viewpoint_psgn_stops_at_a_nan_loss_and_keeps_the_last_good_checkpoint(toy, tmp_path, monkeypatch):
    from aist_plugins.shape_pose.supervised import CHECKPOINT, ViewpointPSGN

    _nan_from(monkeypatch, ViewpointPSGN, "chamfer", 2)
    model = ViewpointPSGN(image_size=32, num_points=16, gt_points=16, width=4, batch_size=2, steps=6,
                          checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="viewpoint-psgn", term="chamfer", what="nan",
                                                               step=2, lr="0.001")):
        model.fit(toy, tmp_path, StageContext.for_tests(tmp_path))
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 2
    assert_no_nonfinite_checkpoint(tmp_path / CHECKPOINT)
    assert list(read_csv(tmp_path / "losses.csv")[0]) == ["step", "azimuth", "residual", "elevation", "chamfer", "total"]


def test_dpc_writes_tensorboard_scalars_when_asked(toy, tmp_path):
    from aist_plugins.shape_pose.dpc import DPC
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ctx = StageContext.for_tests(tmp_path / "work")
    ctx.log_dir = tmp_path / "tb"
    DPC(image_size=64, num_points=64, grid_size=8, steps=2, batch_objects=1, views_per_object=2,
        supervised_pose=True).fit(toy, ctx.workdir, ctx)
    events = EventAccumulator(str(ctx.log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/projection", "loss/student", "loss/weight_decay", "loss/total", "learning_rate"} == tags
    assert [e.step for e in events.Scalars("loss/total")] == [0, 1]


def test_shape_pose_checkpoint_of_another_configuration_is_refused(toy, tmp_path):
    from aist_plugins.shape_pose.dpc import CHECKPOINT, DPC

    base = dict(image_size=64, num_points=64, grid_size=8, batch_objects=1, views_per_object=2, supervised_pose=True)
    DPC(steps=1, **base).fit(toy, tmp_path, StageContext.for_tests(tmp_path))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(tmp_path / CHECKPOINT))}: checkpoint of another "
                                              r"configuration: grid_size=8 \(now 16\), steps=1 \(now 2\)"):
        DPC(steps=2, **{**base, "grid_size": 16}).fit(toy, tmp_path, StageContext.for_tests(tmp_path))


# ---------------------------------------------------------------------------- the segmenter
def test_shape_prior_stops_at_a_nan_loss_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from aist_plugins.segmentation import shape_prior as sp

    from aist_core.testing.fixtures import make_photo

    rng = np.random.default_rng(0)
    renders = [np.dstack([im, m.astype(np.uint8) * 255]) for im, m, _ in (make_photo(rng, 64, 64) for _ in range(4))]
    photos = [make_photo(rng, 64, 192)[::2] for _ in range(6)]
    real, calls = sp.mask_loss_terms, {"n": 0}

    def nan_dice_from_step_3(logits, target):
        terms = real(logits, target)
        calls["n"] += 1
        if calls["n"] >= 4:
            terms["dice"] = terms["dice"] * float("nan")
            terms["total"] = terms["total"] + terms["dice"]
        return terms

    monkeypatch.setattr(sp, "mask_loss_terms", nan_dice_from_step_3)
    segmenter = sp.ShapePriorSegmenter(steps=6, batch_size=2, size=32, width=4, checkpoint_every=3)
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(component="shape-prior", term="dice", what="nan",
                                                               step=3, lr="0.001")):
        segmenter.fit_arrays(renders, photos, workdir=tmp_path)
    assert torch.load(tmp_path / sp.CHECKPOINT, weights_only=True)["step"] == 3
    assert_no_nonfinite_checkpoint(tmp_path / sp.CHECKPOINT)
    rows = read_csv(tmp_path / "losses.csv")
    assert list(rows[0]) == ["step", "bce", "dice", "total"] and [r["step"] for r in rows] == ["0", "1", "2"]
    with pytest.raises(CheckpointError, match=r"checkpoint of another configuration: width=4 \(now 8\)"):
        sp.ShapePriorSegmenter(steps=6, batch_size=2, size=32, width=8, checkpoint_every=3).fit_arrays(
            renders, photos, workdir=tmp_path)


# ---------------------------------------------------------------------------- scaling helpers
def test_precision_problem_and_mixed_precision():
    from aist_plugins.training import MixedPrecision, precision_problem

    assert precision_problem("fp32", "cpu") is None and precision_problem("bf16", "cpu") is None
    assert precision_problem("fp16", "cuda:1") is None
    assert precision_problem("fp16", "cpu") == ("precision: 'fp16' needs a CUDA device (torch.amp.GradScaler), "
                                                "device is 'cpu'; use 'bf16' or 'fp32' there")
    assert precision_problem("fp8", "cpu").startswith("precision: must be one of 'fp32', 'bf16', 'fp16'")
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        MixedPrecision("fp16", "cpu")
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    fp32, bf16 = MixedPrecision("fp32", "cpu"), MixedPrecision("bf16", "cpu")
    with fp32.autocast():
        assert layer(x).dtype == torch.float32
    with bf16.autocast():
        assert layer(x).dtype == torch.bfloat16
    assert fp32.scaler is None and fp32.state_dict() == {} and bf16.state_dict() == {}
    # fp32: exactly the plain backward + step
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(layer.state_dict())
    opt_a, opt_b = torch.optim.Adam(layer.parameters()), torch.optim.Adam(twin.parameters())
    fp32.backward(layer(x).square().sum())
    fp32.step(opt_a)
    fp32.update()
    twin(x).square().sum().backward()
    opt_b.step()
    assert all(torch.equal(a, b) for a, b in zip(layer.parameters(), twin.parameters()))


def test_distributed_in_one_process_and_the_batch_shards(monkeypatch):
    from aist_plugins.training import Distributed, setup_distributed, to_channels_last

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist, device = setup_distributed("cpu")
    assert dist == Distributed() and device == "cpu" and dist.is_main and not dist.enabled
    terms = {"a": torch.tensor(1.5)}
    assert dist.mean(terms) == terms and dist.gather({"x": 1}) == [{"x": 1}] and dist.shard([1, 2, 3]) == [1, 2, 3]
    dist.barrier()  # nothing to wait for
    assert Distributed(0, 2).shard([1, 2, 3]) == [1, 2] and Distributed(1, 2).shard([1, 2, 3]) == [3]
    with pytest.raises(ValueError, match="a batch of 3 cannot be split over 4 processes"):
        Distributed(3, 4).shard([1, 2, 3])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but RANK=None; launch with torchrun"):
        setup_distributed("cpu")
    x = torch.zeros(2, 3, 4, 4)
    assert to_channels_last(x, True).is_contiguous(memory_format=torch.channels_last)
    assert to_channels_last(x, False) is x


def test_unreadable_names_what_cannot_be_decoded(tmp_path):
    from aist_plugins.training import unreadable

    from aist_core.dataset import write_image

    write_image(tmp_path / "ok.png", np.zeros((4, 4, 4), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    problems = unreadable([str(tmp_path / "ok.png"), str(tmp_path / "bad.png"), str(tmp_path / "gone.png")])
    assert problems[0] == ""
    assert problems[1].startswith(f"{tmp_path / 'bad.png'}: unreadable image")
    assert problems[2] == f"{tmp_path / 'gone.png'}: file not found"


# ---------------------------------------------------------------------------- the last update
# Each logged loss is computed before its step's update, so the last update shows in none: a
# rate that blows the weights up in the final step (finite, far too large) used to be saved,
# stylising every image black or leaving the evaluate stage to find NaN points.
TRAINED = r" \(the trained weights, after the last update\); lower the learning rate \(lr=1e\+06\)"


def test_cyclegan_checks_the_weights_of_its_last_update(domains, tmp_path):
    from aist_plugins.style.cyclegan import CHECKPOINT

    with pytest.raises(TrainingDiverged, match=r"^cyclegan: loss term '\w+' is .+ at step 1" + TRAINED):
        tiny_cyclegan(lr=1e6, max_steps=1).fit(*domains, tmp_path, StageContext.for_tests(tmp_path))
    assert not (tmp_path / CHECKPOINT).exists()  # nothing saved for the stylize stage to use


def test_shape_pose_models_check_the_weights_of_their_last_update(toy, tmp_path):
    from aist_plugins.shape_pose.dpc import DPC
    from aist_plugins.shape_pose.supervised import ViewpointPSGN

    dpc = DPC(image_size=64, num_points=64, grid_size=8, steps=1, batch_objects=1, views_per_object=2, learning_rate=1e6)
    with pytest.raises(TrainingDiverged, match=r"^dpc: loss term '\w+' is .+ at step 0" + TRAINED):
        dpc.fit(toy, tmp_path / "dpc", StageContext.for_tests(tmp_path))
    psgn = ViewpointPSGN(image_size=32, num_points=16, gt_points=16, width=4, batch_size=2, steps=1, learning_rate=1e6)
    with pytest.raises(TrainingDiverged, match=r"^viewpoint-psgn: loss term '\w+' is .+ at step 0" + TRAINED):
        psgn.fit(toy, tmp_path / "psgn", StageContext.for_tests(tmp_path))


def test_a_sane_last_update_passes_the_check_and_changes_nothing(domains, tmp_path):
    # the check runs in eval mode without the pools' random draws: a normal run ends as before
    from aist_plugins.style.cyclegan import CHECKPOINT

    tiny_cyclegan(max_steps=2).fit(*domains, tmp_path / "a", StageContext.for_tests(tmp_path / "a"))
    translator = tiny_cyclegan(max_steps=2)
    translator._evaluate = lambda *a: {}  # as if there were no check
    translator.fit(*domains, tmp_path / "b", StageContext.for_tests(tmp_path / "b"))
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    for net in a["nets"]:
        assert all(torch.equal(a["nets"][net][k], b["nets"][net][k]) for k in a["nets"][net]), net
