"""The translate stage (seed report chapter 4): train the Translator between the synthetic
renders and the real crops.

    synthetic (views) + crops (views) --train_translator--> out/weights + sample/loss figures

Interfaces only (no torch, no plugin imports). By convention a translator may leave in its
workdir `samples/*.png` (sample grids), `loss_curves.png` and `losses.csv`; the stage copies
what exists.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from aist_core.context import StageContext
from aist_core.interfaces import Translator
from aist_core.stages import component, synthetic_dir


def train_translator(translator: Translator, synthetic_dir: Path, crops_dir: Path, out: Path,
                     ctx: StageContext) -> dict[str, Any]:
    """Fit (resuming from ctx.workdir), save weights to out/weights, copy figures; last losses."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    translator.fit(Path(synthetic_dir), Path(crops_dir), ctx.workdir, ctx)
    translator.save(out / "weights")
    samples = sorted((Path(ctx.workdir) / "samples").glob("*.png"))
    figures = [(samples[-1], "translator_samples.png")] if samples else []
    if (Path(ctx.workdir) / "loss_curves.png").is_file():
        figures.append((Path(ctx.workdir) / "loss_curves.png", "translator_losses.png"))
    for source, name in figures:
        shutil.copy2(source, out / name)
        if name not in ctx.figures:
            ctx.figures.append(name)
    summary = _last_losses(Path(ctx.workdir) / "losses.csv")
    if (Path(ctx.workdir) / "losses.csv").is_file():
        shutil.copy2(Path(ctx.workdir) / "losses.csv", out / "losses.csv")
    ctx.report["translator"] = summary
    return summary


def _last_losses(path: Path) -> dict[str, float]:
    """The last logged row (step, epoch and every loss term) as floats; {} without a log."""
    if not path.is_file():
        return {}
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: float(v) for k, v in rows[-1].items()} if rows else {}


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: build the node's component(s), find the input folders, do the work."""
    return train_translator(component(node), synthetic_dir(node.inputs["dataset"]), node.inputs["crops"].dir, out, ctx)
