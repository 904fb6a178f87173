"""Model registry: build any model by name, and know which data it expects.

Names:

* ``wrn-D-W`` and ``wrn-D-W-bottleneck``: pre-activation Wide ResNet of depth D (6n+4) and width W, for CIFAR
  (3x32x32, 10 classes), e.g. ``wrn-16-4``, ``wrn-16-4-bottleneck``, ``wrn-28-10``. Any valid D and W are accepted.
* ``resnet-N`` (N in 18, 34, 50, 101, 152): torchvision ImageNet layout (3x224x224, 1000 classes);
  ``resnet-N-small``: the same with a 3x3 stride-1 stem and no max-pool, for CIFAR (3x32x32, 10 classes).
* ``airbench-W1-W2-W3``: the fast CIFAR-10 network of Jordan (2024) with conv-group widths W1, W2, W3
  (:mod:`weightsym.models.airbench`): ``airbench-64-128-128`` (93% in 11 epochs), ``airbench-64-256-256`` (94% in 9.9).
* ``mnist1d-cnn``, ``mnist1d-mlp``: MNIST-1D (1x40, 10 classes). ``fmnist-cnn``, ``fmnist-mlp``: Fashion-MNIST
  (1x28x28, 10 classes).

Other modules can add entries with :func:`register_model`.

Example:
    >>> import torch
    >>> model = create_model("wrn-16-4-bottleneck")
    >>> info = model_info("wrn-16-4-bottleneck")
    >>> (info["input_shape"], info["num_classes"], info["dataset"])
    ((3, 32, 32), 10, 'cifar10')
    >>> model(torch.zeros(1, *info["input_shape"])).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from weightsym.suggest import did_you_mean

from .airbench import AirbenchNet
from .resnet import RESNET_LAYOUTS, resnet
from .small import MLP, MNIST1DCNN, FashionCNN
from .wrn import wrn

CIFAR_SHAPE = (3, 32, 32)
IMAGENET_SHAPE = (3, 224, 224)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: ``factory(num_classes=..., **kw)`` builds the model; the rest describes its data."""

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    dataset: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": self.input_shape, "num_classes": self.num_classes,
                "dataset": self.dataset, "description": self.description, "task": "classification", **self.extra}


_REGISTRY: dict[str, ModelSpec] = {}
# Modules that register models themselves, imported on first use if they exist (so this file does not depend on them).
_PLUGIN_MODULES = ("weightsym.models.language", "weightsym.models.transformer")
_plugins_loaded = False

_WRN_PATTERN = re.compile(r"^wrn-(\d+)-(\d+)(-bottleneck|-basic)?$")
_RESNET_PATTERN = re.compile(r"^resnet-(\d+)(-small)?$")
_AIRBENCH_PATTERN = re.compile(r"^airbench-(\d+)-(\d+)-(\d+)$")
_LISTED_AIRBENCH = ("airbench-64-128-128", "airbench-64-256-256")
# Names listed by list_models() for the parametric families (any other valid wrn-D-W is accepted too).
_LISTED_WRN = ("wrn-16-4", "wrn-16-4-bottleneck", "wrn-16-8", "wrn-28-10", "wrn-28-10-bottleneck", "wrn-40-4")


def register_model(name: str, factory: Callable[..., nn.Module], *, input_shape: tuple[int, ...], num_classes: int,
                   dataset: str, description: str = "", overwrite: bool = False, **extra: Any) -> ModelSpec:
    """Add ``name`` to the registry. ``factory(num_classes=..., **kw)`` must return an ``nn.Module``.

    Extra keyword arguments are stored and returned by :func:`model_info` (e.g. ``vocab_size`` for language models).

    Example: ``register_model("tiny-mlp", lambda num_classes, **kw: MLP(40, 8, 0, num_classes), input_shape=(1, 40),
    num_classes=10, dataset="mnist1d")``.
    """
    name = name.lower()
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"register_model: {name!r} is already registered (pass overwrite=True to replace it)")
    spec = ModelSpec(name, factory, tuple(input_shape), num_classes, dataset, description, dict(extra))
    _REGISTRY[name] = spec
    return spec


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in _PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def _parametric_spec(name: str) -> ModelSpec | None:
    """Specs for ``wrn-D-W[-bottleneck]`` and ``resnet-N[-small]``; None if ``name`` matches neither pattern."""
    match = _WRN_PATTERN.match(name)
    if match:
        depth, width = int(match.group(1)), int(match.group(2))
        block = "bottleneck" if match.group(3) == "-bottleneck" else "basic"
        if (depth - 4) % 6 != 0 or depth < 10 or width < 1:
            raise ValueError(f"model {name!r}: WRN depth must be 6n+4 >= 10 and width >= 1 (e.g. wrn-16-4, wrn-28-10)")

        def build_wrn(num_classes: int = 10, dropout: float = 0.0, width: float = width,
                      init_scheme: str = "fan_out") -> nn.Module:
            # width: a fractional width gives a narrower net (dense baselines at equal parameters); init_scheme:
            # "fan_out" or "paper" (weightsym.models.wrn.INIT_SCHEMES)
            return wrn(depth, width, block=block, num_classes=num_classes, dropout=dropout, init_scheme=init_scheme)

        return ModelSpec(name, build_wrn, CIFAR_SHAPE, 10, "cifar10",
                         f"pre-activation Wide ResNet {depth}-{width}, {block} blocks")
    match = _AIRBENCH_PATTERN.match(name)
    if match:
        widths = tuple(int(g) for g in match.groups())
        if min(widths) < 1:
            raise ValueError(f"model {name!r}: widths must be positive (e.g. airbench-64-256-256)")

        def build_airbench(num_classes: int = 10, width: float = 1.0, padding_mode: str = "zeros",
                           stem: str = "whiten", dirac: bool = True, pool: str = "3x3") -> nn.Module:
            # width: a multiplier of the three widths (dense baselines at equal parameters: weightsym describe
            # --match-dense); padding_mode: of the 3x3 convs ("zeros" as published, or "reflect", ...); stem:
            # "whiten" (published) or "random"; dirac: identity init of the 3x3 convs (published: True); pool:
            # "3x3" (published) or "global" (any input size, e.g. --expand-input; same numbers at 32 x 32)
            if not isinstance(width, (int, float)) or width <= 0:
                raise ValueError(f"model {name!r}: width={width!r} must be a positive multiplier (e.g. 0.75)")
            scaled = tuple(max(1, round(w * width)) for w in widths)
            model = AirbenchNet(scaled, num_classes=num_classes, padding_mode=padding_mode, stem=stem, dirac=dirac,
                                pool=pool)
            model.width = float(width)
            return model

        return ModelSpec(name, build_airbench, CIFAR_SHAPE, 10, "cifar10",
                         f"fast CIFAR-10 network (Jordan 2024), conv groups of {widths[0]}/{widths[1]}/{widths[2]}")
    match = _RESNET_PATTERN.match(name)
    if match:
        depth, small = int(match.group(1)), match.group(2) is not None
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"model {name!r}: ResNet depth must be one of {sorted(RESNET_LAYOUTS)}")

        def build_resnet(num_classes: int = 1000, small_input: bool = small, zero_init_residual: bool = False):
            return resnet(depth, num_classes=num_classes, small_input=small_input,
                          zero_init_residual=zero_init_residual)

        if small:
            return ModelSpec(name, build_resnet, CIFAR_SHAPE, 10, "cifar10",
                             f"ResNet-{depth}, torchvision layout, 3x3 stride-1 stem without max-pool (32x32 inputs)")
        return ModelSpec(name, build_resnet, IMAGENET_SHAPE, 1000, "imagenet",
                         f"ResNet-{depth}, torchvision ImageNet layout")
    return None


def list_models() -> list[str]:
    """Registered names, plus representative ``wrn-*`` and all ``resnet-*`` names (any valid wrn-D-W also works)."""
    _load_plugins()
    resnets = [f"resnet-{d}{s}" for d in sorted(RESNET_LAYOUTS) for s in ("", "-small")]
    return list(_LISTED_WRN) + resnets + list(_LISTED_AIRBENCH) + sorted(_REGISTRY)


def _spec(name: str) -> ModelSpec:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    _load_plugins()
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    spec = _parametric_spec(key)
    if spec is None:
        raise ValueError(f"unknown model {name!r}{did_you_mean(key, list_models())}; valid names: {', '.join(list_models())} "
                         f"(and any wrn-D-W[-bottleneck] with D = 6n+4, any airbench-W1-W2-W3)")
    return spec


def model_info(name: str) -> dict[str, Any]:
    """What ``name`` expects: ``{"name", "input_shape" (C, H, W) or (C, L), "num_classes", "dataset", "task", ...}``.

    ``task`` is ``"classification"`` unless the entry says otherwise (language models registered by
    ``weightsym.models.language`` say ``"language-model"``, with ``input_shape`` (T,) of token ids).

    Example: ``model_info("mnist1d-cnn")["input_shape"] == (1, 40)``.
    """
    return _spec(name).info()


def model_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The options of model ``name`` (``num_classes`` among them): ``inspect.Parameter`` objects with their defaults
    and annotations, e.g. for checking the types of a recorded architecture before building it."""
    return dict(inspect.signature(_spec(name).factory).parameters)


def create_model(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`) with ``num_classes`` (default: the entry's dataset) and options.

    Options go to the model's constructor, e.g. ``dropout``, ``width`` (a float: narrower or wider than the name
    says) and ``init_scheme`` (WRN), ``small_input`` (ResNet), ``width``,
    ``num_square``, ``padding_mode`` (small models).

    The model carries ``model.registry_entry = {"name", "args"}`` (a plain attribute): ``weightsym.save`` and
    training checkpoints record it, so ``weightsym.load_model(path)`` rebuilds the same architecture.

    Example: ``create_model("resnet-50", num_classes=100, small_input=True)``.
    """
    spec = _spec(name)
    classes = spec.num_classes if num_classes is None else int(num_classes)
    try:
        inspect.signature(spec.factory).bind(num_classes=classes, **kwargs)
    except TypeError as error:
        options = [p for p in inspect.signature(spec.factory).parameters if p != "num_classes"]
        raise ValueError(f"create_model({name!r}): {error}; options for this model: {options}") from None
    model = spec.factory(num_classes=classes, **kwargs)
    # the entry this model was built from: weight files record it, so weightsym.load_model can rebuild the model
    model.registry_entry = {"name": spec.name, "args": {"num_classes": classes, **kwargs}}
    return model


def _register_builtin() -> None:
    def mnist1d_cnn(num_classes=10, width=32, num_square=2, padding_mode="zeros", norm=False):
        return MNIST1DCNN(num_classes=num_classes, width=width, num_square=num_square, padding_mode=padding_mode,
                          norm=norm)

    def mnist1d_mlp(num_classes=10, width=256, num_square=2):
        return MLP(in_features=40, width=width, num_square=num_square, num_classes=num_classes)

    def fmnist_cnn(num_classes=10, width=32, num_square=2, padding_mode="zeros", norm=True):
        return FashionCNN(num_classes=num_classes, width=width, num_square=num_square, padding_mode=padding_mode,
                          norm=norm)

    def fmnist_mlp(num_classes=10, width=256, num_square=2):
        return MLP(in_features=28 * 28, width=width, num_square=num_square, num_classes=num_classes)

    register_model("mnist1d-cnn", mnist1d_cnn, input_shape=(1, 40), num_classes=10, dataset="mnist1d",
                   description="1-D CNN, stem + square convs + linear classifier")
    register_model("mnist1d-mlp", mnist1d_mlp, input_shape=(1, 40), num_classes=10, dataset="mnist1d",
                   description="MLP with square hidden layers")
    register_model("fmnist-cnn", fmnist_cnn, input_shape=(1, 28, 28), num_classes=10, dataset="fashion-mnist",
                   description="2-D CNN, stem + square convs + global pool + linear classifier")
    register_model("fmnist-mlp", fmnist_mlp, input_shape=(1, 28, 28), num_classes=10, dataset="fashion-mnist",
                   description="MLP with square hidden layers")


_register_builtin()
