"""Data sets: every split held in memory as one uint8 tensor [N, C, H, W] plus int64 labels.

Three sources: the embedded `shapes` set (generated, no download), torchvision's data sets (downloaded into a
data folder on users' machines), and an image folder (train/<class>/*, test/<class>/*) decoded once and cached.
A validation split, stratified by class and seeded, is held out from train to choose strengths. Data-limited
training takes a stratified, seeded subset of the training images left after it (`n_train_per_class`), so a
small training set still gets a large, fixed validation split (`n_val_per_class`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classaudit import shapes
from classaudit.atomic import atomic_open
from classaudit.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
DATA_ENV = "CLASSAUDIT_DATA"
DESCRIPTIONS = {
    "shapes": "embedded: 10 synthetic classes, each defined by one cue (colour, shape, layout, texture); no download",
    "shapes_downstream": "embedded: 8 new classes for probing a network pre-trained on shapes: 4 told apart by hue "
                         "alone, 4 by shape or texture; no download",
    "cifar10": "torchvision CIFAR-10: 10 classes, 50k train / 10k test, 32x32 RGB (downloads 170 MB)",
    "cifar100": "torchvision CIFAR-100: 100 classes, 50k / 10k, 32x32 RGB (downloads 170 MB)",
    "mnist": "torchvision MNIST: 10 digits, 60k / 10k, 28x28 grey",
    "fashion_mnist": "torchvision Fashion-MNIST: 10 clothing classes, 60k / 10k, 28x28 grey",
    "svhn": "torchvision SVHN: 10 digits, 73k / 26k, 32x32 RGB",
    "imagefolder": "your images: options.root holds train/<class>/* and test/<class>/*",
}


@dataclass(frozen=True)
class Dataset:
    """All splits in memory. Tensors stay uint8 until a batch is drawn: 4x less memory, one copy to device."""

    name: str
    class_names: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return Dataset(self.name, self.class_names, **moved)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "classaudit")


def load_dataset(spec: Mapping[str, Any], data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    """Build the Dataset a run config names (its `dataset` section)."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    name, options = spec["name"], dict(spec.get("options", {}))
    (train_x, train_y), (test_x, test_y), classes = _load_arrays(name, options, data_dir, download)
    if spec.get("classes") is not None:
        (train_x, train_y), (test_x, test_y), classes = select_classes(
            (train_x, train_y), (test_x, test_y), classes, spec["classes"])
    tr, va = split_train_val(train_y, spec, classes)
    t = torch.from_numpy
    return Dataset(
        name, tuple(classes),
        t(np.ascontiguousarray(train_x[tr])), t(train_y[tr]),
        t(np.ascontiguousarray(train_x[va])), t(train_y[va]),
        t(np.ascontiguousarray(test_x)), t(test_y),
    )


def select_classes(train, test, classes, wanted) -> tuple:
    """The images of the classes `wanted` (ids or names, in that order, which become classes 0..k-1): e.g. a
    transfer study that pre-trains on some of a data set's classes and probes on the others."""
    ids = []
    for c in wanted:
        if isinstance(c, str):
            if c not in classes:
                raise UsageError(f"dataset.classes: value {c!r} is not a class of this data set; allowed: "
                                 + ", ".join(classes))
            ids.append(classes.index(c))
        elif not 0 <= c < len(classes):
            raise UsageError(f"dataset.classes: value {c} is not a class id of this data set, which has "
                             f"{len(classes)} classes (ids 0 to {len(classes) - 1})")
        else:
            ids.append(int(c))
    lookup = np.full(len(classes), -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    out = []
    for x, y in (train, test):
        keep = lookup[y] >= 0
        out.append((x[keep], lookup[y[keep]]))
    return out[0], out[1], [classes[i] for i in ids]


def split_train_val(labels: np.ndarray, spec: Mapping[str, Any], classes) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of the training images a `dataset` section asks for.

    The validation images are drawn first (`n_val_per_class` of each class, else `val_fraction` of it), so the
    validation split does not depend on `n_train_per_class`; the training images are then `n_train_per_class` of
    each class's images left over (all of them when not given), and growing it only adds images. Both draws
    come from one permutation seeded by `split_seed`, never by the run's seed: every run of a study trains and
    chooses on the same images.
    """
    counts = np.bincount(labels, minlength=len(classes))
    n_val, n_train = spec.get("n_val_per_class"), spec.get("n_train_per_class")
    if n_val is not None and (counts <= n_val).any():  # every class must keep training images
        k = int(np.argmin(counts))
        raise UsageError(f"dataset.n_val_per_class: value {n_val} is not allowed: class \"{classes[k]}\" has "
                         f"{counts[k]:,} training images and must keep some to train on; allowed: 1 to "
                         f"{counts[k] - 1:,}")
    val_counts = np.full(len(counts), n_val) if n_val is not None else np.rint(counts * spec.get("val_fraction", 0.1))
    left = counts - val_counts.astype(int)
    if n_train is not None and (left < n_train).any():
        k = int(np.argmin(left))
        held = f"after its {int(val_counts[k]):,} validation images" if val_counts[k] else "(no validation split)"
        raise UsageError(f"dataset.n_train_per_class: value {n_train} is more than class \"{classes[k]}\" has: "
                         f"{left[k]:,} training images left {held}; allowed: 1 to {left[k]:,}")
    return stratified_split(labels, val_counts, spec.get("split_seed", 0), n_train)


def stratified_split(labels: np.ndarray, val: float | np.ndarray, seed: int,
                     n_train_per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): `val` is a fraction (round(fraction * n_k) images of each class k go to val) or an
    array of per-class counts; then up to `n_train_per_class` of each class's remaining images (all when None)
    go to train, in the same random order, so a larger training subset contains every smaller one."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    n_val = (np.rint(counts * val) if np.ndim(val) == 0 else np.asarray(val)[:len(counts)]).astype(int)
    if n_train_per_class is None and not n_val.any():
        return np.arange(len(labels)), np.arange(0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, random within each class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(labels)) - np.repeat(starts, counts)  # position within the class
    is_val = rank < np.repeat(n_val, counts)
    is_train = ~is_val
    if n_train_per_class is not None:
        is_train &= rank < np.repeat(n_val, counts) + n_train_per_class
    return np.sort(order[is_train]), np.sort(order[is_val])


def _load_arrays(name: str, options: dict, data_dir: Path, download: bool):
    if name == "shapes":
        train = shapes.generate(options.get("n_train_per_class", 500), options.get("size", 32), options.get("seed", 0))
        # The test set comes from an independent stream of the same generator.
        test = shapes.generate(options.get("n_test_per_class", 200), options.get("size", 32),
                               options.get("seed", 0) + shapes.TEST_SEED_OFFSET)
        return train, test, list(shapes.CLASSES)
    if name == "shapes_downstream":
        train = shapes.generate_downstream(options.get("n_train_per_class", 200), options.get("size", 32),
                                           options.get("seed", 0))
        test = shapes.generate_downstream(options.get("n_test_per_class", 200), options.get("size", 32),
                                          options.get("seed", 0) + shapes.TEST_SEED_OFFSET)
        return train, test, list(shapes.DOWNSTREAM_CLASSES)
    if name == "imagefolder":
        return load_image_folder(options["root"], options.get("size", 0), data_dir)
    return _load_torchvision(name, data_dir, download)


# ----------------------------------------------------------------------------------------------------------
# torchvision data sets.

_TV = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "mnist": ("MNIST", "MNIST"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST"),
    "svhn": ("SVHN", "SVHN"),
}


def _load_torchvision(name: str, data_dir: Path, download: bool):
    import torchvision.datasets as tvd

    cls_name, folder = _TV[name]
    cls = getattr(tvd, cls_name)
    root = data_dir / name

    def get(train: bool):
        kwargs = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
        try:
            return cls(str(root), download=False, **kwargs)
        except RuntimeError:
            if not download:
                raise
        return cls(str(root), download=True, **kwargs)

    try:
        train, test = get(True), get(False)
    except Exception as e:  # offline, or a partial download
        raise UsageError(
            f"dataset \"{name}\": not found in {root} and could not be downloaded ({type(e).__name__}: {e}). "
            f"On a machine with internet it downloads by itself; otherwise copy torchvision's {cls_name} files "
            f"into {root / folder} (or set --data-dir / ${DATA_ENV})."
        ) from None
    return _tv_arrays(train), _tv_arrays(test), list(getattr(train, "classes", [str(i) for i in range(10)]))


def _tv_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(ds.data)
    y = np.asarray(ds.targets if hasattr(ds, "targets") else ds.labels, dtype=np.int64)  # SVHN says labels
    if x.ndim == 3:  # MNIST-style [N, H, W]
        x = x[:, None]
    elif x.shape[-1] == 3:  # CIFAR-style [N, H, W, C]
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.uint8), y


# ----------------------------------------------------------------------------------------------------------
# Image folders.


def load_image_folder(root: str | Path, size: int, data_dir: Path):
    """Decode train/<class>/* and test/<class>/* once; later loads read a cached .npz (no pickle)."""
    given = root = Path(root).expanduser()
    if not root.is_absolute():
        root = (data_dir / root) if (data_dir / root).exists() else root.resolve()
    if not root.exists():
        where = f"{root}" if given.is_absolute() else f"{data_dir / given} (the data folder) nor {root}"
        raise UsageError(f"dataset.options.root: value \"{given}\" names no folder: neither {where} exists; put "
                         "the images there as train/<class>/* and test/<class>/*, or pass --data-dir (or set "
                         "CLASSAUDIT_DATA) to the folder that holds them")
    files = {split: _list_images(root, split) for split in ("train", "test")}
    classes = sorted({c for c, _ in files["train"]})
    if len(classes) < 2:
        raise UsageError(f"{root / 'train'}: found {len(classes)} class folder(s) with images; a classifier needs "
                         "at least 2 (train/<class>/<image>)")
    unknown = sorted({c for c, _ in files["test"]} - set(classes))
    if unknown:
        raise UsageError(f"{root / 'test'}: class folder \"{unknown[0]}\" has no counterpart in train/; the test "
                         f"classes must be among: {', '.join(classes)}")
    key = hashlib.sha256(repr((str(root), size, [(c, str(p), p.stat().st_size, p.stat().st_mtime_ns)
                                                  for s in ("train", "test") for c, p in files[s]])).encode())
    cache = data_dir / "cache" / f"imagefolder-{key.hexdigest()[:20]}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return (z["train_x"], z["train_y"]), (z["test_x"], z["test_y"]), list(z["classes"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    index = {c: i for i, c in enumerate(classes)}
    train = _decode(files["train"], index, size)
    test = _decode(files["test"], index, size)
    if train[0].shape[1:] != test[0].shape[1:]:
        raise UsageError(f"{root}: train images are {train[0].shape[2:]} but test images are {test[0].shape[2:]}; "
                         "set dataset.options.size to resize both")
    _save_npz(cache, train_x=train[0], train_y=train[1], test_x=test[0], test_y=test[1], classes=np.array(classes))
    return train, test, classes


def _list_images(root: Path, split: str) -> list[tuple[str, Path]]:
    folder = root / split
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; an image folder data set needs {root}/train/<class>/* and "
                         f"{root}/test/<class>/*")
    out = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        # Folder names become class names in reports; undecodable bytes are shown as U+FFFD, never dropped.
        name = os.fsencode(class_dir.name).decode("utf-8", "replace")
        out += [(name, p) for p in sorted(class_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise UsageError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files in "
                         "class subfolders)")
    return out


def _decode(files: list[tuple[str, Path]], index: Mapping[str, int], size: int):
    """Decode every image once (the cache serves every later run). PIL releases the GIL while decoding, so a
    thread pool uses all cores."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        arrays = list(pool.map(lambda p: _read_image(p, size), [p for _, p in files], chunksize=256))
    first = arrays[0].shape
    for (_, path), a in zip(files, arrays):
        if a.shape != first:
            raise UsageError(f"{path}: image is {a.shape[1]}x{a.shape[0]} but {files[0][1]} is "
                             f"{first[1]}x{first[0]}; set dataset.options.size to resize all images")
    x = np.stack(arrays).transpose(0, 3, 1, 2)
    y = np.array([index[c] for c, _ in files], dtype=np.int64)
    return np.ascontiguousarray(x), y


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size:
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise UsageError(f"{path}: cannot be read as an image ({e}); remove it or replace it") from None


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        np.savez(f, **arrays)
