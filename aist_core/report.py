"""Run folders and the reports in them: report.json (stable keys), report.md and report.html.

report.json keys (documented in docs/report.md):
  name, recipe, aist_version, plugins
  dataset                      summary counts from the dataset stage
  curation                     found, kept, rejected {reason: n}, ks_before, ks_after,
                               mask_iou_median (where ground truth exists), crops
  experiments.<exp>.train_on   "synthetic" | "stylized"
  experiments.<exp>.alpha_iou  stylised vs input alpha IoU (experiments with a translator)
  experiments.<exp>.test_sets.<set>.{precision, coverage, chamfer, pose_accuracy_30,
                               median_pose_error_deg}      (table 6.2; set = original,
                               stylized-<exp>, real where ground truth exists)
  experiments.<exp>.mask_xor_median, mask_xor_q25, mask_xor_q75   on the real test crops
  stages.<label>               key, seconds, cached, folder, skipped counts
  figures                      [{stage, path, title}] relative to the run folder
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import aist_core
from aist_core.context import write_json_atomic

TABLE_KEYS = ("precision", "coverage", "chamfer", "pose_accuracy_30", "median_pose_error_deg")
TABLE_HEADERS = ("Precision", "Coverage", "Chamfer", "Accuracy@30", "Median error (deg)")
XOR_KEYS = ("mask_xor_median", "mask_xor_q25", "mask_xor_q75")


def build_report(pipeline, run_dir: Path, plugins: list[dict[str, Any]]) -> dict[str, Any]:
    """Assemble report.json from the finished nodes and copy their figures into the run."""
    figures_dir = run_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "name": pipeline.recipe.name,
        "recipe": str(pipeline.recipe.path),
        "aist_version": aist_core.__version__,
        "plugins": plugins,
        "dataset": {},
        "curation": {},
        "experiments": {},
        "stages": {},
        "figures": [],
    }
    for node in pipeline.nodes.values():
        result = node.result
        report["stages"][node.label] = {
            "stage": node.stage,
            "key": node.key,
            "seconds": result.get("seconds"),
            "cached": result.get("cached", False),
            "folder": str(node.dir),
            "skipped": result.get("skipped_counts", {}),
        }
        for rel in result.get("figures", []):
            src = node.dir / rel
            if src.is_file():
                dst = figures_dir / f"{node.stage}-{node.key[:8]}-{Path(rel).name}"
                shutil.copy2(src, dst)
                report["figures"].append({"stage": node.label, "path": str(dst.relative_to(run_dir)), "title": Path(rel).stem.replace("_", " ")})
        stage_report = result.get("report", {})
        if node.stage in ("dataset", "photos"):
            report["dataset"].update(stage_report)
        elif node.stage in ("segment", "filter", "normalize"):
            report["curation"].update(stage_report)
    evaluation = pipeline.evaluate.result.get("report", {})
    for exp, nodes in pipeline.per_experiment.items():
        entry: dict[str, Any] = {"train_on": pipeline.experiments[exp]["train_on"]}
        if "stylize" in nodes:
            entry["alpha_iou"] = nodes["stylize"].result.get("report", {}).get("alpha_iou")
        sets = evaluation.get(exp, {})
        entry["test_sets"] = {s: {k: v for k, v in values.items() if k in TABLE_KEYS} for s, values in sets.items()}
        entry["test_sets"] = {s: v for s, v in entry["test_sets"].items() if v}
        for key in XOR_KEYS:
            value = sets.get("real", {}).get(key)
            if value is not None:
                entry[key] = value
        report["experiments"][exp] = entry
    return report


def write_reports(report: dict[str, Any], run_dir: Path) -> None:
    write_json_atomic(run_dir / "report.json", report)
    (run_dir / "report.md").write_text(to_markdown(report))
    (run_dir / "report.html").write_text(to_html(report))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def results_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for exp, entry in report.get("experiments", {}).items():
        for test_set, values in entry.get("test_sets", {}).items():
            rows.append([exp, test_set, *(_fmt(values.get(k)) for k in TABLE_KEYS)])
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# AIST run: {report['name']}", "", f"Recipe `{report['recipe']}`, aist {report['aist_version']}.", ""]
    lines += ["## Shape and pose (seed report table 6.2)", ""]
    lines += ["| Experiment | Test set | " + " | ".join(TABLE_HEADERS) + " |", "|" + "---|" * (2 + len(TABLE_KEYS))]
    lines += ["| " + " | ".join(row) + " |" for row in results_rows(report)]
    lines += ["", "## Real images: mask XOR (normalised disagreement, lower is better)", ""]
    lines += ["| Experiment | median | q25 | q75 | translator alpha IoU |", "|---|---|---|---|---|"]
    for exp, entry in report.get("experiments", {}).items():
        lines.append(f"| {exp} | " + " | ".join(_fmt(entry.get(k)) for k in (*XOR_KEYS, "alpha_iou")) + " |")
    curation = report.get("curation", {})
    if curation:
        lines += ["", "## Curation", ""]
        for key in ("found", "kept", "crops", "ks_before", "ks_after", "mask_iou_median"):
            if key in curation:
                lines.append(f"- {key}: {_fmt(curation[key])}")
        for reason, count in sorted(curation.get("rejected", {}).items()):
            lines.append(f"- rejected ({reason}): {count}")
    lines += ["", "## Stages", "", "| Stage | seconds | cached | key |", "|---|---|---|---|"]
    for label, stage in report.get("stages", {}).items():
        lines.append(f"| {label} | {_fmt(stage.get('seconds'))} | {stage.get('cached')} | `{stage.get('key')}` |")
    lines += ["", "## Figures", ""]
    lines += [f"![{f['title']}]({f['path']})" for f in report.get("figures", [])]
    return "\n".join(lines) + "\n"


def to_html(report: dict[str, Any]) -> str:
    esc = html.escape

    def table(headers, rows):
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    xor_rows = [[exp, *(_fmt(e.get(k)) for k in (*XOR_KEYS, "alpha_iou"))] for exp, e in report.get("experiments", {}).items()]
    curation = report.get("curation", {})
    cur_rows = [[k, _fmt(curation[k])] for k in ("found", "kept", "crops", "ks_before", "ks_after", "mask_iou_median") if k in curation]
    cur_rows += [[f"rejected: {r}", str(n)] for r, n in sorted(curation.get("rejected", {}).items())]
    stage_rows = [[label, _fmt(s.get("seconds")), str(s.get("cached")), s.get("key", "")] for label, s in report.get("stages", {}).items()]
    figures = "".join(
        f"<figure><img src='{esc(f['path'])}' alt='{esc(f['title'])}'><figcaption>{esc(f['stage'])}: {esc(f['title'])}</figcaption></figure>"
        for f in report.get("figures", [])
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>AIST run: {esc(report['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: .3em .7em; text-align: right; }}
td:first-child, td:nth-child(2), th {{ text-align: left; }}
figure {{ display: inline-block; margin: .5em; vertical-align: top; }} img {{ max-width: 34em; border: 1px solid #ddd; }}
</style></head><body>
<h1>AIST run: {esc(report['name'])}</h1>
<p>Recipe <code>{esc(report['recipe'])}</code>, aist {esc(report['aist_version'])}.</p>
<h2>Shape and pose (seed report table 6.2)</h2>
{table(("Experiment", "Test set", *TABLE_HEADERS), results_rows(report))}
<h2>Real images: mask XOR</h2>
{table(("Experiment", "median", "q25", "q75", "translator alpha IoU"), xor_rows)}
<h2>Curation</h2>
{table(("quantity", "value"), cur_rows)}
<h2>Figures</h2>
{figures}
<h2>Stages</h2>
{table(("Stage", "seconds", "cached", "key"), stage_rows)}
</body></html>
"""


def combine(run_dirs: list[Path], out_dir: Path) -> dict[str, Any]:
    """`aist report RUN...`: one page from several run folders (experiments prefixed by run)."""
    combined: dict[str, Any] = {"name": " + ".join(d.name for d in run_dirs), "recipe": ", ".join(str(d) for d in run_dirs),
                                "aist_version": aist_core.__version__, "experiments": {}, "curation": {}, "stages": {}, "figures": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    for run_dir in run_dirs:
        path = run_dir / "report.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {run_dir} a finished aist run folder?")
        report = json.loads(path.read_text())
        prefix = run_dir.name if len(run_dirs) > 1 else ""
        for exp, entry in report.get("experiments", {}).items():
            combined["experiments"][f"{prefix}/{exp}" if prefix else exp] = entry
        combined["curation"] = combined["curation"] or report.get("curation", {})
        for label, stage in report.get("stages", {}).items():
            combined["stages"][f"{prefix}/{label}" if prefix else label] = stage
        for fig in report.get("figures", []):
            src = run_dir / fig["path"]
            dst = out_dir / "figures" / f"{run_dir.name}-{Path(fig['path']).name}"
            if src.resolve() != dst.resolve() and src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
            combined["figures"].append({**fig, "path": str(dst.relative_to(out_dir))})
    write_reports(combined, out_dir)
    return combined
