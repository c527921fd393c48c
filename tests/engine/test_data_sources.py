"""Issue 23: every data source loads a tiny fabricated copy of its on-disk layout, with the right classes (read from
the pixels: each image's colour encodes its class) and the right split (the official one, or a seeded stratified
one where the set has none)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision.datasets as tvd

from engine.data.datasets import ImageFiles, TorchvisionImages, prepare_data
from engine.data.sources import all_sources, get_source, source_names
from engine.errors import BadInputError, RecipeError
from engine.recipe import BUILTIN_DATASETS, DataConfig, Recipe
from tests import dataset_layouts as layouts
from tests.dataset_layouts import colour


def _identity(image):
    return image


def prepare(name: str, root: Path, **fields):
    config = DataConfig(root=str(root), dataset=name, **fields)
    return prepare_data(config, _identity, _identity, 3, seed=0)


def labels_match_pixels(dataset, grey: bool = False) -> None:
    """Each sample's label is the class its pixels were painted with."""
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        got = image[:, image.shape[1] // 2, image.shape[2] // 2].tolist()
        if grey:
            assert abs(got[0] - (20 + 70 * label)) <= 2, (i, label, got)
        else:
            assert all(abs(g - e) <= 6 for g, e in zip(got, colour(label))), (i, label, got, colour(label))


def patch_md5s(monkeypatch, cls, md5s: dict[str, str]) -> None:
    """Give torchvision's class the fabricated files' MD5s, so that its own integrity check runs on them."""
    for attr in ("train_list", "test_list"):
        if hasattr(cls, attr):
            monkeypatch.setattr(cls, attr, [[n, md5s.get(n, m)] for n, m in getattr(cls, attr)])
    if isinstance(getattr(cls, "meta", None), dict):
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5s[cls.meta["filename"]]})
    if hasattr(cls, "split_list"):
        monkeypatch.setattr(cls, "split_list", {k: [u, f, md5s.get(f, m)] for k, (u, f, m) in cls.split_list.items()})
    if hasattr(cls, "_file_dict"):
        monkeypatch.setattr(cls, "_file_dict", {k: (f, md5s.get(f, m)) for k, (f, m) in cls._file_dict.items()})


OFFICIAL = [  # (source, writer, torchvision class whose MD5s are patched, greyscale images)
    ("Food101", layouts.food101, None, False),
    ("Flowers102", layouts.flowers102, tvd.Flowers102, False),
    ("OxfordIIITPet", layouts.oxford_pet, None, False),
    ("DTD", layouts.dtd, None, False),
    ("FGVCAircraft", layouts.fgvc_aircraft, None, False),
    ("Imagenette", layouts.imagenette, None, False),
    ("Imagenette160", lambda root: layouts.imagenette(root, "imagenette2-160"), None, False),
    ("CIFAR10", layouts.cifar, tvd.CIFAR10, False),
    ("CIFAR100", lambda root: layouts.cifar(root, hundred=True), tvd.CIFAR100, False),
    ("STL10", layouts.stl10, tvd.STL10, False),
    ("MNIST", layouts.mnist, None, True),
    ("FashionMNIST", lambda root: layouts.mnist(root, "FashionMNIST"), None, True),
    ("SVHN", layouts.svhn, tvd.SVHN, False),
    pytest.param("PCAM", layouts.pcam, None, False,
                 marks=pytest.mark.skipif(importlib.util.find_spec("h5py") is None, reason="h5py not installed")),
]
FILE_SETS = {"Caltech101", "Caltech256", "Food101", "Flowers102", "OxfordIIITPet", "DTD", "EuroSAT", "FGVCAircraft",
             "Imagenette", "Imagenette160"}


@pytest.mark.parametrize("name, write, cls, grey", OFFICIAL, ids=[getattr(p, "values", p)[0]
                                                                  for p in OFFICIAL])
def test_a_set_with_an_official_split_trains_on_its_first_and_validates_on_its_second(name, write, cls, grey,
                                                                                       tmp_path, monkeypatch):
    layout = write(tmp_path)
    if cls is not None:
        patch_md5s(monkeypatch, cls, layout.md5s)
    data = prepare(name, tmp_path)
    assert (len(data.train), len(data.val)) == (layout.splits["train"], layout.splits["val"])
    if layout.classes:
        assert data.classes == layout.classes
    expected_type = ImageFiles if name in FILE_SETS else TorchvisionImages
    assert isinstance(data.train, expected_type) and isinstance(data.val, expected_type)
    labels_match_pixels(data.train, grey)
    labels_match_pixels(data.val, grey)
    assert not data.skipped


@pytest.mark.parametrize("name, write", [("Caltech101", layouts.caltech101), ("Caltech256", layouts.caltech256),
                                         ("EuroSAT", layouts.eurosat)], ids=["Caltech101", "Caltech256", "EuroSAT"])
def test_a_set_without_an_official_split_is_split_per_class_and_seeded(name, write, tmp_path):
    layout = write(tmp_path)
    data = prepare(name, tmp_path, val_fraction=0.25, split_seed=3)
    assert data.classes == layout.classes
    assert len(data.train) + len(data.val) == layout.splits["all"]
    assert isinstance(data.train, ImageFiles)
    assert set(data.val.targets) == set(data.train.targets) == set(range(len(layout.classes)))
    assert not {p for p, _ in data.train.samples} & {p for p, _ in data.val.samples}
    labels_match_pixels(data.train)
    labels_match_pixels(data.val)
    again = prepare(name, tmp_path, val_fraction=0.25, split_seed=3)
    assert again.val.samples == data.val.samples  # the seed decides, not the order files are listed in
    other = prepare(name, tmp_path, val_fraction=0.25, split_seed=4)
    assert other.val.samples != data.val.samples


def test_stl10_has_its_unlabeled_split_too(tmp_path, monkeypatch):
    from engine.data.sources.torchvision_sets import Reader, open_split

    layout = layouts.stl10(tmp_path)
    patch_md5s(monkeypatch, tvd.STL10, layout.md5s)
    assert "unlabeled" in get_source("STL10").splits
    unlabeled = open_split(Reader("STL10", "split"), "STL10", tmp_path, "unlabeled")
    assert len(unlabeled) == layout.splits["unlabeled"]
    assert set(int(t) for t in unlabeled.labels) == {-1}


def test_a_file_set_with_an_unreadable_image_lists_it_and_trains_on_the_rest(tmp_path):
    layouts.eurosat(tmp_path)
    broken = tmp_path / "eurosat" / "2750" / "Forest" / "Forest_0.jpg"
    broken.write_bytes(broken.read_bytes()[:40])
    data = prepare("EuroSAT", tmp_path)
    assert [p.path for p in data.skipped] == [str(broken)]
    assert len(data.train) + len(data.val) == 11


def test_a_labels_csv_trains_like_a_folder(tmp_path):
    for i in range(4):
        layouts.jpeg(tmp_path / "imgs" / f"c{i}.jpg", 0)
        layouts.jpeg(tmp_path / "imgs" / f"d{i}.jpg", 1)
    rows = [f"imgs/c{i}.jpg,cat" for i in range(4)] + [f"imgs/d{i},dog" for i in range(4)]  # a bare Kaggle id too
    rows += ["imgs/missing.jpg,cat", ",dog"]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    data = prepare("csv", tmp_path / "labels.csv", val_fraction=0.25)
    assert data.classes == ["cat", "dog"]
    assert (len(data.train), len(data.val)) == (6, 2)
    assert set(data.val.targets) == {0, 1}
    labels_match_pixels(data.train)
    assert {p.reason for p in data.skipped} == {"image file not found: imgs/missing.jpg", "image file not found: "}


def test_a_labels_csv_with_a_split_column_keeps_that_split(tmp_path):
    lines = ["file,class,split"]
    for i, (label, split) in enumerate([(0, "train"), (1, "train"), (0, "val"), (1, "valid"), (0, "train")]):
        layouts.jpeg(tmp_path / f"{i}.jpg", label)
        lines.append(f"{i}.jpg,{'ab'[label]},{split}")
    (tmp_path / "l.csv").write_text("\n".join(lines))
    data = prepare("csv", tmp_path / "l.csv")
    assert (len(data.train), len(data.val)) == (3, 2)
    assert sorted(data.val.targets) == [0, 1]


def test_a_set_not_on_disk_says_how_to_download_it(tmp_path):
    with pytest.raises(BadInputError, match=rf"Caltech101 is not on disk under {tmp_path}.*main.py download "
                                            rf"Caltech101 --root {tmp_path}"):
        prepare("Caltech101", tmp_path)


def test_a_set_whose_reader_needs_a_missing_package_says_which(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else real(name, *a))
    with pytest.raises(BadInputError, match="PCAM needs the Python package h5py.*pip install h5py"):
        prepare("PCAM", tmp_path)


def test_a_bad_name_is_refused_naming_the_field_and_the_known_names():
    recipe = Recipe()
    recipe.data.dataset = "Caltech-101"
    with pytest.raises(RecipeError, match=r"data\.dataset.*'Caltech-101'.*Caltech101, Caltech256, Food101") as info:
        recipe.validate()
    assert info.value.field == "data.dataset"
    with pytest.raises(RecipeError, match="data.dataset"):
        get_source("caltech101")


def test_the_registry_and_the_recipe_know_the_same_sources():
    assert tuple(source_names()) == BUILTIN_DATASETS
    required = {"Caltech101", "Caltech256", "Food101", "Flowers102", "OxfordIIITPet", "DTD", "EuroSAT",
                "FGVCAircraft", "Imagenette", "CIFAR10", "CIFAR100", "STL10", "MNIST", "FashionMNIST", "PCAM"}
    assert required <= set(source_names())
    for source in all_sources():
        assert source.licence and source.split
        if not source.local:
            assert source.marker and source.archives is not None and source.images > 0 and source.classes >= 2
            assert source.download_bytes > 0 and source.disk_bytes > 0


def test_every_archive_comes_from_torchvision_with_a_checksum():
    for source in all_sources():
        if source.local:
            continue
        archives = source.archives()
        assert archives, source.name
        for archive in archives:
            assert archive.url.startswith(("http://", "https://")), archive
            # FGVC-Aircraft is the one set torchvision publishes no MD5 for
            assert len(archive.md5) == 32 or source.name == "FGVCAircraft", archive


def test_a_recipe_naming_caltech101_trains_like_a_folder(tmp_path, recorder):
    """Scan (every file decoded), classes, seeded split, the RAM cache of decoded images, a finished run."""
    from engine.train import events as ev
    from engine.train.trainer import Trainer
    from tests.helpers import tiny_recipe

    layout = layouts.caltech101(tmp_path / "data")
    recipe = tiny_recipe(tmp_path / "data", "fine_tune_all", epochs=1, out=tmp_path / "runs")
    recipe.data.dataset = "Caltech101"
    recipe.data.ram_cache = "on"
    result = Trainer(Recipe.from_dict(recipe.to_dict()).validate(), [recorder]).fit()
    assert result.status == "finished", result.error
    prepared = recorder.first(ev.DataPrepared)
    assert prepared.classes == layout.classes and prepared.train_size + prepared.val_size == 15
    assert recorder.first(ev.DecodedCacheFilled).images == 15
    assert result.summary["num_classes"] == 3
