"""COCO in: the `coco-photos` reader and the `coco-annotations` segmenter drive the curation
(segment -> filter -> normalize) from annotations; every malformed kind is skipped with its reason."""

import json

import numpy as np
import pytest

from aist_core.coco import read_coco, rle_decode, rle_encode
from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, read_image, write_image
from aist_core.stages.filter import filter_instances
from aist_core.stages.normalize import normalize_crops
from aist_core.stages.segment import SEGMENTATIONS, segment_photos
from aist_core.testing.fixtures import make_photo, make_views_dataset
from aist_plugins.readers.coco_photos import CocoPhotos
from aist_plugins.segmentation import filters as F
from aist_plugins.segmentation.coco_annotations import CocoAnnotationsSegmenter
from aist_plugins.segmentation.normalizer import AistNormalizer

mask_utils = pytest.importorskip("pycocotools.mask")

H, W = 96, 128
CAR, PERSON = 3, 1


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _uncompressed(mask):
    """COCO uncompressed RLE: counts as a list, column-major, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + counts}


@pytest.fixture
def annotated(tmp_path):
    """Six photos and a COCO file with good annotations of each kind and one of every malformed kind."""
    rng = np.random.default_rng(5)
    root = tmp_path / "coco"
    images, anns, truth = [], [], {}

    def ann(image_id, category, segmentation, bbox, **extra):
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category, "segmentation": segmentation,
                     "bbox": bbox, "iscrowd": 0, **extra})
        return anns[-1]["id"]

    for i in range(1, 7):
        photo, mask, _ = make_photo(rng, H, W)
        write_image(root / "images" / f"p{i}.png", photo)
        images.append({"id": i, "file_name": f"p{i}.png", "width": W, "height": H})
        truth[i] = mask
    # 1: compressed RLE car + a person (kept only when asked for)
    ann(1, CAR, rle_encode(truth[1]), _bbox(truth[1]))
    person = np.zeros((H, W), bool)
    person[5:30, 5:15] = True
    ann(1, PERSON, rle_encode(person), _bbox(person))
    # 2: a polygon car (rasterised as pycocotools does)
    polygon = [[20.0, 20.0, 100.0, 24.0, 104.0, 70.0, 24.0, 66.0]]
    truth[2] = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, H, W))).astype(bool)
    ann(2, CAR, polygon, _bbox(truth[2]))
    # 3: uncompressed RLE car
    ann(3, CAR, _uncompressed(truth[3]), _bbox(truth[3]))
    # 4: one good car, then one annotation of every malformed kind
    ann(4, CAR, rle_encode(truth[4]), _bbox(truth[4]))
    bad = {
        "bad RLE": ann(4, CAR, {"size": [H, W], "counts": "garbage~~"}, [0, 0, 10, 10]),
        "mask size differs from the photo": ann(4, CAR, rle_encode(np.ones((50, 50), bool)), [0, 0, 10, 10]),
        "box outside the image": ann(4, CAR, rle_encode(truth[4]), [100.0, 10.0, 60.0, 30.0]),
        "unknown image id": ann(999, CAR, rle_encode(truth[4]), _bbox(truth[4])),
        "unknown category id": ann(4, 42, rle_encode(truth[4]), _bbox(truth[4])),
        "bad polygon": ann(4, CAR, [[1.0, 2.0, 3.0]], [0, 0, 10, 10]),
        "crowd annotation": ann(4, CAR, rle_encode(truth[4]), _bbox(truth[4]), iscrowd=1),
        "empty mask": ann(4, CAR, rle_encode(np.zeros((H, W), bool)), [0, 0, 10, 10]),
        "no segmentation": ann(4, CAR, None, [0, 0, 10, 10]),
    }
    # 5: an unreadable photo; 6: a photo whose size disagrees with the file
    (root / "images" / "p5.png").write_bytes(b"not a png at all")
    ann(5, CAR, rle_encode(truth[5]), _bbox(truth[5]))
    images[5]["width"] = 100
    ann(6, CAR, rle_encode(truth[6]), _bbox(truth[6]))
    categories = [{"id": CAR, "name": "car"}, {"id": PERSON, "name": "person"}]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return {"root": root, "truth": truth, "bad": bad, "person": person}


def _read(annotated, tmp_path, **params):
    ctx = StageContext.for_tests(tmp_path / "work")
    reader = CocoPhotos(annotations=annotated["root"] / "annotations.json", images=annotated["root"] / "images", **params)
    summary = reader.build(tmp_path / "data", ctx)
    return summary, ctx, ViewsDataset(tmp_path / "data" / "photos")


def test_every_malformed_kind_is_skipped_with_its_reason(annotated, tmp_path):
    summary, ctx, photos = _read(annotated, tmp_path)
    reasons = {e["path"]: e["reason"] for e in ctx.skipped.entries}
    file = annotated["root"] / "annotations.json"
    for reason, ann_id in annotated["bad"].items():
        assert reasons[f"{file}#annotation={ann_id}"].startswith(reason), (reason, reasons.get(f"{file}#annotation={ann_id}"))
    assert reasons[str(annotated["root"] / "images" / "p5.png")].startswith("unreadable image")
    assert reasons[str(annotated["root"] / "images" / "p6.png")].startswith("photo size differs from the annotations file")
    assert len(ctx.skipped.entries) == len(annotated["bad"]) + 2
    assert summary["photos"]["images"] == 4 and summary["instances"] == 4
    assert {r["id"] for r in photos.records()} == {"p1", "p2", "p3", "p4"}
    for rec in photos.records():
        (inst,) = rec["instances"]
        truth = annotated["truth"][int(rec["id"][1:])]
        assert inst["label"] == "car" and rec["boxes"] == [inst["box"]]
        assert np.array_equal(read_image(photos.path(inst["mask"]), "L") > 127, truth)
    assert len(photos.meta["skipped"]) == len(ctx.skipped.entries)


def test_annotations_drive_the_curation_without_a_model(annotated, tmp_path):
    _, _, photos = _read(annotated, tmp_path)
    synthetic = make_views_dataset(tmp_path / "synthetic", n_objects=6, views=2, size=32)
    ctx = StageContext.for_tests(tmp_path / "curate")
    segment_photos(photos.root, CocoAnnotationsSegmenter(), tmp_path / "seg", ctx, batch_size=3, synthetic_dir=synthetic)
    coco = read_coco(tmp_path / "seg" / SEGMENTATIONS)
    by_record = {im["record_id"]: im["id"] for im in coco["images"]}
    assert set(by_record) == {"p1", "p2", "p3", "p4"}
    for record_id, image_id in by_record.items():
        (ann,) = [a for a in coco["annotations"] if a["image_id"] == image_id]
        assert ann["score"] == 1.0 and ann["label"] == "car"
        assert np.array_equal(rle_decode(ann["segmentation"]), annotated["truth"][int(record_id[1:])])
    filters = [F.LabelFilter(), F.ScoreFilter(), F.MinSizeFilter(min_side=10)]
    counts = filter_instances(photos.root, tmp_path / "seg", filters, tmp_path / "filter", ctx)
    assert counts["kept"] == 4
    result = normalize_crops(photos.root, tmp_path / "seg", tmp_path / "filter", synthetic, AistNormalizer(size=32),
                             tmp_path / "crops", ctx)
    assert result["crops"] == 4 and result["mask_iou_median"] == 1.0
    crops = ViewsDataset(tmp_path / "crops")
    assert sorted(r["source"]["photo"] for r in crops.records()) == ["p1", "p2", "p3", "p4"]


def test_categories_select_what_is_read_and_what_is_returned(annotated, tmp_path):
    summary, _, photos = _read(annotated, tmp_path, categories=("car", "person"))
    assert summary["instances"] == 5
    p1 = next(r for r in photos.records() if r["id"] == "p1")
    assert sorted(i["label"] for i in p1["instances"]) == ["car", "person"]
    image = photos.image(p1, "RGB")
    for categories, labels in ((("car",), ["car"]), (("car", "person"), ["car", "person"])):
        segmenter = CocoAnnotationsSegmenter(categories=categories)
        segmenter.fit(tmp_path / "none", photos.root, tmp_path / "w", StageContext.for_tests(tmp_path / "w"))
        (found,) = segmenter.segment([image])
        assert sorted(i.label for i in found) == labels
        person = next((i for i in found if i.label == "person"), None)
        if person is not None:
            assert np.array_equal(person.mask, annotated["person"]) and person.box == (5.0, 5.0, 15.0, 30.0)
    other = make_photo(np.random.default_rng(99), H, W)[0]
    assert segmenter.segment([other]) == [[]], "a photo outside the photos dataset has no annotations"


def test_whole_file_problems_are_one_line(annotated, tmp_path):
    assert CocoPhotos.check_params({"annotations": str(tmp_path / "nope.json"), "images": str(tmp_path)})[0].startswith(
        f"annotations: {tmp_path / 'nope.json'} not found")
    with pytest.raises(ValueError, match=r"no category named truck \(categories: car, person\)"):
        _read(annotated, tmp_path, categories=("truck",))
    broken = tmp_path / "broken.json"
    broken.write_text("{\n  \"images\": [,]\n}")
    with pytest.raises(ValueError, match=r"broken.json:2: invalid JSON"):
        CocoPhotos(annotations=broken, images=annotated["root"] / "images").build(tmp_path / "x", StageContext.for_tests(tmp_path / "w"))


def test_segmenter_refuses_photos_without_instances(tmp_path):
    from aist_plugins.readers.photos import ImageFolder, write_stanford_layout

    root = write_stanford_layout(tmp_path / "sc", n_images=1)
    ImageFolder(root=str(root / "cars_train")).build(tmp_path / "data", StageContext.for_tests(tmp_path / "w"))
    with pytest.raises(ValueError, match="no photo has ground-truth instance masks"):
        CocoAnnotationsSegmenter().fit(tmp_path, tmp_path / "data" / "photos", tmp_path / "w", StageContext.for_tests(tmp_path / "w"))
    with pytest.raises(RuntimeError, match="fit"):
        CocoAnnotationsSegmenter().segment([np.zeros((4, 4, 3), np.uint8)])


def test_rebuild_is_resumable(annotated, tmp_path):
    _read(annotated, tmp_path)
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "photos").rglob("*.png")}
    _, ctx, photos = _read(annotated, tmp_path)
    assert all(p.stat().st_mtime_ns == t for p, t in first.items()) and len(photos) == 4
    assert len(ctx.skipped.entries) == len(annotated["bad"]) + 2


def test_exif_rotated_photo_gets_upright_masks_and_round_trips_through_export(tmp_path):
    """Annotations are in the stored frame; every stage reads photos upright, so masks turn with
    the photo. Exporting the photos to COCO (upright PNG) and reading them back gives the same masks."""
    from PIL import Image, ImageOps

    from aist_core.export import export_dataset

    rng = np.random.default_rng(11)
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    images, anns, stored = [], [], {}
    for i, orientation in ((1, 6), (2, 1)):
        photo, mask, _ = make_photo(rng, H, W)
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(photo).save(root / "images" / f"p{i}.png", exif=exif)
        stored[i] = mask
        images.append({"id": i, "file_name": f"p{i}.png", "width": W, "height": H, "split": "test" if i == 2 else "train"})
        anns.append({"id": i, "image_id": i, "category_id": CAR, "segmentation": rle_encode(mask), "bbox": _bbox(mask), "iscrowd": 0})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": CAR, "name": "car"}]}))
    ctx = StageContext.for_tests(tmp_path / "w")
    CocoPhotos(annotations=root / "annotations.json", images=root / "images").build(tmp_path / "data", ctx)
    assert ctx.skipped.entries == []
    photos = ViewsDataset(tmp_path / "data" / "photos")
    rotated = next(r for r in photos.records() if r["id"] == "p1")
    assert rotated["exif_orientation"] == 6 and photos.image(rotated, "RGB").shape == (W, H, 3)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(root / "images" / "p1.png").convert("RGB")))
    assert np.array_equal(photos.image(rotated, "RGB"), expected)
    upright = np.rot90(stored[1], k=-1)  # orientation 6: the stored image is turned 90 degrees clockwise to show
    (inst,) = rotated["instances"]
    assert np.array_equal(read_image(photos.path(inst["mask"]), "L") > 127, upright)
    ys, xs = np.nonzero(upright)
    assert inst["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]

    export_dataset(photos.root, tmp_path / "exported", "coco")
    exported = json.loads((tmp_path / "exported" / "instances_train.json").read_text())
    assert exported["images"][0]["file_name"] == "images/p1.png" and (exported["images"][0]["width"], exported["images"][0]["height"]) == (H, W)
    again = tmp_path / "again"
    for split in ("train", "test"):
        CocoPhotos(annotations=tmp_path / "exported" / f"instances_{split}.json", images=tmp_path / "exported").build(
            again / split, StageContext.for_tests(tmp_path / f"w_{split}"))
    for split, record_id in (("train", "images/p1"), ("test", "images/p2")):
        back = ViewsDataset(again / split / "photos")
        (rec,) = back.records()
        original = next(r for r in photos.records() if r["image"] == record_id + ".png")
        assert rec["id"] == record_id and rec["split"] == split and "exif_orientation" not in rec
        assert np.array_equal(back.image(rec, "RGB"), photos.image(original, "RGB"))
        assert np.array_equal(read_image(back.path(rec["instances"][0]["mask"]), "L") > 127,
                              read_image(photos.path(original["instances"][0]["mask"]), "L") > 127)


def test_reasons_keep_their_values_out_of_the_reason_name(tmp_path):
    # "bad bbox [nan, 0, 10, 10]" and "unknown image id 12345" made one group per value in the report
    from aist_plugins.readers.coco_photos import write_coco_photos_fixture

    root = write_coco_photos_fixture(tmp_path / "coco", n_images=1)
    coco = json.loads((root / "annotations.json").read_text())
    good = coco["annotations"][0]
    coco["annotations"] += [
        {**good, "id": 11, "image_id": 12345},
        {**good, "id": 12, "image_id": 777},
        {**good, "id": 13, "bbox": [float("nan"), 0, 10, 10]},
        {**good, "id": 14, "bbox": [0, 0, -1, 10]},
        {**good, "id": 15, "category_id": 42},
    ]
    (root / "annotations.json").write_text(json.dumps(coco))
    ctx = StageContext.for_tests(tmp_path / "work")
    summary = CocoPhotos(annotations=root / "annotations.json", images=root / "images").build(tmp_path / "data", ctx)
    file = root / "annotations.json"
    assert {e["path"]: e["reason"] for e in ctx.skipped.entries} == {
        f"{file}#annotation=11": "unknown image id: 12345",
        f"{file}#annotation=12": "unknown image id: 777",
        f"{file}#annotation=13": "bad bbox: [nan, 0, 10, 10] (width and height must be positive)",
        f"{file}#annotation=14": "bad bbox: [0, 0, -1, 10] (width and height must be positive)",
        f"{file}#annotation=15": "unknown category id: 42",
    }
    assert summary["skipped"] == {"bad bbox": 2, "unknown category id": 1, "unknown image id": 2}
    assert ctx.skipped.counts() == summary["skipped"] and summary["instances"] == 1


def _build(root, tmp_path):
    ctx = StageContext.for_tests(tmp_path / "work")
    summary = CocoPhotos(annotations=root / "annotations.json", images=root / "images").build(tmp_path / "data", ctx)
    return summary, ctx, {e["path"]: e["reason"] for e in ctx.skipped.entries}


def test_ids_that_are_not_integers_are_skipped_not_a_crash(tmp_path):
    # "image_id": [1] (unhashable) stopped the build with a TypeError traceback
    from aist_plugins.readers.coco_photos import write_coco_photos_fixture

    root = write_coco_photos_fixture(tmp_path / "coco", n_images=1)
    coco = json.loads((root / "annotations.json").read_text())
    good = coco["annotations"][0]
    coco["annotations"] += [{**good, "id": 21, "image_id": [1]}, {**good, "id": 22, "category_id": {"id": 3}},
                            {**good, "id": [23]}, {**good, "id": 24, "image_id": True}]
    (root / "annotations.json").write_text(json.dumps(coco))
    summary, ctx, reasons = _build(root, tmp_path)
    file = root / "annotations.json"
    assert reasons == {
        f"{file}#annotation=21": "bad annotation entry (image_id must be an integer, got [1])",
        f"{file}#annotation=22": "bad annotation entry (category_id must be an integer, got {'id': 3})",
        f"{file}#annotation=[23]": "bad annotation entry (id must be an integer, got [23])",
        f"{file}#annotation=24": "bad annotation entry (image_id must be an integer, got True)",
    }
    assert summary["skipped"] == {"bad annotation entry": 4} and summary["instances"] == 1


def test_polygons_with_huge_or_non_finite_coordinates_are_skipped(tmp_path):
    # [[1e308, 1e308, -1e308, 0, 5, 5]] crashed pycocotools in a worker (BrokenProcessPool)
    from aist_plugins.readers.coco_photos import write_coco_photos_fixture

    root = write_coco_photos_fixture(tmp_path / "coco", n_images=1)  # photos are 128 x 96
    coco = json.loads((root / "annotations.json").read_text())
    good = {k: v for k, v in coco["annotations"][0].items() if k != "bbox"}
    coco["annotations"] += [
        {**good, "id": 31, "segmentation": [[1e308, 1e308, -1e308, 0, 5, 5]]},
        {**good, "id": 32, "segmentation": [[10, 10, 60, 10, 60, 1000]]},
        {**good, "id": 33, "segmentation": [[10, 10, 60, 10, 10 ** 400, 50]]},
        {**good, "id": 34, "segmentation": [[-20, -10, 200, 10, 60, 150]]},  # within one image size: kept
    ]
    text = json.dumps(coco).replace("1e+308", "1e308")
    (root / "annotations.json").write_text(text)
    summary, ctx, reasons = _build(root, tmp_path)
    file = root / "annotations.json"
    assert reasons == {
        f"{file}#annotation=31": "bad polygon: coordinate outside the image's neighbourhood (x in [-1e+308, 1e+308], "
                                 "y in [0, 1e+308]; allowed x in [-128, 256], y in [-96, 192])",
        f"{file}#annotation=32": "bad polygon: coordinate outside the image's neighbourhood (x in [10, 60], "
                                 "y in [10, 1000]; allowed x in [-128, 256], y in [-96, 192])",
        f"{file}#annotation=33": "bad polygon: coordinate not finite",
    }
    assert summary["skipped"] == {"bad polygon": 3} and summary["instances"] == 2


@pytest.mark.parametrize("file_name", ["../../../etc/passwd", "/etc/hostname", "link.png"])
def test_file_names_that_leave_the_images_folder_are_refused(tmp_path, file_name):
    # coco-photos opened (and copied into the dataset) ../../../etc/passwd and /etc/hostname
    from aist_plugins.readers.coco_photos import write_coco_photos_fixture

    root = write_coco_photos_fixture(tmp_path / "coco", n_images=2)
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "images" / "photo_1.png").read_bytes())
    (root / "images" / "link.png").symlink_to(outside)
    coco = json.loads((root / "annotations.json").read_text())
    coco["images"][1]["file_name"] = file_name
    (root / "annotations.json").write_text(json.dumps(coco))
    summary, ctx, reasons = _build(root, tmp_path)
    file = root / "annotations.json"
    detail = (f"{file_name!r} resolves to {outside}" if file_name == "link.png"
              else f"{file_name!r}: absolute, empty or with '..'")
    assert reasons == {f"{file}#image=2": f"file name leaves the images folder ({detail})"}
    assert summary["skipped"] == {"file name leaves the images folder": 1} and summary["photos"]["images"] == 1
    assert sorted(p.name for p in (tmp_path / "data" / "photos" / "images").rglob("*")) == ["photo_0.png"]
