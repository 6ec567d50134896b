import torch

from aist_plugins.style.networks import PatchDiscriminator, ResnetGenerator, count_parameters, init_normal


def test_stock_parameter_counts():
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=9, activation="relu")) == 11_378_179
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=6, activation="relu")) == 7_837_699
    assert count_parameters(PatchDiscriminator(ndf=64, n_layers=3)) == 2_764_737
    # the seed report's leaky ReLU has no parameters: same count
    assert count_parameters(ResnetGenerator(activation="leaky_relu")) == 11_378_179


def test_shapes_and_ranges():
    g, d = ResnetGenerator(ngf=8, n_blocks=2), PatchDiscriminator(ndf=8)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert d(x).shape == (2, 1, 6, 6)
    assert PatchDiscriminator(ndf=8)(torch.zeros(1, 3, 128, 128)).shape == (1, 1, 14, 14)  # stock 70x70 PatchGAN at 128 px: 14x14


def test_instance_norm_is_plain_and_leaky_slope():
    g = ResnetGenerator(ngf=8, n_blocks=1, activation="leaky_relu")
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    slopes = {m.negative_slope for m in g.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}
    pads = [m for m in g.modules() if isinstance(m, torch.nn.ReflectionPad2d)]
    assert len(pads) == 2 + 2  # 7x7 in and out, one block with two 3x3 convs


def test_seeded_normal_init():
    a, b = ResnetGenerator(ngf=8, n_blocks=1), ResnetGenerator(ngf=8, n_blocks=1)
    init_normal(a, torch.Generator().manual_seed(3))
    init_normal(b, torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    weights = torch.cat([m.weight.flatten() for m in a.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002
    assert all(m.bias.abs().sum() == 0 for m in a.modules() if isinstance(m, torch.nn.Conv2d))
