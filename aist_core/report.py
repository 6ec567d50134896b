"""Run folders and the reports in them: report.json (stable keys), report.md and report.html.

report.json keys (documented in docs/report.md):
  name, recipe, aist_version, plugins
  dataset                      summary counts from the dataset stage
  curation                     found, kept, rejected {reason: n}, ks_before, ks_after,
                               mask_iou_median (where ground truth exists), crops
  baseline                     the experiment the others are compared with (null: none)
  experiments.<exp>.train_on   "synthetic" | "stylized"
  experiments.<exp>.alpha_iou  stylised vs input alpha IoU (experiments with a translator)
  experiments.<exp>.compared_with   the baseline experiment (every experiment but the baseline)
  experiments.<exp>.test_sets.<set>.{n, n_objects, <M>, <M>_ci95, ci95_missing}
                               M: precision, coverage, chamfer, pose_accuracy_30,
                               median_pose_error_deg, mask_xor_median/_q25/_q75 (table 6.2;
                               set = original, stylized-<exp>, real, diagnostic)
  experiments.<exp>.test_sets.<set>.delta_vs_baseline.<M>.{value, ci95}
  experiments.<exp>.mask_xor_median, mask_xor_q25, mask_xor_q75 (+ _ci95)   on the real crops
  reference_rows.constant_shape.{object, test_sets.<set>.{n, n_objects, <M>, <M>_ci95}}
  domain_gap.<set>.*           synthetic / stylized-<exp> / diagnostic test images vs the real crops
  stages.<label>               key, seconds, cached, folder, skipped counts, report (the
                               values its components set in ctx.report)
  figures                      [{stage, path, title}] relative to the run folder
  skipped_inputs               [{stage, reason, count, examples: [{path, reason}]}]: every
                               input a stage skipped, grouped by reason (skipped_by_reason)

The human reports print every number as "value [low, high]" (the 95% interval, objects
resampled) next to its test set's size, then a "What this run shows" section: the paired
differences on the photo-domain sets read as improved / worsened / no significant change.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import aist_core
from aist_core.context import strict_json
from aist_core.stats import excludes_zero

TABLE_KEYS = ("precision", "coverage", "chamfer", "pose_accuracy_30", "median_pose_error_deg")
TABLE_HEADERS = ("Precision", "Coverage", "Chamfer", "Accuracy@30", "Median error (deg)")
XOR_KEYS = ("mask_xor_median", "mask_xor_q25", "mask_xor_q75")
DELTA_KEYS = (*TABLE_KEYS, "mask_xor_median")
DELTA_HEADERS = (*TABLE_HEADERS, "Mask XOR median")
HIGHER_IS_BETTER = {"pose_accuracy_30"}  # every other reported key is an error or a distance
# What "What this run shows" reads, on the photo-domain sets (label, direction from above).
FINDING_KEYS = (("pose_accuracy_30", "pose accuracy@30"), ("median_pose_error_deg", "median pose error"), ("chamfer", "Chamfer"))
PHOTO_SETS = ("real", "diagnostic")


# ---------------------------------------------------------------------------- writing into a run folder
# Every file aist puts into a run folder (`--out`) goes through these: written to a new
# temporary file in the same folder, then renamed over the destination. A symbolic link planted
# at the destination is replaced, never written through, and a failed write (a full disk) leaves
# the previous file whole instead of a truncated one.
@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A new temporary file next to `path`, renamed over `path` when the block succeeds and
    removed when it fails; an OSError is re-raised naming `path`, not the temporary file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_file(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` by replacing it (see above)."""
    with _replacing(Path(path)) as tmp:
        with os.fdopen(os.open(tmp, os.O_WRONLY), "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())


def replace_json(path: Path, data: Any, strict: bool = True) -> None:
    """`data` as JSON at `path` (`replace_file`). strict: non-finite floats become null, keys
    sorted, as `aist_core.context.write_json_atomic` writes; else json.dumps(default=str)."""
    if strict:
        text = json.dumps(strict_json(data), indent=2, sort_keys=True, allow_nan=False, default=_json_default)
    else:
        text = json.dumps(data, indent=2, default=str)
    replace_file(path, text)


def copy_replacing(source: Path, target: Path) -> None:
    """Copy `source` (contents, mode and times) to `target` by replacing it (see above)."""
    with _replacing(Path(target)) as tmp:
        shutil.copyfile(source, tmp)
        shutil.copystat(source, tmp)


def own_folder(path: Path) -> Path:
    """`path` as a real folder: a symbolic link there is removed first (not followed), so that
    what is written into it lands in the run folder."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------- report.json
def build_report(pipeline, run_dir: Path, plugins: list[dict[str, Any]],
                 warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Assemble report.json from the finished nodes and copy their figures into the run.

    Only figures inside their stage folder are copied: a stage.json `figures` entry that
    resolves outside it (absolute, "..", a symbolic link leading out; a tampered cache) is
    skipped with one `warn` line (default: stderr).
    """
    warn = warn or (lambda message: print(message, file=sys.stderr))
    figures_dir = own_folder(run_dir / "figures")
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
            # values the stage's components set through ctx.report (runner.execute_node)
            "report": {k: result.get("report", {}).get(k) for k in result.get("context_keys", [])},
        }
        figures = result.get("figures", [])
        if not isinstance(figures, list):
            warn(f"{node.dir / 'stage.json'}: figures is not a list ({figures!r:.60}); no figure of this stage copied")
            figures = []
        for rel in figures:
            src = _inside(node.dir, rel)
            if src is None:
                warn(f"{node.dir / 'stage.json'}: figure {rel!r:.200} is not a file inside {node.dir}; skipped")
                continue
            if src.is_file():
                dst = figures_dir / f"{node.stage}-{node.key[:8]}-{Path(rel).name}"
                copy_replacing(src, dst)
                report["figures"].append({"stage": node.label, "path": str(dst.relative_to(run_dir)), "title": Path(rel).stem.replace("_", " ")})
        stage_report = result.get("report", {})
        if node.stage in ("dataset", "photos"):
            report["dataset"].update(stage_report)
        elif node.stage in ("segment", "filter", "normalize"):
            report["curation"].update(stage_report)
    report["skipped_inputs"] = [{"stage": node.label, **group} for node in pipeline.nodes.values()
                                for group in skipped_by_reason(node.result.get("skipped", []))]
    evaluation = pipeline.evaluate.result.get("report", {})
    report["baseline"] = evaluation.get("delta_reference")
    for exp, nodes in pipeline.per_experiment.items():
        entry: dict[str, Any] = {"train_on": pipeline.experiments[exp]["train_on"]}
        if "stylize" in nodes:
            entry["alpha_iou"] = nodes["stylize"].result.get("report", {}).get("alpha_iou")
        entry.update(experiment_entry(evaluation.get(exp, {}), exp, report["baseline"]))
        report["experiments"][exp] = entry
    report["reference_rows"] = evaluation.get("reference_rows", {})
    report["domain_gap"] = evaluation.get("domain_gap", {})
    return report


def test_set_order(name: str) -> tuple[int, str]:
    """Sort key of test sets in reports: original, the stylised sets, real, diagnostic, others."""
    rank = {"original": 0, "real": 2, "diagnostic": 3}.get(name, 1 if name.startswith("stylized-") else 4)
    return rank, name


def experiment_entry(sets: dict[str, dict[str, Any]], exp: str, baseline: str | None) -> dict[str, Any]:
    """One experiment's report keys from its evaluate results {set: entry}: test_sets (sets
    with at least one metric value), compared_with, and the real crops' mask-XOR at the top."""
    entry: dict[str, Any] = {}
    if baseline is not None and exp != baseline:
        entry["compared_with"] = baseline
    # one order whether the results come fresh or read back from a (key-sorted) stage.json
    test_sets = {s: {k: v for k, v in sets[s].items() if k != "images"} for s in sorted(sets, key=test_set_order)}
    entry["test_sets"] = {s: v for s, v in test_sets.items() if set(v) - {"n", "n_objects", "ci95_missing"}}
    real = sets.get("real", {})
    for key in XOR_KEYS:
        if real.get(key) is not None:
            entry[key] = real[key]
            entry[f"{key}_ci95"] = real.get(f"{key}_ci95")
    return entry


def write_reports(report: dict[str, Any], run_dir: Path) -> None:
    """Write report.json (strict JSON), report.md and report.html into `run_dir`, each replacing
    whatever is there (`replace_file`: a symbolic link is replaced, not followed)."""
    markdown, page = to_markdown(report), to_html(report)  # a report that cannot render writes nothing
    replace_json(run_dir / "report.json", report)
    replace_file(run_dir / "report.md", markdown)
    replace_file(run_dir / "report.html", page)


# ---------------------------------------------------------------------------- formatting
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{_fmt(float(value[0]))}, {_fmt(float(value[1]))}]"
    return "" if value is None else str(value)


def _fmt_ci(value: Any, interval: Any) -> str:
    """ "value [low, high]", or the value alone when there is no interval; "" for no value."""
    if value is None:
        return ""
    return f"{_fmt(value)} {_fmt(interval)}" if interval else _fmt(value)


def _fmt_n(values: dict[str, Any]) -> str:
    return f"{values['n']} / {values['n_objects']}" if "n" in values and "n_objects" in values else ""


def _fmt_signed(value: float, interval: Any = None) -> str:
    """A difference and its interval to 3 significant digits ("+2.1e-06 [1e-07, 3e-06]"): fixed
    decimals would print a tiny but significant difference as "+0.000"."""
    text = f"{value:+.3g}"
    return text + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "")


def _fmt_delta(key: str, delta: dict[str, Any] | None) -> str:
    """ "+0.123 [0.01, 0.2] better" with the verdict only when the interval excludes 0."""
    if not delta or delta.get("value") is None:
        return ""
    text = _fmt_signed(delta["value"], delta.get("ci95"))
    if excludes_zero(delta.get("ci95")):
        text += " better" if (delta["value"] > 0) == (key in HIGHER_IS_BETTER) else " worse"
    return text


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------- tables
def results_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table 6.2 rows: each experiment on each test set, then the reference rows."""
    rows = []
    for exp, entry in report.get("experiments", {}).items():
        for test_set, values in entry.get("test_sets", {}).items():
            rows.append([exp, test_set, _fmt_n(values), *(_fmt_ci(values.get(k), values.get(f"{k}_ci95")) for k in TABLE_KEYS)])
    for name, row in report.get("reference_rows", {}).items():
        for test_set, values in row.get("test_sets", {}).items():
            label = f"{name.replace('_', '-')} (reference)"
            rows.append([label, test_set, _fmt_n(values), *(_fmt_ci(values.get(k), values.get(f"{k}_ci95")) for k in TABLE_KEYS)])
    return rows


def delta_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows (experiment, test set, metric, paired difference to the baseline with its 95% interval)."""
    rows = []
    for exp, entry in report.get("experiments", {}).items():
        for test_set, values in entry.get("test_sets", {}).items():
            deltas = values.get("delta_vs_baseline")
            if deltas:
                vs = entry.get("compared_with", "")
                rows.append([exp, vs, test_set, _fmt_n(values), *(_fmt_delta(k, deltas.get(k)) for k in DELTA_KEYS)])
    return rows


def xor_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows of mask-XOR median and quartiles per experiment on the real crops (figure 6.5's numbers)."""
    rows = []
    for exp, e in report.get("experiments", {}).items():
        median = _fmt_ci(e.get("mask_xor_median"), e.get("mask_xor_median_ci95"))
        rows.append([exp, median, _fmt(e.get("mask_xor_q25")), _fmt(e.get("mask_xor_q75")), _fmt(e.get("alpha_iou"))])
    return rows


def domain_gap_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per set, one column per component value (a "<key>_ci95" list
    goes next to its value); the real crops' own statistics ("<key>_reference") make a last
    reference row. Reasons for missing values are in `domain_gap_notes`."""
    gaps = report.get("domain_gap", {})
    keys: list[str] = []
    for values in gaps.values():
        for key in values:
            if key not in keys and not key.endswith(("_ci95", "_missing", "_reference")) and key != "missing":
                keys.append(key)
    first = [k for k in GAP_FIRST if k in keys]
    keys = first + [k for k in keys if k not in first]
    rows = [[set_name, *(_fmt_ci(values.get(k), _gap_interval(values, k)) for k in keys)] for set_name, values in gaps.items()]
    reference = next(iter(gaps.values()), {})
    if any(f"{k}_reference" in reference for k in keys):
        rows.append(["real crops (reference)", *(_fmt(reference.get(f"{k}_reference")) for k in keys)])
    return ["Test set", *keys], rows


GAP_FIRST = ("n_images", "n_reference", "c2st_accuracy", "kid", "saturation", "hf_energy", "lab_mean_distance")


def _gap_interval(values: dict[str, Any], key: str) -> Any:
    """The interval of `key`: "<key>_ci95", or "<component>_ci95" ("c2st_ci95" for "c2st_accuracy")."""
    return values.get(f"{key}_ci95") or values.get(f"{key.rsplit('_', 1)[0]}_ci95")


def domain_gap_notes(report: dict[str, Any]) -> list[str]:
    """Each distinct reason a domain-gap value is missing, once ("kid_missing: place ...")."""
    notes: list[str] = []
    for values in report.get("domain_gap", {}).values():
        for key, value in values.items():
            note = f"{key.removesuffix('_missing') or 'value'} not computed: {value}"
            if (key.endswith("_missing") or key == "missing") and note not in notes:
                notes.append(note)
    return notes


# ---------------------------------------------------------------------------- findings
def _verdict(key: str, label: str, delta: dict[str, Any] | None) -> str:
    if not delta or delta.get("value") is None:
        return f"{label} not measured (no ground truth or no per-image values)"
    value, interval = delta["value"], delta.get("ci95")
    if not interval:
        return f"{label} {_fmt_signed(value)} (no interval: too few objects)"
    span = f"{_fmt_signed(value)}, 95% interval [{interval[0]:.3g}, {interval[1]:.3g}]"
    if not excludes_zero(interval):
        return f"{label} did not change significantly ({span} includes 0)"
    better = (value > 0) == (key in HIGHER_IS_BETTER)
    return f"{label} {'improved' if better else 'worsened'} ({span})"


def _constant_shape_context(report: dict[str, Any]) -> list[str]:
    """What one fixed training shape scores on the photo-domain sets, next to each experiment's
    Chamfer there: a model not below it has learned no more shape than one typical car."""
    rows = report.get("reference_rows", {}).get("constant_shape", {}).get("test_sets", {})
    out = []
    for set_name in PHOTO_SETS:
        reference = rows.get(set_name, {})
        if reference.get("chamfer") is None:
            continue
        models = [f"{exp} {_fmt_ci(e['test_sets'][set_name].get('chamfer'), e['test_sets'][set_name].get('chamfer_ci95'))}"
                  for exp, e in report.get("experiments", {}).items()
                  if e.get("test_sets", {}).get(set_name, {}).get("chamfer") is not None]
        chamfers = [e["test_sets"][set_name]["chamfer"] for e in report.get("experiments", {}).values()
                    if e.get("test_sets", {}).get(set_name, {}).get("chamfer") is not None]
        none_better = bool(chamfers) and min(chamfers) >= reference["chamfer"]
        out.append(f"On the {set_name} test set, predicting one fixed training car (the constant-shape reference) "
                   f"gives Chamfer {_fmt_ci(reference['chamfer'], reference.get('chamfer_ci95'))}"
                   + (f"; the experiments: {', '.join(models)}." if models else ".")
                   + (" No model beats it here: their shapes carry no more than one typical car, so Chamfer "
                      "differences between them say little." if none_better else ""))
    return out


def _gap_decomposition(report: dict[str, Any]) -> list[str]:
    """The baseline's accuracy@30 on original -> diagnostic -> real: what the photos' geometry
    costs, then what their appearance costs (the part a translator can close)."""
    reference = report.get("baseline")
    sets = report.get("experiments", {}).get(reference, {}).get("test_sets", {})
    if not all(sets.get(s, {}).get("pose_accuracy_30") is not None for s in ("original", "diagnostic", "real")):
        return []
    acc = {s: _fmt_ci(sets[s]["pose_accuracy_30"], sets[s].get("pose_accuracy_30_ci95")) for s in ("original", "diagnostic", "real")}
    return [f"Where the photo-domain gap comes from ({reference}'s accuracy@30): {acc['original']} on synthetic test renders, "
            f"{acc['diagnostic']} on the diagnostic set (the photos' cameras, framing and padding with the synthetic look), "
            f"{acc['real']} on the real crops. The first drop is geometry, the second appearance: only the second is "
            "a translator's to close."]


def findings(report: dict[str, Any]) -> list[str]:
    """"What this run shows": per non-baseline experiment and photo-domain test set, whether
    pose accuracy@30, median pose error and Chamfer changed versus the baseline (significant =
    the paired difference's 95% interval excludes 0), then the scale the evidence rests on."""
    out, scale = [], {}
    for exp, entry in report.get("experiments", {}).items():
        for set_name in PHOTO_SETS:
            values = entry.get("test_sets", {}).get(set_name)
            if not values:
                continue
            scale[set_name] = (values.get("n"), values.get("n_objects"))
            if "compared_with" not in entry:
                continue
            deltas = values.get("delta_vs_baseline", {})
            verdicts = "; ".join(_verdict(k, label, deltas.get(k)) for k, label in FINDING_KEYS)
            out.append(f"{exp} vs {entry['compared_with']} on the {set_name} test set: {verdicts}.")
    if not out:
        out.append("No experiment has a paired difference to a baseline on a photo-domain test set "
                   "(one experiment only, or no real or diagnostic test set).")
    sizes = ", ".join(f"{set_name}: {_count(n, 'test image')} of {_count(k, 'object')}" for set_name, (n, k) in scale.items())
    if sizes:
        out.append(f"Scale: {sizes}. Intervals resample objects, so a few objects give wide intervals.")
    out += _constant_shape_context(report)
    out += _gap_decomposition(report)
    out.append("The intervals cover which test objects were drawn, not the randomness of training: repeat "
               "the run with other stage seeds (benchmarks/evidence.py does) before trusting one verdict.")
    if report.get("name") == "quickstart" or Path(str(report.get("recipe", ""))).stem == "quickstart":
        out.append("This is the quickstart, a small-scale run (minutes on a laptop): treat any difference "
                   "whose interval includes 0 as no evidence either way; the paper recipes measure at scale.")
    return out


# ---------------------------------------------------------------------------- markdown / html
def sections(report: dict[str, Any]) -> list[tuple[str, list[str], tuple[list[str], list[list[str]]] | None]]:
    """The results part of both human reports: (title, paragraphs, (headers, rows) or None)."""
    baseline = report.get("baseline")
    gap_headers, gap_rows = domain_gap_table(report)
    out = [
        ("Shape and pose (seed report table 6.2)",
         ["Each cell: value [95% interval]; intervals resample test objects (all views of a drawn object), "
          "n = test images / objects. Reference rows are not experiments: they show what predicting one "
          "fixed training shape scores."],
         (["Experiment", "Test set", "n", *TABLE_HEADERS], results_rows(report))),
        (f"Differences vs the baseline{f' ({baseline})' if baseline else ''}",
         ["Experiment minus baseline on the same test images, [95% interval] from resampling the same "
          "objects for both. Higher is better for accuracy, lower for errors, distances and mask XOR; "
          "'better' / 'worse' only where the interval excludes 0."],
         (["Experiment", "vs", "Test set", "n", *DELTA_HEADERS], delta_rows(report))),
        ("What this run shows", findings(report), None),
        ("Real images: mask XOR (normalised disagreement, lower is better)",
         ["Translator alpha IoU: the stylised images' silhouettes (non-black pixels) against the renders' "
          "alpha, over every synthetic view; 1.0 means the translation kept every silhouette."],
         (["Experiment", "median [95% interval]", "q25", "q75", "translator alpha IoU"], xor_rows(report))),
    ]
    if gap_rows:
        out.append(("Domain gap (each test set's images vs the real crops)",
                    ["From the domain-gap components of [evaluate] domain_gap, on object pixels; "
                     "\"synthetic\" is the original test set. c2st_accuracy: held-out accuracy of a small CNN "
                     "telling the set from the real crops, with a Wilson 95% interval (0.5 = indistinguishable; "
                     "c2st_p_value tests it against 0.5). saturation (HSV, 0-255), hf_energy (mean absolute "
                     "Laplacian of luminance, edges excluded) and lab_* (CIE Lab means) are each set's own "
                     "statistics: closer to the \"real crops (reference)\" row is closer to the photos; "
                     "lab_mean_distance is the distance of the Lab means to the reference's.", *domain_gap_notes(report)],
                    (gap_headers, gap_rows)))
    return out


def _curation_rows(report: dict[str, Any]) -> list[list[str]]:
    curation = report.get("curation", {})
    rows = [[k, _fmt(curation[k])] for k in ("found", "kept", "crops", "ks_before", "ks_after", "mask_iou_median") if k in curation]
    rows += [[f"rejected: {r}", str(n)] for r, n in sorted(curation.get("rejected", {}).items())]
    return rows


# ---------------------------------------------------------------------------- skipped inputs
SKIPPED_EXAMPLES = 3  # example paths per (stage, reason) in report.json and the human reports


def skipped_by_reason(entries: list[dict[str, str]], examples: int = SKIPPED_EXAMPLES) -> list[dict[str, Any]]:
    """A stage's skipped inputs [{"path", "reason"}] grouped by the reason's name (its text
    before the first " (" or ":"): [{"reason", "count", "examples": the first `examples`
    entries as {"path", "reason"} (the full reason, e.g. with an image's size)}], most
    frequent first, then by name."""
    groups: dict[str, list[dict[str, str]]] = {}
    for entry in entries:
        groups.setdefault(entry["reason"].split(" (")[0].split(":")[0], []).append(entry)
    return [{"reason": reason, "count": len(items), "examples": [{"path": e["path"], "reason": e["reason"]} for e in items[:examples]]}
            for reason, items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]


SKIPPED_TITLE = "Skipped inputs"
SKIPPED_NOTE = ("Inputs a stage could not use, by reason, with the first few paths; every one is in its stage's "
                "stage.json (and a dataset's manifest). The run went on without them.")


def skipped_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per (stage, reason): stage, reason, count, example paths with their full reasons."""
    return [[g["stage"], g["reason"], str(g["count"]), "; ".join(f"{e['path']} ({e['reason']})" for e in g.get("examples", []))]
            for g in report.get("skipped_inputs") or []]


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the same sections and tables as `to_html`."""
    lines = [f"# AIST run: {report['name']}", "", f"Recipe `{report['recipe']}`, aist {report['aist_version']}.", ""]
    for title, paragraphs, table in sections(report):
        lines += [f"## {title}", ""]
        lines += [p for paragraph in paragraphs for p in (paragraph, "")]
        if table:
            lines += _md_table(*table) + [""]
    curation = _curation_rows(report)
    if curation:
        lines += ["## Curation", ""] + [f"- {k}: {v}" for k, v in curation] + [""]
    lines += [f"## {SKIPPED_TITLE}", "", SKIPPED_NOTE, ""]
    skipped = skipped_rows(report)
    lines += (_md_table(["Stage", "Reason", "Count", "Examples"], [[c.replace("|", "\\|") for c in r] for r in skipped])
              if skipped else ["No input was skipped."]) + [""]
    lines += ["## Stages", ""]
    lines += _md_table(["Stage", "seconds", "cached", "key"], [
        [label, _fmt(s.get("seconds")), str(s.get("cached")), f"`{s.get('key')}`"] for label, s in report.get("stages", {}).items()
    ])
    lines += ["", "## Figures", ""]
    lines += [f"![{f['title']}]({f['path']})" for f in report.get("figures", [])]
    return "\n".join(lines) + "\n"


def to_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (figures by relative path, values escaped)."""
    esc = html.escape

    def table(headers, rows):
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    results = "".join(
        f"<h2>{esc(title)}</h2>" + "".join(f"<p>{esc(p)}</p>" for p in paragraphs) + (table(*tab) if tab else "")
        for title, paragraphs, tab in sections(report)
    )
    stage_rows = [[label, _fmt(s.get("seconds")), str(s.get("cached")), s.get("key", "")] for label, s in report.get("stages", {}).items()]
    skipped = skipped_rows(report)
    skipped_html = (f"<h2>{esc(SKIPPED_TITLE)}</h2><p>{esc(SKIPPED_NOTE)}</p>"
                    + (table(("Stage", "Reason", "Count", "Examples"), skipped) if skipped else "<p>No input was skipped.</p>"))
    figures = "".join(
        f"<figure><img src='{esc(f['path'])}' alt='{esc(f['title'])}'><figcaption>{esc(f['stage'])}: {esc(f['title'])}</figcaption></figure>"
        for f in report.get("figures", [])
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>AIST run: {esc(report['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: .3em .7em; text-align: right; }}
td:first-child, td:nth-child(2), th {{ text-align: left; }}
figure {{ display: inline-block; margin: .5em; vertical-align: top; }} img {{ max-width: 34em; border: 1px solid #ddd; }}
</style></head><body>
<h1>AIST run: {esc(report['name'])}</h1>
<p>Recipe <code>{esc(report['recipe'])}</code>, aist {esc(report['aist_version'])}.</p>
{results}
<h2>Curation</h2>
{table(("quantity", "value"), _curation_rows(report))}
{skipped_html}
<h2>Figures</h2>
{figures}
<h2>Stages</h2>
{table(("Stage", "seconds", "cached", "key"), stage_rows)}
</body></html>
"""


# ---------------------------------------------------------------------------- several runs
def combine(run_dirs: list[Path], out_dir: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`aist report RUN...`: one page from several run folders (experiments, reference rows and
    domain-gap sets prefixed by run when there are several).

    Only files inside a run folder are copied: a figure whose path resolves outside its run (an
    absolute path, "..", a symbolic link leading out) is skipped with one `warn` line (default:
    stderr). Every file written into `out_dir` replaces what is there (`replace_file`: a
    symbolic link is replaced, never followed). Raises FileNotFoundError for a folder without
    report.json and ValueError "<path>: not an aist report (<field>: <problem>)" for a
    report.json that is not a JSON object or whose fields have the wrong types; nothing is
    written then.
    """
    warn = warn or (lambda message: print(message, file=sys.stderr))
    combined: dict[str, Any] = {"name": " + ".join(d.name for d in run_dirs), "recipe": ", ".join(str(d) for d in run_dirs),
                                "aist_version": aist_core.__version__, "experiments": {}, "curation": {}, "stages": {},
                                "figures": [], "reference_rows": {}, "domain_gap": {}}
    reports = []
    for run_dir in run_dirs:  # every report is read and checked before anything is written
        path = run_dir / "report.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {run_dir} a finished aist run folder?")
        try:
            report = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not an aist report (invalid JSON: {exc})") from None
        if not isinstance(report, dict):
            raise ValueError(f"{path}: not an aist report (expected a JSON object)")
        problem = report_problem(report)
        if problem:
            raise ValueError(f"{path}: not an aist report ({problem})")
        reports.append((run_dir, path, report))
    out_dir.mkdir(parents=True, exist_ok=True)  # the folder named by the user; its contents are ours
    for run_dir, path, report in reports:
        prefix = run_dir.name if len(run_dirs) > 1 else ""

        def named(name: str) -> str:
            return f"{prefix}/{name}" if prefix else name

        if len(run_dirs) == 1:
            combined["baseline"] = report.get("baseline")
        for exp, entry in (report.get("experiments") or {}).items():
            if "compared_with" in entry:
                entry = {**entry, "compared_with": named(entry["compared_with"])}
            combined["experiments"][named(exp)] = entry
        for key in ("reference_rows", "domain_gap"):
            for name, value in (report.get(key) or {}).items():
                combined[key][named(name)] = value
        combined["curation"] = combined["curation"] or report.get("curation") or {}
        combined["dataset"] = combined.get("dataset") or report.get("dataset") or {}
        for label, stage in (report.get("stages") or {}).items():
            combined["stages"][named(label)] = stage
        combined.setdefault("skipped_inputs", []).extend({**g, "stage": named(g["stage"])} for g in report.get("skipped_inputs") or [])
        for fig in report.get("figures") or []:
            src = _inside(run_dir, fig.get("path") if isinstance(fig, dict) else None)
            if src is None:
                warn(f"{path}: figure {fig.get('path') if isinstance(fig, dict) else fig!r} is not a file inside "
                     f"{run_dir}; skipped")
                continue
            fig = {**fig, "stage": str(fig.get("stage", "")), "title": str(fig.get("title", Path(fig["path"]).stem))}
            if Path(run_dir).resolve() == Path(out_dir).resolve():  # rebuilding a run's own report: keep its figures
                combined["figures"].append(fig)
                continue
            dst = own_folder(out_dir / "figures") / f"{run_dir.name}-{Path(fig['path']).name}"
            if src.resolve() != dst.resolve() and src.is_file():
                copy_replacing(src, dst)
            combined["figures"].append({**fig, "path": str(dst.relative_to(out_dir))})
    if len(reports) == 1:  # one run: its report as it is (name, recipe, plugins...), figures re-homed
        combined = {**combined, **reports[0][2], "figures": combined["figures"]}
    write_reports(combined, out_dir)
    return combined


def _json_kind(value: Any) -> str:
    """How a JSON value reads in a message: "a list", "a number (5)", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return "a list" if isinstance(value, list) else "an object"


def report_problem(report: dict[str, Any]) -> str | None:
    """The first field of a report.json whose type `combine` and the human reports cannot use,
    as "<field>: <what is wrong>"; None when every field they read has the right type. A
    report that passes renders: this ends with a trial rendering of its tables."""
    for key in ("experiments", "reference_rows", "domain_gap", "curation", "dataset", "stages"):
        value = report.get(key)
        if key in report and value is not None and not isinstance(value, dict):
            return f"{key}: expected an object, got {_json_kind(value)}"
    for key in ("experiments", "reference_rows", "domain_gap", "stages"):
        for name, entry in (report.get(key) or {}).items():
            if not isinstance(entry, dict):
                return f"{key}.{json.dumps(name)}: expected an object, got {_json_kind(entry)}"
            if "compared_with" in entry and not isinstance(entry["compared_with"], str):
                return f"{key}.{json.dumps(name)}.compared_with: expected a string, got {_json_kind(entry['compared_with'])}"
            sets = entry.get("test_sets")
            if key in ("experiments", "reference_rows") and sets is not None:
                if not isinstance(sets, dict):
                    return f"{key}.{json.dumps(name)}.test_sets: expected an object, got {_json_kind(sets)}"
                for set_name, values in sets.items():
                    if not isinstance(values, dict):
                        return f"{key}.{json.dumps(name)}.test_sets.{json.dumps(set_name)}: expected an object, got {_json_kind(values)}"
    if report.get("baseline") is not None and not isinstance(report["baseline"], str):
        return f"baseline: expected a string or null, got {_json_kind(report['baseline'])}"
    for key in ("figures", "skipped_inputs"):
        value = report.get(key)
        if key in report and value is not None and not isinstance(value, list):
            return f"{key}: expected a list, got {_json_kind(value)}"
    for i, group in enumerate(report.get("skipped_inputs") or []):
        if not isinstance(group, dict):
            return f"skipped_inputs[{i}]: expected an object, got {_json_kind(group)}"
        for field in ("stage", "reason"):
            if not isinstance(group.get(field), str):
                return f"skipped_inputs[{i}].{field}: expected a string, got {_json_kind(group.get(field))}"
    probe = {"name": "", "recipe": "", "aist_version": "", **report, "figures": []}
    try:
        to_markdown(probe)
        to_html(probe)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
        return f"a value of an unexpected type: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    return None


def _inside(run_dir: Path, relative: Any) -> Path | None:
    """`run_dir / relative` when it is a relative path that stays inside `run_dir` once resolved
    (symbolic links followed), else None."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        return None
    src = Path(run_dir) / relative
    try:
        src.resolve().relative_to(Path(run_dir).resolve())
    except (ValueError, OSError, RuntimeError):  # outside, or a symlink loop
        return None
    return src
