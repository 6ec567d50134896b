"""The AIST translator: stock CycleGAN (Zhu et al.) plus annotation losses (seed report chapter 4).

Per training step (stock order): forward both cycles; generator step with both discriminators
frozen; discriminator step on pooled fakes. Generator loss = LSGAN + lambda * cycle L1 +
lambda * lambda_idt * identity L1 + sum over annotation losses of
weight_a2b * loss(x_A, G(x_A)) + weight_b2a * loss(x_B, F(x_B)).
Domain A = synthetic renders, B = real crops; G = g_ab, F = g_ba; d_b judges domain B images.

Everything random (initialisation, data order, flips, pools) comes from ctx.seed, and a
checkpoint holds networks, optimisers, pools with their generators and the step, so a run
resumed from any checkpoint continues bit for bit as if never stopped (on CPU).

Checkpoints, the loss log and the divergence guard are `aist_plugins.training`'s: losses.csv has
one column per term, each annotation loss under its recipe name and direction
(`alpha_a2b`, `alpha_b2a`, `resnet-feature_a2b`, ...: weighted, as added to the generator loss),
and the first non-finite term stops training with `TrainingDiverged`.

Scale (all from `aist_plugins.training`):
- data: training images are streamed from disk by a `torch.utils.data.DataLoader`
  (`num_workers` processes; pinned memory and non-blocking copies on CUDA) in the seeded order
  of `style.data.CycleBatchSampler`, so memory does not grow with the datasets and the batches
  are those of the in-memory version (bit for bit);
- precision: "fp32" (default, exactly the float32 computation), "bf16" (autocast, CPU or CUDA)
  or "fp16" (autocast + `torch.amp.GradScaler`, CUDA only); `channels_last` memory format;
  `compile` (torch.compile of the generator and discriminator losses);
- several processes: under `torchrun --nproc-per-node N`, every network trains under
  `DistributedDataParallel` ("nccl" on CUDA, one GPU per process; "gloo" on CPU). The global
  batch stays `batch_size`: each rank takes its contiguous part of every seeded batch (ceil(B /
  N) images; the smallest batch, also an epoch's last, must give every rank one image), the
  gradients are averaged over the ranks, and the logged losses are the ranks' mean. Each rank has
  its own image pools, seeded by (seed, rank); rank 0 gathers them into the checkpoint, so a
  killed job resumes exactly when relaunched with the same number of processes (another number
  is refused: the checkpoint records it). Only rank 0 writes (checkpoint, losses.csv, samples,
  TensorBoard, the loss plot); every rank reads the datasets and the checkpoint, so the workdir
  must be on a filesystem they all see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Interval, MultipleOf
from torch import nn

from aist_core.boundary import call_loss
from aist_core.constraints import (
    Device,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from aist_core.interfaces import AnnotationLoss, Translator

from ..training import (
    Distributed,
    MixedPrecision,
    TrainingDiverged,
    TrainingLog,
    check_finite_state,
    default_read_every,
    evaluating,
    load_checkpoint,
    make_loader,
    precision_problem,
    read_weights,
    registered_name,
    save_checkpoint,
    setup_distributed,
    to_channels_last,
    unique_names,
)
from .data import (
    MODES,
    CycleBatchSampler,
    DomainImages,
    PairedDomains,
    batch_from_uint8,
    epoch_order,
    to_network_input,
    to_tensor,
    to_uint8,
)
from .networks import PatchDiscriminator, ResnetGenerator, init_normal
from .pool import ImagePool
from .training_log import plot_losses, sample_grid, save_sample_grid

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "generators.safetensors"
CONFIG = "translator.json"


class CycleGAN(Translator):
    """CycleGAN with annotation losses on RGBA renders; see the module docstring."""

    background = "generated"  # stylize leaves g_ab's background unmasked: the stage measures its implied mask
    distributed = True  # under torchrun, fit trains on every process (the runner runs it on all ranks)

    def __init__(
        self,
        losses: list[AnnotationLoss] = (),
        mode: Literal["black", "alpha"] = "black",
        image_size: Annotated[int, Ge(24), MultipleOf(4)] = 256,
        n_blocks: Annotated[int, Interval(ge=0, le=64)] = 9,  # bounds: beyond them a model no GPU holds
        ngf: Annotated[int, Interval(ge=1, le=1024)] = 64,
        ndf: Annotated[int, Interval(ge=1, le=1024)] = 64,
        activation: Literal["leaky_relu", "relu"] = "leaky_relu",
        batch_size: PositiveInt = 4,
        epochs: NonNegativeInt = 44,
        epochs_decay: NonNegativeInt = 0,
        max_steps: NonNegativeInt = 0,
        lr: PositiveFloat = 2e-4,
        beta1: Annotated[float, Interval(ge=0, lt=1)] = 0.5,
        lambda_a: NonNegativeFloat = 10.0,
        lambda_b: NonNegativeFloat = 10.0,
        lambda_idt: NonNegativeFloat = 0.1,
        pool_size: NonNegativeInt = 50,
        init_gain: PositiveFloat = 0.02,
        flip: bool = True,
        checkpoint_every: PositiveInt = 500,
        sample_every: PositiveInt = 500,
        num_workers: NonNegativeInt = 0,
        precision: Literal["fp32", "bf16", "fp16"] = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        device: Device = "cpu",
    ):
        """
        losses: annotation losses added to the generator loss (recipe: [[translate.losses]]).
        mode: "black" (seed report: RGB on pure black, Alpha = any channel > -1) or "alpha"
            (true alpha as a 4th channel).
        image_size: training resolution, images resized to it; 256 as the seed report.
        n_blocks: residual blocks of the generator; 9 as stock resnet_9blocks.
        ngf: generator base width; 64 as stock.
        ndf: discriminator base width; 64 as stock.
        activation: "leaky_relu" (slope 0.01, seed report) or "relu" (stock).
        batch_size: images per domain per step; 4 as the seed report.
        epochs: epochs at constant learning rate; 44 as the seed report.
        epochs_decay: further epochs with the rate decaying linearly to ~0 (stock n_epochs_decay);
            0 because the seed report trains 44 epochs in all.
        max_steps: stop after this many steps in all (0 = no limit), for short runs and tests.
        lr: Adam learning rate; 2e-4 as stock.
        beta1: Adam beta1; 0.5 as stock (beta2 0.999).
        lambda_a: weight of the A -> B -> A cycle L1; 10 as stock and seed report.
        lambda_b: weight of the B -> A -> B cycle L1; 10.
        lambda_idt: identity loss weight relative to lambda (stock semantics); 0.1 as seed report.
        pool_size: fakes remembered per direction for the discriminators; 50 as stock.
        init_gain: std of the N(0, gain) weight initialisation; 0.02 as stock.
        flip: random horizontal flips of training images (stock default, labels are symmetric).
        checkpoint_every: steps between checkpoints (also at every epoch end and at the stop).
        sample_every: steps between sample grids in workdir/samples (and in TensorBoard, tag
            "samples", when the stage context has a log_dir).
        num_workers: DataLoader worker processes reading and preprocessing training images
            (0: in the training process). The batches do not depend on it.
        precision: "fp32" (default: the float32 computation, unchanged), "bf16" (torch.autocast
            with bfloat16, CPU or CUDA) or "fp16" (autocast with float16 and a GradScaler; CUDA
            only, refused elsewhere).
        channels_last: networks and batches in channels_last (NHWC) memory format, faster
            convolutions on tensor-core GPUs; results differ from the default in the last bits.
        compile: torch.compile the generator and discriminator losses (first steps slower while
            compiling; needs a C++ compiler on CPU).
        device: torch device for training and inference. Under torchrun a CUDA device becomes
            each process's "cuda:<LOCAL_RANK>".

        Raises ValueError for a mode, image size or precision (fp16 off CUDA) it cannot train.
        """
        problems = self.check_params({"precision": precision, "device": device})
        if problems:
            raise ValueError("; ".join(problems))
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two stride-2 stages), got {image_size}")
        self.losses = [loss.to(device) for loss in losses]
        # CSV/TensorBoard names: the recipe's `use` name of each loss, repeats numbered
        self.loss_names = unique_names(registered_name(loss, "annotation_loss") for loss in self.losses)
        self.mode, self.image_size, self.device = mode, image_size, device
        self.batch_size, self.epochs, self.epochs_decay, self.max_steps = batch_size, epochs, epochs_decay, max_steps
        self.lr, self.beta1 = lr, beta1
        self.lambda_a, self.lambda_b, self.lambda_idt = lambda_a, lambda_b, lambda_idt
        self.pool_size, self.init_gain, self.flip = pool_size, init_gain, flip
        self.checkpoint_every, self.sample_every = checkpoint_every, sample_every
        self.num_workers, self.precision = num_workers, precision
        self.channels_last, self.compile = bool(channels_last), bool(compile)
        self.arch = {"mode": mode, "n_blocks": n_blocks, "ngf": ngf, "activation": activation}
        channels = 4 if mode == "alpha" else 3
        self.g_ab = ResnetGenerator(channels, channels, ngf, n_blocks, activation).to(device)
        self.g_ba = ResnetGenerator(channels, channels, ngf, n_blocks, activation).to(device)
        self.d_a = PatchDiscriminator(channels, ndf).to(device)  # judges domain A images
        self.d_b = PatchDiscriminator(channels, ndf).to(device)  # judges domain B images
        self._initialise(seed=0)
        self._wrap(Distributed())

    @classmethod
    def example(cls) -> "CycleGAN":
        return cls(image_size=32, n_blocks=2, ngf=8, ndf=8, batch_size=2, epochs=1, max_steps=2, sample_every=1)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        """What types cannot show: fp16 needs a CUDA device."""
        problem = precision_problem(params.get("precision", "fp32"), params.get("device", "cpu"))
        return [problem] if problem else []

    # ------------------------------------------------------------------ set-up
    def _initialise(self, seed: int, rank: int = 0) -> None:
        """Weights from `seed` (the same on every rank), fresh optimisers and loss scaler, and
        image pools seeded by (seed, rank): rank 0's pools are a single process's."""
        generator = torch.Generator().manual_seed(seed)
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            init_normal(net, generator, self.init_gain)
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
        params_g = list(self.g_ab.parameters()) + list(self.g_ba.parameters())
        params_d = list(self.d_a.parameters()) + list(self.d_b.parameters())
        self.opt_g = torch.optim.Adam(params_g, lr=self.lr, betas=(self.beta1, 0.999))
        self.opt_d = torch.optim.Adam(params_d, lr=self.lr, betas=(self.beta1, 0.999))
        offset = int(rank) << 33  # seeds < 2**32: (seed, rank, domain) never share a stream
        self.pool_a = ImagePool(self.pool_size, seed * 2 + 1 + offset)  # fakes of domain A (from g_ba)
        self.pool_b = ImagePool(self.pool_size, seed * 2 + 2 + offset)
        self._amp = MixedPrecision(self.precision, self.device)
        self.step = 0

    def _wrap(self, dist: Distributed) -> None:
        """The loss modules `_train_step` calls: plain, under DistributedDataParallel (several
        processes) and/or torch.compile'd (`compile`). They hold the networks themselves, so
        state dicts and checkpoints are the same either way."""
        modules = [_GeneratorLoss(self), _DiscriminatorLoss(self.d_b), _DiscriminatorLoss(self.d_a)]
        modules = [dist.wrap(m, self.device) for m in modules]
        if self.compile:
            modules = [torch.compile(m) for m in modules]
        self._generator_loss, self._d_loss_b, self._d_loss_a = modules

    def _move(self, device: str) -> None:
        """Networks, annotation losses (and so the optimiser state built after) onto `device`."""
        self.device = device
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.to(device)
        self.losses = [loss.to(device) for loss in self.losses]

    def _lr_factor(self, epoch: int) -> float:
        """Stock linear rule: 1 for `epochs`, then down by 1/(epochs_decay + 1) per epoch."""
        return 1.0 - max(0, epoch + 1 - self.epochs) / float(self.epochs_decay + 1)

    # ------------------------------------------------------------------ training
    def fit(self, domain_a, domain_b, workdir, ctx) -> None:
        """Train on the train splits of views datasets `domain_a` (renders) and `domain_b`
        (crops), resuming from `workdir`'s checkpoint; see the module docstring (also for runs
        under torchrun). Raises DatasetError without readable train images, TrainingDiverged at
        the first non-finite loss or weight, CheckpointError for a checkpoint of another
        configuration, ValueError when a batch cannot be split over the processes."""
        dist, device = setup_distributed(self.device)
        if device != str(self.device):
            self._move(device)
        dist.barrier()  # every rank past its launcher's clean-up before anyone reads the workdir
        workdir = Path(workdir)
        if dist.is_main:
            workdir.mkdir(parents=True, exist_ok=True)
        images_a = DomainImages(Path(domain_a), self.mode, self.image_size, ctx, self.num_workers)
        images_b = DomainImages(Path(domain_b), self.mode, self.image_size, ctx, self.num_workers)
        sampler = CycleBatchSampler(ctx.seed, len(images_a), len(images_b), self.batch_size, 0, 0,
                                    dist if dist.enabled else None)
        steps_per_epoch = sampler.steps_per_epoch
        total = steps_per_epoch * (self.epochs + self.epochs_decay)
        if self.max_steps:
            total = min(total, self.max_steps)
        smallest = min(self.batch_size, sampler.length - (steps_per_epoch - 1) * self.batch_size)
        per_rank = -(-smallest // dist.world_size)  # Distributed.shard: ceil(B / N) each, the last ranks' less
        if dist.enabled and -(-smallest // per_rank) < dist.world_size:
            raise ValueError(f"cyclegan: the smallest batch ({smallest} images: batch_size {self.batch_size}, "
                             f"{sampler.length} images an epoch) cannot give each of {dist.world_size} processes "
                             f"an image; use a batch size that leaves every process at least one")
        if not self._resume(workdir, steps_per_epoch, dist):
            self._initialise(ctx.seed, dist.rank)
        sampler.start, sampler.stop = self.step, total
        loader = make_loader(PairedDomains(images_a, images_b), sampler, num_workers=self.num_workers,
                             device=self.device, seed=ctx.seed)
        self._wrap(dist)
        if dist.is_main:
            ctx.log(f"cyclegan: {len(images_a)} A / {len(images_b)} B images, step {self.step} of {total}"
                    + (f", {dist.world_size} processes" if dist.enabled else ""))
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.train()
        # rows are logged with the number of steps done (1 for the first): resume keeps <= step.
        # Every rank checks the (all-reduced, identical) losses at the same steps, so all stop
        # together; only rank 0 writes.
        with TrainingLog("cyclegan", workdir if dist.is_main else None, next_step=self.step + 1, lr=self.lr,
                         log_dir=ctx.log_dir if dist.is_main else None,
                         read_every=default_read_every(self.device)) as log:
            for batch_a, batch_b, flips_a, flips_b in loader:
                epoch = self.step // steps_per_epoch
                rate = self.lr * self._lr_factor(epoch)
                for group in (self.opt_g.param_groups + self.opt_d.param_groups):
                    group["lr"] = rate
                real_a = self._batch(batch_a, flips_a)
                real_b = self._batch(batch_b, flips_b)
                row, visuals = self._train_step(real_a, real_b)
                self.step += 1
                log.log(self.step, dist.mean(row), lr=rate, epoch=epoch)
                if self.sample_every and self.step % self.sample_every == 0:
                    log.flush()  # a diverged step shows no samples: its images are NaN
                    if dist.is_main:
                        visuals = [v.detach().float() for v in visuals]
                        grid = sample_grid(visuals)
                        save_sample_grid(workdir, self.step, visuals, grid=grid)
                        log.image(self.step, "samples", grid)
                if self.step == total:  # the last update is in no logged loss: check the trained weights
                    log.check_trained(self.step, dist.mean(self._evaluate(real_a, real_b)))
                if self.step % steps_per_epoch == 0 or self.step % self.checkpoint_every == 0 or self.step == total:
                    log.flush()  # checks every loss up to here before anything is saved
                    self._checkpoint(workdir, steps_per_epoch, dist)
        if dist.is_main:
            plot_losses(workdir)
        dist.barrier()  # the other ranks go on once rank 0's files are complete

    @staticmethod
    def _epoch_order(seed: int, epoch: int, length: int, n_a: int, n_b: int):
        """`style.data.epoch_order`: one epoch's A indices, B indices and flips."""
        return epoch_order(seed, epoch, length, n_a, n_b)

    def _batch(self, images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) uint8 and (B,) bool -> (B, C, S, S) float32 in [-1, 1] on the device,
        flipped where `flips` (when `flip`), channels_last when asked."""
        x = batch_from_uint8(images, self.device)  # (B, C, S, S)
        if self.flip:
            x = torch.where(flips.to(self.device, non_blocking=True).view(-1, 1, 1, 1), x.flip(-1), x)
        return to_channels_last(x, self.channels_last)

    def _train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict[str, torch.Tensor], list]:
        """One generator and one discriminator update on (B, C, S, S) batches in [-1, 1].

        Returns the loss terms as detached 0-d tensors on the device (read back by the log, not
        here, so an accelerator is not waited for every step) and the six image batches of the
        sample grid (real A, fake B, rec A, real B, fake A, rec B). Forward passes run under the
        `precision`'s autocast; under DDP the gradients are averaged over the ranks in backward.
        """
        amp = self._amp
        # generator step, discriminators frozen
        for net in (self.d_a, self.d_b):
            net.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with amp.autocast():
            terms, visuals = self._generator_loss(real_a, real_b)
        loss_g = sum(terms.values())
        amp.backward(loss_g)
        amp.step(self.opt_g)

        # discriminator step on pooled fakes, each loss halved
        _real_a, fake_b, _rec_a, _real_b, fake_a, _rec_b = visuals
        for net in (self.d_a, self.d_b):
            net.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b.detach())
        pooled_a = self.pool_a.query(fake_a.detach())
        with amp.autocast():
            loss_d_b = self._d_loss_b(real_b, pooled_b)
            loss_d_a = self._d_loss_a(real_a, pooled_a)
        amp.backward(loss_d_b)
        amp.backward(loss_d_a)
        amp.step(self.opt_d)
        amp.update()

        row = {k: v.detach() for k, v in terms.items()}
        row.update(g_total=loss_g.detach(), d_a=loss_d_a.detach(), d_b=loss_d_b.detach())
        return row, visuals

    def _evaluate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training loss terms of the current weights on (B, C, S, S) batches in [-1, 1],
        without an update, the image pools or their random draws: the generator terms and each
        discriminator's loss on this batch's fakes, as detached 0-d tensors on the device."""
        with evaluating(self.g_ab, self.g_ba, self.d_a, self.d_b), self._amp.autocast():
            terms, (_ra, fake_b, _rec_a, _rb, fake_a, _rec_b) = self._generator_loss(real_a, real_b)
            terms = dict(terms, g_total=sum(terms.values()))
            terms["d_b"] = self._d_loss_b(real_b, fake_b)
            terms["d_a"] = self._d_loss_a(real_a, fake_a)
        return {k: v.detach().float() for k, v in terms.items()}

    def _generator_terms(self, real_a: torch.Tensor, real_b: torch.Tensor
                         ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """The generator loss terms (0-d tensors with graphs) and the six sample batches; the
        forward of `_GeneratorLoss`. Discriminators are used frozen (not part of that module)."""
        # forward both cycles
        fake_b = self.g_ab(real_a)
        rec_a = self.g_ba(fake_b)
        fake_a = self.g_ba(real_b)
        rec_b = self.g_ab(fake_a)
        terms = {
            "gan_ab": _lsgan(self.d_b(fake_b), True),
            "gan_ba": _lsgan(self.d_a(fake_a), True),
            "cycle_a": F.l1_loss(rec_a, real_a) * self.lambda_a,
            "cycle_b": F.l1_loss(rec_b, real_b) * self.lambda_b,
        }
        if self.lambda_idt > 0:  # stock: G_A(B) should be B, scaled by lambda_B * lambda_idt
            terms["idt_b"] = F.l1_loss(self.g_ab(real_b), real_b) * self.lambda_b * self.lambda_idt
            terms["idt_a"] = F.l1_loss(self.g_ba(real_a), real_a) * self.lambda_a * self.lambda_idt
        cache_a, cache_b = {}, {}  # one cache per direction per batch: source features once
        # through the plugin boundary: a loss that raises or returns no scalar is named in one line
        for name, loss in zip(self.loss_names, self.losses):  # one term (and CSV column) each
            terms[f"{name}_a2b"] = loss.weight_a2b * call_loss(loss, real_a, fake_b, cache_a)
        for name, loss in zip(self.loss_names, self.losses):
            terms[f"{name}_b2a"] = loss.weight_b2a * call_loss(loss, real_b, fake_a, cache_b)
        return terms, [real_a, fake_b, rec_a, real_b, fake_a, rec_b]

    # ------------------------------------------------------------------ checkpoints
    def _config(self, steps_per_epoch: int, world_size: int = 1) -> dict:
        """What a checkpoint must match to be resumed: the architecture, the steps per epoch
        (datasets and batch size fix the batches), the optimisation settings and the annotation
        losses (the log's columns). max_steps may change: a run it stopped continues with a
        larger one; checkpoint_every, sample_every, num_workers, channels_last, compile and device
        do not change the run either. A precision other than fp32 and a process count other than
        1 are recorded (older checkpoints, without them, are fp32 single-process ones)."""
        extra = {"precision": self.precision} if self.precision != "fp32" else {}
        if world_size > 1:
            extra["world_size"] = world_size
        return {**extra, **self.arch, "image_size": self.image_size, "steps_per_epoch": steps_per_epoch,
                "batch_size": self.batch_size, "epochs": self.epochs, "epochs_decay": self.epochs_decay,
                "lr": self.lr, "beta1": self.beta1, "lambda_a": self.lambda_a, "lambda_b": self.lambda_b,
                "lambda_idt": self.lambda_idt, "pool_size": self.pool_size, "init_gain": self.init_gain,
                "flip": self.flip, "losses": list(self.loss_names)}

    def _checkpoint(self, workdir: Path, steps_per_epoch: int, dist: Distributed | None = None) -> None:
        """Save networks, optimisers, pools (every rank's, gathered on rank 0), the loss scaler
        and the step; rank 0 writes, then every rank waits until the file is complete. A
        non-finite weight or pool image on any rank raises TrainingDiverged on every rank."""
        dist = dist or Distributed()
        state = {
            "step": self.step,
            "nets": {name: getattr(self, name).state_dict() for name in ("g_ab", "g_ba", "d_a", "d_b")},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }
        if self.precision == "fp16":
            state["scaler"] = self._amp.state_dict()
        pools = {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}
        if not dist.enabled:
            state.update(pools)
        else:
            try:  # all ranks agree before the gather, so none is left waiting for a rank that stopped
                check_finite_state("cyclegan", {**state, **pools}, self.step, self.lr)
                problem = ""
            except TrainingDiverged as exc:
                problem = str(exc)
            problems = [None] * dist.world_size
            torch.distributed.all_gather_object(problems, problem)
            if any(problems):
                raise TrainingDiverged(next(p for p in problems if p))
            gathered = dist.gather(pools)
            if dist.is_main:
                state.update(gathered[0], rank_pools=gathered)
        if dist.is_main:
            save_checkpoint(workdir / CHECKPOINT, state, self._config(steps_per_epoch, dist.world_size),
                            component="cyclegan", step=self.step, lr=self.lr)
        dist.barrier()

    def _resume(self, workdir: Path, steps_per_epoch: int, dist: Distributed | None = None) -> bool:
        dist = dist or Distributed()
        state = load_checkpoint(workdir / CHECKPOINT, self._config(steps_per_epoch, dist.world_size), self.device)
        if state is None:
            return False
        self._initialise(0)  # fresh optimisers bound to the parameters, then overwritten
        for name, net_state in state["nets"].items():
            getattr(self, name).load_state_dict(net_state)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        pools = state["rank_pools"][dist.rank] if dist.enabled else state
        self.pool_a.load_state_dict(pools["pool_a"], self.device)
        self.pool_b.load_state_dict(pools["pool_b"], self.device)
        self._amp.load_state_dict(state.get("scaler", {}))
        self.step = int(state["step"])
        return True

    # ------------------------------------------------------------------ weights
    def save(self, path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
                   for name in ("g_ab", "g_ba") for k, v in getattr(self, name).state_dict().items()}
        save_file(tensors, str(path / WEIGHTS))
        (path / CONFIG).write_text(json.dumps({**self.arch, "image_size": self.image_size}, indent=2, sort_keys=True))

    def load(self, path) -> None:
        path = Path(path)
        if not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"{path / WEIGHTS}: translator weights missing (train the translator first)")
        config = json.loads((path / CONFIG).read_text())
        saved_arch = {k: config[k] for k in self.arch}
        if saved_arch != self.arch:
            raise ValueError(f"{path / CONFIG}: weights of architecture {saved_arch}, this translator is {self.arch}")
        tensors = read_weights(path / WEIGHTS, self.device)
        for name in ("g_ab", "g_ba"):
            prefix = name + "."
            getattr(self, name).load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def stylize(self, images: np.ndarray, chunk: int = 16) -> np.ndarray:
        """(B, H, W, 4) uint8 A renders -> (B, H, W, 4) uint8: RGB = g_ab's output (not masked,
        so the mask it implies can be measured), alpha = the input's alpha unchanged."""
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[-1] != 4:
            raise ValueError(f"stylize expects (B, H, W, 4) uint8 RGBA, got shape {images.shape}")
        self.g_ab.eval()
        out = images.copy()
        height, width = images.shape[1:3]
        for start in range(0, len(images), chunk):
            x = to_tensor(to_network_input(images[start:start + chunk], self.mode), self.image_size, self.device)
            y = self.g_ab(x)  # (b, C, S, S)
            if (height, width) != (self.image_size, self.image_size):
                y = torch.nn.functional.interpolate(y, size=(height, width), mode="bilinear", align_corners=False,
                                                    antialias=True)
            out[start:start + chunk, ..., :3] = to_uint8(y)[..., :3]
        return out


def _lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN: mean squared distance to 1 (real) or 0 (fake)."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


class _GeneratorLoss(nn.Module):
    """Both generators as one module (what DistributedDataParallel wraps for the generator
    step); forward(real_a, real_b) = `CycleGAN._generator_terms`. The discriminators and
    annotation losses are used but not registered: they are not trained in this step."""

    def __init__(self, owner: CycleGAN):
        super().__init__()
        self.g_ab, self.g_ba = owner.g_ab, owner.g_ba
        self._owner = (owner,)  # a tuple: not registered as a submodule

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor):
        return self._owner[0]._generator_terms(real_a, real_b)


class _DiscriminatorLoss(nn.Module):
    """One discriminator's stock loss: forward(real, fake) = (LSGAN(D(real), 1) +
    LSGAN(D(fake), 0)) / 2, a 0-d tensor; (B, C, S, S) inputs in [-1, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (_lsgan(self.net(real), True) + _lsgan(self.net(fake), False)) * 0.5
