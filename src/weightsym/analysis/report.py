"""A one-call symmetry report for a trained network: ``analyze(model, out_dir)``.

Writes to ``out_dir``:

- ``analysis.json`` — ``{"title", "layers": [LayerSymmetry.to_dict(), …], "summary", "consistency"}``;
- ``kernels.png`` — the normalised mean kernel K̂ = K / ‖K‖_F of every layer as a heatmap, all on one symmetric
  colour scale [−m, m] with m = max |K̂| over layers, titled with the layer name and S(K);
- ``score_depth.png`` — S(K) (and the mean single-kernel score) against layer index, strided layers drawn with a
  different marker (a third marker when the stride is unknown, e.g. for a state dict);
- ``report.md`` — the table, the figures and, when a loader is given, flip and shift consistency.

>>> import tempfile, torch
>>> from torch import nn
>>> from weightsym.analysis import analyze
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
>>> out = analyze(net, tempfile.mkdtemp(), title="demo")
>>> sorted(p.name for p in out["files"])
['analysis.json', 'kernels.png', 'report.md', 'score_depth.png']
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightsym.atomic import save_figure, write_json, write_text

from .attention import attention_symmetry
from .chance import attach_chance
from .consistency import flip_consistency, shift_consistency
from .kernel_symmetry import LayerSymmetry, kernel_symmetry

__all__ = ["analyze", "analyze_file", "load_state_dict", "load_training_checkpoint", "plot_mean_kernels",
           "plot_score_depth"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mean_kernels(layers: list[LayerSymmetry], path: str | Path, title: str = "", columns: int = 8) -> Path:
    """Grid of the layers' normalised mean kernels K̂ on one symmetric colour scale; returns ``path``.

    Without layers (no 2-D conv kernel larger than 1×1: an MLP, a 1-D CNN) the figure says so in words."""
    plt = _pyplot()
    if not layers:
        return _no_layers_figure(plt, path, title or "mean kernels")
    count = max(len(layers), 1)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    normalised = []
    for layer in layers:
        norm = float(torch.linalg.vector_norm(layer.mean_kernel))
        normalised.append((layer.mean_kernel / norm if norm > 0 else layer.mean_kernel).numpy())
    limit = max((float(abs(k).max()) for k in normalised), default=1.0) or 1.0
    fig, axes = plt.subplots(
        rows, columns, figsize=(1.5 * columns + 1.2, 1.75 * rows + 0.5), squeeze=False, layout="constrained"
    )
    image = None
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(layers):
            ax.axis("off")
            continue
        layer = layers[index]
        image = ax.imshow(normalised[index], cmap="RdBu_r", vmin=-limit, vmax=limit)
        stride = "" if not layer.strided else f" s{max(layer.stride)}"
        ax.set_title(f"{layer.name}{stride}\nS={layer.score:.3f}", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="K / ‖K‖")
    fig.suptitle(title or "mean kernels", fontsize=10)
    path = save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def plot_score_depth(layers: list[LayerSymmetry], path: str | Path, title: str = "") -> Path:
    """S(K) and the mean single-kernel score against layer index, strided layers marked; returns ``path``.

    Without layers the figure says so in words, as :func:`plot_mean_kernels` does."""
    plt = _pyplot()
    if not layers:
        return _no_layers_figure(plt, path, title or "symmetry against depth")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(layers) + 3.0), 3.6))
    depth = list(range(len(layers)))
    ax.plot(depth, [layer.score for layer in layers], color="tab:blue", lw=1, alpha=0.6, label="S(mean kernel)")
    ax.plot(depth, [layer.kernel_score for layer in layers], color="tab:gray", lw=1, ls="--", label="mean S(single kernel)")
    groups = {
        "stride 1": ([i for i, l in enumerate(layers) if l.strided is False], "o", "tab:blue"),
        "strided (stride > 1)": ([i for i, l in enumerate(layers) if l.strided], "v", "tab:red"),
        "stride unknown": ([i for i, l in enumerate(layers) if l.strided is None], "s", "tab:purple"),
    }
    for label, (indices, marker, color) in groups.items():
        if indices:
            ax.scatter(indices, [layers[i].score for i in indices], marker=marker, color=color, s=36, zorder=3, label=label)
    ax.set_xlabel("layer (network order)")
    ax.set_ylabel("D4 symmetry score")
    ax.set_ylim(0, 1.02)
    if len(layers) <= 24:
        ax.set_xticks(depth, [layer.name for layer in layers], rotation=60, ha="right", fontsize=6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "symmetry against depth", fontsize=10)
    fig.tight_layout()
    path = save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


NO_CONV = ("no 2-D conv layers with kernels larger than 1×1: the D4 kernel symmetry does not apply to this model "
           "(an MLP, 1-D convolutions or 1×1 convolutions only)")


def _no_layers_figure(plt, path: str | Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.0, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, "no 2-D conv layers with kernels larger than 1×1\nthe D4 kernel symmetry does not apply to this "
            "model\n(an MLP, 1-D convolutions or 1×1 convolutions only)", ha="center", va="center", fontsize=11,
            transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    path = save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def _summary(layers: list[LayerSymmetry]) -> dict[str, Any]:
    scores = [l.score for l in layers if not math.isnan(l.score)]
    strided = [l.score for l in layers if l.strided and not math.isnan(l.score)]
    unstrided = [l.score for l in layers if l.strided is False and not math.isnan(l.score)]
    mean = lambda values: sum(values) / len(values) if values else None
    chance = [l.chance for l in layers if l.chance and not math.isnan(l.score) and not math.isnan(l.chance["mean"])]
    return {
        "layers": len(layers),
        "mean_score": mean(scores),
        "mean_chance": mean([c["mean"] for c in chance]),
        "layers_above_chance": sum(c["percentile"] >= 0.975 for c in chance),
        "chance_draws": chance[0]["draws"] if chance else 0,
        "mean_score_strided": mean(strided),
        "mean_score_stride1": mean(unstrided),
        "mean_kernel_score": mean([l.kernel_score for l in layers if not math.isnan(l.kernel_score)]),
    }


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, (tuple, list)):
        return "×".join(str(v) for v in value)
    return str(value)


def _loader_per_metric(loader):
    """``fresh()`` -> the batches from the loader's starting point, once per metric.

    ``loader`` may be a zero-argument factory (called once per metric), a resumable loader with
    ``state_dict``/``load_state_dict`` (``weightsym.data.TensorLoader``: rewound to where it stood, since a metric that
    stops after ``max_batches`` leaves it mid-epoch), or a plain re-iterable (a list, a ``DataLoader``).
    """
    if callable(loader) and not hasattr(loader, "__iter__"):
        return loader
    if hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict"):
        start = loader.state_dict()

        def rewound():
            loader.load_state_dict(start)
            return loader

        return rewound
    return lambda: loader


def _accuracy(model: nn.Module, loader: Iterable, max_batches: int | None) -> float:
    """Fraction of correct argmax predictions over the (x, y) batches of ``loader`` (eval mode, no grad)."""
    flags = [m.training for m in model.modules()]
    model.eval()
    correct = count = 0
    try:
        with torch.no_grad():
            for index, (x, y) in enumerate(loader):
                if max_batches is not None and index >= max_batches:
                    break
                correct += int((model(x).argmax(1) == y).sum())
                count += y.shape[0]
    finally:
        for module, flag in zip(model.modules(), flags):
            module.training = flag
    return correct / max(count, 1)


def _attention_markdown(attention: list) -> str:
    """The W_qk symmetry section of report.md (empty without attention layers)."""
    if not attention:
        return ""
    lines = ["", "## Query-key symmetry of the attention layers", "",
             "s = (‖sym W_qk‖² − ‖skew W_qk‖²) / ‖W_qk‖² per head (W_qk = W_qᵀ W_k; 1 symmetric, −1 skew, about 0 by "
             "chance: `weightsym.analysis.attention`).", "",
             "| layer | heads | s (layer) | s per head (min – max) | ‖sym‖ | ‖skew‖ |", "|---|---:|---:|---|---:|---:|"]
    for a in attention:
        lines.append(f"| `{a.layer}` | {a.heads} | {a.score:+.3f} | {min(a.head_scores):+.3f} – "
                     f"{max(a.head_scores):+.3f} | {a.symmetric_norm:.3g} | {a.skew_norm:.3g} |")
    return "\n".join(lines) + "\n"


def _markdown(title: str, layers: list[LayerSymmetry], summary: dict, consistency: dict | None,
              source: dict | None = None) -> str:
    lines = [f"# {title}", ""]
    if source:
        lines += ["| loaded | |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value, 4) if not isinstance(value, dict) else json.dumps(value)} |"
                  for key, value in source.items()]
        lines += [""]
    if not layers:
        lines += [f"**{NO_CONV[0].upper() + NO_CONV[1:]}.**", ""]
        if consistency is not None:
            lines += ["## Consistency", "", "| measure | value |", "|---|---|"]
            lines += [f"| {key} | {_fmt(value, 4)} |" for key, value in consistency.items()] + [""]
        return "\n".join(lines)
    lines += [
        f"{summary['layers']} conv layers with kernels larger than 1×1. Mean kernel symmetry score S = "
        f"{_fmt(summary['mean_score'])} (stride 1: {_fmt(summary['mean_score_stride1'])}, strided: "
        f"{_fmt(summary['mean_score_strided'])}); mean single-kernel score {_fmt(summary['mean_kernel_score'])}. "
        f"By chance (the same kernels with their taps in random order, {summary['chance_draws']} draws per layer) "
        f"the mean S would be {_fmt(summary['mean_chance'])}; {summary['layers_above_chance']} of "
        f"{summary['layers']} layers score above the 97.5th percentile of their chance draws.",
        "",
        "S(K) = 1 − (1/(2|T|)) Σ_T ‖T(K̂) − K̂‖_F over the non-identity elements T of D4, K̂ = K/‖K‖_F, K the mean "
        "kernel (see docs/analysis.md).",
        "",
    ]
    if consistency is not None:
        lines += ["## Consistency", "", "| measure | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value, 4)} |" for key, value in consistency.items()]
        lines += [""]
    lines += ["## Layers", "", "![mean kernels](kernels.png)", "", "![score against depth](score_depth.png)", ""]
    lines += [
        "| # | layer | shape | stride | padding | mode | symmetry | S(K) | chance S (mean ± std) | z | percentile | "
        "kernel score | best T | worst T | lowest residual |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, layer in enumerate(layers):
        scores = layer.transform_scores
        best = max(scores, key=scores.get) if scores else None
        worst = min(scores, key=scores.get) if scores else None
        residual = min(layer.residuals.items(), key=lambda item: item[1]) if layer.residuals else None
        lines.append(
            f"| {index} | `{layer.name}` | {_fmt(layer.shape)} | {_fmt(layer.stride)} | {_fmt(layer.padding)} | "
            f"{_fmt(layer.padding_mode)} | {_fmt(layer.symmetry)} | {_fmt(layer.score)} | "
            + (f"{_fmt(layer.chance['mean'])} ± {_fmt(layer.chance['std'])} | {_fmt(layer.chance['z'], 1)} | "
               f"{_fmt(100 * layer.chance['percentile'], 0)} | " if layer.chance else "– | – | – | ")
            + f"{_fmt(layer.kernel_score)} | "
            f"{best} ({_fmt(scores.get(best))}) | {worst} ({_fmt(scores.get(worst))}) | "
            + (f"{residual[0]} ({_fmt(residual[1])}) |" if residual else "– |")
        )
    lines.append("")
    return "\n".join(lines)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def analyze(
    model: nn.Module | Mapping[str, torch.Tensor],
    out_dir: str | Path,
    loader: Iterable | None = None,
    title: str = "weightsym analysis",
    max_batches: int | None = None,
    max_shift: int = 4,
    seed: int = 0,
    input_transform: nn.Module | None = None,
    source: Mapping[str, Any] | None = None,
    accuracy: bool = False,
    chance_draws: int = 200,
) -> dict[str, Any]:
    """Analyse ``model`` (an nn.Module or a state dict) and write the report files to ``out_dir``.

    Every layer's mean-kernel score S comes with its chance level: ``chance_draws`` copies of the layer with each
    kernel's taps in random order (:mod:`weightsym.analysis.chance`).

    With a ``loader`` of (x, y) batches (or a zero-argument function returning one; every metric gets its own pass
    from the start) and a module, also measures flip and shift consistency (``max_batches`` and
    ``max_shift``/``seed`` as in ``shift_consistency``) and, with ``accuracy=True``, the accuracy on those batches.
    ``input_transform`` (e.g. the ``ExpandInput`` a run was trained with) is applied to every batch *after* the flip
    or shift, so consistency is measured in the space of the original images. ``source`` (what was loaded: file,
    model, dataset, step, ...) is stored under ``"source"`` and listed in the report. Returns the content of
    ``analysis.json`` (NaN → null) plus ``"files"``: the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = attach_chance(model, kernel_symmetry(model), draws=chance_draws)
    consistency = None
    if loader is not None:
        if not isinstance(model, nn.Module):
            raise ValueError("consistency needs a model, not a state dict: pass loader=None or load the model first")
        predictor = model if input_transform is None else nn.Sequential(input_transform, model)
        fresh = _loader_per_metric(loader)
        consistency = {
            "flip_consistency": flip_consistency(predictor, fresh(), max_batches=max_batches),
            f"shift_consistency (max_shift={max_shift}, reflect)": shift_consistency(
                predictor, fresh(), max_shift=max_shift, seed=seed, max_batches=max_batches
            ),
        }
        if accuracy:
            consistency["accuracy"] = _accuracy(predictor, fresh(), max_batches)
    summary = _summary(layers)
    attention = attention_symmetry(model) if isinstance(model, nn.Module) else []
    result = _json_safe(
        {"title": title, "source": dict(source) if source else None, "summary": summary, "consistency": consistency,
         "layers": [l.to_dict() for l in layers], "attention": [a.to_dict() for a in attention]}
    )
    files = [
        plot_mean_kernels(layers, out_dir / "kernels.png", title=title),
        plot_score_depth(layers, out_dir / "score_depth.png", title=title),
    ]
    write_json(out_dir / "analysis.json", result, indent=1)
    write_text(out_dir / "report.md", _markdown(title, layers, summary, consistency, result["source"])
               + _attention_markdown(attention))
    files += [out_dir / "analysis.json", out_dir / "report.md"]
    return {**result, "files": files}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Dense tensors of a model file, for ``kernel_symmetry``/``analyze`` in state-dict mode.

    The file is read and validated by :func:`weightsym.files.read_model_file` (header, metadata, checksum, finite
    values). A weightsym weight file or checkpoint stores only the free values of symmetric layers under
    ``<layer>.parametrizations.<tensor>.original``; these are expanded back to the dense ``<layer>.<tensor>`` with the
    symmetry named in the metadata. Keys are returned in natural order (``layer2`` before ``layer10``), since
    safetensors files sort keys alphabetically. Anything but a safetensors file is refused: weightsym never unpickles
    a file it is handed (``.pt``/``.pth`` are pickles), and the error says how to convert one you trust.

    >>> import tempfile, torch, weightsym as ws
    >>> net = nn.Sequential(*[nn.Conv2d(4, 4, 3) for _ in range(4)])
    >>> _ = ws.symmetrize(net, spatial="dihedral")
    >>> path = ws.save(net, tempfile.mkdtemp() + "/w.safetensors")
    >>> state = load_state_dict(path)
    >>> list(state)[:4], torch.equal(state["1.weight"], net[1].weight)
    (['0.bias', '0.weight', '1.bias', '1.weight'], True)
    """
    from weightsym.files import read_model_file

    mf = path if not isinstance(path, (str, Path)) else read_model_file(path)
    if mf.kind in ("weights", "checkpoint"):
        return mf.dense_state()
    return {key: mf.tensors[key] for key in sorted(mf.tensors, key=_natural_key)}


def _natural_key(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def load_training_checkpoint(
    path, data: str | None = None, data_dir: str | None = None, batch_size: int = 500,
) -> tuple[nn.Module, Iterable, nn.Module | None, dict[str, Any]]:
    """Rebuild the model of a ``weightsym train`` checkpoint and a test loader for consistency measurements.

    The model comes from :func:`weightsym.load_model` (the one reader of model files: architecture, symmetry of every
    layer and weights, all validated). The loader is the normalised, un-augmented test split of the checkpoint's
    dataset or of ``data`` (which must have the input shape the model was trained on). Returns ``(model, loader,
    input_transform, source)``: ``input_transform`` is the ``ExpandInput`` of runs trained with ``--expand-input K``
    (else ``None``), ``source`` describes what was loaded (for the report). ``path`` may also be a
    :class:`weightsym.files.ModelFile` already read.
    """
    from weightsym.data import training_data_info
    from weightsym.data import test_loader as make_test_loader
    from weightsym.files import load_model
    from weightsym.data.input_expansion import ExpandInput

    model, description = load_model(path)
    config = description.config
    if description.kind != "classifier" or not config:
        raise ValueError(f"{description.path} is a training checkpoint without a training config; analyse its weights "
                         "as a state dict instead")
    data_dir = data_dir if data_dir is not None else config.get("data_dir")
    image_size = int(config.get("image_size", 224))
    trained_on = training_data_info(config.get("dataset") or _model_dataset(config["model"]), data_dir, image_size)
    target = training_data_info(data, data_dir, image_size) if data else trained_on
    if tuple(target["input_shape"]) != tuple(trained_on["input_shape"]):
        raise ValueError(f"--data {data}: its inputs are {tuple(target['input_shape'])} but {config['model']} was "
                         f"trained on {trained_on['name']} {tuple(trained_on['input_shape'])}; use a dataset with "
                         "that shape")
    loader = make_test_loader(target, batch_size, data_dir, image_size=image_size)
    expand = None
    factor = int(config.get("expand_input", 1))
    if factor > 1:
        expand = ExpandInput(factor, fill=float(config.get("expand_fill", 0.0)),
                             spatial_dims=len(trained_on["input_shape"]) - 1)
    options = {k: config.get(k) for k in ("channel", "spatial", "plan", "include", "exclude", "strict", "hh_gates",
                                          "ih_gates")}
    state = description.state
    source = {
        "checkpoint": description.path, "model": config["model"], "model_args": config.get("model_args") or {},
        "trained_on": trained_on["name"], "test_data": target["name"],
        "symmetry": {k: v for k, v in options.items() if v not in (None, False, "1111")},
        "expand_input": factor, "step": state.get("step"), "epochs_done": state.get("epochs_done"),
        "checksum": description.checksum,
    }
    return model, loader, expand, source


def _model_dataset(name: str) -> str:
    from weightsym.models import model_info

    return model_info(name)["dataset"]


def analyze_file(path, out_dir: str | Path | None = None, data: str | None = None,
                 data_dir: str | None = None, max_batches: int | None = None, max_shift: int = 4,
                 title: str | None = None, log=print) -> dict[str, Any]:
    """:func:`analyze` a model file: what ``weightsym analyze`` does.

    The file is read once and validated by :func:`weightsym.files.read_model_file` (``path`` may also be the
    :class:`weightsym.files.ModelFile` already read). A ``weightsym train`` checkpoint is rebuilt as its model
    (:func:`load_training_checkpoint`) and also measured for flip and shift consistency (and accuracy, on its own
    dataset) over ``max_batches`` test batches of ``data`` (default the dataset it was trained on); any other model
    file (weight file, dense export, state dict) is analysed as tensors (:func:`load_state_dict`: kernel symmetry
    only; ``data`` is ignored with a note). ``out_dir`` defaults to ``<file stem>_analysis`` next to the file. Returns
    :func:`analyze`'s result plus ``"out"``.
    """
    from weightsym.files import read_model_file

    mf = path if not isinstance(path, (str, Path)) else read_model_file(path)
    path = mf.path
    out = Path(out_dir) if out_dir else path.parent / (path.stem + "_analysis")
    title = title or f"analysis of {path.name}"
    if mf.role == "classifier":
        model, loader, expand, source = load_training_checkpoint(mf, data, data_dir)
        result = analyze(model, out, loader=loader, title=title, max_batches=max_batches, max_shift=max_shift,
                         input_transform=expand, source=source, accuracy=source["test_data"] == source["trained_on"])
        extra = ", ".join(f"{k.split(' ')[0]} {v:.4f}" for k, v in result["consistency"].items())
    elif mf.role == "weights" and mf.architecture is not None:  # a registry model: rebuilt, so strides are known
        from weightsym.files import load_model

        model, description = load_model(mf)
        if data:
            log(f"note: --data {data} ignored: {path.name} is a weight file without a dataset, analysed for kernel "
                "symmetry only; pass a `weightsym train` checkpoint for flip/shift consistency")
        result = analyze(model, out, title=title, source={"weights": str(path), "model": description.architecture,
                                                          "checksum": mf.checksum})
        extra = "no consistency (weights only)"
    else:
        state = load_state_dict(mf)
        if data:
            log(f"note: --data {data} ignored: {path.name} is a plain weight file without the architecture, analysed "
                "as a state dict (kernel symmetry only); pass a `weightsym train` checkpoint for flip/shift "
                "consistency")
        result = analyze(state, out, title=title, source={"weights": str(path), "checksum": mf.checksum})
        extra = "no consistency (weights only)"
    summary = result["summary"]
    layers = (f"{summary['layers']} conv layers, mean S = {_fmt(summary['mean_score'])}" if summary["layers"]
              else NO_CONV)
    log(f"{layers}; {extra}; wrote {out}/report.md")
    return {**result, "out": out}
