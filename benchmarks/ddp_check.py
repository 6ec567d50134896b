"""DDP check: a CycleGAN generator step under DistributedDataParallel (gloo, 2 CPU processes)
follows a single process on the same global batch.

Both generators (`ResnetGenerator`, tiny: ngf `--ngf`, `--blocks` blocks, `--size` px) sit in one
module; the two PatchGAN discriminators are frozen, as in CycleGAN's generator step. The loss is
the stock generator objective: LSGAN on D(G(x)) for both directions, 10 x cycle L1, 5 x identity
L1. Every step draws a global batch of `--batch` image pairs from a seeded generator; the single
process trains on all of it, DDP rank r on its half, and DDP averages the gradients. InstanceNorm
works per sample and every loss is a mean over equal-sized halves, so the two runs compute the
same gradients up to floating-point summation order. Criteria (`--tolerance`): the first step's
DDP-averaged gradient against the single process's (max |difference| over max |gradient|), and the
per-step losses over `--steps` Adam steps (DDP: all-reduced mean of the ranks'; relative). The
weights' difference is printed but is no criterion: Adam's first steps are about lr x sign(g), so
elements with a near-zero gradient (the conv biases before a non-affine InstanceNorm have a true
gradient of 0) may step opposite ways on rounding differences. No torchrun:
`torch.multiprocessing.spawn` with a file rendezvous. The trainers are not touched; this checks
that the networks and the loss are DDP-ready. The CycleGAN trainer itself under torchrun
(equivalence with one process, exact resume after a kill, a whole recipe) is tested in
tests/core/test_ddp.py.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ddp_check.py [--steps 5] [--batch 8]

Exit status 0 when the gradient and loss differences are within tolerance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from aist_plugins.style.networks import PatchDiscriminator, ResnetGenerator, init_normal
from torch import nn
from torch.nn.parallel import DistributedDataParallel

WORLD = 2


class Generators(nn.Module):
    """G_A (A -> B) and G_B (B -> A); forward returns every image the generator loss needs."""

    def __init__(self, ngf: int, blocks: int):
        super().__init__()
        self.G_A, self.G_B = ResnetGenerator(ngf=ngf, n_blocks=blocks), ResnetGenerator(ngf=ngf, n_blocks=blocks)

    def forward(self, a, b):
        fake_B, fake_A = self.G_A(a), self.G_B(b)
        return fake_B, self.G_B(fake_B), fake_A, self.G_A(fake_A), self.G_A(b), self.G_B(a)


def build(args):
    """Generators and frozen discriminators with seeded weights (the same in every process)."""
    g = torch.Generator().manual_seed(0)
    gens = Generators(args.ngf, args.blocks)
    discs = [PatchDiscriminator(ndf=args.ngf, n_layers=2), PatchDiscriminator(ndf=args.ngf, n_layers=2)]
    for net in (gens.G_A, gens.G_B, *discs):
        init_normal(net, g)
    for d in discs:
        d.requires_grad_(False)
    return gens, discs


def global_batch(step: int, args):
    g = torch.Generator().manual_seed(1000 + step)
    shape = (args.batch, 3, args.size, args.size)
    return torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1


def generator_loss(outputs, discs, a, b):
    fake_B, rec_A, fake_A, rec_B, idt_B, idt_A = outputs
    d_a, d_b = discs
    gan = lambda pred: F.mse_loss(pred, torch.ones_like(pred))
    return (gan(d_a(fake_B)) + gan(d_b(fake_A)) + 10 * (F.l1_loss(rec_A, a) + F.l1_loss(rec_B, b))
            + 5 * (F.l1_loss(idt_B, b) + F.l1_loss(idt_A, a)))


def train(model, named, discs, args, shard=None):
    """`args.steps` Adam steps (the trainers' optimiser); returns the losses (mean over the global
    batch) and the first step's gradients (under DDP: after its all-reduce, i.e. averaged)."""
    named = list(named)
    opt = torch.optim.Adam([p for _, p in named], lr=args.lr, betas=(0.5, 0.999))
    losses, first_grads = [], {}
    for step in range(args.steps):
        a, b = global_batch(step, args)
        if shard is not None:
            rank, world = shard
            half = args.batch // world
            a, b = a[rank * half : (rank + 1) * half], b[rank * half : (rank + 1) * half]
        loss = generator_loss(model(a, b), discs, a, b)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            first_grads = {k: p.grad.detach().clone() for k, p in named}
        opt.step()
        reported = loss.detach().clone()
        if shard is not None:
            dist.all_reduce(reported)
            reported /= shard[1]
        losses.append(float(reported))
    return losses, first_grads


def worker(rank: int, args, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        gens, discs = build(args)
        ddp = DistributedDataParallel(gens)
        losses, grads = train(ddp, ddp.module.named_parameters(), discs, args, shard=(rank, WORLD))
        if rank == 0:
            torch.save({"losses": losses, "grads": grads, "state": gens.state_dict()}, out_file)
        dist.barrier()  # no rank tears the group down while another still talks to it
    finally:
        dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="global batch (even)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    if args.batch % WORLD:
        parser.error(f"--batch must be a multiple of {WORLD}")
    torch.set_num_threads(1)

    start = time.perf_counter()
    gens, discs = build(args)
    single, single_grads = train(gens, gens.named_parameters(), discs, args)
    single_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="aist-ddp-") as tmp:
        init_file, out_file = str(Path(tmp) / "rendezvous"), str(Path(tmp) / "rank0.pt")
        start = time.perf_counter()
        mp.spawn(worker, args=(args, init_file, out_file), nprocs=WORLD, join=True)
        ddp_s = time.perf_counter() - start
        result = torch.load(out_file, weights_only=True)

    loss_rel = max(abs(s - d) / max(abs(s), 1e-12) for s, d in zip(single, result["losses"]))
    grad_scale = max(float(g.abs().max()) for g in single_grads.values())
    grad_rel = max(float((g - result["grads"][k]).abs().max()) for k, g in single_grads.items()) / grad_scale
    weight_abs = max(float((p - result["state"][k]).abs().max()) for k, p in gens.state_dict().items())
    moved = max(float((p - q).abs().max()) for p, q in zip(gens.state_dict().values(), build(args)[0].state_dict().values()))
    print(f"torch {torch.__version__}, gloo, {WORLD} CPU processes x 1 thread; ngf {args.ngf}, {args.blocks} blocks, "
          f"{args.size} px, global batch {args.batch}, {args.steps} Adam steps (lr {args.lr})")
    print("step | single-process loss | DDP loss (mean of ranks)")
    for step, (s, d) in enumerate(zip(single, result["losses"])):
        print(f"{step:4d} | {s:.8f} | {d:.8f}")
    print(f"first-step gradient, DDP average vs single process: max |difference| / max |gradient| = {grad_rel:.2e} "
          f"(tolerance {args.tolerance:g})")
    print(f"loss over {args.steps} steps: max relative difference {loss_rel:.2e} (tolerance {args.tolerance:g})")
    print(f"weights after {args.steps} steps: max absolute difference {weight_abs:.2e}, against a largest move of "
          f"{moved:.2e} (not a criterion: early Adam steps are about lr x sign(gradient), so elements whose "
          f"gradient is near zero, e.g. conv biases before a non-affine InstanceNorm, can step opposite ways "
          f"on rounding differences)")
    print(f"wall: single {single_s:.1f} s, DDP (spawn included) {ddp_s:.1f} s")
    ok = loss_rel <= args.tolerance and grad_rel <= args.tolerance
    print("DDP matches the single process" if ok else "DDP DIFFERS from the single process")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
