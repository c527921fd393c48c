"""engine.model.zoo: the model registry read from torchvision, exact weights names, pretrained loading through
torchvision's own loader from the seeded TORCH_HOME, the offline error, and local weights files."""

from __future__ import annotations

import io
import os
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchvision import models as tvm

from engine.errors import BadInputError, RecipeError, WeightsUnavailableError
from engine.model import zoo
from engine.model.build import build_model
from engine.recipe import ModelConfig

LESSON_MODELS = (
    ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    + [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
    + ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
    + [f"efficientnet_b{i}" for i in range(8)]
    + ["vit_b_16", "vit_b_32"]
)

FAMILY = {"resnet": "resnet", "vgg": "vgg", "mobilenet_v2": "mobilenetv2", "mobilenet_v3": "mobilenetv3",
          "efficientnet": "efficientnet", "vit": "vision_transformer"}

def _family(arch: str) -> str:
    return next(v for k, v in FAMILY.items() if arch.startswith(k))


def _default(arch: str):
    return tvm.get_model_weights(arch).DEFAULT


def _meta_params(arch: str) -> int:
    with torch.device("meta"):
        model = tvm.get_model(arch)
    return sum(p.numel() for p in model.parameters())


# --- the registry ---------------------------------------------------------------------------------------------

def test_all_models_covers_every_lesson_family():
    infos = {info.name: info for info in zoo.all_models()}
    assert set(LESSON_MODELS) <= set(infos)
    assert set(infos) == set(zoo.list_model_names())
    for arch in LESSON_MODELS:
        assert infos[arch].num_params > 0
        assert infos[arch].family == _family(arch)


@pytest.mark.parametrize("arch", LESSON_MODELS)
def test_model_info_reads_torchvision_metadata(arch):
    info = zoo.model_info(arch)
    default = _default(arch)
    preset = default.transforms()
    assert info.name == arch
    assert info.family == _family(arch)
    assert info.num_params == default.meta["num_params"] > 0
    assert info.input_size == preset.crop_size[0]
    assert info.resize_size == preset.resize_size[0]
    assert info.acc1 == default.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert [w.name for w in info.weights] == [str(w) for w in tvm.get_model_weights(arch)]
    assert [w.name for w in info.weights if w.is_default] == [str(default)]
    assert info.default_weights.file_name == os.path.basename(default.url)
    assert info.default_weights.num_categories == 1000
    assert info.to_dict()["weights"][0]["name"] == info.weights[0].name


@pytest.mark.parametrize("arch, input_size, resize_size, acc1, num_params", [
    ("resnet18", 224, 256, 69.758, 11_689_512),
    ("resnet50", 224, 232, 80.858, 25_557_032),  # DEFAULT is IMAGENET1K_V2
    ("vgg16_bn", 224, 256, 73.36, 138_365_992),
    ("mobilenet_v3_small", 224, 256, 67.668, 2_542_856),
    ("efficientnet_b0", 224, 256, 77.692, 5_288_548),
    ("efficientnet_b4", 380, 384, 83.384, 19_341_616),
    ("efficientnet_b7", 600, 600, 84.122, 66_347_960),
    ("vit_b_16", 224, 256, 81.072, 86_567_656),
    ("vit_b_32", 224, 256, 75.912, 88_224_232),
])
def test_model_info_known_values(arch, input_size, resize_size, acc1, num_params):
    info = zoo.model_info(arch)
    assert (info.input_size, info.resize_size) == (input_size, resize_size)
    assert info.acc1 == pytest.approx(acc1)
    assert info.num_params == num_params == _meta_params(arch)


def test_efficientnet_input_sizes_grow_with_the_family():
    sizes = [zoo.model_info(f"efficientnet_b{i}").input_size for i in range(8)]
    assert sizes == [224, 240, 288, 300, 380, 456, 528, 600]


def test_weights_entries_have_exact_names_and_per_weights_metadata():
    info = zoo.model_info("resnet50")
    by_name = {w.name: w for w in info.weights}
    assert set(by_name) == {"ResNet50_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V2"}
    v1, v2 = by_name["ResNet50_Weights.IMAGENET1K_V1"], by_name["ResNet50_Weights.IMAGENET1K_V2"]
    assert v2.is_default and not v1.is_default
    assert info.default_weights is v2
    assert (v1.acc1, v2.acc1) == (76.13, 80.858)
    assert v1.file_name == "resnet50-0676ba61.pth"
    assert v2.file_name == "resnet50-11ad3fa6.pth"
    assert v1.preprocessing["resize_size"] == 256 and v2.preprocessing["resize_size"] == 232
    assert v2.preprocessing["mean"] == pytest.approx([0.485, 0.456, 0.406])
    # ViT's SWAG weights have their own, larger input size.
    vit = {w.name: w for w in zoo.model_info("vit_b_16").weights}
    assert vit["ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1"].preprocessing["crop_size"] == 384
    assert vit["ViT_B_16_Weights.IMAGENET1K_V1"].preprocessing["crop_size"] == 224


def test_weights_without_categories_are_listed():
    """VGG16_Weights.IMAGENET1K_FEATURES has categories=None in its metadata."""
    weights = {w.name: w for w in zoo.model_info("vgg16").weights}
    assert weights["VGG16_Weights.IMAGENET1K_FEATURES"].num_categories == 0
    assert weights["VGG16_Weights.IMAGENET1K_V1"].num_categories == 1000


# --- resolving weights names ----------------------------------------------------------------------------------

def test_resolve_weights_default_short_and_full_names():
    assert zoo.resolve_weights("resnet50", "DEFAULT") is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert zoo.resolve_weights("resnet50", "IMAGENET1K_V1") is tvm.ResNet50_Weights.IMAGENET1K_V1
    assert zoo.resolve_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1") is tvm.ResNet50_Weights.IMAGENET1K_V1
    assert zoo.resolve_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V2") is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert str(zoo.resolve_weights("resnet50", "DEFAULT")) == "ResNet50_Weights.IMAGENET1K_V2"
    assert zoo.resolve_weights("vit_b_16", "IMAGENET1K_SWAG_E2E_V1") is tvm.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1


@pytest.mark.parametrize("spec", ["none", "None", "", "scratch", "random"])
def test_resolve_weights_none(spec):
    assert zoo.resolve_weights("resnet18", spec) is None


@pytest.mark.parametrize("spec", ["IMAGENET1K_V3", "imagenet", "ResNet18_Weights.IMAGENET1K_V1", "ResNet50_Weights."])
def test_bad_weights_name_lists_the_choices(spec):
    with pytest.raises(RecipeError) as info:
        zoo.resolve_weights("resnet50", spec)
    err = info.value
    assert err.field == "model.weights"
    assert f"'{spec}'" in err.message
    for choice in ("DEFAULT", "none", "ResNet50_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V2"):
        assert choice in err.message
    assert "model.weights" in str(err)


@pytest.mark.parametrize("call", [
    lambda: zoo.resolve_weights("resnet5", "DEFAULT"),
    lambda: zoo.model_info("resnet5"),
    lambda: zoo.build_backbone("resnet5", None),
])
def test_unknown_arch_names_the_field(call):
    with pytest.raises(RecipeError) as info:
        call()
    assert info.value.field == "model.arch"
    assert "'resnet5'" in info.value.message
    assert "resnet50" in info.value.message  # the close matches are suggested


def test_unknown_arch_in_build_model_names_the_field():
    with pytest.raises(RecipeError) as info:
        build_model(ModelConfig(arch="not_a_model", weights="none"), num_classes=3)
    assert info.value.field == "model.arch"


# --- pretrained weights through torchvision's loader ------------------------------------------------------------

def test_seeded_weights_are_cached_where_torchvision_looks(offline_torch_home):
    folder = Path(offline_torch_home["home"]) / "hub" / "checkpoints"
    assert zoo.checkpoint_dir() == folder
    weights = zoo.resolve_weights("resnet18", "DEFAULT")
    assert zoo.cached_weights_path(weights) == folder / "resnet18-f37072fd.pth"
    assert zoo.ensure_weights_cached(weights) == folder / "resnet18-f37072fd.pth"
    assert zoo.model_info("resnet18").default_weights.cached is True
    assert zoo.model_info("mobilenet_v3_small").default_weights.cached is True
    assert zoo.model_info("resnet34").default_weights.cached is False
    assert not any(w.cached for w in zoo.model_info("resnet50").weights)


def test_build_backbone_loads_exactly_the_seeded_tensors(offline_torch_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the cached weights must not be downloaded")

    monkeypatch.setattr(zoo.urllib.request, "urlopen", no_network)
    seeded = torch.load(offline_torch_home["files"]["resnet18"], weights_only=True)
    torch.manual_seed(99)  # a different random init: only a real load gives the seeded tensors
    model = zoo.build_backbone("resnet18", zoo.resolve_weights("resnet18", "DEFAULT"))
    state = model.state_dict()
    assert state.keys() == seeded.keys()
    for key, tensor in seeded.items():
        assert torch.equal(state[key], tensor), key
    assert model.fc.out_features == 1000  # the backbone keeps its original head


def test_build_model_with_pretrained_weights_reports_exact_name(offline_torch_home):
    seeded = torch.load(offline_torch_home["files"]["mobilenet_v3_small"], weights_only=True)
    built = build_model(ModelConfig(arch="mobilenet_v3_small", weights="DEFAULT"), num_classes=4)
    assert built.weights_name == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert built.head_path == "classifier.3"
    assert built.model.classifier[3].out_features == 4
    state = built.model.state_dict()
    for key, tensor in seeded.items():
        if not key.startswith("classifier.3."):
            assert torch.equal(state[key], tensor), key
    assert built.load_report is None


def test_offline_and_not_cached_names_the_file_and_folder(offline_torch_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("THAW_OFFLINE must prevent any download")

    monkeypatch.setattr(zoo.urllib.request, "urlopen", no_network)
    assert os.environ["THAW_OFFLINE"] == "1"
    weights = zoo.resolve_weights("resnet34", "DEFAULT")
    folder = Path(offline_torch_home["home"]) / "hub" / "checkpoints"
    before = sorted(os.listdir(folder))
    with pytest.raises(WeightsUnavailableError) as info:
        zoo.build_backbone("resnet34", weights)
    message = str(info.value)
    assert "resnet34-b627a593.pth" in message
    assert str(folder) in message
    assert "weights_file" in message
    assert "ResNet34_Weights.IMAGENET1K_V1" in message
    assert sorted(os.listdir(folder)) == before  # nothing half-written

    with pytest.raises(WeightsUnavailableError, match="resnet34-b627a593.pth"):
        build_model(ModelConfig(arch="resnet34", weights="DEFAULT"), num_classes=2)


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_failed_download_is_reported_and_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("THAW_OFFLINE", "0")

    def refused(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(zoo.urllib.request, "urlopen", refused)
    weights = zoo.resolve_weights("resnet34", "DEFAULT")
    with pytest.raises(WeightsUnavailableError, match="connection refused") as info:
        zoo.ensure_weights_cached(weights)
    assert "resnet34-b627a593.pth" in str(info.value)
    folder = tmp_path / "hub" / "checkpoints"
    assert list(folder.iterdir()) == []


def test_download_with_wrong_hash_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("THAW_OFFLINE", "0")
    monkeypatch.setattr(zoo.urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"not the real weights"))
    with pytest.raises(WeightsUnavailableError, match="hash mismatch"):
        zoo.ensure_weights_cached(zoo.resolve_weights("resnet34", "DEFAULT"))
    assert list((tmp_path / "hub" / "checkpoints").iterdir()) == []


def test_download_reports_progress_and_lands_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("THAW_OFFLINE", "0")
    payload = os.urandom(3 * (1 << 20) + 5)  # four chunks of at most 1 MiB
    monkeypatch.setattr(zoo.urllib.request, "urlopen", lambda *a, **k: _FakeResponse(payload))
    fake_weights = SimpleNamespace(url="https://example.invalid/models/tiny_weights.pth")
    progress = []
    path = zoo.ensure_weights_cached(fake_weights, lambda done, total: progress.append((done, total)))
    assert path == tmp_path / "hub" / "checkpoints" / "tiny_weights.pth"
    assert path.read_bytes() == payload
    assert [d for d, _ in progress] == [1 << 20, 2 << 20, 3 << 20, len(payload)]
    assert {t for _, t in progress} == {len(payload)}
    assert [p.name for p in path.parent.iterdir()] == ["tiny_weights.pth"]


# --- local weights files -------------------------------------------------------------------------------------------

@cache
def _source_state(num_classes: int = 7) -> dict[str, torch.Tensor]:
    """A tiny_resnet state dict (resnet18's layout and names, tests/tiny_arch.py) unlike any fresh initialisation
    (built once per module; never mutated). The file's layouts and the load report are the subject here, not the
    architecture: a resnet18 file is ~45 MB a test to write and read."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        return zoo.get_model("tiny_resnet", num_classes=num_classes).state_dict()


def _assert_backbone_equal(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    for key, tensor in source.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], tensor), key


def test_weights_file_loads_backbone_and_reports_head_mismatch(tmp_path):
    source = _source_state(7)
    path = tmp_path / "backbone.pth"
    torch.save(source, path)
    torch.manual_seed(0)
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path)), num_classes=3)
    assert torch.equal(built.model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert torch.equal(built.model.layer4[1].bn2.running_var, source["layer4.1.bn2.running_var"])
    _assert_backbone_equal(built.model, source)
    assert built.model.fc.out_features == 3
    report = built.load_report
    assert report is not None
    assert report.file == str(path)
    assert report.mismatched == ["fc.bias", "fc.weight"]
    assert report.unexpected == []
    assert "shape mismatch" in report.text() and "fc.weight" in report.text()
    assert built.weights_name == f"file:{path}"
    assert built.head_path == "fc"


def test_weights_file_reports_unexpected_keys(tmp_path):
    source = _source_state(7)
    path = tmp_path / "with_extra.pth"
    torch.save({**source, "projector.weight": torch.ones(4, 4)}, path)
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path)), num_classes=3)
    _assert_backbone_equal(built.model, source)
    assert built.load_report.unexpected == ["projector.weight"]
    assert built.load_report.mismatched == ["fc.bias", "fc.weight"]
    assert "1 unexpected: projector.weight" in built.load_report.text()


def test_weights_file_with_matching_head_loads_it_too(tmp_path):
    """A file saved from a model with the same number of classes fits after surgery, head included."""
    source = _source_state(3)
    path = tmp_path / "same_head.pth"
    torch.save(source, path)
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path)), num_classes=3)
    for key, tensor in source.items():
        assert torch.equal(built.model.state_dict()[key], tensor), key
    assert built.load_report.mismatched == []
    assert built.load_report.unexpected == []


@pytest.mark.parametrize("in_channels, num_classes", [(3, 3), (4, 3)])
def test_load_report_after_surgery_lists_no_missing_keys(tmp_path, in_channels, num_classes):
    source = build_model(ModelConfig(arch="tiny_resnet", weights="none", in_channels=in_channels), num_classes)
    path = tmp_path / "saved.pth"
    torch.save(source.model.state_dict(), path)
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path), in_channels=in_channels), num_classes)
    for key, tensor in source.model.state_dict().items():
        assert torch.equal(built.model.state_dict()[key], tensor), key  # everything was loaded ...
    assert built.load_report.missing == []  # ... so nothing is missing
    assert "missing" not in built.load_report.text()


@pytest.mark.parametrize("layout", ["checkpoint", "state_dict", "ddp"])
def test_weights_file_common_layouts(tmp_path, layout):
    source = _source_state(7)
    content = {
        "checkpoint": {"model": source, "epoch": 3},
        "state_dict": {"state_dict": source},
        "ddp": {f"module.{k}": v for k, v in source.items()},
    }[layout]
    path = tmp_path / f"{layout}.pt"
    torch.save(content, path)
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path)), num_classes=3)
    _assert_backbone_equal(built.model, source)
    assert built.load_report.unexpected == []


def test_weights_file_adapted_to_other_channels_loads_after_surgery(tmp_path):
    source_built = build_model(ModelConfig(arch="tiny_resnet", weights="none", in_channels=4), num_classes=3)
    path = tmp_path / "four_channels.pth"
    torch.save(source_built.model.state_dict(), path)
    built = build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path), in_channels=4), num_classes=3)
    assert built.model.conv1.weight.shape[1] == 4
    assert torch.equal(built.model.conv1.weight, source_built.model.conv1.weight)
    assert built.load_report.mismatched == []
    assert built.load_report.unexpected == []


@pytest.mark.parametrize("content", ["list", "text", "mixed", "missing"])
def test_weights_file_that_is_not_a_state_dict(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "list":
        torch.save([torch.zeros(2), torch.ones(2)], path)
    elif content == "text":
        path.write_text("not a checkpoint")
    elif content == "mixed":
        torch.save({"conv1.weight": torch.zeros(2), "note": "hello"}, path)
    with pytest.raises(BadInputError) as info:
        build_model(ModelConfig(arch="tiny_resnet", weights_file=str(path)), num_classes=3)
    assert str(path) in str(info.value)


# --- rebuilding a model without its weights (resume, inference) --------------------------------------------------

@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("arch, weights, attribute, expected", [
    ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1", "image_size", 384),
    ("googlenet", "DEFAULT", "transform_input", True),
    ("inception_v3", "DEFAULT", "transform_input", True),
])
def test_rebuild_without_weights_keeps_the_weights_architecture(arch, weights, attribute, expected):
    with torch.device("meta"):
        built = build_model(ModelConfig(arch=arch, weights=weights), num_classes=3, pretrained=False)
    assert getattr(built.model, attribute) == expected


def test_from_scratch_model_accepts_its_own_preprocessing_size():
    with torch.device("meta"):
        built = build_model(ModelConfig(arch="vit_h_14", weights="none"), num_classes=3)
        size = built.preprocessing.crop_size
        out = built.model.eval()(torch.empty(1, 3, size, size))
    assert out.shape == (1, 3)


def test_unavailable_weights_carry_their_parts_for_the_studio(offline_torch_home):
    weights = zoo.resolve_weights("resnet34", "DEFAULT")
    with pytest.raises(WeightsUnavailableError) as info:
        zoo.ensure_weights_cached(weights)
    error = info.value
    assert error.weights == "ResNet34_Weights.IMAGENET1K_V1" and error.file_name == "resnet34-b627a593.pth"
    assert error.folder == str(Path(offline_torch_home["home"]) / "hub" / "checkpoints")
    assert error.reason == "THAW_OFFLINE is set"


def _cache_file(home: Path, weights) -> None:
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / zoo.weights_file_name(weights)).write_bytes(b"")  # only its presence is looked at


def test_offline_a_new_choice_prefers_cached_weights_over_an_absent_default(tmp_path, monkeypatch):
    from engine.planning.model_edits import set_arch
    from engine.planning.presets import make_recipe

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    enum = tvm.get_model_weights("resnet50")
    assert zoo.preferred_weights("resnet50") == "DEFAULT"  # nothing cached: the default (its error names the file)

    _cache_file(tmp_path, enum.IMAGENET1K_V1)  # the older version is here, the DEFAULT (V2) is not
    assert zoo.preferred_weights("resnet50") == "ResNet50_Weights.IMAGENET1K_V1"
    recipe = make_recipe("feature_extraction", "resnet18")
    set_arch(recipe, "resnet50")
    assert recipe.model.weights == "ResNet50_Weights.IMAGENET1K_V1"  # named in the recipe, not swapped later
    recipe.model.weights = "none"
    set_arch(recipe, "resnet50")
    assert recipe.model.weights == "none"  # training from scratch stays so

    monkeypatch.setenv("THAW_OFFLINE", "0")
    assert zoo.preferred_weights("resnet50") == "DEFAULT"  # online: the default is downloaded
    monkeypatch.setenv("THAW_OFFLINE", "1")
    _cache_file(tmp_path, enum.IMAGENET1K_V2)
    assert zoo.preferred_weights("resnet50") == "DEFAULT"  # the default is cached: nothing to prefer
    assert zoo.preferred_weights("no_such_model") == "DEFAULT"
