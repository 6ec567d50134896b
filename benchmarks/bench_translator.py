"""Translator cost: one training iteration, AIST vs a plain stock CycleGAN step, and throughput.

- plain: the stock CycleGAN step written out plainly below (no caching, no fusion, no extra
  losses): forward both cycles, identity, G step with D frozen, D step on pooled fakes.
- aist: `CycleGAN._train_step` with both annotation losses (alpha + ResNet-18 features; random
  ResNet weights, the same cost as ImageNet ones).
Both use the stock architecture (ngf 64, 9 blocks, PatchGAN ndf 64) at 128 px, batch 4, in the
same process, interleaved, after one warm-up step each; the median of `--repeats` is reported.
Stylisation throughput: `CycleGAN.stylize` on batches of 16 at 128 and 256 px.

    .venv/bin/python benchmarks/bench_translator.py [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from aist_plugins.style.cyclegan import CycleGAN
from aist_plugins.style.losses import AlphaLoss, ResNetFeatureLoss
from aist_plugins.style.networks import PatchDiscriminator, ResnetGenerator, init_normal


class PlainCycleGAN:
    """The stock training step, plainly: what the AIST step is compared against."""

    def __init__(self, activation: str = "relu"):
        g = torch.Generator().manual_seed(0)
        self.G_A, self.G_B = ResnetGenerator(activation=activation), ResnetGenerator(activation=activation)
        self.D_A, self.D_B = PatchDiscriminator(), PatchDiscriminator()
        for net in (self.G_A, self.G_B, self.D_A, self.D_B):
            init_normal(net, g)
        self.opt_G = torch.optim.Adam(list(self.G_A.parameters()) + list(self.G_B.parameters()), 2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(list(self.D_A.parameters()) + list(self.D_B.parameters()), 2e-4, betas=(0.5, 0.999))
        self.pool_A, self.pool_B = [], []

    @staticmethod
    def gan(pred, real):
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))

    @staticmethod
    def pool(history, images):
        out = []
        for image in images:
            if len(history) < 50:
                history.append(image)
                out.append(image)
            elif torch.rand(1).item() > 0.5:
                i = int(torch.randint(0, 50, (1,)).item())
                out.append(history[i])
                history[i] = image
            else:
                out.append(image)
        return torch.stack(out)

    def step(self, real_A, real_B):
        fake_B = self.G_A(real_A)
        rec_A = self.G_B(fake_B)
        fake_A = self.G_B(real_B)
        rec_B = self.G_A(fake_A)
        for p in list(self.D_A.parameters()) + list(self.D_B.parameters()):
            p.requires_grad = False
        self.opt_G.zero_grad()
        loss_idt_A = F.l1_loss(self.G_A(real_B), real_B) * 10 * 0.1
        loss_idt_B = F.l1_loss(self.G_B(real_A), real_A) * 10 * 0.1
        loss_G = (self.gan(self.D_A(fake_B), True) + self.gan(self.D_B(fake_A), True)
                  + F.l1_loss(rec_A, real_A) * 10 + F.l1_loss(rec_B, real_B) * 10 + loss_idt_A + loss_idt_B)
        loss_G.backward()
        self.opt_G.step()
        for p in list(self.D_A.parameters()) + list(self.D_B.parameters()):
            p.requires_grad = True
        self.opt_D.zero_grad()
        fb = self.pool(self.pool_B, fake_B.detach())
        loss_D_A = (self.gan(self.D_A(real_B), True) + self.gan(self.D_A(fb), False)) * 0.5
        loss_D_A.backward()
        fa = self.pool(self.pool_A, fake_A.detach())
        loss_D_B = (self.gan(self.D_B(real_A), True) + self.gan(self.D_B(fa), False)) * 0.5
        loss_D_B.backward()
        self.opt_D.step()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size} px, batch 4, stock architecture")

    def batch():  # RGB on black like the seed report's inputs
        x = torch.rand(4, 3, args.size, args.size) * 2 - 1
        x[:, :, : args.size // 4] = -1
        return x

    real_a, real_b = batch(), batch()
    plain = PlainCycleGAN(activation="relu")
    aist = CycleGAN(losses=[AlphaLoss(), ResNetFeatureLoss(pretrained=False)], image_size=args.size,
                    activation="relu")
    for net in (aist.g_ab, aist.g_ba, aist.d_a, aist.d_b):
        net.train()
    plain.step(real_a, real_b)  # warm-up: allocator, kernels
    aist._train_step(real_a, real_b)
    plain_s, aist_s = [], []
    for _ in range(args.repeats):  # interleaved, so load changes on the shared machine hit both
        plain_s.append(timed(lambda: plain.step(real_a, real_b)))
        aist_s.append(timed(lambda: aist._train_step(real_a, real_b)))
    p, a = statistics.median(plain_s), statistics.median(aist_s)
    print(f"plain stock step: {p:.2f} s  (runs {[round(s, 2) for s in plain_s]})")
    print(f"AIST step (alpha + resnet-feature losses): {a:.2f} s  (runs {[round(s, 2) for s in aist_s]})")
    print(f"ratio AIST / plain: {a / p:.3f}  (target <= 1.15)")

    for size in (128, 256):
        translator = CycleGAN(image_size=size, activation="relu")
        images = np.zeros((16, size, size, 4), np.uint8)
        images[:, size // 4 :, :, :] = np.random.default_rng(0).integers(1, 255, (16, size - size // 4, size, 4))
        translator.stylize(images[:2])  # warm-up
        seconds = timed(lambda: translator.stylize(images))
        print(f"stylize {size} px, batch 16: {16 / seconds:.2f} images/s ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
