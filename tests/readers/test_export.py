"""`aist export`: COCO instances (loaded back with pycocotools) and the DPC reference layout
(read back with the `dpc` reader), with provenance from the stage cache."""

import json
from pathlib import Path

import numpy as np
import pytest
from aist_plugins.procedural.procedural import ProceduralCars
from aist_plugins.readers.dpc import DPCData
from aist_plugins.style.colour_transfer import ColourTransfer
from typer.testing import CliRunner

from aist_core import camera
from aist_core.cli import app
from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, write_image
from aist_core.export import blender_extrinsic, dpc_campos, export_dataset
from aist_core.stages.stylize import stylize_dataset
from aist_core.testing.fixtures import make_views_dataset

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO

DATASET_KEY, TRANSLATE_KEY, STYLIZE_KEY = "d" * 16, "t" * 16, "s" * 16
TINY = dict(n_objects=3, views=2, image_size=32, points=300, spp=4, n_photos=2, photo_width=96, photo_height=72,
            photo_spp=4, diagnostic=False)


def _stage_json(folder: Path, stage: str, key: str, config: dict, inputs: dict) -> None:
    """What aist_core.runner.execute_node writes next to a stage's output."""
    (folder / "stage.json").write_text(json.dumps({"stage": stage, "label": f"exp/{stage}", "key": key, "config": config,
                                                   "inputs": inputs, "report": {}, "aist_version": "test"}))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A stage cache as a run leaves it: procedural dataset, colour-transfer translator, stylized set."""
    root = tmp_path_factory.mktemp("export")
    cache = root / "aist-runs" / "cache"
    dataset = cache / "dataset" / DATASET_KEY
    ProceduralCars(**TINY).build(dataset, StageContext.for_tests(root / "w0"))
    _stage_json(dataset, "dataset", DATASET_KEY, {"components": [{"use": "procedural-cars", "params": TINY}]}, {})
    crops = make_views_dataset(root / "crops", n_objects=3, views=2, size=32, seed=1, domain="crops", tint=(0.9, 0.3, 0.2))
    translator = ColourTransfer(strength=0.8)
    translator.fit(dataset / "synthetic", crops, root / "w1", StageContext.for_tests(root / "w1"))
    translate = cache / "translate" / TRANSLATE_KEY
    translate.mkdir(parents=True)
    _stage_json(translate, "translate", TRANSLATE_KEY,
                {"components": [{"use": "colour-transfer", "params": {"per_image": True, "strength": 0.8},
                                 "distribution": "aist==0"}]}, {"dataset": DATASET_KEY, "crops": "c" * 16})
    stylized = cache / "stylize" / STYLIZE_KEY
    stylize_dataset(translator, dataset / "synthetic", stylized, StageContext.for_tests(root / "w2"), batch_size=4)
    _stage_json(stylized, "stylize", STYLIZE_KEY, {"components": [], "options": {"batch_size": 4}},
                {"dataset": DATASET_KEY, "translate": TRANSLATE_KEY})
    run = root / "aist-runs" / "colour"
    run.mkdir()
    (run / "resolved.json").write_text(json.dumps({
        "recipe": "recipes/colour.toml", "name": "colour", "seed": 0,
        "experiments": {"stylized": {"train_on": "stylized", "stages": {
            "dataset": {"key": DATASET_KEY}, "translate": {"key": TRANSLATE_KEY}, "stylize": {"key": STYLIZE_KEY}}}}}))
    return {"root": root, "dataset": dataset, "stylized": stylized}


def _load(out: Path) -> dict[str, COCO]:
    return {p.stem.split("_", 1)[1]: COCO(str(p)) for p in sorted(out.glob("instances_*.json"))}


def _check_coco_against_alphas(out: Path, data: ViewsDataset) -> int:
    """Every record is one image with one annotation whose decoded mask is its alpha, exactly."""
    cocos = _load(out)
    assert set(cocos) == {r["split"] for r in data.records()}
    seen = 0
    for split, coco in cocos.items():
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car"]
        for image in coco.loadImgs(coco.getImgIds()):
            rec = next(r for r in data.records() if r["id"] == image["aist_id"])
            assert rec["split"] == split and image["file_name"] == rec["image"]
            assert (out / image["file_name"]).read_bytes() == data.path(rec["image"]).read_bytes()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            assert len(anns) == 1 and anns[0]["object"] == rec["object"]
            alpha = data.image(rec)[..., 3] > 0
            mask = coco.annToMask(anns[0]).astype(bool)
            assert np.array_equal(mask, alpha)
            assert anns[0]["area"] == alpha.sum()
            ys, xs = np.nonzero(alpha)
            assert anns[0]["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert image["camera"]["quaternion"] == pytest.approx(rec["quaternion"])
            seen += 1
    assert seen == len(data)
    return seen


def test_coco_export_of_a_procedural_stage_folder(cache, tmp_path):
    """The dataset stage folder is accepted (synthetic/ inside); masks are the alphas exactly."""
    summary = export_dataset(cache["dataset"], tmp_path / "coco", "coco")
    data = ViewsDataset(cache["dataset"] / "synthetic")
    assert _check_coco_against_alphas(tmp_path / "coco", data) == summary["images"] == 6
    info = json.loads((tmp_path / "coco" / "instances_train.json").read_text())["info"]["aist"]
    assert info["stage"]["key"] == DATASET_KEY and info["stage"]["config"]["components"][0]["use"] == "procedural-cars"
    assert info["recipes"][0]["recipe"] == "recipes/colour.toml" and info["recipes"][0]["stage"] == "dataset"
    assert "translator" not in info


def test_coco_export_of_a_stylized_set_records_the_translator(cache, tmp_path):
    export_dataset(cache["stylized"], tmp_path / "coco", "coco")
    data = ViewsDataset(cache["stylized"])
    assert data.domain == "stylized"
    _check_coco_against_alphas(tmp_path / "coco", data)
    info = json.loads((tmp_path / "coco" / "instances_test.json").read_text())["info"]["aist"]
    assert info["stage"]["key"] == STYLIZE_KEY and info["stage"]["inputs"]["translate"] == TRANSLATE_KEY
    assert info["translator"] == {"key": TRANSLATE_KEY, "use": "colour-transfer", "params": {"per_image": True, "strength": 0.8},
                                  "distribution": "aist==0"}
    assert info["recipes"][0]["stage"] == "stylize" and info["recipes"][0]["experiment"] == "stylized"


def test_coco_camera_projects_like_the_dpc_camera(cache, tmp_path):
    """K (R p + t) of the exported camera lands where camera.project_points puts the cloud."""
    export_dataset(cache["dataset"] / "synthetic", tmp_path / "coco", "coco")
    data = ViewsDataset(cache["dataset"] / "synthetic")
    for coco in _load(tmp_path / "coco").values():
        for image in coco.loadImgs(coco.getImgIds()):
            cam = image["camera"]
            cloud = data.cloud(image["object"]).astype(np.float64)
            k, r, t = (np.array(cam[key]) for key in ("K", "R", "t"))
            p = (k @ (cloud @ r.T + t).T).T
            pixels = p[:, :2] / p[:, 2:]
            expected = camera.uv_to_pixels(camera.project_points(cloud, cam["quaternion"])[:, :2], image["width"])
            np.testing.assert_allclose(pixels, expected, atol=1e-9)
            np.testing.assert_allclose(cam["position"], camera.camera_frame(cam["quaternion"])["origin"], atol=1e-12)


def test_coco_export_of_photos_has_one_annotation_per_instance(cache, tmp_path):
    data = ViewsDataset(cache["dataset"] / "photos")
    export_dataset(data.root, tmp_path / "coco", "coco")
    cocos = _load(tmp_path / "coco")
    total = 0
    for coco in cocos.values():
        for image in coco.loadImgs(coco.getImgIds()):
            rec = next(r for r in data.records() if r["id"] == image["aist_id"])
            anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=image["id"])), key=lambda a: a["id"])
            assert image["camera"]["convention"] == "pinhole"
            visible = [i for i in rec["instances"] if (data.image({"image": i["mask"]}, "L") > 127).any()]
            assert len(anns) == len(visible)
            for ann, inst in zip(anns, visible):
                assert ann["object"] == inst["object"] and ann["quaternion"] == inst["quaternion"]
                assert np.array_equal(coco.annToMask(ann).astype(bool), data.image({"image": inst["mask"]}, "L") > 127)
            total += len(anns)
    assert total > 0


def test_dpc_export_reads_back_with_the_dpc_reader(cache, tmp_path):
    """Stylized set -> DPC layout -> `dpc` reader: the same poses (1e-6), clouds, images and splits."""
    out = tmp_path / "dpc"
    summary = export_dataset(cache["stylized"], out, "dpc")
    original = ViewsDataset(cache["stylized"])
    assert summary["models"] == 3 and summary["images"] == 6 and summary["skipped"] == []
    DPCData(root=str(out), views=2).build(tmp_path / "read", StageContext.for_tests(tmp_path / "w"))
    read = ViewsDataset(tmp_path / "read" / "synthetic")
    assert len(read) == len(original)
    for rec in original.records():
        again = next(r for r in read.records() if r["id"] == f"{rec['object']}/{rec['view']}")
        q, q2 = np.array(rec["quaternion"]), np.array(again["quaternion"])
        assert min(np.abs(q - q2).max(), np.abs(q + q2).max()) < 1e-6
        assert again["split"] == rec["split"]
        assert np.array_equal(read.image(again), original.image(rec))
        assert np.array_equal(read.cloud(again["object"]), original.cloud(rec["object"]))
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["stage"]["key"] == STYLIZE_KEY and prov["translator"]["use"] == "colour-transfer"
    assert prov["recipes"][0]["name"] == "colour" and prov["poses_with_roll"] == [] and prov["views_per_model"] == {"min": 2, "max": 2}


def _camera_from_blender(their):
    """dpc/util/camera.py camera_from_blender (eldar/differentiable-point-clouds), as published."""
    our = np.zeros((4, 4))
    our[0, 0], our[0, 1], our[0, 2] = -their[2, 0], their[2, 2], their[2, 1]
    our[1, 0], our[1, 1], our[1, 2] = their[1, 0], -their[1, 2], -their[1, 1]
    our[2, 0], our[2, 1], our[2, 2] = -their[0, 0], their[0, 2], their[0, 1]
    our[0, 3], our[1, 3], our[2, 3] = their[2, 3], their[1, 3], their[0, 3]
    our[3, 3] = their[3, 3]
    return our


def _dpc_matrix_projection(points, extrinsic, focal=camera.FOCAL_LENGTH):
    """DPC pc_perspective_transform, matrix branch: intrinsic diag(1, f, f, 1) @ extrinsic."""
    full = np.diag([1.0, focal, focal, 1.0]) @ _camera_from_blender(extrinsic)
    pc2 = np.c_[points, np.ones(len(points))] @ full.T
    return np.stack([pc2[:, 2] / pc2[:, 0], pc2[:, 1] / pc2[:, 0]], axis=-1)


def test_dpc_extrinsic_and_pos_agree_with_dpcs_own_conventions():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, size=(50, 3))
    for _ in range(20):
        q = camera.quat_from_azel(rng.uniform(0, 360), rng.uniform(-30, 60))
        uv = camera.project_points(points, q)[:, :2]
        np.testing.assert_allclose(_dpc_matrix_projection(points, blender_extrinsic(q)), uv, atol=1e-12)
        assert camera.pose_error_deg(q, camera.quat_from_campos(dpc_campos(q))) < 1e-6
        assert np.linalg.norm(dpc_campos(q)) == pytest.approx(camera.CAMERA_DISTANCE)


def _load_drc_split(text):
    """dpc/run/create_tf_records.py load_drc_split, as published (reading a string)."""
    lines = text.splitlines()
    k, split = 3, {}
    while k < len(lines):
        _, _, name, _, _, num = lines[k:k + 6]
        k += 6
        models = []
        for _ in range(int(num)):
            models.append(lines[k + 4])
            k += 5
        split[name] = models
    return split


def test_drc_split_file_reads_with_dpcs_loader(cache, tmp_path):
    export_dataset(cache["dataset"], tmp_path / "dpc", "dpc")
    splits = _load_drc_split((tmp_path / "dpc" / "splits" / "02958343.file").read_text())
    for name in ("train", "val", "test"):
        listed = (tmp_path / "dpc" / "splits" / f"02958343_{name}.txt").read_text().split()
        assert splits[name] == listed
    assert sorted(m for models in splits.values() for m in models) == sorted(p.name for p in (tmp_path / "dpc" / "renders" / "02958343").iterdir())


def test_rolled_pose_keeps_roll_in_extrinsic_and_is_listed(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=1, views=2, size=16, points=200)
    lines = [json.loads(line) for line in (root / "views.jsonl").read_text().splitlines()]
    roll = camera.quat_from_axis_angle([1.0, 0.0, 0.0], np.radians(20.0))
    lines[0]["quaternion"] = camera.quat_mul(roll, np.array(lines[0]["quaternion"])).tolist()
    (root / "views.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    summary = export_dataset(root, tmp_path / "dpc", "dpc")
    assert summary["provenance"]["poses_with_roll"] == [lines[0]["id"]]
    from scipy.io import loadmat

    cam = loadmat(tmp_path / "dpc" / "renders" / "02958343" / "obj000" / "camera_0.mat")
    points = np.random.default_rng(1).uniform(-0.5, 0.5, size=(20, 3))
    np.testing.assert_allclose(_dpc_matrix_projection(points, cam["extrinsic"]),
                               camera.project_points(points, lines[0]["quaternion"])[:, :2], atol=1e-12)


def test_bad_records_are_skipped_with_their_reason(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=2, views=2, size=16, points=200)
    write_image(root / "images" / "obj000_0.png", np.zeros((16, 16, 4), np.uint8))     # empty alpha
    (root / "images" / "obj001_1.png").write_bytes(b"not a png")                         # unreadable
    coco = export_dataset(root, tmp_path / "coco", "coco")
    reasons = {Path(s["path"]).name: s["reason"] for s in coco["skipped"]}
    assert reasons["obj000_0.png"].startswith("empty mask") and reasons["obj001_1.png"].startswith("unreadable image")
    assert coco["annotations"] == 2 and coco["images"] == 3  # the empty view stays, without annotation
    dpc = export_dataset(root, tmp_path / "dpc", "dpc")
    assert {Path(s["path"]).name for s in dpc["skipped"]} == {"obj000_0.png", "obj001_1.png"} and dpc["images"] == 2
    assert json.loads((tmp_path / "dpc" / "provenance.json").read_text())["skipped"] == dpc["skipped"]


def test_unreadable_clouds_are_skipped_and_the_views_still_exported(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=3, views=2, size=16, points=200)
    np.save(root / "clouds" / "obj000.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle
    (root / "clouds" / "obj001.npy").write_bytes(b"")                                               # empty
    result = CliRunner().invoke(app, ["export", str(root), str(tmp_path / "dpc"), "--format", "dpc"])
    assert result.exit_code == 0 and "done: 6 images, 3 models, 2 skipped" in result.output, result.output
    provenance = json.loads((tmp_path / "dpc" / "provenance.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in provenance["skipped"]}
    assert reasons["obj000.npy"].startswith("unreadable ground-truth cloud (Object arrays cannot be loaded")
    assert reasons["obj001.npy"] == "unreadable ground-truth cloud (empty or truncated file)"
    assert sorted(provenance["models_without_cloud"]) == ["obj000", "obj001"]
    assert [p.name for p in (tmp_path / "dpc" / "gt" / "downsampled").rglob("*.mat")] == ["obj002.mat"]


# ---------------------------------------------------------------------------- command line
def test_cli_exports_and_refuses_bad_input_with_one_line(cache, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["export", str(cache["stylized"]), str(tmp_path / "out"), "--format", "dpc"])
    assert ok.exit_code == 0 and "done: 6 images, 3 models, 0 skipped" in ok.output
    cases = {
        "not a views dataset": [str(tmp_path), str(tmp_path / "o1"), "--format", "coco"],
        "unknown format 'voc'": [str(cache["stylized"]), str(tmp_path / "o2"), "--format", "voc"],
        "output folder is not empty": [str(cache["stylized"]), str(tmp_path / "out"), "--format", "coco"],
    }
    for expected, args in cases.items():
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2, expected
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("aist export: ")


def test_link_hard_links_instead_of_copying(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=1, views=2, size=16, points=200)
    export_dataset(root, tmp_path / "copied", "coco")
    export_dataset(root, tmp_path / "linked", "coco", link=True)
    source = root / "images" / "obj000_0.png"
    assert (tmp_path / "copied" / "images" / "obj000_0.png").stat().st_ino != source.stat().st_ino
    assert (tmp_path / "linked" / "images" / "obj000_0.png").stat().st_ino == source.stat().st_ino
    export_dataset(root, tmp_path / "dpc", "dpc", link=True)
    assert (tmp_path / "dpc" / "renders" / "02958343" / "obj000" / "render_0.png").stat().st_ino == source.stat().st_ino


# ---------------------------------------------------------------------------- nothing outside OUT
def _tamper(root: Path, index: int, **fields) -> dict:
    """Rewrite record `index` of views.jsonl with `fields`; returns the new record."""
    lines = [json.loads(line) for line in (root / "views.jsonl").read_text().splitlines()]
    lines[index].update(fields)
    (root / "views.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return lines[index]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("fmt, field, value", [
    ("coco", "image", "../../../escaped.png"),
    ("dpc", "image", "../../../escaped.png"),
    ("coco", "image", "/tmp/aist-export-escaped.png"),
    ("dpc", "object", "../../../../escaped"),
    ("dpc", "object", "a/../../../escaped"),
])
def test_records_that_would_write_outside_out_are_skipped_with_a_reason(tmp_path, fmt, field, value):
    root = make_views_dataset(tmp_path / "deep" / "er" / "views", n_objects=2, views=2, size=16, points=200)
    if field == "image":  # the file exists where the record points, so only the check stops it
        target = (root / value) if not Path(value).is_absolute() else Path(value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((root / "images" / "obj000_0.png").read_bytes())
    _tamper(root, 0, **{field: value})
    before = _files(tmp_path)
    out = tmp_path / "deep" / "er" / "out"
    summary = export_dataset(root, out, fmt)
    assert [s["reason"] for s in summary["skipped"]] == [
        f"file path {value!r} leaves the dataset folder (absolute or '..')" if field == "image" else
        f"object id {value!r} is not a plain name (letters, digits, '_', '.', '-', not starting with '.' or '-', "
        "no '..'): it would name a folder under OUT"]
    assert summary["images"] == 3 and summary["out"] == str(out)
    assert [f for f in _files(tmp_path) if f not in before and not f.startswith("deep/er/out")] == []
    Path("/tmp/aist-export-escaped.png").unlink(missing_ok=True)


def test_synth_id_that_is_not_a_plain_name_is_refused_in_one_line(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=1, views=2, size=16, points=200)
    for synth_id in ("../../x", "/tmp/x", "a/b", ".hidden", ""):
        result = CliRunner().invoke(app, ["export", str(root), str(tmp_path / "out"), "--format", "dpc", "--synth-id", synth_id])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and lines == [
            f"aist export: --synth-id {synth_id!r}: not a plain name (letters, digits, '_', '.', '-', not starting "
            "with '.' or '-', no '..'); it becomes a folder name under OUT"], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views"]


def test_a_failed_export_leaves_out_absent_and_the_rerun_works(tmp_path, monkeypatch):
    """A full disk mid-export: OUT stays as it was (no partial files, no temporary folder), the
    message names OUT, and the same command then succeeds."""
    import errno

    from aist_core import export

    root = make_views_dataset(tmp_path / "views", n_objects=2, views=2, size=16, points=200)
    (tmp_path / "out").mkdir()  # an empty OUT is accepted, and must stay usable
    calls = {"n": 0}
    real_place = export._place

    def full_disk(source, target, link=False):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(source), None, str(target))
        real_place(source, target, link)

    monkeypatch.setattr(export, "_place", full_disk)
    runner = CliRunner()
    failed = runner.invoke(app, ["export", str(root), str(tmp_path / "out"), "--format", "coco"])
    lines = [line for line in failed.output.splitlines() if line.strip()]
    assert failed.exit_code == 1 and lines == [
        f"aist export: no space left on device writing {tmp_path / 'out'}; free some space and rerun the same "
        "command (the partial export was removed)"], failed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "views"] and not any((tmp_path / "out").iterdir())
    monkeypatch.setattr(export, "_place", real_place)
    ok = runner.invoke(app, ["export", str(root), str(tmp_path / "out"), "--format", "coco"])
    assert ok.exit_code == 0 and "done: 4 images" in ok.output, ok.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "views"]


def test_out_that_is_a_symbolic_link_is_refused(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=1, views=2, size=16, points=200)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    result = CliRunner().invoke(app, ["export", str(root), str(tmp_path / "out"), "--format", "coco"])
    assert result.exit_code == 2 and result.output.splitlines() == [
        f"aist export: {tmp_path / 'out'}: is a symbolic link; export into a new or empty folder"], result.output
    assert list((tmp_path / "elsewhere").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out", "views"]


# ---------------------------------------------------------------------------- red-team cases
@pytest.mark.parametrize("fmt", ["coco", "dpc"])
def test_records_missing_a_required_field_or_repeating_an_id_are_skipped(tmp_path, fmt):
    # a record without id or split stopped the export with a KeyError traceback; a repeated id
    # gave the same image twice (19 COCO images from 18 views)
    root = make_views_dataset(tmp_path / "views", n_objects=2, views=2, size=16, points=200)
    records = [json.loads(line) for line in (root / "views.jsonl").read_text().splitlines()]
    del records[0]["id"]
    del records[1]["split"]
    records[2]["split"] = "../x"
    records.append(dict(records[3]))  # the same id as the last record
    (root / "views.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = export_dataset(root, tmp_path / "out", fmt)
    assert summary["skipped"] == [
        {"path": f"{root}#record=1", "reason": "bad record (no 'id')"},
        {"path": f"{root}#id={records[1]['id']}", "reason": "bad record (no 'split')"},
        {"path": f"{root}#id={records[2]['id']}", "reason": "bad record (split '../x' is not train, val or test)"},
        {"path": f"{root}#id={records[3]['id']}", "reason": "duplicate record id (an earlier record has it; that one is exported)"},
    ]
    assert summary["images"] == 1
    if fmt == "coco":
        (name,) = summary["files"]
        images = json.loads((tmp_path / "out" / name).read_text())["images"]
        assert [i["aist_id"] for i in images] == [records[3]["id"]]


@pytest.mark.parametrize("fmt, link", [("coco", False), ("coco", True), ("dpc", False), ("dpc", True)])
def test_an_image_linked_to_a_file_outside_the_dataset_is_refused(tmp_path, fmt, link):
    # a symbolic link images/x.png -> /outside/secret.png was copied into OUT (or, with --link,
    # placed there as a symbolic link)
    root = make_views_dataset(tmp_path / "views", n_objects=1, views=2, size=16, points=200)
    outside = tmp_path / "secret.png"
    (root / "images" / "obj000_0.png").rename(outside)
    (root / "images" / "obj000_0.png").symlink_to(outside)
    inside = root / "images" / "obj000_1.png"
    (root / "images" / "alias.png").symlink_to(inside)  # a link within the dataset is fine
    _tamper(root, 1, image="images/alias.png")
    summary = export_dataset(root, tmp_path / "out", fmt, link=link)
    assert summary["skipped"] == [{"path": str(root / "images" / "obj000_0.png"),
                                   "reason": f"image leaves the dataset folder (resolves to {outside})"}]
    assert summary["images"] == 1
    placed = [p for p in (tmp_path / "out").rglob("*.png")]
    assert len(placed) == 1 and not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))
    assert placed[0].read_bytes() == inside.read_bytes()
    if link:
        assert placed[0].stat().st_ino == inside.stat().st_ino
