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
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from weightsym.nn import layers as kinds
from weightsym.nn.parametrization import attach, detach, symmetric_parametrization
from weightsym.symmetry import Composite, Symmetry, SymmetryError, check_init, combine, get_symmetry


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


weight_layers = kinds.weight_layers


def weight_tensors(module: nn.Module) -> list[str]:
    """Names of the weight tensors of one weight layer (its row of :mod:`weightsym.nn.layers`): ``weight``;
    ``weight_hh_l0``, ``weight_ih_l0``, ... of a recurrent layer; ``in_proj_weight`` of a ``MultiheadAttention`` (or
    ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` when its keys/values have other sizes; its ``out_proj`` is
    a Linear of its own).  ``[]`` for a module outside the table."""
    kind = kinds.layer_kind(module)
    return kind.tensors(module) if kind is not None else []


def never_edges(model: nn.Module) -> set[str]:
    """Names of the layers symmetrize's default placement never takes for the stem or the classifier: layers whose
    kind says so (attention) and the children whose weights such a layer reads directly (its ``out_proj``)."""
    own = {name for name, module in kinds.weight_layers(model) if not kinds.layer_kind(module).edge}
    return own | set(kinds.read_directly(model))


GATE_ORDER = {4: "i f g o", 3: "r z n"}


def _mask(text: str | None, blocks: int, option: str, layer: str) -> tuple[bool, ...] | None:
    if text is None:
        return None
    text = str(text)
    if len(text) != blocks or set(text) - {"0", "1"}:
        if option == "qkv":
            raise ValueError(f"qkv={text!r} for attention layer `{layer}` must be 3 characters of 0/1 (one per "
                             "projection, order q k v), e.g. '110' for symmetric query and key projections")
        order = f", order {GATE_ORDER[blocks]}" if blocks in GATE_ORDER else ""
        raise ValueError(f"{option}={text!r} for recurrent layer `{layer}` must be {blocks} characters of 0/1 "
                         f"(one per gate{order})")
    mask = tuple(c == "1" for c in text)
    return mask if any(mask) else None


def _tensor_plan(module: nn.Module, kind: kinds.LayerKind, name: str, hh_gates, ih_gates, qkv):
    """Yield ``(tensor_name, row_blocks, block_mask, blocked)`` for each weight tensor of a layer; ``blocked``: the
    tensor is made of gate/projection blocks chosen by a mask (None: no block selected, the tensor stays dense)."""
    if kind.blocks == "gates":
        hh = _mask(hh_gates, kind.gates, "hh_gates", name)
        ih = _mask(ih_gates, kind.gates, "ih_gates", name)
        for tensor in kind.tensors(module):
            yield tensor, kind.gates, hh if tensor.startswith("weight_hh") else ih, True
        return
    if kind.blocks == "qkv":
        mask = _mask(qkv, kind.gates, "qkv", name)
        tensors = kind.tensors(module)
        if len(tensors) == 1:  # (3d, d): the q, k and v blocks, like the gate blocks of an LSTM
            yield tensors[0], kind.gates, mask, True
        else:  # three tensors of their own: each is one block, selected by its bit
            for bit, tensor in enumerate(tensors):
                yield tensor, 1, (True,) if mask is not None and mask[bit] else None, True
        return
    if kind.qkv_slices(name, module):  # GPT-2's c_attn: the q, k, v projections side by side, as in_proj_weight
        yield "weight", kind.gates, _mask(qkv, kind.gates, "qkv", name), True
        return
    for tensor in kind.tensors(module):
        yield tensor, getattr(module, "groups", 1), None, False


def _kind(module: nn.Module) -> str:
    """The module's own class name ("LSTM", not the "ParametrizedLSTM" that parametrize substitutes)."""
    return parametrize.type_before_parametrizations(module).__name__


def _dense_row(name, tensor, module, note=""):
    shape = tuple(getattr(module, tensor).shape)
    n = int(torch.Size(shape).numel())
    return LayerReport(name, tensor, _kind(module), shape, None, n, n, n, note)


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
    plan: Mapping[str, str | Symmetry] | None = None,
    qkv: str = "111",
) -> SymmetrizeReport:
    """Impose ``channel`` and/or ``spatial`` symmetry on the weight layers of ``model`` (in place), or a per-layer
    ``plan``.

    Which layers: every layer of a kind in the table of layer kinds (:mod:`weightsym.nn.layers`, which also says
    where each kind keeps its channel plane and kernel) the symmetries apply to, **except the first and the last
    weight layer** (input stem and classifier), as in the paper; an ``nn.Embedding`` registered before them
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

    **Attention.**  On an ``nn.MultiheadAttention`` channel symmetries act on each square ``d x d`` block of
    ``in_proj_weight`` (shape ``(3d, d)``: the query, key and value projections) selected by ``qkv`` (default
    ``"111"``; ``"110"``: symmetric query and key projections, dense values), or on ``q_proj_weight`` /
    ``k_proj_weight`` / ``v_proj_weight`` when keys and values have other sizes.  ``channel="qk-tie"`` instead ties
    the key block to the query block (``W_k = W_q``, ``W_v`` free: 2d² of 3d² stored; :mod:`weightsym.symmetry.tie`),
    only on ``in_proj_weight`` and with ``qkv`` left at ``"111"``.  Its output projection
    ``out_proj`` is an ``nn.Linear`` listed as a layer of its own (``<name>.out_proj``: include it by name), and
    attention layers are never taken for the stem or the classifier.  Models with separate q/k/v ``nn.Linear``
    layers need nothing special: choose them by name, e.g. ``include=["*.q", "*.k"]``.  In the stock
    ``nn.TransformerEncoderLayer`` / ``DecoderLayer`` the feed-forward ``linear1`` (d -> 4d) and ``linear2`` take the
    non-square tyings (``block``, ``repeat:c``), the square projections every channel symmetry.

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

    **Per-layer plans.**  ``plan`` maps module-name globs to symmetries (``{"*conv2": "tri+spa", "*conv1": "block"}``;
    a name may be channel, spatial or ``channel+spatial``) and replaces ``channel``/``spatial``/``include``: exactly
    the layers some glob matches are considered, each with the symmetry of the **first** glob that matches it
    (``exclude`` still applies).  ``symmetrize`` may also be called again on other layers: layers a call does not
    consider keep whatever symmetry they have (the report lists them as "already symmetric"); a layer that is already
    symmetric and considered again is an error.

    >>> import weightsym as ws
    >>> from weightsym.models import create_model
    >>> wrn = create_model("wrn-16-4-bottleneck")
    >>> report = ws.symmetrize(wrn, plan={"*conv2": "tri+spa", "*conv1": "block"})
    >>> sorted({row.symmetry for row in report.symmetric})
    ['block', 'triangular+transpose']
    >>> _ = ws.symmetrize(wrn, spatial="dihedral", include=["conv0"])      # a second call, on another layer
    >>> ws.symmetric_layers(wrn)[0][0], ws.symmetric_layers(wrn)[0][2].spec
    ('conv0.weight', 'dihedral')

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
    include = [include] if isinstance(include, str) else include
    exclude = [exclude] if isinstance(exclude, str) else (exclude or [])
    entries = _plan_entries(plan, channel_sym or spatial_sym, include)
    if entries is None and channel_sym is None and spatial_sym is None:
        raise ValueError("symmetrize needs a channel and/or a spatial symmetry, e.g. channel='triangular', or a "
                         "per-layer plan, e.g. plan={'*conv2': 'tri+spa'}")
    ties = [s.spec for s in [channel_sym] + [sym for _, sym in entries or []] if s is not None and s.block_kind]
    if ties and qkv != "111":  # a tie picks its blocks itself (qk-tie: k tied to q, v free)
        raise SymmetryError(f"{ties[0]} ties the key projection to the query projection and leaves the value "
                            f"projection free by itself; it takes no qkv mask (got qkv={qkv!r}; leave qkv at '111')")
    layers = weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no layers to symmetrize; the supported kinds: "
                         f"{', '.join(kinds.kind_names())}")
    patterns = [g for g, _ in entries] if entries is not None else (include or [])
    unmatched = [g for g in patterns + exclude if not any(fnmatch.fnmatchcase(n, g) for n, _ in layers)]
    if unmatched:  # a typo here would silently leave the model dense (include) or untouched by the exclusion
        names = ", ".join(n or "(the model itself)" for n, _ in layers[:8]) + (", ..." if len(layers) > 8 else "")
        what = "plan/exclude" if entries is not None else "include/exclude"
        message = (f"{what} pattern {', '.join(map(repr, unmatched))} matches no weight layer of "
                   f"{type(model).__name__} (its layers: {names})")
        if strict:
            raise SymmetryError(message)
        warnings.warn(message, stacklevel=2)
    # the stem / classifier rule: an embedding in front (language models) is the stem, so a recurrent layer after it
    # is not mistaken for one
    ordered = kinds.stem_order(model)
    edge = {ordered[0], layers[-1][0]} - never_edges(model)  # attention is never the stem or classifier

    report = SymmetrizeReport()
    for name, module in layers:
        kind = kinds.layer_kind(module)
        label = name or _kind(module)
        layer_c, layer_s = channel_sym, spatial_sym
        if entries is not None:
            match = next((sym for glob, sym in entries if fnmatch.fnmatchcase(name, glob)), None)
            considered, why = match is not None, "no plan entry"
            layer_c, layer_s = _planes(match)
        else:
            considered = any(fnmatch.fnmatchcase(name, g) for g in include) if include else name not in edge
            why = "not in include" if include else ("first weight layer (stem)" if name == ordered[0]
                                                    else "last weight layer (classifier)")
        if any(fnmatch.fnmatchcase(name, g) for g in exclude):
            considered, why = False, "excluded"
        for tensor, row_blocks, mask, blocked in _tensor_plan(module, kind, label, hh_gates, ih_gates, qkv):
            existing = symmetric_parametrization(module, tensor)
            if existing is not None:
                if considered:
                    raise ValueError(f"layer `{label}` ({tensor}) is already symmetric ({existing.symmetry.spec}); "
                                     "leave it out of this call (include/exclude/plan) or call weightsym.unsymmetrize "
                                     "first")
                n = int(torch.Size(existing.shape).numel())
                report.rows.append(LayerReport(label, tensor, _kind(module), existing.shape, existing.symmetry.spec, n,
                                               existing.layout.stored_count, existing.layout.free_count,
                                               "already symmetric"))
                continue
            if not considered:
                report.rows.append(_dense_row(label, tensor, module, why))
                continue
            shape = tuple(getattr(module, tensor).shape)
            planes = kind.planes(shape, row_blocks)  # where this kind keeps the channel plane and the kernel
            notes, use_c, use_s = [], layer_c, layer_s
            if kind.no_spatial and use_s is not None:
                notes.append(kind.no_spatial)
                use_s = None
            if blocked and use_c is not None and mask is None:
                use_c = None
                notes.append("no gate selected" if kind.blocks == "gates" else "no projection selected (qkv)")
            for sym, slot in ((use_c, "c"), (use_s, "s")):
                if sym is None:
                    continue
                ok, why_not = planes.applies(sym)
                if not ok and slot == "s" and kind.spatial_note:
                    why_not = f"{why_not} ({kind.spatial_note})"
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
                if strict and (layer_c or layer_s) and notes:
                    raise SymmetryError(f"`{label}` {tensor}: {'; '.join(notes)}")
                report.rows.append(_dense_row(label, tensor, module, "; ".join(notes)))
                continue
            param = attach(module, tensor, sym, row_blocks, mask, init=init)
            n = int(torch.Size(shape).numel())
            report.rows.append(LayerReport(label, tensor, _kind(module), shape, sym.spec, n,
                                           param.layout.stored_count, param.layout.free_count, "; ".join(notes)))
    return report


def _plan_entries(plan, plane_symmetry, include) -> list[tuple[str, Symmetry]] | None:
    """``[(glob, symmetry)]`` of a per-layer plan in its order (None without a plan); errors name the entry."""
    if plan is None:
        return None
    if plane_symmetry is not None:
        raise ValueError("pass either plan= (per-layer symmetries) or channel=/spatial= (one for every layer), "
                         "not both")
    if include:
        raise ValueError("plan's globs choose the layers; leave include out (exclude still applies)")
    if not isinstance(plan, Mapping) or not plan:
        raise ValueError(f"plan must be a non-empty mapping {{module glob: symmetry}}, e.g. {{'*conv2': 'tri+spa'}}; "
                         f"got {plan!r}")
    entries = []
    for glob, spec in plan.items():
        if not isinstance(glob, str) or not glob:
            raise ValueError(f"plan: {glob!r} is not a module-name glob")
        try:
            entries.append((glob, get_symmetry(spec)))
        except ValueError as exc:
            raise ValueError(f"plan entry {glob!r}: {exc}") from None
    return entries


def _planes(symmetry: Symmetry | None) -> tuple[Symmetry | None, Symmetry | None]:
    """``(channel part, spatial part)`` of a symmetry named in a plan."""
    if symmetry is None:
        return None, None
    if isinstance(symmetry, Composite):
        return symmetry.channel, symmetry.spatial
    return (symmetry, None) if symmetry.plane == "channel" else (None, symmetry)


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
        detach(module, qualified.rsplit(".", 1)[-1])
    return model
