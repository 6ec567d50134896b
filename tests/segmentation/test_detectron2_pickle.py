"""detectron2 checkpoints are pickles: a recipe must opt in by name before AIST loads one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aist_plugins.segmentation.detectron2 import Detectron2Segmenter

ROOT = Path(__file__).resolve().parents[2]


def _check(tmp_path: Path, segment_table: str) -> subprocess.CompletedProcess:
    text = (ROOT / "recipes" / "smoke.toml").read_text().replace('[segment]\nuse = "grabcut"', segment_table)
    assert segment_table in text, "smoke.toml's [segment] table changed; update this test"
    recipe = tmp_path / "d2.toml"
    recipe.write_text(text)
    return subprocess.run([sys.executable, "-m", "aist_core.cli", "check", str(recipe)], capture_output=True, text=True, timeout=120)


def test_pickle_weights_are_refused_by_aist_check_without_opt_in(tmp_path):
    out = _check(tmp_path, '[segment]\nuse = "detectron2"\nweights = "model_final.pkl"')
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "segment.weights" in lines[0] and "allow_pickle = true" in lines[0], out.stderr


def test_opting_in_by_name_passes_the_check(tmp_path):
    out = _check(tmp_path, '[segment]\nuse = "detectron2"\nweights = "model_final.pkl"\nallow_pickle = true')
    assert out.returncode == 0, out.stderr


def test_building_without_opt_in_is_refused_before_detectron2_is_needed():
    with pytest.raises(ValueError, match="allow_pickle"):
        Detectron2Segmenter(weights="model_final.pkl")
