"""Scale: Ray vs local executor for rendering, and CycleGAN fp32 vs bf16 autocast throughput.

(a) Render `--objects` procedural cars (synthetic domain only: `--views` views each at
    `--image-size` px, `--spp` samples) through `ProceduralCars.build`, the stage code `aist run`
    runs, once with `LocalExecutor(--workers)` and once with `RayExecutor(--workers)` (a fresh
    local Ray instance; its start-up time is reported apart from the map). `--serial` adds
    `LocalExecutor(1)` as the speed-up reference. With `--repeats` the executors take turns and
    the median is reported. The outputs of all executors are compared file by file (they must
    be byte-identical).
(b) A tiny CycleGAN (ResnetGenerator ngf `--ngf`, `--blocks` blocks; PatchGAN ndf `--ngf`) at
    `--size` px, batch `--batch`: training steps/s (the stock step: both cycles, identity, LSGAN
    generator step with D frozen, D step) and stylisation img/s (generator forward, batch 16),
    in fp32 and with `torch.autocast(device, torch.bfloat16)` around every G and D forward
    (weights, optimiser and backward stay fp32). The loss after the timed steps from the same
    initial weights and data is printed for both precisions. This is a standalone measurement:
    `plugins/aist_plugins/style/cyclegan.py` has no autocast switch.
(c) The same (b) rows on CUDA when `torch.cuda.is_available()`; otherwise each GPU row says
    "not measured (no GPU)".

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py [--objects 200] [--workers 2]
        [--repeats 1] [--threads 1] [--gan-steps 6] [--serial] [--skip-render] [--skip-gan]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------------------- (a) rendering
def render_once(executor, out: Path, settings: dict) -> float:
    """Wall seconds of one `ProceduralCars.build` into `out` with `executor`."""
    from aist_plugins.procedural.procedural import ProceduralCars

    from aist_core.context import StageContext

    ctx = StageContext.for_tests(out.parent / (out.name + ".work"))
    ctx.executor = executor
    start = time.perf_counter()
    ProceduralCars(**settings).build(out, ctx)
    return time.perf_counter() - start


def differing_files(a: Path, b: Path) -> list[str]:
    files = lambda root: {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    names_a, names_b = files(a), files(b)
    return sorted(names_a ^ names_b) + sorted(n for n in names_a & names_b if (a / n).read_bytes() != (b / n).read_bytes())


def bench_render(args) -> None:
    """Each repeat renders with every executor in turn (interleaved, so a change of load on a
    shared machine hits all of them); the median wall per executor is reported."""
    from aist_core.executors import LocalExecutor, RayExecutor, ray_available

    settings = {"n_objects": args.objects, "views": args.views, "image_size": args.image_size, "points": args.points,
                "spp": args.spp, "n_photos": 0}
    print(f"\n(a) rendering: {args.objects} objects x {args.views} views, {args.image_size} px, {args.spp} spp, "
          f"{args.points} points, {args.workers} workers, {args.repeats} interleaved repeat(s)\n")
    print("| what | median wall | rate | runs |\n|---|---|---|---|")
    executors = {}
    if args.serial:
        executors["local executor, 1 process"] = LocalExecutor(1)
    executors[f"local executor, {args.workers} processes"] = LocalExecutor(args.workers)
    ray = None
    if ray_available():
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="warning")
        print(f"| ray.init (local instance, {args.workers} CPUs; once, not in the walls below) | {time.perf_counter() - start:.1f} s | | |", flush=True)
        executors[f"ray executor, {args.workers} CPUs"] = RayExecutor(args.workers)
    root = Path(tempfile.mkdtemp(prefix="aist-bench-scale-"))
    runs: dict[str, list[float]] = {label: [] for label in executors}
    identical = True
    try:
        for repeat in range(args.repeats):
            for k, (label, executor) in enumerate(executors.items()):
                runs[label].append(render_once(executor, root / f"r{repeat}_{k}", settings))
            outs = [root / f"r{repeat}_{k}" / "synthetic" for k in range(len(executors))]
            identical &= all(not differing_files(outs[0], other) for other in outs[1:])
            for k in range(len(executors)):
                shutil.rmtree(root / f"r{repeat}_{k}", ignore_errors=True)
                shutil.rmtree(root / f"r{repeat}_{k}.work", ignore_errors=True)
    finally:
        if ray is not None:
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    med = {label: statistics.median(v) for label, v in runs.items()}
    for label, seconds in med.items():
        print(f"| render {args.objects} objects, {label} | {seconds:.1f} s | {args.objects / seconds:.2f} objects/s "
              f"| {[round(s, 1) for s in runs[label]]} |")
    labels = list(med)
    if ray is None:
        print("| render, ray executor | not measured (ray not installed: pip install 'aist[ray]') | | |")
    else:
        print(f"| ray / local ({args.workers} workers) median wall | {med[labels[-1]] / med[labels[-2]]:.2f} | | |")
    if args.serial:
        print(f"| speed-up over 1 process: {' / '.join(labels[1:])} | "
              f"{' / '.join(f'{med[labels[0]] / med[label]:.2f}' for label in labels[1:])} | | |")
    print(f"| outputs of every executor (synthetic/) | {'byte-identical' if identical else 'DIFFER'} | | |")


# ---------------------------------------------------------------------------- (b) CycleGAN
class TinyCycleGAN:
    """The stock CycleGAN step on small networks; `amp` wraps every G and D forward in autocast."""

    def __init__(self, ngf: int, blocks: int, device: str, amp: bool):
        import torch
        from aist_plugins.style.networks import (
            PatchDiscriminator,
            ResnetGenerator,
            init_normal,
        )

        g = torch.Generator().manual_seed(0)
        self.G_A, self.G_B = ResnetGenerator(ngf=ngf, n_blocks=blocks), ResnetGenerator(ngf=ngf, n_blocks=blocks)
        self.D_A, self.D_B = PatchDiscriminator(ndf=ngf), PatchDiscriminator(ndf=ngf)
        for net in (self.G_A, self.G_B, self.D_A, self.D_B):
            init_normal(net, g)
            net.to(device).train()
        self.opt_G = torch.optim.Adam(list(self.G_A.parameters()) + list(self.G_B.parameters()), 2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(list(self.D_A.parameters()) + list(self.D_B.parameters()), 2e-4, betas=(0.5, 0.999))
        self.device, self.amp = device, amp

    def autocast(self):
        import contextlib

        import torch

        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def step(self, real_A, real_B) -> float:
        import torch.nn.functional as F

        gan = lambda pred, real: F.mse_loss(pred.float(), (pred.new_ones if real else pred.new_zeros)(pred.shape).float())
        l1 = lambda a, b: F.l1_loss(a.float(), b.float())
        d_params = list(self.D_A.parameters()) + list(self.D_B.parameters())
        with self.autocast():
            fake_B, fake_A = self.G_A(real_A), self.G_B(real_B)
            rec_A, rec_B = self.G_B(fake_B), self.G_A(fake_A)
            idt_A, idt_B = self.G_A(real_B), self.G_B(real_A)
            for p in d_params:
                p.requires_grad = False
            pred_fake_B, pred_fake_A = self.D_A(fake_B), self.D_B(fake_A)
        loss_G = (gan(pred_fake_B, True) + gan(pred_fake_A, True) + 10 * l1(rec_A, real_A) + 10 * l1(rec_B, real_B)
                  + l1(idt_A, real_B) + l1(idt_B, real_A))
        self.opt_G.zero_grad()
        loss_G.backward()
        self.opt_G.step()
        for p in d_params:
            p.requires_grad = True
        with self.autocast():
            scores = [self.D_A(real_B), self.D_A(fake_B.detach()), self.D_B(real_A), self.D_B(fake_A.detach())]
        loss_D = 0.5 * (gan(scores[0], True) + gan(scores[1], False) + gan(scores[2], True) + gan(scores[3], False))
        self.opt_D.zero_grad()
        loss_D.backward()
        self.opt_D.step()
        return float(loss_G.detach()) + float(loss_D.detach())

    def stylize(self, images) -> None:
        import torch

        with torch.no_grad(), self.autocast():
            self.G_A(images)


def gan_rows(args, device: str) -> None:
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    gen = torch.Generator().manual_seed(1)
    real_A = (torch.rand(args.batch, 3, args.size, args.size, generator=gen) * 2 - 1).to(device)
    real_B = (torch.rand(args.batch, 3, args.size, args.size, generator=gen) * 2 - 1).to(device)
    batch16 = (torch.rand(16, 3, args.size, args.size, generator=gen) * 2 - 1).to(device)
    rates = {}
    for precision, amp in (("fp32", False), ("bf16 autocast", True)):
        torch.manual_seed(0)
        model = TinyCycleGAN(args.ngf, args.blocks, device, amp)
        model.step(real_A, real_B)  # warm-up: allocator, kernels
        sync()
        start = time.perf_counter()
        losses = [model.step(real_A, real_B) for _ in range(args.gan_steps)]
        sync()
        train_s = (time.perf_counter() - start) / args.gan_steps
        model.stylize(batch16)
        runs = []
        for _ in range(3):
            sync()
            start = time.perf_counter()
            model.stylize(batch16)
            sync()
            runs.append(time.perf_counter() - start)
        rates[precision] = 1 / train_s
        print(f"| CycleGAN {device} {precision}: train step | {1 / train_s:.2f} steps/s | {args.batch / train_s:.1f} img pairs/s "
              f"| loss G+D after {args.gan_steps + 1} steps {losses[-1]:.4f} |", flush=True)
        print(f"| CycleGAN {device} {precision}: stylise, batch 16 | {statistics.median(runs) * 1000:.0f} ms/batch "
              f"| {16 / statistics.median(runs):.1f} img/s | |", flush=True)
    print(f"| CycleGAN {device}: bf16 / fp32 train steps/s | {rates['bf16 autocast'] / rates['fp32']:.2f} | | |")


def bench_gan(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    print(f"\n(b, c) CycleGAN: ngf=ndf={args.ngf}, {args.blocks} blocks, {args.size} px, batch {args.batch}, "
          f"{args.gan_steps} timed steps after 1 warm-up, torch {torch.__version__}, {args.threads} CPU thread(s)\n")
    print("| what | rate | throughput | note |\n|---|---|---|---|")
    gan_rows(args, "cpu")
    if torch.cuda.is_available():
        gan_rows(args, "cuda")
    else:
        for precision in ("fp32", "bf16 autocast"):
            print(f"| CycleGAN cuda {precision}: train step | not measured (no GPU) | | |")
            print(f"| CycleGAN cuda {precision}: stylise, batch 16 | not measured (no GPU) | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--spp", type=int, default=32)
    parser.add_argument("--points", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serial", action="store_true", help="also render with LocalExecutor(1)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved render repeats (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for (b)")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gan-steps", type=int, default=6)
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--skip-gan", action="store_true")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.skip_render:
        bench_render(args)
    if not args.skip_gan:
        bench_gan(args)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
