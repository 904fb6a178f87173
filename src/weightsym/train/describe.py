"""``weightsym describe``: which layers of a registry model a symmetry choice touches, and what it saves, untrained.

``describe_file(path)`` does the same for a model file: the model is rebuilt with :func:`weightsym.load_model`
(validated, checksum verified) and its layers are listed as they are stored.

Example:
    >>> text, counts = describe_model("wrn-16-4-bottleneck", channel="triangular", include=["*conv2"])
    >>> counts.dense - counts.stored == sum(2 * n * (n - 1) // 2 * 9 for n in (16, 32, 64))   # 2 conv2 per group
    True
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import weightsym as ws

PLACEMENT_NOTE = (
    "Placement: on bottleneck models (wrn-*-bottleneck, resnet-50/101/152) the paper symmetrizes only the middle 3x3 "
    "conv of each block, the square one: use --include '*conv2'. The default (every eligible layer except the stem "
    "and the classifier) also picks up the square 1x1 convs (conv1/conv3/downsample where in == out channels)."
)


def has_bottleneck_blocks(name: str) -> bool:
    """True for the registry models whose blocks are bottlenecks (1x1 - 3x3 - 1x1): wrn-*-bottleneck,
    resnet-50/101/152 (and their -small versions)."""
    return re.fullmatch(r"wrn-\d+-\d+-bottleneck|resnet-(50|101|152)(-small)?", name.strip().lower()) is not None


def describe_model(name: str, channel: str | None = None, spatial: str | None = None,
                   include: list[str] | None = None, exclude: list[str] | None = None, strict: bool = False,
                   hh_gates: str = "1111", ih_gates: str | None = None,
                   model_args: dict[str, Any] | None = None,
                   plan: dict[str, str] | None = None, qkv: str = "111", fold: str | None = None,
                   compiled: bool = False, batch_size: int | None = None) -> tuple[str, "ws.ParameterCount"]:
    """Build registry model ``name``, symmetrize it as asked and return ``(text, ParameterCount)``.

    ``text`` is the per-layer table (the :class:`~weightsym.SymmetrizeReport`; without a symmetry, the dense weight
    layers), the whole-model totals (dense-equivalent, stored, free, % saved; BatchNorm and biases included) and the
    placement note for bottleneck models (:func:`has_bottleneck_blocks`).  ``plan`` (``{module glob: symmetry}``)
    chooses a symmetry per layer instead of ``channel``/``spatial``/``include`` (:func:`weightsym.symmetrize`).

    ``fold`` (a :func:`weightsym.fast.fold_training` policy) adds which symmetric layers would train through their
    folds, and why, with ``compiled`` as ``--compile`` would; ``"measure"`` times them here on a random batch of the
    model's input shape (``batch_size`` samples, default the training default: 128, or 20 sequences for language
    models).
    """
    from weightsym.models import create_model, model_info

    info = model_info(name)
    model = create_model(name, **(model_args or {}))
    lines = [f"{info['name']}: {info.get('description', '')}".rstrip(": ")]
    if channel or spatial or plan:
        report = ws.symmetrize(model, channel=channel, spatial=spatial, include=include, exclude=exclude,
                               strict=strict, hh_gates=hh_gates, ih_gates=ih_gates, plan=plan, qkv=qkv)
        lines += [str(report), f"{len(report.symmetric)} of {len(report.rows)} weight tensors symmetric"]
        if fold is not None:
            lines.append(_fold_plan(model, info, fold, compiled, batch_size))
    else:
        rows = []
        for layer, module in ws.nn.weight_layers(model):
            for tensor in ws.nn.weight_tensors(module):
                value = getattr(module, tensor)
                rows.append([layer, tensor, "x".join(map(str, value.shape)), f"{value.numel():,}"])
        lines += [ws.nn.format_table(["layer", "tensor", "shape", "dense"], rows, numeric={3}),
                  "no symmetry requested (pass --channel and/or --spatial, or --plan, to see what it would save)"]
    counts = ws.count_parameters(model)
    lines.append(ws.nn.format_table(
        ["whole model", "dense-equivalent", "stored", "free", "saved"],
        [["parameters", f"{counts.dense:,}", f"{counts.stored:,}", f"{counts.free:,}", f"{100 * counts.saved:.2f}%"]],
        numeric={1, 2, 3, 4}))
    if has_bottleneck_blocks(info["name"]):
        lines.append(PLACEMENT_NOTE)
    return "\n\n".join(lines), counts


def _fold_plan(model, info: dict, policy: str, compiled: bool, batch_size: int | None) -> str:
    """The fold_training report of ``model`` (symmetrized) under ``policy``, titled with how it was decided."""
    import torch

    from weightsym.fast.training import fold_training

    example = None
    language_model = info.get("task") == "language-model"
    batch = batch_size or (20 if language_model else 128)
    if policy == "measure":
        generator = torch.Generator().manual_seed(0)
        if language_model:
            tokens = torch.randint(info["num_classes"], (info["input_shape"][0], batch), generator=generator)
            example = (tokens, model.init_hidden(batch))
        else:
            example = torch.randn(batch, *info["input_shape"], generator=generator)
    with warnings.catch_warnings():  # the report carries the note
        warnings.simplefilter("ignore", UserWarning)
        report = fold_training(model, policy=policy, compiled=compiled, example_input=example)
    how = {"auto": "the cost model", "measure": f"timed on this machine, batch {batch}",
           "always": "every layer whose structure saves multiplies", "never": "none"}[policy]
    title = (f"training through the folds (--fold {policy}{' --compile' if compiled else ''}: {how}): "
             f"{len(report.folded)} of {len(report.rows)} symmetric layers fold")
    if report.note:
        title += f"\nnote: {report.note}"
    if not report.rows:
        return title + ": only symmetric Linear/Conv layers can (recurrent layers gather into the fused kernel)"
    return title + "\n\n" + str(report).split("\nnote: ")[0]


def describe_file(path) -> tuple[str, "ws.ParameterCount", "ws.files.ModelDescription"]:
    """``(text, ParameterCount, ModelDescription)`` of the model in a weight file or checkpoint (``path`` may be a
    :class:`weightsym.files.ModelFile` already read): what it is, its per-layer symmetry table and its totals."""
    from weightsym.nn.counting import layer_report

    model, description = ws.load_model(path)
    report = layer_report(model)
    arch = description.architecture
    args = ", ".join(f"{k}={v}" for k, v in arch["args"].items())
    checksum = {"verified": "checksum verified", "absent": "no checksum (written before checksums)"}.get(
        description.checksum, description.checksum)
    lines = [f"{description.path}: {description.kind} ({description.format}, {checksum}); model {arch['name']}"
             f"({args})", str(report), f"{len(report.symmetric)} of {len(report.rows)} weight tensors symmetric"]
    counts = ws.count_parameters(model)
    lines.append(ws.nn.format_table(
        ["whole model", "dense-equivalent", "stored", "free", "saved"],
        [["parameters", f"{counts.dense:,}", f"{counts.stored:,}", f"{counts.free:,}", f"{100 * counts.saved:.2f}%"]],
        numeric={1, 2, 3, 4}))
    return "\n\n".join(lines), counts, description
