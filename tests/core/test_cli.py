"""The command line: fast help without torch, listings, exit codes."""

import json
import subprocess
import sys

import pytest


def aist(*args, **kw):
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], capture_output=True, text=True, **kw)


def test_help_imports_no_torch():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "aist_core.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout
    imported = [line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]


def test_plugins_json_lists_every_kind():
    out = aist("plugins", "--json")
    assert out.returncode == 0
    data = json.loads(out.stdout)
    kinds = {kind for row in data["plugins"] for kind in row["components"]}
    assert {"dataset_source", "segmenter", "filter", "normalizer", "translator", "annotation_loss",
            "shape_pose_model", "metric"} <= kinds
    assert all({"distribution", "version", "components"} <= set(row) for row in data["plugins"])


def test_show_prints_parameters_and_doc():
    out = aist("show", "annotation_loss", "edge")
    assert out.returncode == 0
    assert "weight_a2b: float = 1.0" in out.stdout and "Sobel" in out.stdout


def test_show_unknown_name_is_usage_error():
    out = aist("show", "annotation_loss", "nope")
    assert out.returncode == 2 and "available:" in out.stderr


def test_version():
    out = aist("--version")
    assert out.returncode == 0 and out.stdout.startswith("aist ")


def test_missing_recipe_file_is_usage_error(tmp_path):
    out = aist("check", str(tmp_path / "nope.toml"))
    assert out.returncode == 2 and "nope.toml: cannot read recipe" in out.stderr


@pytest.mark.parametrize("args", [("run", "recipes/smoke.toml", "--out", ""), ("run", "recipes/smoke.toml", "--cache", " "),
                                  ("report", "aist-runs/none", "--out", "")])
def test_empty_out_or_cache_is_refused(tmp_path, args):
    # `--out "$DIR"` with DIR unset would otherwise write into the current folder
    out = aist(*args, cwd=tmp_path)  # refused before the recipe or the run folder is even read
    assert out.returncode == 2 and out.stderr.strip() == f"aist {args[0]}: {args[2]} is empty: name a folder (is a shell variable unset?)", out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--out", "--cache"])
def test_out_or_cache_that_is_a_file_is_refused_before_anything_is_created(tmp_path, flag):
    (tmp_path / "taken").write_text("a file")
    out = aist("run", "recipes/smoke.toml", flag, str(tmp_path / "taken"), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"aist run: {flag} {tmp_path / 'taken'}: exists and is not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_show_prints_types_defaults_ranges_docs_and_source():
    out = aist("show", "translator", "cyclegan")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "CycleGAN with annotation losses on RGBA renders" in out.stdout  # the class's own doc
    assert any(line.startswith("source: ") and "Zhu et al." in line for line in lines)
    image_size = lines.index("  image_size: int = 256  [>= 24; multiple of 4]")
    assert "training resolution" in lines[image_size + 1]
    assert "  mode: str = 'black'  [one of 'black', 'alpha']" in lines
    assert "  lr: float = 0.0002  [> 0]" in lines
    assert "  flip: bool = True" in lines  # no constraint, no brackets
    dpc = aist("show", "shape_pose_model", "dpc").stdout.splitlines()
    for name in ("keep_prob_start", "keep_prob_end"):  # "a / b: text" documents both
        row = next(i for i, line in enumerate(dpc) if line.startswith(f"  {name}: float"))
        assert "[in (0, 1]]" in dpc[row] and "keep probability" in dpc[row + 1]


def test_show_does_not_substitute_the_interfaces_doc():
    from aist_core.cli import _describe_component
    from aist_core.constraints import Fraction
    from aist_core.interfaces import Filter

    class NoDoc(Filter):
        def __init__(self, share: Fraction = 0.5, other: int = 1):
            """share: the share of something.
            other: another thing, documented
                over two lines."""

        @classmethod
        def example(cls):
            return cls()

        def check(self, image, instance):
            return None

    text = "\n".join(_describe_component(NoDoc, "filter"))
    assert "NoDoc has no documentation of its own" in text
    assert "rejection rule" not in text  # Filter's docstring, which inspect.getdoc would fall back to
    assert "  share: float = 0.5  [in [0, 1]]\n      the share of something." in text
    assert "  other: int = 1\n      another thing, documented over two lines." in text


# ---------------------------------------------------------------------------- advice after a failure
def _named(name: str, base: type = RuntimeError) -> type:
    """An exception class known by name only (as torch-side classes are to the command line)."""
    return type(name, (base,), {})


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        try:
            if cause is not None:
                raise cause
        except BaseException as inner:
            raise error from inner
        raise error
    except BaseException as exc:
        return exc


FIX = "fix the cause, then rerun: finished stages are kept"
RESUME = "rerun the same command to resume"


def test_stage_advice_tells_deterministic_failures_from_interrupted_ones():
    from aist_core.boundary import ComponentError, Origin
    from aist_core.cli import _stage_advice
    from aist_core.dataset import DatasetError, StageEmpty

    origin = Origin("translator", "x")
    cases = [
        (StageEmpty("no image left"), FIX),
        (_named("TrainingDiverged")("loss is nan"), FIX),
        (_named("CheckpointError", ValueError)("bad checkpoint"), FIX),
        (DatasetError("x.png: unreadable"), FIX),
        (ValueError("a plugin's own check"), FIX),
        (_raised(ComponentError(origin, "fit(): ValueError"), ValueError("shape")), FIX),
        (RuntimeError("a crash"), RESUME),
        (OSError(5, "Input/output error"), RESUME),
        (KeyboardInterrupt(), RESUME),
        (MemoryError(), RESUME),
        (_raised(ComponentError(origin, "fit(): OSError"), OSError(5, "Input/output error")), RESUME),
        # weights a rerun finds just as damaged or just as absent: fix, not resume
        (_raised(ComponentError(origin, "__init__(): WeightsError"), _named("WeightsError", ValueError)("x.pth: refused")), FIX),
        (_named("WeightsMissing", FileNotFoundError)("place x.pth in ~/.cache"), FIX),
    ]
    for error, advice in cases:
        assert _stage_advice(error) == advice, error


@pytest.mark.parametrize("error, advice", [
    ("StageEmpty", FIX),
    ("OSError", RESUME),
])
def test_a_stage_failure_ends_with_the_advice_that_fits(tmp_path, monkeypatch, capsys, error, advice):
    from aist_plugins.procedural.procedural import ProceduralCars

    from aist_core.cli import main
    from aist_core.dataset import StageEmpty

    recipe = tmp_path / "r.toml"
    recipe.write_text('schema = 1\n[dataset]\nuse = "procedural-cars"\nn_objects = 2\n[shape_pose]\nuse = "viewpoint-psgn"\n')

    def failing(self, *args, **kwargs):
        raise StageEmpty("every view was rejected") if error == "StageEmpty" else OSError(5, "Input/output error")

    monkeypatch.setattr(ProceduralCars, "build", failing)
    monkeypatch.setattr(sys, "argv", ["aist", "run", str(recipe), "--quiet", "--workers", "1",
                                      "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache")])
    with pytest.raises(SystemExit) as exited:
        main()
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("aist:")]
    assert exited.value.code == 1 and len(err) == 2, err
    assert err[0].startswith("aist: stage main/dataset failed: ") and error in err[0], err
    assert err[1].startswith("aist: traceback in ") and err[1].endswith("error.txt; " + advice), err


def test_os_error_line_names_the_destination_and_fits_the_command(tmp_path):
    import errno

    from aist_core.cli import _os_error_line

    full = OSError(errno.ENOSPC, "No space left on device", "cache/src.png", None, "run/figures/dst.png")
    assert _os_error_line(full) == ("aist: no space left on device (run/figures/dst.png); free some space and rerun the "
                                    "same command: finished stages are kept and the interrupted one resumes")
    assert _os_error_line(full, "report") == ("aist report: no space left on device (run/figures/dst.png); free some "
                                              "space and rerun the same command")
    assert _os_error_line(full, "export", tmp_path / "out") == (
        f"aist export: no space left on device writing {tmp_path / 'out'}; free some space and rerun the same command "
        "(the partial export was removed)")


def test_ctrl_c_during_a_run_is_one_line_with_exit_130(tmp_path):
    import signal
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "aist_core.cli", "run", str(root / "recipes" / "smoke.toml"), "--quiet",
                             "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run")],
                            stderr=subprocess.PIPE, text=True, cwd=root,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal gives it
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "cache" / "dataset").exists():
        time.sleep(0.2)
    time.sleep(1.0)  # inside the dataset stage
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ("aist: interrupted; rerun the same command to resume "
                                            "(finished stages and checkpoints are kept)"), err[-2000:]
    assert "Traceback" not in err
