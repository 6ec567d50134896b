import pytest
import torch

from aist_plugins.style.losses import AlphaLoss, ResNetFeatureLoss, edge_band, halo_ring, hard_alpha, soft_alpha


def _scene():
    """(1, 3, 16, 16): background pure black (-1) outside an 8x8 square of colour."""
    x = torch.full((1, 3, 16, 16), -1.0)
    x[:, :, 4:12, 4:12] = torch.tensor([0.2, -0.5, 0.7]).view(1, 3, 1, 1)
    return x


def test_hard_alpha_is_the_seed_definition():
    x = _scene()
    x[0, 1, 0, 0] = -1 + 2 / 255  # one grey level above black in one channel: foreground
    alpha = hard_alpha(x)
    assert alpha[0, 4:12, 4:12].all() and alpha[0, 0, 0] == 1 and alpha.sum() == 65


def test_alpha_loss_zero_on_identity_and_gradient_pulls_background_to_black():
    loss, x = AlphaLoss(), _scene()
    # hard target vs soft prediction: identity costs only (softness / (d + softness))^2 ~ 1e-5
    assert loss(x, x.clone()).item() < 1e-4
    translated = x.clone()
    translated[:, :, :2] = 0.3  # the generator painted a background band
    translated.requires_grad_(True)
    value = loss(x, translated)
    value.backward()
    assert value.item() > 0
    band = translated.grad[:, :, :2]
    assert (band.amax(1) > 0).all(), "gradient descent must lower the painted background"
    inside = translated.grad[:, :, 4:12, 4:12]
    assert (inside.amax(1) <= 0).all(), "foreground is only ever pushed away from black"
    assert inside.abs().mean() < band.abs().mean()


def test_soft_alpha_bounds():
    levels = torch.tensor([-1.0, -1 + 2 / 255, -0.9, 0.0, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    soft = soft_alpha(levels, 0.02)[0, 0]
    assert soft[0] == 0 and soft[1] > 0.2 and soft[2] > 0.8 and soft[-1] > 0.98
    assert torch.all(soft[1:] > soft[:-1])


def test_edge_band_covers_both_sides_of_the_outline():
    alpha = hard_alpha(_scene())  # 8x8 square at 4:12
    outer = halo_ring(alpha, 1)
    assert outer.sum() == 10 * 10 - 64 and outer[0, 3, 3] == 1 and outer[0, 2, 2] == 0 and outer[0, 4:12, 4:12].sum() == 0
    band = edge_band(alpha, 1)
    assert band.sum() == 10 * 10 - 6 * 6 and band[0, 4, 4] == 1 and band[0, 5, 5] == 0 and band[0, 7, 7] == 0


def test_edge_weight_charges_errors_at_the_outline_more_than_far_ones():
    x = _scene()
    halo, rim, far = x.clone(), x.clone(), x.clone()
    halo[:, :, 3, 4:12] = 0.3  # 8 background pixels touching the square, painted
    rim[:, :, 4, 4:12] = -1 + 0.5 / 255  # the square's top row painted black
    far[:, :, 0, 4:12] = 0.3  # 8 background pixels far from it, painted
    seed, weighted = AlphaLoss(softness=0.004), AlphaLoss(softness=0.004, edge_weight=3.0)
    assert torch.isclose(seed(x, halo), seed(x, far))
    assert torch.isclose(weighted(x, far), seed(x, far), rtol=0.1)  # only the rim's tiny soft error grows
    # (1 + 3)^2 from the squared norm
    assert torch.isclose(weighted(x, halo), seed(x, halo) * 16, rtol=0.03)
    assert torch.isclose(weighted(x, rim), seed(x, rim) * 16, rtol=0.03)
    with pytest.raises(ValueError, match="edge"):
        AlphaLoss(edge_weight=-1)


def test_normalizations_differ_by_elements_squared():
    x = _scene()
    y = x.clone()
    y[:, :, :3] = 0.5
    pixel, image = AlphaLoss(normalize="pixel")(x, y), AlphaLoss(normalize="image")(x, y)
    assert torch.isclose(image, pixel * (16 * 16) ** 2, rtol=1e-5)
    with pytest.raises(ValueError, match="normalize"):
        AlphaLoss(normalize="batch")


def test_resnet_features_of_source_computed_once_per_cache():
    loss = ResNetFeatureLoss(pretrained=False)
    source = torch.rand(2, 3, 32, 32) * 2 - 1
    cache: dict = {}
    first = loss(source, source * 0.5, cache)
    assert loss.calls == 2  # source + translated
    second = loss(source, source * 0.7, cache)
    assert loss.calls == 3  # only the translated batch again
    assert first.item() > 0 and second.item() > 0 and "resnet18_source" in cache
    assert loss(source, source.clone(), {}).item() == 0
    assert all(not p.requires_grad for p in loss.phi.parameters()) and not loss.phi.training


def test_resnet_feature_gradient_reaches_translated():
    loss = ResNetFeatureLoss(pretrained=False)
    source = torch.rand(1, 3, 32, 32) * 2 - 1
    translated = (source * 0.5).requires_grad_(True)
    loss(source, translated).backward()
    assert translated.grad.abs().sum() > 0


def test_missing_imagenet_weights_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        ResNetFeatureLoss(pretrained=True, weights=str(tmp_path / "resnet18-f37072fd.pth"))
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "\n" not in message


def test_explicit_weights_path_loads(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "r18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    loss = ResNetFeatureLoss(pretrained=True, weights=str(path))
    assert torch.equal(loss.phi[0].weight, torch.load(path, weights_only=True)["conv1.weight"])
