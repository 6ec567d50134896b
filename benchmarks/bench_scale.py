"""Scale: Ray vs local executor for rendering, and the real trainers' fp32 vs bf16 throughput.

(a) Render `--objects` procedural cars (synthetic domain only: `--views` views each at
    `--image-size` px, `--spp` samples) through `ProceduralCars.build`, the stage code `aist run`
    runs, once with `LocalExecutor(--workers)` and once with `RayExecutor(--workers)` (a fresh
    local Ray instance; its start-up time is reported apart from the map). `--serial` adds
    `LocalExecutor(1)` as the speed-up reference. With `--repeats` the executors take turns and
    the median is reported. The outputs of all executors are compared file by file (they must
    be byte-identical).
(b) The real trainers, fp32 vs bf16 (`precision=`), on CPU at small sizes: the translator
    (`aist_plugins.style.cyclegan.CycleGAN.fit`: ngf = ndf `--ngf`, `--blocks` blocks, `--size`
    px, batch `--batch`, pool 50, no annotation losses) and DPC (`aist_plugins.shape_pose.dpc.DPC.fit`,
    unsupervised pose with 4 candidates: `--dpc-size` px, `--dpc-points` points, `--dpc-grid`^3
    grid, `--dpc-objects` x `--dpc-views` views a step), each on datasets written to a temporary
    folder (random discs for the translator, `shape_pose.toy_data` solids for DPC). Each fit
    builds a fresh model in a fresh workdir; the time per step is (fit of `--steps-long` steps -
    fit of `--steps-short` steps) / the difference, so the data scan, model build, final
    checkpoint and loss plot cancel. One untimed warm-up fit per precision, then
    `--train-repeats` rounds with the precisions taking turns; the median is reported with every
    repeat's rate and the total loss after the longer fit. (DPC's `steps` also sets the length of
    its point-dropout and sigma schedules, which changes the work per step only slightly.)
    Stylisation img/s through `CycleGAN.stylize` (batch 16): stylize has no autocast, so it runs
    in fp32 whatever the training precision, and the bf16 row says so.
(c) On CUDA when `torch.cuda.is_available()`: fp32 / bf16 / fp16, the translator at 256 px,
    batch 4, stock ngf = ndf = 64, 9 blocks; DPC at 128 px, 8000 points, 64^3 grid, 4 x 4 views.
    Without a GPU those rows say "not measured (no GPU)".
Every row is printed as a markdown table row for benchmarks/RESULTS.md, after a machine line
(CPU model, cores, bf16 instructions, torch version, GPU, load average).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py [--objects 200] [--workers 2]
        [--repeats 1] [--threads 1] [--serial] [--skip-render] [--skip-train]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py --skip-render   # training rows only
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


# ---------------------------------------------------------------------------- (b, c) training
def machine_line() -> str:
    """CPU model, cores, bf16 instructions, torch version, GPU and load average, for RESULTS.md."""
    import torch

    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"Machine: {model}, {os.cpu_count()} cores, bf16 instructions: {', '.join(bf16) or 'none'}, "
            f"torch {torch.__version__}, {gpu}, load average {load()}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def translator_dataset(root: Path, n: int, size: int, seed: int) -> Path:
    """`n` random RGBA images (a disc on a transparent background), all train: the data of
    `bench_translate_memory.py`. Decoding is cheap next to a training step."""
    import numpy as np

    from aist_core.dataset import DatasetWriter

    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, "renders", image_size=size)
    yy, xx = np.mgrid[:size, :size]
    records, images = [], {}
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.15, size * 0.35)
        image = np.zeros((size, size, 4), np.uint8)
        image[..., :3] = rng.integers(0, 256, 3, dtype=np.uint8)
        image[..., 3] = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r) * 255
        images[f"images/{i:05d}.png"] = image
        records.append({"id": f"{i:05d}", "image": f"images/{i:05d}.png", "split": "train", "object": f"o{i:05d}",
                        "view": 0})
    writer.write_unit("u0000", records, images)
    writer.finish(units=["u0000"])
    return root


class Trainer:
    """One real trainer configuration: `fit(steps)` builds a fresh model (constructor inside the
    timing) and trains it from scratch for `steps` steps in a fresh workdir; returns the wall
    seconds and the last logged total loss."""

    def __init__(self, kind: str, device: str, precision: str, cfg: dict, data: dict, root: Path):
        self.kind, self.device, self.precision, self.cfg, self.data, self.root = kind, device, precision, cfg, data, root
        self.runs = 0

    def fit(self, steps: int) -> tuple[float, float]:
        import csv

        import torch

        from aist_core.context import StageContext

        self.runs += 1
        work = self.root / f"{self.kind}_{self.device}_{self.precision}_{self.runs}"
        ctx = StageContext.for_tests(work, seed=0)
        sync = torch.cuda.synchronize if self.device.startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        if self.kind == "translator":
            from aist_plugins.style.cyclegan import CycleGAN

            model = CycleGAN(**self.cfg, max_steps=steps, precision=self.precision, device=self.device)
            model.fit(self.data["a"], self.data["b"], work / "fit", ctx)
            sync()
            seconds = time.perf_counter() - start
            with (work / "fit" / "losses.csv").open() as fh:
                rows = list(csv.DictReader(fh))
            loss = float(rows[-1]["g_total"]) + float(rows[-1]["d_a"]) + float(rows[-1]["d_b"])
        else:
            from aist_plugins.shape_pose.dpc import DPC

            model = DPC(**self.cfg, steps=steps, precision=self.precision, device=self.device)
            model.fit(self.data["views"], work / "fit", ctx)
            sync()
            seconds = time.perf_counter() - start
            loss = float(model.history[-1]["total"])
        self.model = model
        shutil.rmtree(work, ignore_errors=True)
        return seconds, loss


def time_trainers(trainers: dict[str, Trainer], short: int, long: int, repeats: int) -> dict[str, dict]:
    """Per trainer: seconds per step = (fit(long) - fit(short)) / (long - short), so data scan,
    model build, the final checkpoint and the loss plot cancel. One untimed warm-up fit(short)
    each first (imports, allocator, kernels); then `repeats` rounds, the trainers taking turns
    within each round (a change of load hits all of them); the median per-step time is kept."""
    for trainer in trainers.values():
        trainer.fit(short)
    per_step = {label: [] for label in trainers}
    losses = {}
    for _ in range(repeats):
        for label, trainer in trainers.items():
            t_short, _ = trainer.fit(short)
            t_long, losses[label] = trainer.fit(long)
            per_step[label].append((t_long - t_short) / (long - short))
    return {label: {"s": statistics.median(v), "runs": v, "loss": losses[label]} for label, v in per_step.items()}


def training_rows(args, device: str, root: Path) -> list[str]:
    """Markdown rows (| what | result | load | source |) for the translator and DPC on `device`."""
    from aist_plugins.shape_pose.toy_data import write_toy_dataset

    gpu = device.startswith("cuda")
    precisions = ("fp32", "bf16", "fp16") if gpu else ("fp32", "bf16")
    t_size, t_batch = (256, 4) if gpu else (args.size, args.batch)
    t_arch = {"ngf": 64, "ndf": 64, "n_blocks": 9} if gpu else {"ngf": args.ngf, "ndf": args.ngf, "n_blocks": args.blocks}
    d_size, d_points, d_grid = (128, 8000, 64) if gpu else (args.dpc_size, args.dpc_points, args.dpc_grid)
    d_objects, d_views = (4, 4) if gpu else (args.dpc_objects, args.dpc_views)
    short, long = args.steps_short, args.steps_long
    # enough images that no epoch ends inside the longer run (an epoch end writes a checkpoint)
    n_images = t_batch * (long + 2)
    data_root = root / f"data_{device.replace(':', '')}"
    t_data = {"a": translator_dataset(data_root / "a", n_images, t_size, 1),
              "b": translator_dataset(data_root / "b", n_images, t_size, 2)}
    d_data = {"views": write_toy_dataset(data_root / "views", {"train": max(8, d_objects * 2)}, views=max(4, d_views),
                                         image_size=d_size, cloud_points=3000, seed=1)}
    t_cfg = {**t_arch, "image_size": t_size, "batch_size": t_batch, "epochs": 1000, "checkpoint_every": 100_000,
             "sample_every": 100_000, "num_workers": 0}
    d_cfg = {"image_size": d_size, "num_points": d_points, "grid_size": d_grid, "batch_objects": d_objects,
             "views_per_object": d_views, "checkpoint_every": 100_000, "num_workers": 0}
    where = f"{device}, " + ("" if gpu else f"{args.threads} thread(s), ")
    sample = f"per step = (fit {long} steps - fit {short} steps) / {long - short}, median of {args.train_repeats} interleaved repeats after 1 warm-up"
    rows = []
    t_name = (f"translator training (`CycleGAN.fit`), {where}ngf = ndf = {t_arch['ngf']}, {t_arch['n_blocks']} "
              f"blocks, {t_size} px, batch {t_batch}, pool 50, no annotation losses")
    d_name = (f"DPC training (`DPC.fit`, unsupervised pose, 4 candidates), {where}{d_size} px, {d_points} points, "
              f"{d_grid}^3 grid, {d_objects} objects x {d_views} views")
    for kind, cfg, data, name, per_step_items in (
        ("translator", t_cfg, t_data, t_name, (t_batch, "image pairs/s")),
        ("dpc", d_cfg, d_data, d_name, (d_objects * d_views, "img/s")),
    ):
        load_start = load()
        trainers = {p: Trainer(kind, device, p, cfg, data, root) for p in precisions}
        result = time_trainers(trainers, short, long, args.train_repeats)
        n_img, unit = per_step_items
        rates = " / ".join(f"{1 / result[p]['s']:.2f}" for p in precisions)
        imgs = " / ".join(f"{n_img / result[p]['s']:.1f}" for p in precisions)
        ratios = "; ".join(f"**{p} / fp32 {result['fp32']['s'] / result[p]['s']:.2f}x**" for p in precisions[1:])
        runs = "; ".join(f"{p} runs {[round(1 / s, 2) for s in result[p]['runs']]}" for p in precisions)
        losses = " / ".join(f"{result[p]['loss']:.4f}" for p in precisions)
        rows.append(f"| {name}: {' / '.join(precisions)} | {rates} steps/s ({imgs} {unit}); {ratios}; "
                    f"total loss after {long} steps {losses}; {sample} (steps/s per repeat: {runs}) "
                    f"| {load_start} -> {load()} | `bench_scale.py --skip-render` |")
        print(rows[-1], flush=True)
        if kind == "translator":
            rows += stylise_rows(args, trainers["fp32"].model, device, t_size)
    return rows


def stylise_rows(args, translator, device: str, size: int) -> list[str]:
    """`CycleGAN.stylize` img/s (batch 16). stylize has no autocast: it runs g_ab in float32
    whatever the training precision, so there is no bf16 row to measure."""
    import numpy as np
    import torch

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (16, size, size, 4), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    translator.stylize(images)
    runs = []
    for _ in range(5):
        sync()
        start = time.perf_counter()
        translator.stylize(images)
        sync()
        runs.append(time.perf_counter() - start)
    med = statistics.median(runs)
    fp32 = (f"| stylisation (`CycleGAN.stylize`, the same generator), {device}, batch 16, {size} px: fp32 | "
            f"{16 / med:.1f} img/s ({med * 1000:.0f} ms/batch, median of 5; runs {[round(16 / r, 1) for r in runs]} "
            f"img/s) | {load()} | `bench_scale.py --skip-render` |")
    other = (f"| stylisation bf16{' / fp16' if device.startswith('cuda') else ''} | not measured: `CycleGAN.stylize` "
             f"has no autocast (runs g_ab in fp32 whatever `precision` the translator trained with) | | `cyclegan.py` |")
    rows = [fp32, other]
    for row in rows:
        print(row, flush=True)
    return rows


def bench_train(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    print(f"\n(b, c) real trainers, fp32 vs bf16 (and fp16 on CUDA): {machine_line()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch threads {torch.get_num_threads()}\n")
    print("| what | result | load | source |\n|---|---|---|---|", flush=True)
    root = Path(tempfile.mkdtemp(prefix="aist-bench-train-"))
    try:
        training_rows(args, "cpu", root)
        if torch.cuda.is_available():
            training_rows(args, "cuda", root)
        else:
            for what in ("translator training, 256 px, batch 4, ngf = ndf = 64, 9 blocks",
                         "DPC training, 128 px, 8000 points, 64^3 grid, 4 objects x 4 views"):
                print(f"| {what}, CUDA: fp32 / bf16 / fp16 | not measured (no GPU) | | `bench_scale.py` prints "
                      f"the rows on a CUDA machine |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
    parser.add_argument("--ngf", type=int, default=16, help="translator ngf = ndf on CPU")
    parser.add_argument("--blocks", type=int, default=4, help="translator residual blocks on CPU")
    parser.add_argument("--size", type=int, default=64, help="translator px on CPU")
    parser.add_argument("--batch", type=int, default=4, help="translator batch on CPU")
    parser.add_argument("--dpc-size", type=int, default=64, help="DPC px on CPU")
    parser.add_argument("--dpc-points", type=int, default=4000, help="DPC points on CPU")
    parser.add_argument("--dpc-grid", type=int, default=32, help="DPC grid on CPU")
    parser.add_argument("--dpc-objects", type=int, default=4, help="DPC objects per batch on CPU")
    parser.add_argument("--dpc-views", type=int, default=4, help="DPC views per object on CPU")
    parser.add_argument("--steps-short", type=int, default=2, help="steps of the shorter timed fit")
    parser.add_argument("--steps-long", type=int, default=10, help="steps of the longer timed fit")
    parser.add_argument("--train-repeats", type=int, default=5, help="interleaved (short, long) pairs, median kept")
    parser.add_argument("--skip-render", action="store_true", help="only the training rows (b, c)")
    parser.add_argument("--skip-train", "--skip-gan", action="store_true", help="only the rendering rows (a)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average: {load()}")
    if not args.skip_render:
        bench_render(args)
    if not args.skip_train:
        bench_train(args)
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()
