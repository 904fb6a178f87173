"""Apply symmetries to any ``nn.Module`` tree, and take them off again.

>>> import torch, weightsym as ws
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 16, 3), torch.nn.Conv2d(16, 16, 3),
...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
>>> report = ws.symmetrize(net, channel="triangular", spatial="dihedral")   # stem and classifier stay dense
>>> [row.name for row in report.rows if row.symmetry]
['1', '2']
"""

from __future__ import annotations

import fnmatch
import functools
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from weightsym.nn.parametrization import attach, detach, symmetric_parametrization
from weightsym.symmetry import Symmetry, SymmetryError, check_init, combine, get_symmetry

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM, nn.GRU, nn.RNN)


@dataclass
class LayerReport:
    """One row of a :class:`SymmetrizeReport`: one weight tensor of one layer."""

    name: str  # module name from named_modules()
    tensor: str  # "weight", "weight_hh_l0", ...
    kind: str  # "Conv2d", "LSTM", ...
    shape: tuple
    symmetry: str | None  # spec of the applied symmetry, None if left dense
    dense: int
    stored: int
    free: int
    note: str = ""  # why (part of) the request was not applied


@dataclass
class SymmetrizeReport:
    rows: list[LayerReport] = field(default_factory=list)

    @property
    def symmetric(self) -> list[LayerReport]:
        return [r for r in self.rows if r.symmetry]

    @property
    def skipped(self) -> list[LayerReport]:
        return [r for r in self.rows if not r.symmetry]

    def totals(self) -> dict:
        return {k: sum(getattr(r, k) for r in self.rows) for k in ("dense", "stored", "free")}

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "totals": self.totals()}

    def __str__(self) -> str:
        return format_table(
            ["layer", "tensor", "shape", "symmetry", "dense", "stored", "note"],
            [[r.name, r.tensor, "x".join(map(str, r.shape)), r.symmetry or "-", f"{r.dense:,}", f"{r.stored:,}",
              r.note] for r in self.rows],
            numeric={4, 5},
            footer=["total (weight layers)", "", "", "", f"{self.totals()['dense']:,}", f"{self.totals()['stored']:,}",
                    ""],
        )

    __repr__ = __str__


def format_table(header, rows, footer=None, numeric=None) -> str:
    """A plain-text table (also valid Markdown); columns whose index is in ``numeric`` are right-aligned
    (default: columns whose every cell looks like a number)."""
    all_rows = [header] + rows + ([footer] if footer else [])
    widths = [max(len(str(r[i])) for r in all_rows) for i in range(len(header))]

    def looks_numeric(text):
        return text.replace(",", "").replace(".", "").replace("%", "").replace("-", "").replace("×", "").isdigit()

    if numeric is None:
        numeric = {i for i in range(len(header)) if rows and all(looks_numeric(str(r[i])) for r in rows)}

    def fmt(row):
        cells = []
        for i, cell in enumerate(row):
            text = str(cell)
            cells.append(text.rjust(widths[i]) if i in numeric else text.ljust(widths[i]))
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    lines = [fmt(header), sep] + [fmt(r) for r in rows]
    if footer:
        lines.append(fmt(footer))
    return "\n".join(lines)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear / Conv1d / Conv2d / LSTM / GRU / RNN layers of ``model`` in ``named_modules()`` order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def _mask(text: str | None, gates: int, option: str, layer: str) -> tuple[bool, ...] | None:
    if text is None:
        return None
    text = str(text)
    if len(text) != gates or set(text) - {"0", "1"}:
        raise ValueError(f"{option}={text!r} for recurrent layer `{layer}` must be {gates} characters of 0/1 "
                         f"(one per gate{', order i f g o' if gates == 4 else ', order r z n' if gates == 3 else ''})")
    mask = tuple(c == "1" for c in text)
    return mask if any(mask) else None


def _tensor_plan(module: nn.Module, name: str, hh_gates, ih_gates):
    """Yield ``(tensor_name, row_blocks, block_mask, is_recurrent)`` for each weight tensor of a layer."""
    if isinstance(module, nn.RNNBase):
        gates = 4 if isinstance(module, nn.LSTM) else 3 if isinstance(module, nn.GRU) else 1
        hh = _mask(hh_gates, gates, "hh_gates", name)
        ih = _mask(ih_gates, gates, "ih_gates", name)
        for tensor in module._flat_weights_names:
            if tensor.startswith("weight_hh"):
                yield tensor, gates, hh, True
            elif tensor.startswith("weight_ih"):
                yield tensor, gates, ih, True
        return
    yield "weight", getattr(module, "groups", 1), None, False


def _kind(module: nn.Module) -> str:
    """The module's own class name ("LSTM", not the "ParametrizedLSTM" that parametrize substitutes)."""
    return parametrize.type_before_parametrizations(module).__name__


def _dense_row(name, tensor, module, note=""):
    shape = tuple(getattr(module, tensor).shape)
    n = int(torch.Size(shape).numel())
    return LayerReport(name, tensor, _kind(module), shape, None, n, n, n, note)


def _load_dense_hook(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors, *, tensor):
    """Let a symmetric layer load a *dense* state dict: the dense tensor is projected to the nearest symmetric one."""
    dense_key = prefix + tensor
    free_key = f"{prefix}parametrizations.{tensor}.original"
    if dense_key in state_dict and free_key not in state_dict:
        param = symmetric_parametrization(module, tensor)
        dense = state_dict.pop(dense_key)
        if tuple(dense.shape) != param.shape:
            errors.append(f"`{dense_key}`: dense tensor of shape {tuple(dense.shape)} cannot load into a symmetric "
                          f"layer of shape {param.shape}")
            return
        state_dict[free_key] = param.project(dense)  # always the nearest symmetric weight, never init="variance"


def _cached_rnn_forward(self, *args, **kwargs):
    """Forward of a symmetric ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``: the stock fused kernel, with every symmetric
    weight expanded exactly once per call (``RNNBase.forward`` reads each weight several times to check whether it
    changed; inside ``parametrize.cached()`` those reads share one expansion)."""
    with parametrize.cached():
        try:
            return super(type(self), self).forward(*args, **kwargs)
        finally:
            # The stock forward keeps the expanded weights in ``_flat_weights``; they are rebuilt on every call anyway.
            # Keep them detached: non-leaf tensors there would make the module impossible to deepcopy.
            self._flat_weights = [w.detach() if isinstance(w, torch.Tensor) and w.grad_fn is not None else w
                                  for w in self._flat_weights]


def _expand_once_per_call(module: nn.Module) -> None:
    # ``parametrize`` gave this module its own subclass (``ParametrizedLSTM``); override forward there only.  Removing
    # the last parametrization (``unsymmetrize``) restores the original class and with it the stock forward.
    cls = type(module)
    if cls.__dict__.get("forward") is not _cached_rnn_forward:
        cls.forward = _cached_rnn_forward


def symmetrize(
    model: nn.Module,
    channel: str | Symmetry | None = None,
    spatial: str | Symmetry | None = None,
    include: list[str] | str | None = None,
    exclude: list[str] | str | None = None,
    strict: bool = False,
    hh_gates: str = "1111",
    ih_gates: str | None = None,
    init: str = "variance",
) -> SymmetrizeReport:
    """Impose ``channel`` and/or ``spatial`` symmetry on the weight layers of ``model`` (in place).

    Which layers: every Linear / Conv1d / Conv2d / LSTM / GRU layer the symmetries apply to, **except the first and
    the last weight layer** (input stem and classifier), as in the paper; an ``nn.Embedding`` registered before them
    counts as the stem (so in embedding -> LSTM -> decoder language models the LSTM is symmetrized).  ``include``
    (module-name globs, fnmatch on ``named_modules()`` names) replaces that rule: exactly the matching layers are
    considered.  ``exclude`` globs remove layers.  A layer the requested symmetry cannot act on is left dense (or
    gets the part that applies: a non-square 3x3 conv still takes a spatial symmetry) and the report says why;
    ``strict=True`` raises instead.  An ``include`` or ``exclude`` glob that matches no weight layer is a warning
    (``SymmetryError`` under ``strict=True``).

    Channel symmetries act on each group of a grouped conv (in == out per group).  On LSTM/GRU layers they act on
    each gate's square block of ``weight_hh`` selected by ``hh_gates`` (e.g. ``"1111"``; gate order i, f, g, o for
    LSTM and r, z, n for GRU) and of ``weight_ih`` selected by ``ih_gates`` (needs input size == hidden size).
    Spatial symmetries do not apply to recurrent layers.

    ``init`` says how the current (dense) weights become free values (``docs/science.md`` §5):

    * ``"variance"`` (default, for a freshly initialised model): each free value is one entry of its orbit, so every
      entry of the symmetric weight is a draw of the layer's own dense initialisation, with its variance.  Averaging
      instead would shrink an orbit of ``m`` iid entries to variance σ²/m (std ×0.71 for ``triangular``, ×0.36 for
      ``eighth`` on a 64-wide layer); the paper's code draws the free values at the dense scale.  ``average`` and
      ``eigen`` start from the same plane as ``triangular``; ``lowrank`` from the best rank-r approximation of it,
      rescaled to the dense plane's norm (:mod:`weightsym.symmetry.matrix`).
    * ``"project"`` (for trained weights: analysis, compression, fine-tuning a dense checkpoint): the nearest
      symmetric weight, orbit means; keeps a trained model as close as possible.  This was the only behaviour before
      ``init`` existed and gives the same numbers bit for bit.

    Loading a *dense* state dict into the symmetrized model always projects.  Returns a :class:`SymmetrizeReport`.

    >>> import torch, weightsym as ws
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 256), torch.nn.Linear(256, 256), torch.nn.Linear(256, 2))
    >>> dense_std = net[1].weight.std().item()
    >>> _ = ws.symmetrize(net, channel="eighth")                  # init="variance"
    >>> round(net[1].weight.std().item() / dense_std, 1)     # init="project" would give 0.4
    1.0
    """
    check_init(init)
    channel_sym = get_symmetry(channel, "channel") if channel else None
    spatial_sym = get_symmetry(spatial, "spatial") if spatial else None
    if channel_sym is None and spatial_sym is None:
        raise ValueError("symmetrize needs a channel and/or a spatial symmetry, e.g. channel='triangular'")
    include = [include] if isinstance(include, str) else include
    exclude = [exclude] if isinstance(exclude, str) else (exclude or [])
    layers = weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear/Conv1d/Conv2d/LSTM/GRU layers to symmetrize")
    unmatched = [g for g in (include or []) + exclude if not any(fnmatch.fnmatchcase(n, g) for n, _ in layers)]
    if unmatched:  # a typo here would silently leave the model dense (include) or untouched by the exclusion
        names = ", ".join(n or "(the model itself)" for n, _ in layers[:8]) + (", ..." if len(layers) > 8 else "")
        message = (f"include/exclude pattern {', '.join(map(repr, unmatched))} matches no weight layer of "
                   f"{type(model).__name__} (its layers: {names})")
        if strict:
            raise SymmetryError(message)
        warnings.warn(message, stacklevel=2)
    # the stem / classifier rule: an embedding in front (language models) is the stem, so a recurrent layer after it
    # is not mistaken for one
    ordered = [n for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS + (nn.Embedding, nn.EmbeddingBag))]
    edge = {ordered[0], layers[-1][0]}

    report = SymmetrizeReport()
    for name, module in layers:
        label = name or _kind(module)
        considered = any(fnmatch.fnmatchcase(name, g) for g in include) if include else name not in edge
        if any(fnmatch.fnmatchcase(name, g) for g in exclude):
            considered, why = False, "excluded"
        elif not considered:
            why = "not in include" if include else ("first weight layer (stem)" if name == ordered[0]
                                                    else "last weight layer (classifier)")
        for tensor, row_blocks, mask, recurrent in _tensor_plan(module, label, hh_gates, ih_gates):
            if symmetric_parametrization(module, tensor) is not None:
                raise ValueError(f"layer `{label}` ({tensor}) is already symmetric; call weightsym.unsymmetrize first")
            if not considered:
                report.rows.append(_dense_row(label, tensor, module, why))
                continue
            shape = tuple(getattr(module, tensor).shape)
            notes, use_c, use_s = [], channel_sym, spatial_sym
            if recurrent:
                if use_s is not None:
                    notes.append("spatial symmetries do not apply to recurrent weights")
                    use_s = None
                if use_c is not None and mask is None:
                    use_c = None
                    notes.append("no gate selected")
            for sym, slot in ((use_c, "c"), (use_s, "s")):
                if sym is None:
                    continue
                ok, why_not = sym.applies_to(shape, row_blocks)
                if not ok:
                    msg = (f"{_kind(module)} `{label}` {tensor} {tuple(shape)}: {why_not}; "
                           f"use another symmetry or exclude this layer")
                    if strict:
                        raise SymmetryError(msg)
                    notes.append(why_not)
                    if slot == "c":
                        use_c = None
                    else:
                        use_s = None
            sym = combine(use_c, use_s)
            if sym is None:
                if strict and (channel_sym or spatial_sym) and notes:
                    raise SymmetryError(f"`{label}` {tensor}: {'; '.join(notes)}")
                report.rows.append(_dense_row(label, tensor, module, "; ".join(notes)))
                continue
            param = attach(module, tensor, sym, row_blocks, mask, init=init)
            if recurrent:
                _expand_once_per_call(module)
            module._register_load_state_dict_pre_hook(functools.partial(_load_dense_hook, tensor=tensor),
                                                      with_module=True)
            n = int(torch.Size(shape).numel())
            report.rows.append(LayerReport(label, tensor, _kind(module), shape, sym.spec, n,
                                           param.layout.stored_count, param.layout.free_count, "; ".join(notes)))
    return report


def symmetric_layers(model: nn.Module) -> list[tuple[str, nn.Module, "Symmetry"]]:
    """``(qualified tensor name, module, symmetry)`` for every symmetric tensor of ``model``."""
    out = []
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor in list(module.parametrizations.keys()):
            p = symmetric_parametrization(module, tensor)
            if p is not None:
                out.append((f"{name}.{tensor}" if name else tensor, module, p.symmetry))
    return out


def unsymmetrize(model: nn.Module) -> nn.Module:
    """Turn every symmetric tensor back into a plain parameter holding its current dense value (in place).

    The result is vanilla PyTorch: its ``state_dict`` loads into the original, never-symmetrized architecture, and
    its outputs are identical to the symmetric model's.
    """
    for qualified, module, _ in symmetric_layers(model):
        tensor = qualified.rsplit(".", 1)[-1]
        detach(module, tensor)
        hooks = module._load_state_dict_pre_hooks
        for key in [k for k, h in hooks.items()
                    if isinstance(getattr(h, "hook", None), functools.partial)
                    and h.hook.func is _load_dense_hook and h.hook.keywords.get("tensor") == tensor]:
            del hooks[key]
        if isinstance(module, nn.RNNBase):
            module._init_flat_weights()
    return model
