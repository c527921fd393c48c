"""engine.model.surgery: a new head for every torchvision classifier, head options, auxiliary heads, and the
lesson's input-channel adaptation rule (RGB copied, extra channels = mean of RGB, one channel = sum of RGB)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from engine.data.preprocessing import EXTRA_CHANNEL_MEAN, EXTRA_CHANNEL_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from engine.model import zoo
from engine.model.build import build_model
from engine.model.surgery import adapt_input_channels, find_classifier, find_input_conv, replace_head
from engine.recipe import DataConfig, HeadConfig, ModelConfig

# RegNet computes its stage widths with real tensors, so it cannot be built on the meta device; the two smallest
# are built on the CPU, the others (up to 645M parameters) are skipped.
SMALL_REGNETS = ("regnet_x_400mf", "regnet_y_400mf")

# The layer that produces the logits, by family: always the last Linear (the last 1×1 conv for SqueezeNet).
HEAD_PATHS = [
    ("resnet", "fc"), ("resnext", "fc"), ("wide_resnet", "fc"), ("regnet", "fc"), ("googlenet", "fc"),
    ("inception", "fc"), ("shufflenet", "fc"),
    ("vgg", "classifier.6"), ("alexnet", "classifier.6"),
    ("mobilenet_v3", "classifier.3"), ("mobilenet_v2", "classifier.1"), ("mnasnet", "classifier.1"),
    ("efficientnet", "classifier.1"), ("squeezenet", "classifier.1"), ("convnext", "classifier.2"),
    ("densenet", "classifier"), ("maxvit", "classifier.5"), ("swin", "head"), ("vit", "heads.head"),
    # the suite's own architectures (tests/tiny_arch.py), registered through the zoo
    ("tiny_resnet", "fc"), ("shallow_mobilenet_v3", "classifier.3"), ("shallow_efficientnet", "classifier.1"),
]


def expected_head_path(arch: str) -> str:
    return next(path for prefix, path in HEAD_PATHS if arch.startswith(prefix))


def build_for_surgery(arch: str) -> tuple[nn.Module, torch.device]:
    """The architecture as torchvision builds it for its DEFAULT weights (ViT's image size comes from them)."""
    kwargs = {}
    if zoo.family_of(arch) == "vision_transformer":
        kwargs["image_size"] = zoo.weights_enum(arch).DEFAULT.meta["min_size"][0]
    if arch.startswith("regnet"):
        if arch not in SMALL_REGNETS:
            pytest.skip("RegNet cannot be built on the meta device; only the two smallest are built on the CPU")
        return zoo.get_model(arch, **kwargs), torch.device("cpu")
    with torch.device("meta"):
        return zoo.get_model(arch, **kwargs), torch.device("meta")


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("arch", zoo.list_model_names())
def test_new_head_gives_one_logit_per_class_for_every_model(arch):
    model, device = build_for_surgery(arch)
    old_path = find_classifier(model)
    old = model.get_submodule(old_path)
    path = replace_head(model, 7)
    assert path == old_path == expected_head_path(arch)
    head = model.get_submodule(path)
    if arch.startswith("squeezenet"):
        assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
        assert (head.in_channels, head.out_channels) == (old.in_channels, 7)
    else:
        assert isinstance(head, nn.Linear)
        assert (head.in_features, head.out_features) == (old.in_features, 7)
    assert head.weight.device.type == device.type
    size = zoo.default_preprocessing(arch, None).crop_size
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, size, size, device=device))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (2, 7)


def test_vit_h_14_is_checked_at_its_own_input_size():
    weights = tvm.get_model_weights("vit_h_14").DEFAULT
    assert weights.meta["min_size"] == (518, 518)
    assert zoo.default_preprocessing("vit_h_14", None).crop_size == 518


@pytest.mark.parametrize("arch, num_classes", [("resnet18", 5), ("mobilenet_v3_small", 3), ("efficientnet_b0", 2)])
def test_real_cpu_forward_after_head_replacement(arch, num_classes):
    torch.manual_seed(0)
    model = tvm.get_model(arch)
    replace_head(model, num_classes)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_head_with_hidden_layer_and_dropout():
    torch.manual_seed(0)
    model = tvm.resnet18()
    path = replace_head(model, 4, HeadConfig(hidden=64, dropout=0.3))
    assert path == "fc"
    head = model.fc
    assert isinstance(head, nn.Sequential)
    assert [type(m) for m in head] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert head[0].p == head[3].p == 0.3
    assert (head[1].in_features, head[1].out_features) == (512, 64)
    assert (head[4].in_features, head[4].out_features) == (64, 4)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    # The head is its own stage: every head parameter is under the returned path.
    assert {n for n, _ in model.named_parameters() if n.startswith("fc.")} == {
        "fc.1.weight", "fc.1.bias", "fc.4.weight", "fc.4.bias"}


def test_head_with_dropout_only():
    model = tvm.resnet18()
    replace_head(model, 3, HeadConfig(dropout=0.5))
    assert [type(m) for m in model.fc] == [nn.Dropout, nn.Linear]
    assert model.fc[0].p == 0.5
    assert (model.fc[1].in_features, model.fc[1].out_features) == (512, 3)


def test_squeezenet_keeps_a_conv_head_whatever_the_options():
    with torch.device("meta"):
        model = tvm.squeezenet1_1()
    replace_head(model, 6, HeadConfig(hidden=32, dropout=0.2))
    assert isinstance(model.classifier[1], nn.Conv2d)
    assert model.classifier[1].out_channels == 6
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 224, 224, device="meta")).shape == (2, 6)


def test_build_model_replaces_the_head_on_the_device_of_the_model():
    with torch.device("meta"):
        built = build_model(ModelConfig(arch="vgg16", weights="none", head=HeadConfig(hidden=16)), num_classes=9)
    assert built.head_path == "classifier.6"
    assert isinstance(built.model.classifier[6], nn.Sequential)
    assert built.model.classifier[6][1].in_features == 4096
    assert built.model.classifier[6][4].out_features == 9
    assert all(p.device.type == "meta" for p in built.model.parameters())


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("arch, size", [("googlenet", 224), ("inception_v3", 299)])
def test_aux_heads_disabled_train_mode_returns_plain_logits(arch, size):
    with torch.device("meta"):
        model = tvm.get_model(arch, aux_logits=True, init_weights=False)
        model.train()
        assert type(model(torch.empty(2, 3, size, size))) is not torch.Tensor  # (logits, aux2, aux1) before
    replace_head(model, 3)
    assert model.aux_logits is False
    for name in ("aux1", "aux2", "AuxLogits"):
        assert getattr(model, name, None) is None
    assert not any(n.startswith(("aux1", "aux2", "AuxLogits")) for n, _ in model.named_parameters())
    model.train()
    out = model(torch.empty(2, 3, size, size, device="meta"))
    assert type(out) is torch.Tensor
    assert out.shape == (2, 3)


# --- input channels -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rgb_resnet() -> nn.Module:
    torch.manual_seed(3)
    model = tvm.resnet18(num_classes=4)
    # Non-trivial BN statistics, so eval mode is not an identity normalisation.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_five_channels_copy_rgb_and_fill_extras_with_the_rgb_mean(rgb_resnet):
    old = rgb_resnet.conv1.weight.detach().clone()
    model = copy.deepcopy(rgb_resnet)
    path = adapt_input_channels(model, 5)
    assert path == "conv1"
    new = model.conv1.weight
    assert new.shape == (64, 5, 7, 7)
    assert model.conv1.bias is None
    assert (model.conv1.stride, model.conv1.padding) == ((2, 2), (3, 3))
    assert torch.equal(new[:, :3], old)
    mean = old.mean(dim=1, keepdim=True)
    for c in (3, 4):
        assert torch.equal(new[:, c:c + 1], mean)
    assert model.conv1.weight.requires_grad
    # The original is untouched.
    assert rgb_resnet.conv1.weight.shape == (64, 3, 7, 7)


def test_five_channel_model_with_zero_extras_computes_the_rgb_output(rgb_resnet):
    model = copy.deepcopy(rgb_resnet)
    adapt_input_channels(model, 5)
    model.eval()
    torch.manual_seed(1)
    rgb = torch.randn(2, 3, 64, 64)
    five = torch.cat([rgb, torch.zeros(2, 2, 64, 64)], dim=1)
    with torch.no_grad():
        expected = rgb_resnet(rgb)
        got = model(five)
        with_extras = model(torch.cat([rgb, torch.ones(2, 2, 64, 64)], dim=1))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(with_extras, expected, atol=1e-3)  # the extra channels do take part


def test_one_channel_is_the_sum_of_rgb_and_sees_grey_like_rgb(rgb_resnet):
    old = rgb_resnet.conv1.weight.detach().clone()
    model = copy.deepcopy(rgb_resnet)
    assert adapt_input_channels(model, 1) == "conv1"
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert torch.allclose(model.conv1.weight, old.sum(dim=1, keepdim=True))
    model.eval()
    torch.manual_seed(2)
    grey = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(grey), rgb_resnet(grey.expand(-1, 3, -1, -1)), atol=1e-5)


def test_two_channels_keep_the_first_two_rgb_filters(rgb_resnet):
    model = copy.deepcopy(rgb_resnet)
    adapt_input_channels(model, 2)
    assert torch.equal(model.conv1.weight, rgb_resnet.conv1.weight[:, :2])


def test_same_channel_count_changes_nothing(rgb_resnet):
    model = copy.deepcopy(rgb_resnet)
    conv = model.conv1
    assert adapt_input_channels(model, 3) is None
    assert model.conv1 is conv


def test_vit_patch_projection_adapted():
    torch.manual_seed(4)
    vit = tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
                                num_classes=3).eval()
    assert find_input_conv(vit) == "conv_proj"
    old_w, old_b = vit.conv_proj.weight.detach().clone(), vit.conv_proj.bias.detach().clone()
    model = copy.deepcopy(vit)
    assert adapt_input_channels(model, 4) == "conv_proj"
    conv = model.conv_proj
    assert conv.weight.shape == (16, 4, 8, 8)
    assert (conv.kernel_size, conv.stride) == ((8, 8), (8, 8))
    assert torch.equal(conv.weight[:, :3], old_w)
    assert torch.equal(conv.weight[:, 3:], old_w.mean(dim=1, keepdim=True))
    assert torch.equal(conv.bias, old_b)
    rgb = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = vit(rgb)
        got = model.eval()(torch.cat([rgb, torch.zeros(2, 1, 32, 32)], dim=1))
    assert got.shape == (2, 3)
    assert torch.allclose(got, expected, atol=1e-5)


def test_efficientnet_stem_conv_adapted():
    torch.manual_seed(5)
    net = tvm.efficientnet_b0(num_classes=3).eval()
    old = net.features[0][0].weight.detach().clone()
    model = copy.deepcopy(net)
    assert adapt_input_channels(model, 4) == "features.0.0"
    new = model.features[0][0].weight
    assert new.shape == (32, 4, 3, 3)
    assert torch.equal(new[:, :3], old)
    assert torch.equal(new[:, 3:], old.mean(dim=1, keepdim=True))
    rgb = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(torch.cat([rgb, torch.zeros(2, 1, 64, 64)], 1)), net(rgb), atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_inception_input_remapping_is_switched_off_with_other_channels():
    with torch.device("meta"):
        model = tvm.inception_v3(transform_input=True, init_weights=False)
    assert adapt_input_channels(model, 4) == "Conv2d_1a_3x3.conv"
    assert model.transform_input is False
    assert model.Conv2d_1a_3x3.conv.weight.shape[1] == 4


def test_grouped_input_conv_is_refused():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="grouped"):
        adapt_input_channels(model, 5)


def test_build_model_adapts_channels_and_preprocessing_together():
    built = build_model(ModelConfig(arch="resnet18", weights="none", in_channels=5), num_classes=3,
                        data=DataConfig(extra_channel_mean=[0.1, 0.2], extra_channel_std=[0.3, 0.4]))
    assert built.input_conv == "conv1"
    assert built.model.conv1.in_channels == 5
    assert built.preprocessing.channels == 5
    assert built.preprocessing.mean == pytest.approx([*IMAGENET_MEAN, 0.1, 0.2])
    assert built.preprocessing.std == pytest.approx([*IMAGENET_STD, 0.3, 0.4])
    built.model.eval()
    with torch.no_grad():
        assert built.model(torch.randn(2, 5, 32, 32)).shape == (2, 3)


# --- preprocessing for other channel counts ------------------------------------------------------------------------

def test_preprocessing_with_five_channels_defaults():
    prep = Preprocessing().with_channels(5)
    assert prep.channels == 5
    assert prep.mean == pytest.approx([*IMAGENET_MEAN, EXTRA_CHANNEL_MEAN, EXTRA_CHANNEL_MEAN])
    assert prep.std == pytest.approx([*IMAGENET_STD, EXTRA_CHANNEL_STD, EXTRA_CHANNEL_STD])
    assert (EXTRA_CHANNEL_MEAN, EXTRA_CHANNEL_STD) == (0.5, 0.25)


def test_preprocessing_with_given_extra_statistics_keeps_sizes():
    base = zoo.default_preprocessing("efficientnet_b3", None)
    prep = base.with_channels(5, [0.3, 0.7], [0.1, 0.2])
    assert prep.mean == pytest.approx([*base.mean, 0.3, 0.7])
    assert prep.std == pytest.approx([*base.std, 0.1, 0.2])
    assert (prep.resize_size, prep.crop_size, prep.interpolation) == (320, 300, "bicubic")
    assert base.channels == 3  # a new object; the preset is untouched


def test_preprocessing_with_one_and_three_channels():
    grey = Preprocessing().with_channels(1)
    assert grey.mean == pytest.approx([sum(IMAGENET_MEAN) / 3])
    assert grey.std == pytest.approx([sum(IMAGENET_STD) / 3])
    assert Preprocessing().with_channels(3).mean == pytest.approx(list(IMAGENET_MEAN))
