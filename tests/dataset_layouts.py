"""Tiny fabricated copies of torchvision's on-disk layouts, one writer per set (issue 23).

Every image is one solid colour that encodes its class (`colour(label)`), so a test can tell from the pixels
alone that a sample carries the right label. Each writer returns the layout it made: the classes torchvision
will name, and how many images each split holds. Sets whose torchvision class checks MD5s of its files
(CIFAR, STL-10, SVHN, Flowers-102's .mat files) get their fabricated files' MD5s patched into the class by
`patch_md5s`, so the check itself still runs.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Layout:
    classes: list[str]
    splits: dict[str, int]  # split → images
    md5s: dict[str, str] | None = None  # file name → MD5, for patch_md5s


def colour(label: int) -> tuple[int, int, int]:
    return (30 + 60 * (label % 4), 220 - 50 * (label % 4), 40 + 70 * (label // 4 % 3))


def jpeg(path: Path, label: int, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour(label)).save(path, "JPEG", quality=98)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def caltech101(root: Path) -> Layout:
    folder = root / "caltech101" / "101_ObjectCategories"
    classes = ["accordion", "airplanes", "ant"]
    for name in ["BACKGROUND_Google", *classes]:  # torchvision drops the background "class"
        label = classes.index(name) if name in classes else 3
        for i in range(1, 6):
            jpeg(folder / name / f"image_{i:04d}.jpg", label)
    return Layout(classes, {"all": 15})


def caltech256(root: Path) -> Layout:
    folder = root / "caltech256" / "256_ObjectCategories"
    for label, name in enumerate(["001.ak47", "002.american-flag", "003.backpack"]):
        for i in range(1, 5):
            jpeg(folder / name / f"{label + 1:03d}_{i:04d}.jpg", label)
    return Layout(["ak47", "american-flag", "backpack"], {"all": 12})


def food101(root: Path) -> Layout:
    base = root / "food-101"
    classes = ["apple_pie", "baby_back_ribs"]
    for split, ids in (("train", range(4)), ("test", range(4, 6))):
        meta = {name: [f"{name}/{i}" for i in ids] for name in classes}
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
        for label, name in enumerate(classes):
            for i in ids:
                jpeg(base / "images" / name / f"{i}.jpg", label)
    return Layout(classes, {"train": 8, "val": 4})


def flowers102(root: Path) -> Layout:
    from scipy.io import savemat

    base = root / "flowers-102"
    labels = [1, 1, 2, 2, 3, 3, 1, 2, 3, 3]  # 1-based, as the .mat file has them
    for i, label in enumerate(labels, start=1):
        jpeg(base / "jpg" / f"image_{i:05d}.jpg", label - 1)
    savemat(base / "imagelabels.mat", {"labels": np.array(labels)})
    savemat(base / "setid.mat", {"trnid": np.array([1, 3, 5]), "valid": np.array([2, 4, 6]),
                                 "tstid": np.array([7, 8, 9, 10])})  # a size of its own: test ≠ val
    return Layout([], {"train": 3, "val": 3},
                  {"imagelabels.mat": md5(base / "imagelabels.mat"), "setid.mat": md5(base / "setid.mat")})


def oxford_pet(root: Path) -> Layout:
    base = root / "oxford-iiit-pet"
    rows = {"trainval": [("Abyssinian_1", 1), ("Abyssinian_2", 1), ("american_bulldog_1", 2),
                         ("american_bulldog_2", 2)],
            "test": [("Abyssinian_3", 1), ("american_bulldog_3", 2)]}
    (base / "annotations").mkdir(parents=True)
    for split, items in rows.items():
        (base / "annotations" / f"{split}.txt").write_text(
            "".join(f"{name} {label} {label} 1\n" for name, label in items))
        for name, label in items:
            jpeg(base / "images" / f"{name}.jpg", label - 1)
    return Layout(["Abyssinian", "American Bulldog"], {"train": 4, "val": 2})


def dtd(root: Path) -> Layout:
    base = root / "dtd" / "dtd"
    classes = ["banded", "blotchy"]
    (base / "labels").mkdir(parents=True)
    for split, ids in (("train", (1, 2)), ("val", (3,)), ("test", (4,))):
        lines = []
        for label, name in enumerate(classes):
            for i in ids:
                jpeg(base / "images" / name / f"{name}_{i:04d}.jpg", label)
                lines.append(f"{name}/{name}_{i:04d}.jpg\n")
        (base / "labels" / f"{split}1.txt").write_text("".join(lines))
    return Layout(classes, {"train": 4, "val": 2})


def eurosat(root: Path) -> Layout:
    classes = ["AnnualCrop", "Forest", "River"]
    for label, name in enumerate(classes):
        for i in range(4):
            jpeg(root / "eurosat" / "2750" / name / f"{name}_{i}.jpg", label)
    return Layout(classes, {"all": 12})


def fgvc_aircraft(root: Path) -> Layout:
    data = root / "fgvc-aircraft-2013b" / "data"
    classes = ["707-320", "A300B4"]
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("".join(f"{c}\n" for c in classes))
    number = 0
    for split, per in (("train", 2), ("val", 1), ("test", 1)):
        lines = []
        for label, name in enumerate(classes):
            for _ in range(per):
                number += 1
                jpeg(data / "images" / f"{number:07d}.jpg", label)
                lines.append(f"{number:07d} {name}\n")
        (data / f"images_variant_{split}.txt").write_text("".join(lines))
    return Layout(classes, {"train": 4, "val": 2})


def imagenette(root: Path, folder: str = "imagenette2") -> Layout:
    wnids = ["n01440764", "n02102040"]  # tench, English springer
    for split, per in (("train", 3), ("val", 1)):
        for label, wnid in enumerate(wnids):
            for i in range(per):
                jpeg(root / folder / split / wnid / f"{wnid}_{i}.JPEG", label)
    return Layout(["tench", "English springer"], {"train": 6, "val": 2})


def _arrays(labels: list[int], size: int) -> np.ndarray:
    """N × 3 × size × size, each image its label's colour."""
    return np.stack([np.broadcast_to(np.array(colour(lb), np.uint8)[:, None, None], (3, size, size))
                     for lb in labels])


def cifar(root: Path, hundred: bool = False) -> Layout:
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = [f"class{i}" for i in range(3)]
    key = "fine_labels" if hundred else "labels"
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_file = "test" if hundred else "test_batch"
    for name in train_files:
        labels = [0, 1, 2, 0]
        (folder / name).write_bytes(pickle.dumps({"data": _arrays(labels, 32).reshape(4, -1), key: labels}))
    (folder / test_file).write_bytes(pickle.dumps({"data": _arrays([2, 1], 32).reshape(2, -1), key: [2, 1]}))
    meta, meta_key = ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    (folder / meta).write_bytes(pickle.dumps({meta_key: names}))
    return Layout(names, {"train": 4 * len(train_files), "val": 2},
                  {p.name: md5(p) for p in folder.iterdir()})


def stl10(root: Path) -> Layout:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    names = ["airplane", "bird", "car"]

    def write(prefix: str, labels: list[int], with_labels: bool = True) -> None:
        # STL-10 stores images column-major: torchvision transposes H and W when it reads them
        (folder / f"{prefix}_X.bin").write_bytes(_arrays(labels, 96).transpose(0, 1, 3, 2).tobytes())
        if with_labels:
            (folder / f"{prefix}_y.bin").write_bytes(bytes(lb + 1 for lb in labels))

    write("train", [0, 1, 2, 0, 1, 2])
    write("test", [2, 1, 0])
    write("unlabeled", [0, 0, 0, 0], with_labels=False)
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return Layout(names, {"train": 6, "val": 3, "unlabeled": 4}, {p.name: md5(p) for p in folder.iterdir()})


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for dim in array.shape:
            f.write(struct.pack(">I", dim))
        f.write(array.astype(np.uint8).tobytes())


def mnist(root: Path, name: str = "MNIST") -> Layout:
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    for prefix, labels in (("train", [0, 1, 2, 3, 0, 1]), ("t10k", [3, 2])):
        images = np.stack([np.full((28, 28), 20 + 70 * lb) for lb in labels])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array(labels), 2049)
    return Layout([], {"train": 6, "val": 2})


def svhn(root: Path) -> Layout:
    from scipy.io import savemat

    for name, labels in (("train_32x32.mat", [1, 2, 10, 1]), ("test_32x32.mat", [2, 10])):  # 10 is the digit 0
        x = _arrays([lb % 10 for lb in labels], 32).transpose(2, 3, 1, 0)  # H × W × C × N, as the file has it
        savemat(root / name, {"X": x, "y": np.array(labels)[:, None]})
    return Layout([str(i) for i in range(10)], {"train": 4, "val": 2},
                  {n: md5(root / n) for n in ("train_32x32.mat", "test_32x32.mat")})


def pcam(root: Path) -> Layout:
    import h5py

    folder = root / "pcam"
    folder.mkdir(parents=True)
    for split, labels in (("train", [0, 1, 1, 0]), ("valid", [1, 0]), ("test", [0])):
        with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = _arrays(labels, 96).transpose(0, 2, 3, 1)
        with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = np.array(labels, np.uint8)[:, None, None, None]
    return Layout(["no tumour", "tumour"], {"train": 4, "val": 2})
