"""Data sets: determinism, the stratified validation split, image folders (synthetic and the real CIFAR-10
copy in ../shared/data), and the offline message for torchvision data sets."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from classaudit import shapes
from classaudit.data import load_dataset, stratified_split
from classaudit.errors import UsageError
from tests.conftest import SHARED_DATA


def test_shapes_is_deterministic_and_balanced():
    a, ya = shapes.generate(20, 32, seed=3)
    b, yb = shapes.generate(20, 32, seed=3)
    c, _ = shapes.generate(20, 32, seed=4)
    assert a.dtype == np.uint8 and a.shape == (200, 3, 32, 32)
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
    assert np.bincount(ya).tolist() == [20] * 10
    assert len(shapes.CLASSES) == len(shapes.CUES) == 10


def test_only_colour_classes_are_saturated():
    x, y = shapes.generate(30, 32, seed=0)
    rgb = x.astype(float) / 255
    value = rgb.max(1)
    sat = (value - rgb.min(1)) / np.maximum(value, 1e-6)
    # Saturation of bright pixels only: in dark pixels the noise alone makes saturation large.
    bright = np.where(value > 0.55, sat, np.nan).reshape(len(x), -1)
    per_image = np.nanmedian(bright, axis=1)
    for k, name in enumerate(shapes.CLASSES):
        mean = np.nanmean(per_image[y == k])
        assert (mean > 0.6) if shapes.CUES[name] == "colour" else (mean < 0.45), (name, mean)


def test_stratified_split():
    labels = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    tr, va = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[va]).tolist() == [2, 4, 6, 8, 10]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    tr2, va2 = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(labels, 0.2, seed=1)[1])


def test_load_shapes_dataset_splits():
    spec = {"name": "shapes", "val_fraction": 0.25, "split_seed": 0,
            "options": {"n_train_per_class": 8, "n_test_per_class": 4, "size": 16, "seed": 0}}
    data = load_dataset(spec)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (60, 3, 16, 16)
    assert data.val_x.shape[0] == 20 and data.test_x.shape[0] == 40
    assert torch.bincount(data.val_y).tolist() == [2] * 10


def make_folder(root, classes, per_class=3, size=8):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_image_folder_loads_and_caches(tmp_path):
    make_folder(tmp_path / "imgs", ["b<script>", "a & co"])
    spec = {"name": "imagefolder", "val_fraction": 0.0, "options": {"root": str(tmp_path / "imgs"), "size": 0}}
    data = load_dataset(spec, data_dir=tmp_path / "cache")
    assert data.class_names == ("a & co", "b<script>")
    assert data.train_x.shape == (6, 3, 8, 8)
    cached = list((tmp_path / "cache" / "cache").glob("imagefolder-*.npz"))
    assert len(cached) == 1
    again = load_dataset(spec, data_dir=tmp_path / "cache")
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)


@pytest.mark.parametrize("setup, message", [
    (lambda r: make_folder(r, ["only"]), "found 1 class folder(s) with images; a classifier needs at least 2"),
    (lambda r: (r / "train" / "a").mkdir(parents=True), "no images found"),
    (lambda r: None, "no such folder"),
])
def test_image_folder_errors(tmp_path, setup, message):
    root = tmp_path / "imgs"
    root.mkdir()
    setup(root)
    with pytest.raises(UsageError) as info:
        load_dataset({"name": "imagefolder", "options": {"root": str(root)}}, data_dir=tmp_path)
    assert message in str(info.value)


def test_a_missing_image_folder_names_every_place_looked_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as info:
        load_dataset({"name": "imagefolder", "options": {"root": "cifar10-jpeg"}}, data_dir=tmp_path / "data")
    assert str(info.value) == (
        f"dataset.options.root: value \"cifar10-jpeg\" names no folder: neither {tmp_path / 'data' / 'cifar10-jpeg'} "
        f"(the data folder) nor {tmp_path / 'cifar10-jpeg'} exists; put the images there as train/<class>/* and "
        "test/<class>/*, or pass --data-dir (or set CLASSAUDIT_DATA) to the folder that holds them")


def test_unreadable_image_is_named(tmp_path):
    make_folder(tmp_path / "imgs", ["a", "b"])
    bad = tmp_path / "imgs" / "train" / "a" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UsageError, match=r"broken.jpg: cannot be read as an image"):
        load_dataset({"name": "imagefolder", "options": {"root": str(tmp_path / "imgs")}}, data_dir=tmp_path)


def test_mixed_sizes_need_the_size_option(tmp_path):
    make_folder(tmp_path / "imgs", ["a", "b"])
    Image.new("RGB", (9, 9)).save(tmp_path / "imgs" / "train" / "b" / "odd.png")
    spec = {"name": "imagefolder", "options": {"root": str(tmp_path / "imgs")}}
    with pytest.raises(UsageError, match="set dataset.options.size"):
        load_dataset(spec, data_dir=tmp_path)
    spec["options"]["size"] = 8
    assert load_dataset(spec, data_dir=tmp_path).train_x.shape[1:] == (3, 8, 8)


def test_torchvision_dataset_offline_message(tmp_path):
    with pytest.raises(UsageError) as info:
        load_dataset({"name": "cifar10"}, data_dir=tmp_path, download=False)
    text = str(info.value)
    assert "dataset \"cifar10\": not found in" in text and "cifar-10-batches-py" in text


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory):
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is absent (only the project's build machines have it)")
    root = tmp_path_factory.mktemp("cifar")
    with tarfile.open(SHARED_DATA) as tar:
        tar.extractall(root, filter="data")
    found = [p.parent for p in root.rglob("train") if p.is_dir()]
    return found[0] if found else root


def test_image_folder_trains_on_real_cifar10(cifar_folder, tmp_path):
    from classaudit.config import expand, parse_study
    from classaudit.train import train_one

    study = parse_study({
        "study": {"name": "cifar-smoke", "seeds": [0]},
        "dataset": {"name": "imagefolder", "val_fraction": 0.02, "options": {"root": str(cifar_folder)}},
        "model": {"name": "smallcnn", "options": {"width": 8}},
        "train": {"epochs": 1, "batch_size": 512, "lr": 0.2},
        "sweep": {"crop": {"strengths": [0.5]}},
    })
    run = expand(study)[0]  # the off point: no crop
    assert run.label == "baseline seed=0"
    result = train_one(run.config, run_id=run.run_id, data_dir=tmp_path)
    test = result.splits["test"]
    assert len(test.label) == 10_000 and np.bincount(test.label).tolist() == [1000] * 10
    assert result.class_names[:3] == ["airplane", "automobile", "bird"]
    assert (test.pred == test.label).mean() > 0.25  # one epoch of a tiny CNN: well above chance (10%)


def test_non_utf8_class_folder_names_are_kept_readable(tmp_path):
    root = tmp_path / "imgs"
    make_folder(root, ["ok", "second"])
    for split in ("train", "test"):  # rename one class folder to bytes that are not UTF-8
        import os

        os.rename(root / split / "second", os.path.join(os.fsencode(root / split), b"caf\xe9"))
    data = load_dataset({"name": "imagefolder", "val_fraction": 0.0, "options": {"root": str(root)}},
                        data_dir=tmp_path)
    assert data.class_names == ("caf\ufffd", "ok")
    data.class_names[0].encode("utf-8")  # safe to store as JSON and show in a report


# ----------------------------------------------------------------------------------------------------------
# Data-limited training: n_train_per_class and n_val_per_class, on every kind of data set.


def _shapes_spec(**fields):
    return {"name": "shapes", "split_seed": 0,
            "options": {"n_train_per_class": 30, "n_test_per_class": 4, "size": 16, "seed": 0}, **fields}


def test_n_train_and_n_val_per_class_are_stratified_disjoint_and_nested():
    data = load_dataset(_shapes_spec(n_train_per_class=7, n_val_per_class=10))
    assert torch.bincount(data.train_y).tolist() == [7] * 10
    assert torch.bincount(data.val_y).tolist() == [10] * 10
    full = load_dataset(_shapes_spec())
    flat = {tuple(x.flatten().tolist()) for x in full.train_x}
    val_flat = {tuple(x.flatten().tolist()) for x in data.val_x}
    train_flat = {tuple(x.flatten().tolist()) for x in data.train_x}
    assert not train_flat & val_flat  # no image in both
    # The validation split does not depend on the training subset's size, and a larger subset holds the smaller.
    bigger = load_dataset(_shapes_spec(n_train_per_class=12, n_val_per_class=10))
    assert torch.equal(bigger.val_x, data.val_x)
    assert train_flat < {tuple(x.flatten().tolist()) for x in bigger.train_x}
    # With the default fraction (10% of each class to validation) the subset comes from the other 90%.
    frac = load_dataset(_shapes_spec(n_train_per_class=5))
    assert torch.bincount(frac.train_y).tolist() == [5] * 10 and torch.bincount(frac.val_y).tolist() == [3] * 10
    assert torch.equal(frac.val_x, full.val_x)
    assert len(flat) == len(full.train_x)


def test_data_limited_splits_are_deterministic_and_follow_split_seed():
    a = load_dataset(_shapes_spec(n_train_per_class=5, n_val_per_class=6))
    b = load_dataset(_shapes_spec(n_train_per_class=5, n_val_per_class=6))
    c = load_dataset(_shapes_spec(n_train_per_class=5, n_val_per_class=6, split_seed=1))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_x, b.val_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x) and not torch.equal(a.val_x, c.val_x)


def test_without_the_new_fields_the_split_is_the_old_one():
    # Committed results were trained on these exact images: the old rule (round(fraction * n_k) per class from
    # one permutation seeded by split_seed) must give the same indices.
    labels = np.random.default_rng(5).integers(0, 7, 300)
    tr, va = stratified_split(labels, 0.15, seed=3)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    counts = np.bincount(labels)
    rank = np.arange(len(labels)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    is_val = rank < np.repeat(np.rint(counts * 0.15).astype(int), counts)
    assert np.array_equal(va, np.sort(order[is_val])) and np.array_equal(tr, np.sort(order[~is_val]))


@pytest.mark.parametrize("fields, message", [
    ({"n_train_per_class": 28},
     "dataset.n_train_per_class: value 28 is more than class \"red\" has: 27 training images left after its 3 "
     "validation images; allowed: 1 to 27"),
    ({"n_train_per_class": 25, "n_val_per_class": 10},
     "dataset.n_train_per_class: value 25 is more than class \"red\" has: 20 training images left after its 10 "
     "validation images; allowed: 1 to 20"),
    ({"n_train_per_class": 31, "val_fraction": 0.0},
     "dataset.n_train_per_class: value 31 is more than class \"red\" has: 30 training images left (no validation "
     "split); allowed: 1 to 30"),
    ({"n_val_per_class": 30},
     "dataset.n_val_per_class: value 30 is not allowed: class \"red\" has 30 training images and must keep some "
     "to train on; allowed: 1 to 29"),
])
def test_more_images_than_a_class_has_is_one_clear_message(fields, message):
    with pytest.raises(UsageError) as info:
        load_dataset(_shapes_spec(**fields))
    assert str(info.value) == message


def test_data_limited_image_folder(tmp_path):
    make_folder(tmp_path / "imgs", ["a", "b", "c"], per_class=6)
    spec = {"name": "imagefolder", "n_train_per_class": 2, "n_val_per_class": 3,
            "options": {"root": str(tmp_path / "imgs")}}
    data = load_dataset(spec, data_dir=tmp_path)
    assert torch.bincount(data.train_y).tolist() == [2, 2, 2] and torch.bincount(data.val_y).tolist() == [3, 3, 3]
    assert data.test_x.shape[0] == 18  # the test split is never subsampled
    spec["n_train_per_class"] = 4
    with pytest.raises(UsageError, match=r"value 4 is more than class \"a\" has: 3 training images left"):
        load_dataset(spec, data_dir=tmp_path)


def test_data_limited_torchvision_dataset(tmp_path, monkeypatch):
    # torchvision's data sets go through the same split; a stand-in for the download keeps this offline.
    from classaudit import data as data_module

    rng = np.random.default_rng(0)
    fake = ((rng.integers(0, 255, (40, 3, 8, 8), dtype=np.uint8), np.repeat(np.arange(4), 10)),
            (rng.integers(0, 255, (8, 3, 8, 8), dtype=np.uint8), np.repeat(np.arange(4), 2)),
            ["w", "x", "y", "z"])
    monkeypatch.setattr(data_module, "_load_torchvision", lambda name, data_dir, download: fake)
    data = load_dataset({"name": "cifar10", "n_train_per_class": 3, "n_val_per_class": 5}, data_dir=tmp_path)
    assert torch.bincount(data.train_y).tolist() == [3] * 4 and torch.bincount(data.val_y).tolist() == [5] * 4
