"""Models: parameter counts against published totals and closed forms, layer names, shapes for every registry entry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from weightsym.models import (
    MLP,
    MNIST1DCNN,
    FashionCNN,
    create_model,
    list_models,
    model_info,
    register_model,
    resnet,
    resnet_param_count,
    wrn,
    wrn_param_count,
)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(factory, *args, **kwargs) -> nn.Module:
    """Build without allocating or initialising real weights (fast for 60M-parameter models)."""
    with torch.device("meta"):
        return factory(*args, **kwargs)


# ---------------------------------------------------------------- ResNet
TORCHVISION_COUNTS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_COUNTS))
def test_resnet_parameter_count_matches_torchvision(depth):
    model = build_on_meta(resnet, depth)
    assert count(model) == TORCHVISION_COUNTS[depth]
    assert resnet_param_count(depth) == TORCHVISION_COUNTS[depth]


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_resnet_small_input_count_matches_closed_form(depth, num_classes):
    model = build_on_meta(resnet, depth, num_classes=num_classes, small_input=True)
    assert count(model) == resnet_param_count(depth, num_classes, small_input=True)
    # 3x3 stem instead of 7x7: 40 * 3 * 64 fewer weights; classifier resized.
    feature = 512 if depth == 18 else 2048
    expected = TORCHVISION_COUNTS[depth] - 40 * 3 * 64 - 1000 * (feature + 1) + num_classes * (feature + 1)
    assert count(model) == expected


def test_resnet_uses_torchvision_names():
    names = set(dict(build_on_meta(resnet, 50).named_parameters()))
    for key in ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer1.0.conv3.weight", "layer1.0.bn3.bias",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight", "layer3.5.conv2.weight",
                "layer4.2.conv3.weight", "fc.weight", "fc.bias"]:
        assert key in names, key
    assert "layer1.1.downsample.0.weight" not in names
    names18 = set(dict(build_on_meta(resnet, 18).named_parameters()))
    assert "layer1.0.downsample.0.weight" not in names18  # 64 -> 64, stride 1: identity shortcut
    assert "layer2.0.downsample.0.weight" in names18 and "layer1.0.conv3.weight" not in names18
    assert len(build_on_meta(resnet, 50).state_dict()) == 320  # torchvision resnet50().state_dict() has 320 entries


def test_resnet_bottleneck_middle_convs_are_square_and_carry_stride():
    model = build_on_meta(resnet, 101)
    middle = [(n, m) for n, m in model.named_modules() if n.endswith("conv2")]
    assert len(middle) == 3 + 4 + 23 + 3
    for name, conv in middle:
        assert conv.in_channels == conv.out_channels and conv.kernel_size == (3, 3), name
    assert [model.layer2[0].conv2.stride, model.layer2[0].conv1.stride] == [(2, 2), (1, 1)]


def test_resnet_small_input_stem():
    model = resnet(18, num_classes=10, small_input=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_rejects_unknown_depth():
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        resnet(42)


# ---------------------------------------------------------------- WRN
WRN_GRID = [(d, w, b, k) for d in (10, 16, 22, 28) for w in (1, 2, 4, 10) for b in ("basic", "bottleneck")
            for k in (10, 100)]


@pytest.mark.parametrize("depth,width,block,num_classes", WRN_GRID)
def test_wrn_parameter_count_matches_closed_form(depth, width, block, num_classes):
    model = build_on_meta(wrn, depth, width, block=block, num_classes=num_classes)
    assert count(model) == wrn_param_count(depth, width, block, num_classes)


def test_wrn_published_and_hand_counted_totals():
    assert wrn_param_count(28, 10) == 36_479_194  # WRN-28-10, the "36.5M" of Zagoruyko & Komodakis
    assert wrn_param_count(16, 8) == 10_961_370  # "11.0M"
    assert wrn_param_count(40, 4) == 8_949_210  # "8.9M"
    # wrn-16-4-bottleneck by hand: stem 432; groups of 2 blocks, widths 64/128/256, inner 16/32/64.
    stem = 9 * 3 * 16

    def block(ni, no, shortcut):
        m = no // 4
        return 2 * ni + ni * m + 2 * m + 9 * m * m + 2 * m + m * no + (ni * no if shortcut else 0)

    groups = (block(16, 64, True) + block(64, 64, False) + block(64, 128, True) + block(128, 128, False)
              + block(128, 256, True) + block(256, 256, False))
    head = 2 * 256 + 256 * 10 + 10
    assert wrn_param_count(16, 4, "bottleneck") == stem + groups + head == 219_482


def test_wrn_layout_and_names():
    model = wrn(16, 4, block="bottleneck")
    first = model.group2[0]
    assert (first.conv1.kernel_size, first.conv1.in_channels, first.conv1.out_channels) == ((1, 1), 64, 32)
    assert (first.conv2.kernel_size, first.conv2.in_channels, first.conv2.out_channels) == ((3, 3), 32, 32)
    assert first.conv2.stride == (2, 2) and first.conv1.stride == (1, 1)
    assert (first.conv3.in_channels, first.conv3.out_channels) == (32, 128)
    assert first.downsample.kernel_size == (1, 1) and first.downsample.stride == (2, 2)
    assert model.group2[1].downsample is None
    assert model.conv0.in_channels == 3 and model.conv0.out_channels == 16 and model.fc.in_features == 256
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    squares = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
               and m.in_channels == m.out_channels]
    assert squares == [f"group{g}.{i}.conv2" for g in (1, 2, 3) for i in (0, 1)]
    basic = wrn(10, 1)
    assert basic.group1[0].downsample is None  # 16 -> 16, stride 1
    assert basic.group2[0].conv1.stride == (2, 2) and basic.group2[0].conv2.in_channels == 32


def test_wrn_forward_and_dropout():
    torch.manual_seed(0)
    model = wrn(10, 2, dropout=0.3)
    x = torch.randn(4, 3, 32, 32)
    assert model(x).shape == (4, 10)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # dropout off in eval mode


@pytest.mark.parametrize("depth,width,block", [(15, 4, "basic"), (16, 0, "basic"), (16, 4, "wide")])
def test_wrn_rejects_bad_arguments(depth, width, block):
    with pytest.raises(ValueError, match="wrn"):
        wrn(depth, width, block=block)


# ---------------------------------------------------------------- small models
def test_small_models_have_square_middle_layers_and_padding_mode():
    cnn1d = MNIST1DCNN(width=24, padding_mode="reflect", num_square=3)
    squares = [n for n, m in cnn1d.named_modules() if isinstance(m, nn.Conv1d) and m.in_channels == m.out_channels]
    assert squares == ["conv1", "conv2", "conv3"]
    assert all(m.padding_mode == "reflect" for m in cnn1d.modules() if isinstance(m, nn.Conv1d))
    assert cnn1d(torch.randn(5, 1, 40)).shape == (5, 10)
    assert cnn1d(torch.randn(5, 40)).shape == (5, 10)

    cnn2d = FashionCNN(width=8, padding_mode="reflect")
    squares = [n for n, m in cnn2d.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == m.out_channels]
    assert squares == ["conv1", "conv2"]
    assert all(m.padding_mode == "reflect" for m in cnn2d.modules() if isinstance(m, nn.Conv2d))
    assert cnn2d(torch.randn(3, 1, 28, 28)).shape == (3, 10)

    mlp = MLP(in_features=40, width=16, num_square=2, num_classes=7)
    assert [(m.in_features, m.out_features) for m in (mlp.hidden1, mlp.hidden2)] == [(16, 16), (16, 16)]
    assert count(mlp) == 40 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 7 + 7


def test_mnist1d_cnn_parameter_count():
    model = MNIST1DCNN(width=32)  # stem 1->32 k5, two 32->32 k3, lengths 40 -> 20 -> 10 -> 5, fc 160->10
    assert model.out_length == 5
    assert count(model) == (5 * 32 + 32) + 2 * (3 * 32 * 32 + 32) + (32 * 5 * 10 + 10)


def test_small_models_reject_bad_options():
    with pytest.raises(ValueError, match="padding_mode"):
        MNIST1DCNN(padding_mode="mirror")
    with pytest.raises(ValueError, match="width"):
        FashionCNN(width=0)
    with pytest.raises(ValueError, match="in_features=40"):
        MLP(in_features=40)(torch.zeros(2, 1, 28, 28))


# ---------------------------------------------------------------- registry
CLASSIFIERS = [name for name in list_models() if model_info(name)["task"] == "classification"]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_in_the_registry_builds_and_runs(name):
    """Image/signal classifiers: input (2, *input_shape) → logits (2, num_classes). (Language models, task
    "language-model", take token ids and are tested in their own module.)"""
    info = model_info(name)
    assert info["name"] == name and info["num_classes"] >= 2 and info["dataset"]
    shape = info["input_shape"]
    if info["dataset"] == "imagenet":
        shape = (3, 64, 64)  # full 224x224 is slow on CPU; the layout is size-agnostic
    if count(build_on_meta(create_model, name)) > 30_000_000:  # ResNet-101/152, WRN-28-10: shapes only, on "meta"
        with torch.device("meta"):
            out = create_model(name).eval()(torch.empty(2, *shape))
        assert out.shape == (2, info["num_classes"])
        return
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, info["num_classes"])
    assert torch.isfinite(out).all()


def test_registry_parses_wrn_names_and_passes_options():
    assert {"wrn-16-4", "wrn-16-4-bottleneck", "wrn-28-10", "resnet-18", "resnet-50", "resnet-50-small",
            "mnist1d-cnn", "mnist1d-mlp", "fmnist-cnn"} <= set(CLASSIFIERS)
    model = create_model("wrn-22-2-bottleneck", num_classes=100)
    assert count(model) == wrn_param_count(22, 2, "bottleneck", 100)
    assert count(create_model("WRN-10-3")) == wrn_param_count(10, 3, "basic", 10)
    assert count(build_on_meta(create_model, "resnet-50", num_classes=10, small_input=True)) == \
        resnet_param_count(50, 10, small_input=True)
    assert model_info("resnet-50")["input_shape"] == (3, 224, 224) and model_info("resnet-50")["num_classes"] == 1000
    assert model_info("resnet-50-small")["input_shape"] == (3, 32, 32)
    assert model_info("mnist1d-cnn")["input_shape"] == (1, 40)
    assert model_info("fmnist-cnn")["input_shape"] == (1, 28, 28)
    reflect = create_model("fmnist-cnn", width=8, padding_mode="reflect")
    assert reflect.conv1.padding_mode == "reflect" and reflect.conv1.in_channels == 8


def test_registry_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="unknown model 'vgg-16'.*wrn-16-4.*resnet-50.*mnist1d-cnn"):
        create_model("vgg-16")
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn-15-4")
    with pytest.raises(ValueError, match="one of \\[18, 34, 50, 101, 152\\]"):
        model_info("resnet-20")
    with pytest.raises(ValueError, match="options for this model: \\['dropout', 'width', 'init_scheme'\\]"):
        create_model("wrn-16-4", padding_mode="reflect")


def test_register_model_adds_an_entry():
    name = "test-tiny-mlp"
    register_model(name, lambda num_classes=3: MLP(4, 2, 0, num_classes), input_shape=(4,), num_classes=3,
                   dataset="toy", overwrite=True)
    assert name in list_models()
    assert create_model(name)(torch.zeros(1, 4)).shape == (1, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model(name, MLP, input_shape=(4,), num_classes=3, dataset="toy")
