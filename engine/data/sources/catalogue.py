"""The sources Thaw knows: the user's folder and labels CSV, and torchvision's classification sets.

Figures (images, classes, bytes) are the published ones, rounded; they describe a set before it is on disk.
Download URLs and MD5s are torchvision's own, read from its classes at download time (Caltech's live only inside
torchvision's `download()` methods and are copied from there, torchvision 0.29).
"""

from __future__ import annotations

from pathlib import Path

from engine.data.sources.base import Archive, DataSource
from engine.data.sources.local import open_csv, open_folder
from engine.data.sources.torchvision_sets import (
    Reader,
    caltech101_files,
    caltech256_classes,
    caltech256_files,
    digits_classes,
    flowers_classes,
    folder_files,
    imagenette_classes,
    imagenette_files,
    listed_files,
    open_with,
    pcam_targets,
    pet_files,
)
from engine.data.unpack import unpack_inner_archives

MB = 1_000_000
GB = 1_000_000_000

IMAGENETTE_SPLIT = "official: train (9 469) trains, val (3 925) validates"
PCAM_MARKER = "pcam/camelyonpatch_level_2_split_valid_y.h5"
STRATIFIED = "no official split: seeded stratified split (data.val_fraction, data.split_seed)"


def _tvd():
    import torchvision.datasets as tvd

    return tvd


def _caltech101_archives() -> tuple[Archive, ...]:
    return (Archive("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip", "caltech-101.zip",
                    "3138e1922a9193bfa496528edbbc45d0", "caltech101", "zip", 137_414_764),)


def _caltech101_after(root: Path) -> None:
    # As torchvision's download(): the zip holds caltech-101/*.tar.gz, whose contents belong in caltech101/.
    unpack_inner_archives(root / "caltech101" / "caltech-101", root / "caltech101", suffix=".gz")


def _caltech256_archives() -> tuple[Archive, ...]:
    return (Archive("https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",
                    "256_ObjectCategories.tar", "67b4f42ca05d46448c6bb8ecd2220f6d", "caltech256", "tar",
                    1_183_006_720),)


def _food101_archives() -> tuple[Archive, ...]:
    cls = _tvd().Food101
    return (Archive(cls._URL, "food-101.tar.gz", cls._MD5, "", "tar", 4_996_278_331),)  # noqa: SLF001


def _flowers102_archives() -> tuple[Archive, ...]:
    cls = _tvd().Flowers102
    prefix, files = cls._download_url_prefix, cls._file_dict  # noqa: SLF001
    # The labels first and the images last: "flowers-102/jpg" marks the whole set as on disk.
    return (Archive(prefix + files["label"][0], files["label"][0], files["label"][1], "flowers-102", "none"),
            Archive(prefix + files["setid"][0], files["setid"][0], files["setid"][1], "flowers-102", "none"),
            Archive(prefix + files["image"][0], files["image"][0], files["image"][1], "flowers-102", "tar",
                    344_862_509))


def _pet_archives() -> tuple[Archive, ...]:
    return tuple(Archive(url, url.rsplit("/", 1)[1], md5, "oxford-iiit-pet", "tar")
                 for url, md5 in _tvd().OxfordIIITPet._RESOURCES)  # noqa: SLF001


def _dtd_archives() -> tuple[Archive, ...]:
    cls = _tvd().DTD
    return (Archive(cls._URL, cls._URL.rsplit("/", 1)[1], cls._MD5, "dtd", "tar", 625_239_812),)  # noqa: SLF001


def _eurosat_archives() -> tuple[Archive, ...]:
    # torchvision's EuroSAT.download() (URL and MD5 as there, torchvision 0.29)
    return (Archive("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                    "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip", "EuroSAT.zip",
                    "c8fa014336c82ac7804f0398fcb19387", "eurosat", "zip", 94_280_567),)


def _aircraft_archives() -> tuple[Archive, ...]:
    url = _tvd().FGVCAircraft._URL  # noqa: SLF001
    return (Archive(url, url.rsplit("/", 1)[1], "", "", "tar", 2_753_340_328),)  # torchvision publishes no MD5


def _imagenette_archives(size: str, nbytes: int):
    def archives() -> tuple[Archive, ...]:
        url, md5 = _tvd().Imagenette._ARCHIVES[size]  # noqa: SLF001
        return (Archive(url, url.rsplit("/", 1)[1], md5, "", "tar", nbytes),)

    return archives


def _cifar_archives(cls_name: str, nbytes: int):
    def archives() -> tuple[Archive, ...]:
        cls = getattr(_tvd(), cls_name)
        return (Archive(cls.url, cls.filename, cls.tgz_md5, "", "tar", nbytes),)

    return archives


def _stl10_archives() -> tuple[Archive, ...]:
    cls = _tvd().STL10
    return (Archive(cls.url, cls.filename, cls.tgz_md5, "", "tar", 2_640_397_119),)


def _mnist_archives(cls_name: str):
    def archives() -> tuple[Archive, ...]:
        cls = getattr(_tvd(), cls_name)
        return tuple(Archive(cls.mirrors[0] + name, name, md5, f"{cls_name}/raw", "gunzip")
                     for name, md5 in cls.resources)

    return archives


def _svhn_archives() -> tuple[Archive, ...]:
    split_list = _tvd().SVHN.split_list
    return tuple(Archive(split_list[s][0], split_list[s][1], split_list[s][2], "", "none") for s in ("train", "test"))


def _pcam_archives() -> tuple[Archive, ...]:
    files = _tvd().PCAM._FILES  # noqa: SLF001
    return tuple(Archive(f"https://drive.google.com/uc?id={file_id}", f"{name}.gz", md5, "pcam", "gunzip",
                         google_drive_id=file_id)
                 for split in ("train", "test", "val") for name, file_id, md5 in files[split].values())


SOURCES: tuple[DataSource, ...] = (
    DataSource("folder", "Your image folder", "yours", "", 0, 0,
               "train/ + val/ folders when both exist, else a seeded stratified split", open_folder, local=True),
    DataSource("csv", "Your labels CSV (path,label)", "yours", "", 0, 0,
               "the CSV's split column (train/val) when it has one, else a seeded stratified split", open_csv,
               local=True),
    DataSource("Caltech101", "Caltech-101", "CC BY 4.0", "https://data.caltech.edu/records/mzrjq-6wc02", 8_677, 101,
               STRATIFIED, open_with(Reader("Caltech101", "", None, caltech101_files, lambda b: list(b.categories)),
                                     "Caltech101", "caltech101/101_ObjectCategories"),
               137 * MB, 140 * MB, _caltech101_archives, "caltech101/101_ObjectCategories",
               after_unpack=_caltech101_after),
    DataSource("Caltech256", "Caltech-256", "CC BY 4.0", "https://data.caltech.edu/records/nyy15-4j048", 30_607, 257,
               STRATIFIED, open_with(Reader("Caltech256", "", None, caltech256_files, caltech256_classes),
                                     "Caltech256", "caltech256/256_ObjectCategories"),
               1_183 * MB, 1_183 * MB, _caltech256_archives, "caltech256/256_ObjectCategories"),
    DataSource("Food101", "Food-101", "research use (images from foodspotting.com; no licence stated)",
               "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/", 101_000, 101,
               "official: train (75 750) trains, test (25 250) validates",
               open_with(Reader("Food101", "split", ("train", "test"), listed_files), "Food101", "food-101/meta"),
               4_996 * MB, 5_000 * MB, _food101_archives, "food-101/meta", splits=("train", "test")),
    DataSource("Flowers102", "Oxford 102 Flowers", "no licence stated (VGG, Oxford); research use",
               "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/", 8_189, 102,
               "official: train (1 020) trains, val (1 020) validates; test (6 149) held out",
               open_with(Reader("Flowers102", "split", ("train", "val"), listed_files, flowers_classes), "Flowers102",
                         "flowers-102/jpg", ("scipy",)),
               345 * MB, 350 * MB, _flowers102_archives, "flowers-102/jpg", ("scipy",), ("train", "val", "test")),
    DataSource("OxfordIIITPet", "Oxford-IIIT Pet", "CC BY-SA 4.0", "https://www.robots.ox.ac.uk/~vgg/data/pets/",
               7_349, 37, "official: trainval (3 680) trains, test (3 669) validates",
               open_with(Reader("OxfordIIITPet", "split", ("trainval", "test"), pet_files), "OxfordIIITPet",
                         "oxford-iiit-pet/annotations"),
               811 * MB, 800 * MB, _pet_archives, "oxford-iiit-pet/annotations", splits=("trainval", "test")),
    DataSource("DTD", "Describable Textures", "research use only (the authors' terms)",
               "https://www.robots.ox.ac.uk/~vgg/data/dtd/", 5_640, 47,
               "official partition 1: train (1 880) trains, val (1 880) validates; test (1 880) held out",
               open_with(Reader("DTD", "split", ("train", "val"), listed_files), "DTD", "dtd/dtd"),
               625 * MB, 630 * MB, _dtd_archives, "dtd/dtd", splits=("train", "val", "test")),
    DataSource("EuroSAT", "EuroSAT (RGB)", "MIT", "https://github.com/phelber/eurosat", 27_000, 10, STRATIFIED,
               open_with(Reader("EuroSAT", "", None, folder_files), "EuroSAT", "eurosat/2750"),
               94 * MB, 95 * MB, _eurosat_archives, "eurosat/2750"),
    DataSource("FGVCAircraft", "FGVC-Aircraft (variants)", "non-commercial research use only",
               "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/", 10_000, 100,
               "official: train (3 334) trains, val (3 333) validates; test (3 333) held out",
               open_with(Reader("FGVCAircraft", "split", ("train", "val"), listed_files), "FGVCAircraft",
                         "fgvc-aircraft-2013b/data"),
               2_753 * MB, 2_800 * MB, _aircraft_archives, "fgvc-aircraft-2013b/data",
               splits=("train", "val", "trainval", "test")),
    DataSource("Imagenette", "Imagenette (full size)", "Apache 2.0 (fastai); images from ImageNet, under its terms",
               "https://github.com/fastai/imagenette", 13_394, 10, IMAGENETTE_SPLIT,
               open_with(Reader("Imagenette", "split", ("train", "val"), imagenette_files, imagenette_classes),
                         "Imagenette", "imagenette2"),
               1_557 * MB, 1_600 * MB, _imagenette_archives("full", 1_557_161_267), "imagenette2",
               splits=("train", "val")),
    DataSource("Imagenette160", "Imagenette (160 px)", "Apache 2.0 (fastai); images from ImageNet, under its terms",
               "https://github.com/fastai/imagenette", 13_394, 10, IMAGENETTE_SPLIT,
               open_with(Reader("Imagenette", "split", ("train", "val"), imagenette_files, imagenette_classes,
                                kwargs={"size": "160px"}), "Imagenette160", "imagenette2-160"),
               94 * MB, 100 * MB, _imagenette_archives("160px", 94_432_119), "imagenette2-160",
               splits=("train", "val")),
    DataSource("CIFAR10", "CIFAR-10", "no licence stated (Krizhevsky 2009); cite the report",
               "https://www.cs.toronto.edu/~kriz/cifar.html", 60_000, 10,
               "official: train (50 000) trains, test (10 000) validates",
               open_with(Reader("CIFAR10"), "CIFAR10", "cifar-10-batches-py"),
               170 * MB, 178 * MB, _cifar_archives("CIFAR10", 170_498_071), "cifar-10-batches-py",
               splits=("train", "test")),
    DataSource("CIFAR100", "CIFAR-100", "no licence stated (Krizhevsky 2009); cite the report",
               "https://www.cs.toronto.edu/~kriz/cifar.html", 60_000, 100,
               "official: train (50 000) trains, test (10 000) validates",
               open_with(Reader("CIFAR100"), "CIFAR100", "cifar-100-python"),
               169 * MB, 178 * MB, _cifar_archives("CIFAR100", 169_001_437), "cifar-100-python",
               splits=("train", "test")),
    DataSource("STL10", "STL-10", "no licence stated (Coates et al. 2011); images from ImageNet",
               "https://cs.stanford.edu/~acoates/stl10/", 13_000, 10,
               "official: train (5 000) trains, test (8 000) validates; unlabeled (100 000) for unsupervised use",
               open_with(Reader("STL10", "split", ("train", "test")), "STL10", "stl10_binary"),
               2_640 * MB, 3_100 * MB, _stl10_archives, "stl10_binary",
               splits=("train", "test", "unlabeled", "train+unlabeled")),
    DataSource("MNIST", "MNIST", "CC BY-SA 3.0", "https://yann.lecun.com/exdb/mnist/", 70_000, 10,
               "official: train (60 000) trains, test (10 000) validates",
               open_with(Reader("MNIST", classes=digits_classes), "MNIST", "MNIST/raw/t10k-labels-idx1-ubyte"),
               12 * MB, 55 * MB, _mnist_archives("MNIST"), "MNIST/raw/t10k-labels-idx1-ubyte",
               splits=("train", "test")),
    DataSource("FashionMNIST", "Fashion-MNIST", "MIT", "https://github.com/zalandoresearch/fashion-mnist", 70_000, 10,
               "official: train (60 000) trains, test (10 000) validates",
               open_with(Reader("FashionMNIST"), "FashionMNIST", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
               31 * MB, 55 * MB, _mnist_archives("FashionMNIST"), "FashionMNIST/raw/t10k-labels-idx1-ubyte",
               splits=("train", "test")),
    DataSource("SVHN", "Street View House Numbers", "non-commercial use only", "http://ufldl.stanford.edu/housenumbers/",
               99_289, 10, "official: train (73 257) trains, test (26 032) validates",
               open_with(Reader("SVHN", "split", ("train", "test"), classes=digits_classes,
                                targets=lambda b: [int(t) for t in b.labels]), "SVHN", "test_32x32.mat", ("scipy",)),
               246 * MB, 246 * MB, _svhn_archives, "test_32x32.mat", ("scipy",), ("train", "test")),
    DataSource("PCAM", "PatchCamelyon", "CC0", "https://github.com/basveeling/pcam", 327_680, 2,
               "official: train (262 144) trains, val (32 768) validates; test (32 768) held out",
               open_with(Reader("PCAM", "split", ("train", "val"), classes=lambda b: ["no tumour", "tumour"],
                                targets=pcam_targets), "PCAM", PCAM_MARKER, ("h5py",)),
               7_500 * MB, 8_000 * MB, _pcam_archives, PCAM_MARKER, ("h5py",),
               ("train", "val", "test")),
)
