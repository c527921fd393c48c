"""engine.data.scan: layouts, exact problem lists, counts and the report's round trip."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from engine.data.scan import DatasetError, Problem, ScanReport, scan_folder


def write_image(path, colour=(120, 60, 30), size=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_truncated_jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def folder_dataset(tmp_path):
    """cat: 3 good (one nested) + bad files; dog: 2; fish: 1; empty: nothing usable; one loose file at root."""
    root = tmp_path / "pets"
    write_image(root / "cat" / "a.png")
    write_image(root / "cat" / "b.jpg")
    write_image(root / "cat" / "more" / "c.png")
    write_truncated_jpeg(root / "cat" / "broken.jpg")
    (root / "cat" / "notes.txt").write_text("not a picture")
    (root / "cat" / "zero.png").write_bytes(b"")
    write_image(root / "cat" / ".hidden.png")  # ignored silently
    (root / "cat" / "Thumbs.db").write_bytes(b"junk")  # ignored silently
    write_image(root / "dog" / "a.png")
    write_image(root / "dog" / "b.webp")
    write_image(root / "fish" / "a.bmp")
    (root / "empty").mkdir()
    (root / "empty" / ".DS_Store").write_bytes(b"junk")
    write_image(root / "__MACOSX" / "cat" / "._a.png")  # archiver junk: not a class
    write_image(root / "loose.png")
    return root


def test_folder_layout_classes_counts_and_samples(folder_dataset):
    report = scan_folder(folder_dataset)
    root = str(folder_dataset)
    assert report.root == root and report.layout == "folder"
    assert report.classes == ["cat", "dog", "empty", "fish"]
    assert report.counts == {"cat": 3, "dog": 2, "empty": 0, "fish": 1}
    assert report.split_counts == {}
    assert report.samples == [
        (os.path.join(root, "cat", "a.png"), 0, ""),
        (os.path.join(root, "cat", "b.jpg"), 0, ""),
        (os.path.join(root, "cat", "more", "c.png"), 0, ""),
        (os.path.join(root, "dog", "a.png"), 1, ""),
        (os.path.join(root, "dog", "b.webp"), 1, ""),
        (os.path.join(root, "fish", "a.bmp"), 3, ""),
    ]
    assert report.num_samples == 6
    assert report.empty_classes == ["empty"]


def test_folder_layout_lists_exactly_the_unusable_things(folder_dataset):
    report = scan_folder(folder_dataset)
    root = str(folder_dataset)
    assert report.problems == [
        Problem(os.path.join(root, "cat", "broken.jpg"), "truncated image file"),
        Problem(os.path.join(root, "cat", "notes.txt"), "not an image file (extension .txt)"),
        Problem(os.path.join(root, "cat", "zero.png"), "empty file"),
        Problem(os.path.join(root, "empty"), "empty class folder (no usable images)", is_folder=True),
        Problem(os.path.join(root, "loose.png"), "file outside a class folder"),
    ]
    assert report.skipped == 4


def test_imbalance_is_largest_over_smallest_nonempty_class(folder_dataset):
    assert scan_folder(folder_dataset).imbalance == pytest.approx(3.0)


def test_imbalance_of_a_single_class_is_one(tmp_path):
    write_image(tmp_path / "only" / "a.png")
    write_image(tmp_path / "only" / "b.png")
    assert scan_folder(tmp_path).imbalance == 1.0


def test_without_verify_only_extensions_are_checked(folder_dataset):
    report = scan_folder(folder_dataset, verify=False)
    assert report.counts == {"cat": 5, "dog": 2, "empty": 0, "fish": 1}  # broken.jpg and zero.png look fine
    assert [p.reason for p in report.problems] == [
        "not an image file (extension .txt)",
        "empty class folder (no usable images)",
        "file outside a class folder",
    ]


def test_images_are_verified_with_the_requested_channel_count(tmp_path):
    write_image(tmp_path / "rgb" / "a.png")
    np.save(tmp_path / "rgb" / "stack.npy", np.zeros((4, 4, 5), dtype=np.uint8))
    report = scan_folder(tmp_path, channels=5)
    assert [os.path.basename(path) for path, _, _ in report.samples] == ["stack.npy"]
    assert report.problems[0].path.endswith("a.png")
    assert "needs .npy arrays for 5-channel input" in report.problems[0].reason


@pytest.fixture
def train_val_dataset(tmp_path):
    root = tmp_path / "split"
    write_image(root / "train" / "ant" / "1.png")
    write_image(root / "train" / "ant" / "2.png")
    write_image(root / "train" / "bee" / "1.png")
    write_image(root / "validation" / "ant" / "1.png")
    write_image(root / "validation" / "bee" / "1.png")
    write_image(root / "validation" / "bee" / "2.png")
    write_image(root / "validation" / "wasp" / "1.png")  # not a training class
    write_image(root / "test" / "ant" / "1.png")  # not part of the layout
    return root


def test_train_val_layout(train_val_dataset):
    report = scan_folder(train_val_dataset)
    root = str(train_val_dataset)
    assert report.layout == "train_val"
    assert report.classes == ["ant", "bee"]
    assert report.counts == {"ant": 3, "bee": 3}
    assert report.split_counts == {"train": {"ant": 2, "bee": 1}, "val": {"ant": 1, "bee": 2}}
    assert report.samples == [
        (os.path.join(root, "train", "ant", "1.png"), 0, "train"),
        (os.path.join(root, "train", "ant", "2.png"), 0, "train"),
        (os.path.join(root, "train", "bee", "1.png"), 1, "train"),
        (os.path.join(root, "validation", "ant", "1.png"), 0, "val"),
        (os.path.join(root, "validation", "bee", "1.png"), 1, "val"),
        (os.path.join(root, "validation", "bee", "2.png"), 1, "val"),
    ]
    assert [(p.path, p.is_folder) for p in report.problems] == [
        (os.path.join(root, "test"), True),
        (os.path.join(root, "validation", "wasp"), True),
    ]
    assert "not in train" in report.problems[1].reason
    assert report.skipped == 0 and report.empty_classes == []


def test_train_val_class_without_training_images_is_empty(tmp_path):
    write_image(tmp_path / "train" / "a" / "1.png")
    (tmp_path / "train" / "b").mkdir()
    write_image(tmp_path / "val" / "a" / "1.png")
    write_image(tmp_path / "val" / "b" / "1.png")
    report = scan_folder(tmp_path)
    assert report.empty_classes == ["b"]
    assert report.problems == [
        Problem(str(tmp_path / "train" / "b"), "empty class folder (no usable images)", is_folder=True)
    ]


def test_missing_root_raises_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere") as info:
        scan_folder(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_root_that_is_a_file_raises(tmp_path):
    path = write_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_folder(path)


def test_root_without_class_folders_explains_the_layout(tmp_path):
    write_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match=r"root/<class>/<image>"):
        scan_folder(tmp_path)


def test_symlinked_folders_are_followed_and_loops_do_not_recurse_forever(tmp_path):
    outside = tmp_path / "elsewhere"
    write_image(outside / "x.png")
    root = tmp_path / "data"
    write_image(root / "a" / "1.png")
    os.symlink(outside, root / "b")
    os.symlink(root / "a", root / "a" / "loop")
    report = scan_folder(root)
    assert report.counts == {"a": 1, "b": 1}
    assert report.samples[1][0] == str(root / "b" / "x.png")
    assert report.skipped == 0
    assert [p.path for p in report.problems] == [str(root / "a" / "loop")]


def test_progress_is_reported_at_most_about_100_times(tmp_path):
    for i in range(150):
        write_image(tmp_path / f"c{i % 2}" / f"{i:03}.png", size=(2, 2))
    calls = []
    scan_folder(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert 1 <= len(calls) <= 101
    assert calls[-1] == (150, 150)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_an_exception_from_progress_aborts_the_scan(folder_dataset):
    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_folder(folder_dataset, progress=cancel)


def test_results_do_not_depend_on_the_number_of_workers(folder_dataset):
    assert scan_folder(folder_dataset, workers=1).to_dict() == scan_folder(folder_dataset, workers=8).to_dict()


def test_to_dict_from_dict_round_trip_through_json(folder_dataset, train_val_dataset):
    for root in (folder_dataset, train_val_dataset):
        report = scan_folder(root)
        restored = ScanReport.from_dict(json.loads(json.dumps(report.to_dict())))
        assert restored == report
        assert isinstance(restored.samples[0], tuple)


def test_format_text_mentions_counts_and_every_problem(folder_dataset):
    report = scan_folder(folder_dataset)
    text = report.format_text()
    assert "Unusable files (4):" in text
    for problem in report.problems:
        assert f"{problem.path}: {problem.reason}" in text
    for name, count in report.counts.items():
        assert any(name in line and str(count) in line for line in text.splitlines())
    assert "Total: 6" in text
    assert "Imbalance: 3.00" in text and "Warning" not in text


def test_format_text_warns_about_strong_imbalance(tmp_path):
    for i in range(4):
        write_image(tmp_path / "many" / f"{i}.png")
    write_image(tmp_path / "few" / "0.png")
    text = scan_folder(tmp_path).format_text()
    assert "Imbalance: 4.00" in text and "Warning" in text
