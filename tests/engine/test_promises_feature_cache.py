"""Feature-cache promises checked where they can break: the key follows the backbone's tensors (not the name of
the file they came from), the disk store evicts the least recently used entry, and a head that is a container
(dropout, a hidden layer) gets exactly the features a plain head gets."""

from __future__ import annotations

import contextlib
import os
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from engine.model import zoo
from engine.model.build import build_model
from engine.model.freezing import apply_freeze_plan
from engine.recipe import DataConfig, HeadConfig, ModelConfig
from engine.train import events as ev
from engine.train.feature_cache import (
    FeatureSet,
    FeatureStore,
    build_feature_set,
    cache_key,
    dataset_identity,
    default_cache_dir,
    head_only,
)
from engine.train.trainer import Trainer
from tests.helpers import tiny_recipe


@pytest.fixture(autouse=True)
def fresh_memory():
    """The store keeps the last entry of the process in memory; each test starts and ends without it."""
    FeatureStore.forget_memory()
    yield
    FeatureStore.forget_memory()


def features_cached(recipe) -> ev.FeaturesCached:
    events: list[ev.Event] = []
    result = Trainer(recipe, [events.append]).fit()
    assert result.status == "finished", result.error
    cached = [e for e in events if isinstance(e, ev.FeaturesCached)]
    assert len(cached) == 1
    return cached[0]


# --- 6. a weights file rewritten at the same path changes the key -----------------------------------------------
def test_weights_rewritten_at_the_same_path_change_the_cache_key(image_folder, tmp_path):
    weights = tmp_path / "backbone.pth"

    def write_backbone(seed: int) -> None:
        torch.manual_seed(seed)
        torch.save({k: v for k, v in zoo.get_model("tiny_resnet").state_dict().items() if not k.startswith("fc.")},
                   weights)

    write_backbone(1)
    recipe = tiny_recipe(image_folder, "feature_extraction", epochs=1, out=tmp_path / "runs")
    recipe.model.weights_file = str(weights)
    recipe.phases[0].head_fit = "epochs"  # one pass over the cached features: the cross-validated fit adds nothing here
    first = features_cached(recipe)
    assert not first.from_disk and first.seconds > 0
    FeatureStore.forget_memory()
    again = features_cached(recipe)
    assert again.key == first.key and again.from_disk  # unchanged file: the cache is reused
    # Rewritten in place with other tensors; same path, same size, and even the old modification time.
    stat = weights.stat()
    write_backbone(2)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size and weights.stat().st_mtime_ns == stat.st_mtime_ns
    FeatureStore.forget_memory()
    rewritten = features_cached(recipe)
    assert rewritten.key != first.key and not rewritten.from_disk and rewritten.seconds > 0


def small_model(seed: int = 0, head: HeadConfig | None = None) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(arch="tiny_resnet", weights="none", head=head or HeadConfig()), 3, DataConfig(),
                       pretrained=False).model


class FakeFiles:
    """A dataset's identity without images: `samples` as ImageFiles has them."""

    def __init__(self, samples):
        self.samples = samples


def test_cache_key_follows_every_backbone_tensor_and_nothing_in_the_head(tmp_path):
    files = []
    for i in range(2):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(b"x" * (i + 1))
    train, val = FakeFiles([(str(files[0]), 0)]), FakeFiles([(str(files[1]), 1)])
    model = small_model()
    key = cache_key(model, "fc", {"arch": "resnet18"}, train, val)
    assert len(key) == 32 and key == cache_key(small_model(), "fc", {"arch": "resnet18"}, train, val)
    with torch.no_grad():
        model.fc.weight.add_(1.0)  # the head does not change the features
    assert cache_key(model, "fc", {"arch": "resnet18"}, train, val) == key
    for name in ("layer4.1.conv2.weight", "bn1.running_var"):  # a parameter, a buffer: one ulp each
        changed = small_model()
        with torch.no_grad():
            tensor = changed.get_parameter(name) if "running" not in name else changed.get_buffer(name)
            tensor.view(-1)[0] = torch.nextafter(tensor.view(-1)[0], torch.tensor(float("inf")))
        assert cache_key(changed, "fc", {"arch": "resnet18"}, train, val) != key, name
    assert cache_key(model, "fc", {"arch": "resnet18", "views": 2}, train, val) != key
    described = cache_key(model, "fc", {"arch": "resnet18", "views": 2}, train, val)
    assert cache_key(model, "fc", {"views": 2, "arch": "resnet18"}, train, val) == described  # not the dict order
    assert cache_key(model, "fc", {"arch": "resnet18"}, val, train) != key
    assert cache_key(model, "fc", {"arch": "resnet18"}, train, FakeFiles([(str(files[1]), 2)])) != key
    files[1].write_bytes(b"xyz")  # the same file, another size
    assert cache_key(model, "fc", {"arch": "resnet18"}, train, val) != key


def test_dataset_identity_lists_files_or_names_a_torchvision_set(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"12345")
    st = image.stat()
    assert dataset_identity(FakeFiles([(str(image), 3), (str(tmp_path / "gone.png"), 1)])) == [
        [str(image), 3, 5, st.st_mtime_ns], [str(tmp_path / "gone.png"), 1, None, None]]

    class Wrapped(Dataset):
        def __init__(self, base=None):
            if base is not None:
                self.base = base

        def __len__(self):
            return 7

    assert dataset_identity(Wrapped()) == ["Wrapped", 7]
    assert dataset_identity(Wrapped(base=FakeFiles([]))) == ["FakeFiles", 7]


# --- 7. least recently used entries are evicted first -----------------------------------------------------------
def entry(key: str, kilobytes: int = 300) -> FeatureSet:
    train = torch.full((1, kilobytes, 250), float(len(key)))  # 250 float32 = 1000 bytes per row
    return FeatureSet(train, torch.zeros(kilobytes, dtype=torch.long), torch.zeros(2, 250),
                      torch.zeros(2, dtype=torch.long),
                      key, 1.0, False)


def on_disk(store: FeatureStore) -> set[str]:
    return {p.stem for p in store.folder.glob("*.pt")}


def age(store: FeatureStore, ages: dict[str, int]) -> None:
    """Give entries distinct, old access times (file times are coarse: entries written in one tick would tie)."""
    for key, seconds in ages.items():
        os.utime(store.folder / f"{key}.pt", (seconds, seconds))


def test_store_evicts_the_least_recently_used_entry(tmp_path):
    store = FeatureStore(tmp_path / "features", budget_mb=1)  # three 300 kB entries fit, four do not
    for key in ("a", "b", "c"):
        store.put(entry(key))
    assert on_disk(store) == {"a", "b", "c"}
    age(store, {"a": 1000, "b": 2000, "c": 3000})
    FeatureStore.forget_memory()
    used = store.get("a")  # a is now the most recently used
    assert used is not None and used.from_disk and used.key == "a" and torch.equal(used.train, entry("a").train)
    assert used.seconds == 0.0  # nothing was computed
    store.put(entry("d"))
    assert on_disk(store) == {"a", "c", "d"}  # b, the least recently used, went; the new entry stayed
    age(store, {"a": 1000, "c": 2000, "d": 3000})
    FeatureStore.forget_memory()
    assert store.get("c") is not None and store.get("d") is not None
    store.put(entry("e"))
    assert on_disk(store) == {"c", "d", "e"}
    total = sum(p.stat().st_size for p in store.folder.glob("*.pt"))
    assert total <= store.budget == 2**20


def test_store_budget_is_inclusive_to_the_byte(tmp_path):
    store = FeatureStore(tmp_path / "features", budget_mb=10)
    for key in ("a", "b", "c"):
        store.put(entry(key, kilobytes=100))
    sizes = {p.stem: p.stat().st_size for p in store.folder.glob("*.pt")}
    age(store, {"a": 1000, "b": 2000, "c": 3000})
    store.budget = sum(sizes.values())  # exactly full
    store.put(entry("c", kilobytes=100))  # rewritten: the same size, now the newest
    assert on_disk(store) == {"a", "b", "c"}
    age(store, {"a": 1000, "b": 2000, "c": 3000})
    store.budget = sum(sizes.values()) - 1  # one byte short: the least recently used goes
    store.put(entry("c", kilobytes=100))
    assert on_disk(store) == {"b", "c"}


def test_eviction_tolerates_entries_deleted_by_another_run(tmp_path, monkeypatch):
    """Two runs sharing one cache: an entry listed by this run may be gone before it is looked at, or right after."""
    store = FeatureStore(tmp_path / "features", budget_mb=1)  # three 300 kB entries fit
    for key in ("old", "a", "b"):
        store.put(entry(key))
    age(store, {"old": 1000, "a": 2000, "b": 3000})
    folder = store.folder
    real_glob = type(folder).glob

    class DeletedRightAfterStat(type(folder)):
        def stat(self, *args, **kwargs):
            result = super().stat(*args, **kwargs)
            os.unlink(self)  # the other run evicts it now
            return result

    def listing(self, pattern):  # a vanished entry first, then the real ones ("old" vanishing once looked at)
        paths = sorted(real_glob(self, pattern))
        return [folder / "gone.pt"] + [DeletedRightAfterStat(p) if p.stem == "old" else p for p in paths]

    monkeypatch.setattr(type(folder), "glob", listing)
    store.put(entry("c"))  # four entries listed, three fit: "old" is evicted, although already gone
    monkeypatch.undo()
    assert on_disk(store) == {"a", "b", "c"}


def test_store_keeps_an_entry_larger_than_its_budget_in_memory_only(tmp_path):
    store = FeatureStore(tmp_path / "features", budget_mb=1)
    store.put(entry("small"))
    big = entry("big", kilobytes=1100)
    store.put(big)
    assert on_disk(store) == {"small"}
    assert torch.equal(store.get("big").train, big.train)
    FeatureStore.forget_memory()
    assert store.get("big") is None and store.get("small") is not None


def test_store_memory_only_and_damaged_entries(tmp_path):
    memory_only = FeatureStore(tmp_path / "none", budget_mb=0)
    memory_only.put(entry("m"))
    assert not (tmp_path / "none").exists() and memory_only.get("m") is not None
    FeatureStore.forget_memory()
    assert memory_only.get("m") is None
    store = FeatureStore(tmp_path / "features", budget_mb=1)
    store.folder.mkdir()
    (store.folder / "broken.pt").write_bytes(b"half a file")
    assert store.get("broken") is None and not (store.folder / "broken.pt").exists()  # recomputed, never fatal
    assert store.get("never-written") is None


def test_a_memory_only_store_never_reads_the_disk(tmp_path):
    FeatureStore(tmp_path / "features", budget_mb=1).put(entry("k"))
    FeatureStore.forget_memory()
    assert FeatureStore(tmp_path / "features", budget_mb=0).get("k") is None
    assert FeatureStore(tmp_path / "features", budget_mb=1).get("k") is not None


def test_store_creates_its_folder_with_parents(tmp_path):
    store = FeatureStore(tmp_path / "a" / "b" / "features", budget_mb=1)
    store.put(entry("k"))
    assert on_disk(store) == {"k"}


class Foreign:
    pass


def test_a_planted_cache_file_is_never_unpickled(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "features", budget_mb=1)
    store.folder.mkdir()
    torch.save({"train": Foreign(), "train_labels": Foreign(), "val": Foreign(), "val_labels": Foreign()},
               store.folder / "evil.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # even where torch's default is relaxed
    assert store.get("evil") is None and not (store.folder / "evil.pt").exists()


def test_an_entry_evicted_by_another_run_while_loading_is_recomputed(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "features", budget_mb=1)
    store.put(entry("k"))
    FeatureStore.forget_memory()
    path = store.folder / "k.pt"

    def load_after_another_run_evicted_it(*_args, **_kwargs):
        path.unlink()
        raise FileNotFoundError(str(path))

    monkeypatch.setattr(torch, "load", load_after_another_run_evicted_it)
    assert store.get("k") is None


def test_store_memory_holds_one_entry_on_the_cpu(tmp_path):
    store = FeatureStore(tmp_path / "features", budget_mb=0)
    store.put(entry("x"))
    store.put(entry("y"))
    assert store.get("x") is None and store.get("y").train.device.type == "cpu"
    assert FeatureStore(tmp_path / "other", budget_mb=0).get("y") is not None  # one memory for the process


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here" and FeatureStore().folder == tmp_path / "here"
    assert FeatureStore(budget_mb=3).budget == 3 * 2**20 and FeatureStore().budget == 2048 * 2**20
    monkeypatch.delenv("THAW_CACHE_DIR")
    assert default_cache_dir().name == "features" and default_cache_dir().parent.name == "Thaw"


# --- the features themselves ---------------------------------------------------------------------------------------
class Images(Dataset):
    def __init__(self, n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 32, 32, generator=generator)
        self.y = torch.arange(n) % 3
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def reference_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    body = nn.Sequential(*list(model.children())[:-1]).eval()
    with torch.no_grad():
        return body(x).flatten(1)


def make_loader(dataset, indices):
    return DataLoader(dataset, batch_size=4, sampler=indices)


def features_of(model, train, val, views=1, **kwargs):
    return build_feature_set(model, "fc", make_loader, train, val, views, torch.device("cpu"), contextlib.nullcontext,
                             False, {"test": True}, FeatureStore(budget_mb=0), **kwargs)


@pytest.mark.parametrize("head", [HeadConfig(), HeadConfig(dropout=0.5), HeadConfig(dropout=0.2, hidden=8)],
                         ids=["linear", "dropout", "hidden"])
def test_features_are_the_heads_input_whatever_the_head(head):
    model = small_model(head=head)
    model.train()
    train, val = Images(10, 1), Images(6, 2)
    progress: list[tuple[int, int]] = []
    started = time.perf_counter()
    features = features_of(model, train, val, views=2, progress=lambda done, total: progress.append((done, total)))
    assert 0 < features.seconds <= time.perf_counter() - started
    assert features.key == cache_key(model, "fc", {"test": True, "views": 2}, train, val)
    assert model.training  # the caller's mode is given back
    assert features.train.shape == (2, 10, 32) and features.val.shape == (6, 32)  # tiny_resnet: 32 features
    assert torch.allclose(features.train[0], reference_features(model, train.x), atol=1e-5)
    assert torch.allclose(features.val, reference_features(model, val.x), atol=1e-5)
    assert torch.equal(features.train_labels, train.y) and torch.equal(features.val_labels, val.y)
    assert features.train_labels.dtype == torch.long and features.from_disk is False
    assert train.epochs == [0, 1]  # view v is the augmentation of epoch v
    assert progress[-1] == (2 * 10 + 6, 26) and [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_features_are_computed_once_then_reused(tmp_path):
    model = small_model()
    train, val = Images(8, 1), Images(4, 2)
    store = FeatureStore(tmp_path / "features", budget_mb=1)
    first = build_feature_set(model, "fc", make_loader, train, val, 1, torch.device("cpu"), contextlib.nullcontext,
                              False, {}, store)
    other = build_feature_set(model, "fc", make_loader, train, val, 2, torch.device("cpu"), contextlib.nullcontext,
                              False, {}, store)
    assert other.key != first.key and train.epochs == [0, 0, 1]  # two views: another entry, computed
    FeatureStore.forget_memory()
    again = build_feature_set(model, "fc", make_loader, train, val, 1, torch.device("cpu"), contextlib.nullcontext,
                              False, {}, store)
    assert train.epochs == [0, 0, 1]  # not computed again
    assert again.from_disk and again.key == first.key and torch.equal(again.train, first.train)


def test_the_feature_pass_uses_channels_last_when_asked():
    layouts: list[bool] = []
    first_conv: list[nn.Module] = []

    def record(module, inputs):  # the input layout of the model's first convolution, at every batch
        if isinstance(module, nn.Conv2d) and not first_conv:
            first_conv.append(module)
        if first_conv and module is first_conv[0]:
            layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    handle = nn.modules.module.register_module_forward_pre_hook(record)
    try:
        for channels_last in (True, False):
            layouts.clear()
            first_conv.clear()
            build_feature_set(small_model(), "fc", make_loader, Images(4, 1), Images(2, 2), 1, torch.device("cpu"),
                              contextlib.nullcontext, channels_last, {}, FeatureStore(budget_mb=0))
            assert layouts == [channels_last, channels_last]  # the training images' batch, the validation batch
            FeatureStore.forget_memory()
    finally:
        handle.remove()


def test_feature_computation_stops_when_asked():
    model = small_model()
    calls = {"n": 0}

    def stop_after_two_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    assert features_of(model, Images(12, 1), Images(4, 2), should_stop=stop_after_two_batches) is None
    calls["n"] = 0
    checks_in_training = 3  # 12 images in batches of 4; the 4th check is in the validation pass

    def stop_during_validation() -> bool:
        calls["n"] += 1
        return calls["n"] > checks_in_training

    assert features_of(model, Images(12, 1), Images(8, 2), should_stop=stop_during_validation) is None
    assert calls["n"] == checks_in_training + 1
    assert features_of(model, Images(8, 1), Images(4, 2), should_stop=lambda: calls["n"] > 100) is not None


def test_feature_set_batches_follow_the_order_and_view():
    train = torch.arange(2 * 5 * 1, dtype=torch.float32).reshape(2, 5, 1)
    fs = FeatureSet(train, torch.tensor([0, 1, 2, 0, 1]), torch.arange(7.0).reshape(7, 1), torch.arange(7),
                    "k", 0.0, False)
    batches = list(fs.train_batches([4, 0, 3], view=1, batch_size=2))
    assert [b[0].flatten().tolist() for b in batches] == [[9.0, 5.0], [8.0]]
    assert [b[1].tolist() for b in batches] == [[1, 0], [0]]
    assert [b[1].tolist() for b in fs.val_batches(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b[1].tolist() for b in fs.val_batches(3, max_batches=2)] == [[0, 1, 2], [3, 4, 5]]
    assert fs.nbytes == 10 * 4 + 5 * 8 + 7 * 4 + 7 * 8
    fs.seconds, fs.from_disk = 2.5, True
    moved = fs.to(torch.device("meta"))
    assert [t.device.type for t in (moved.train, moved.train_labels, moved.val, moved.val_labels)] == ["meta"] * 4
    assert (moved.key, moved.seconds, moved.from_disk) == ("k", 2.5, True)


def test_head_only_needs_only_the_head_training_and_no_bn_statistics_moving():
    built = build_model(ModelConfig(arch="resnet18", weights="none"), 3, DataConfig(), pretrained=False)
    model, stages = built.model, built.stages
    state = apply_freeze_plan(model, stages, ["head"])
    assert head_only(model, "fc", state.bn_modes)
    state = apply_freeze_plan(model, stages, ["head"], bn_overrides={"layer4.1.bn2": "train"})
    assert not head_only(model, "fc", state.bn_modes)  # its statistics change with training
    state = apply_freeze_plan(model, stages, ["layer4", "head"])
    assert not head_only(model, "fc", state.bn_modes)
    state = apply_freeze_plan(model, stages, ["layer4.1.bn2", "head"], bn_overrides={"layer4.1.bn2": "frozen_stats"})
    assert not head_only(model, "fc", state.bn_modes)  # the BN affine trains outside the head
    for p in model.parameters():
        p.requires_grad_(False)
    assert not head_only(model, "fc", {})  # nothing trains: nothing to cache for
