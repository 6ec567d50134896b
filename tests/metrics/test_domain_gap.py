"""Domain-gap plugins: C2ST separates what differs and not what does not (background ignored),
ColourStats orders saturation and texture, KID never downloads and calls torch-fidelity with
a local weights file; plus the DomainGap contract suite for all three."""

import socket

import numpy as np
import pytest

from aist_core.testing.contracts import DomainGapContract
from aist_plugins.metrics.domain_gap import C2ST, INCEPTION_FILE, KID, ColourStats


def ellipses(n, size=64, colour=(200, 60, 50), texture=0.0, background=(0, 0, 0), shape_seed=0, seed=1):
    """(n, size, size, 4) uint8 shaded ellipses. Silhouettes come from `shape_seed` only, so two
    sets with one shape_seed differ only in what the other arguments change."""
    shapes, rng = np.random.default_rng(shape_seed), np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((n, size, size, 4), np.uint8)
    for i in range(n):
        cx, cy = shapes.uniform(0.35, 0.65, 2)
        a, b = shapes.uniform(0.15, 0.35, 2)
        d = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
        inside = d <= 1
        rgb = (1.0 - 0.4 * d)[..., None] * np.asarray(colour) * rng.uniform(0.85, 1.15)
        rgb = rgb + rng.normal(0, texture, (size, size, 3)) + rng.normal(0, 6, (size, size, 3))
        out[i, ..., :3] = np.where(inside[..., None], rgb.clip(1, 255), background)
        out[i, ..., 3] = inside * 255
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection or torch hub download fails the test."""
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


# ---------------------------------------------------------------------------- C2ST
def test_c2st_same_distribution_with_different_backgrounds_is_chance():
    one_set = ellipses(200)
    black, yellow = one_set[:100].copy(), one_set[100:].copy()
    yellow[yellow[..., 3] == 0, :3] = (255, 255, 0)  # the halves differ only in background RGB
    out = C2ST().compute(black, yellow, seed=0)
    assert 0.35 <= out["c2st_accuracy"] <= 0.65, out
    assert out["c2st_n_heldout"] == 200
    low, high = out["c2st_ci95"]
    assert low <= out["c2st_accuracy"] <= high


def test_c2st_separates_a_different_object_colour_and_texture():
    red = ellipses(100, background=(0, 0, 0), seed=1)
    blue = ellipses(100, colour=(60, 90, 200), texture=30, background=(255, 255, 255), seed=2)  # same silhouettes
    out = C2ST().compute(red, blue, seed=0)
    assert out["c2st_accuracy"] >= 0.9, out
    assert out["c2st_ci95"][0] > 0.5 and out["c2st_p_value"] < 1e-6
    assert out["c2st_train_accuracy"] >= 0.9


def test_c2st_balances_the_classes_and_caps_them():
    out = C2ST(size=16, epochs=1, max_images=12).compute(ellipses(30, size=32), ellipses(15, size=32), seed=0)
    assert out["c2st_n_heldout"] == 24  # min(30, 15, 12) per set


def test_c2st_refuses_sets_of_different_sizes_or_too_few_images():
    with pytest.raises(ValueError, match="at least 10"):
        C2ST().compute(ellipses(9, size=32), ellipses(20, size=32))
    with pytest.raises(ValueError, match="one size"):
        C2ST().compute(ellipses(20, size=32), ellipses(20, size=48))


# ---------------------------------------------------------------------------- ColourStats
def test_colour_stats_orders_saturation_and_texture():
    vivid_rough = ellipses(20, colour=(220, 40, 30), texture=40)
    grey_smooth = ellipses(20, colour=(130, 120, 115), background=(255, 0, 255))
    out = ColourStats().compute(vivid_rough, grey_smooth)
    assert out["saturation"] > out["saturation_reference"] + 50
    assert out["hf_energy"] > 2 * out["hf_energy_reference"]
    assert out["lab_a"] > out["lab_a_reference"] + 10  # red has a large positive a*
    swapped = ColourStats().compute(grey_smooth, vivid_rough)
    assert swapped["saturation"] == out["saturation_reference"]
    assert swapped["lab_mean_distance"] == pytest.approx(out["lab_mean_distance"])


def test_colour_stats_hf_energy_excludes_the_silhouette_edge():
    """A flat object on a noisy background has no texture: the eroded mask keeps the edge out."""
    rng = np.random.default_rng(0)
    flat = ellipses(5, colour=(120, 120, 120))
    flat[..., :3] = np.where(flat[..., 3:] > 0, 100, rng.integers(0, 256, flat[..., :3].shape))
    out = ColourStats().compute(flat, flat)
    assert out["hf_energy"] == 0.0 and out["saturation"] == 0.0
    assert out["lab_mean_distance"] == 0.0
    assert out["lab_l"] == pytest.approx(42.37, abs=0.3)  # sRGB grey 100 is L* 42.37 (OpenCV: 42.23)


def test_colour_stats_tiny_objects_have_no_hf_energy_but_say_why():
    tiny = np.zeros((3, 16, 16, 4), np.uint8)
    tiny[:, 7:9, 7:9] = (200, 50, 50, 255)  # 2 x 2 px: nothing survives a 2 px erosion
    out = ColourStats().compute(tiny, ellipses(3, size=16))
    assert out["hf_energy"] is None and "erode_px" in out["hf_energy_missing"]
    assert out["hf_energy_reference"] is not None
    with pytest.raises(ValueError, match="no object pixels"):
        ColourStats().compute(np.zeros((2, 16, 16, 4), np.uint8), tiny)


# ---------------------------------------------------------------------------- KID
def test_kid_missing_weights_is_one_line_naming_the_file(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    images, reference = ellipses(4, size=32), ellipses(4, size=32, seed=2)
    out = KID().compute(images, reference)
    assert set(out) == {"kid", "kid_missing"} and out["kid"] is None
    reason = out["kid_missing"]
    assert "\n" not in reason and INCEPTION_FILE in reason
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in reason
    explicit = KID(weights=str(tmp_path / "nowhere.pth")).compute(images, reference)
    assert explicit["kid"] is None and str(tmp_path / "nowhere.pth") in explicit["kid_missing"]


def test_kid_calls_torch_fidelity_with_the_local_weights_path(no_network, tmp_path, monkeypatch):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    weights = tmp_path / INCEPTION_FILE
    weights.write_bytes(b"stand-in")  # calculate_metrics is replaced: the file is never read
    seen = {}

    def fake_calculate_metrics(**kwargs):
        seen.update(kwargs)
        return {"kernel_inception_distance_mean": 0.25, "kernel_inception_distance_std": 0.5}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake_calculate_metrics)
    images, reference = ellipses(7, size=32, background=(9, 9, 9)), ellipses(5, size=32)
    out = KID(weights=str(weights), subsets=7).compute(images, reference, seed=4)
    assert out == {"kid": 0.25, "kid_std": 0.5, "kid_subset_size": 5}
    assert seen["feature_extractor_weights_path"] == str(weights)
    assert seen["kid"] is True and seen["feature_extractor"] == "inception-v3-compat"
    assert seen["kid_subset_size"] == 5 and seen["kid_subsets"] == 7 and seen["rng_seed"] == 4
    assert seen["cache"] is False and seen["cuda"] is False and seen["datasets_download"] is False
    first = seen["input1"][0]
    assert len(seen["input1"]) == 7 and len(seen["input2"]) == 5
    assert first.dtype.is_floating_point is False and tuple(first.shape) == (3, 32, 32)
    assert int(first[:, 0, 0].sum()) == 0  # background composited onto black


@pytest.mark.slow
def test_kid_runs_torch_fidelity_on_a_stand_in_inception(no_network, tmp_path):
    """Real torch-fidelity computation from a local file: random (seeded) InceptionV3 weights
    in torch-fidelity's own layout, built offline. The numbers are not Inception's."""
    pytest.importorskip("torch_fidelity")
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
            mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
            net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):  # keep activations alive through 40 layers
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    weights = tmp_path / INCEPTION_FILE
    torch.save(net.state_dict(), weights)
    kid = KID(weights=str(weights), subsets=5)
    red = ellipses(6, size=32)
    out = kid.compute(red, ellipses(6, size=32, colour=(60, 90, 200), texture=30, seed=2), seed=0)
    assert set(out) == {"kid", "kid_std", "kid_subset_size"} and out["kid_subset_size"] == 6
    assert np.isfinite(out["kid"]) and np.isfinite(out["kid_std"])
    assert out["kid"] > kid.compute(red, ellipses(6, size=32, seed=2), seed=0)["kid"]


# ---------------------------------------------------------------------------- contracts
class TestC2STContract(DomainGapContract):
    component_class = C2ST


class TestColourStatsContract(DomainGapContract):
    component_class = ColourStats


class TestKIDContract(DomainGapContract):
    component_class = KID
