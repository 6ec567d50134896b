"""CONTRIBUTING.md cannot drift: its layout table names what exists and lists every top-level
folder and plugin area, and its walk-through (every `bash` block, with the files its code blocks
name) runs as written."""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "CONTRIBUTING.md"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
PATH_LIKE = re.compile(r"^[\w./-]+(/|\.(py|toml|md|sh|txt|json))$")


def layout_rows() -> list[tuple[str, str]]:
    """(path, description) for every row of the table under "## Layout"."""
    section = GUIDE.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1]))
    return rows


def ignored(name: str) -> bool:
    """Hidden, build output, or matched by .gitignore: not part of the layout."""
    patterns = [p.strip().strip("/") for p in (ROOT / ".gitignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    return name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in patterns)


def test_every_path_in_the_layout_table_exists():
    rows = layout_rows()
    assert len(rows) >= 8, f"found {len(rows)} rows in the layout table, expected the whole table"
    missing = []
    for path, description in rows:
        if not (ROOT / path).exists():
            missing.append(path)
        for token in re.findall(r"`([^`]+)`", description):
            if PATH_LIKE.match(token) and not (ROOT / path / token).exists():
                missing.append(f"{path}{token} (in the row of {path})")
    assert not missing, f"CONTRIBUTING.md's layout names paths that do not exist: {', '.join(missing)}"


def test_every_top_level_folder_and_plugin_area_is_listed():
    rows = layout_rows()
    listed = {path.rstrip("/") for path, _ in rows}
    folders = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not ignored(p.name))
    unlisted = [f for f in folders if f not in listed and not any(path.startswith(f + "/") for path in listed)]
    assert not unlisted, f"top-level folders missing from CONTRIBUTING.md's layout table: {unlisted}"
    examples = sorted(f"examples/{p.name}" for p in (ROOT / "examples").iterdir() if p.is_dir() and not ignored(p.name))
    assert not [e for e in examples if e not in listed], f"examples missing from CONTRIBUTING.md's layout table: {examples}"
    for package in ("plugins/aist_plugins", "aist_core"):
        row = next((d for p, d in rows if p.rstrip("/") == package), "")
        areas = sorted(p.name for p in (ROOT / package).iterdir() if (p / "__init__.py").is_file())
        absent = [a for a in areas if f"`{a}/`" not in row and f"{package}/{a}" not in listed]
        assert not absent, f"packages of {package} missing from CONTRIBUTING.md's layout table: {absent}"


# ---------------------------------------------------------------------------- the walk-through
def guide_blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(GUIDE.read_text())]


def test_shell_commands_are_only_in_bash_blocks():
    """So that "every bash block runs" covers every command the guide gives."""
    other_shells = [lang for lang, _ in guide_blocks() if lang in ("sh", "shell", "console", "zsh", "")]
    assert not other_shells, f"CONTRIBUTING.md has shell-like blocks the test does not run: {other_shells}; use ```bash"


# Stand-ins for the commands a test cannot run as written: each still runs the real tool.
STAND_INS = r'''
pip() {  # `pip install -e DIR`: pip resolves and builds DIR for real (--dry-run, offline), then
         # DIR goes on the path with a dist-info holding its entry points, as an install would.
    command pip "$@" --dry-run --no-deps --no-build-isolation --no-index --quiet
    local dir="${@: -1}"
    python - "$dir" "$SITE" <<'PY'
import sys, tomllib
from pathlib import Path
project = tomllib.loads((Path(sys.argv[1]) / "pyproject.toml").read_text())["project"]
info = Path(sys.argv[2]) / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
points = project.get("entry-points", {})
(info / "entry_points.txt").write_text("".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in points.items()))
PY
    export PYTHONPATH="$SITE:$PWD/$dir:$PYTHONPATH"
}
aist() {  # `aist run RECIPE ...`: validated with `aist check` (the smoke run itself is tests/core/test_runner.py)
    if [ "$1" = run ]; then command aist check "$2"; else command aist "$@"; fi
}
make() {  # `make TARGET`: what it would run, from the repository (the suite runs the suite)
    command make -C "$REPO" -n "$@"
}
'''


def test_the_walk_through_runs_as_written(tmp_path):
    blocks = guide_blocks()
    work = tmp_path / "work"
    shutil.copytree(ROOT / "recipes", work / "recipes")
    written = []
    for lang, body in blocks:
        first = body.splitlines()[0] if body.strip() else ""
        if lang in ("python", "toml") and re.fullmatch(r"# [\w.-]+/[\w./-]+", first):
            target = work / first[2:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body.split("\n", 1)[1])
            written.append(first[2:])
    assert "my-plugin/pyproject.toml" in written and "my-plugin/my_plugin/loss.py" in written, written
    commands = [body for lang, body in blocks if lang == "bash"]
    assert len(commands) >= 3, f"found {len(commands)} bash blocks in CONTRIBUTING.md, expected the walk-through's"
    script = "set -euo pipefail\n" + STAND_INS + "\n".join(commands)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", REPO=str(ROOT), SITE=str(tmp_path / "site"),
               OMP_NUM_THREADS="1", PYTHONPATH="", PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"a command of CONTRIBUTING.md failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "my-plugin" in out.stdout and "annotation_loss luminance  (my_plugin.loss:LuminanceLoss, from my-plugin 0.1.0)" \
        in out.stdout, out.stdout[-3000:]
    assert "my-plugin" not in out.stderr, f"discovery warned about the guide's plugin:\n{out.stderr[-2000:]}"
    assert "(undocumented)" not in out.stdout, f"aist show finds a parameter of the guide's class undocumented:\n{out.stdout[-2000:]}"
    assert re.search(r"\d+ passed", out.stdout), f"the plugin's contract tests did not run:\n{out.stdout[-2000:]}"
    assert out.stdout.count("my-recipe.toml: ok (4 experiment(s)") == 2, out.stdout[-2000:]
