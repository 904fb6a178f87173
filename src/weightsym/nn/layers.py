"""The one table of layer kinds: every torch module type weightsym attaches symmetries to, declared once.

A row (:class:`LayerKind`) says everything the rest of the package needs to know about one module type:

* **planes** -- which tensors hold its weights (``weight``; ``weight_hh_l0``, ``weight_ih_l0``, ... of a recurrent
  layer; ``in_proj_weight`` of attention), what cuts their rows into blocks that carry the channel symmetry each
  (conv groups, recurrent gates, the q/k/v projections), where the channel plane ``(out, in)`` and the kernel sit in
  the tensor (``transposed``: ``(in, out/groups, ...)``; ``kernel_dims``), and why spatial symmetries do not apply
  (``no_spatial``).  :meth:`LayerKind.planes` maps a tensor onto the axes the symmetry mechanism works on,
  ``(rows, in[, kh][, kw])`` (a :class:`Planes`); that map is a fixed permutation, folded into the gather index, so
  it costs nothing per step;
* **kernels** -- ``fold``: which :mod:`weightsym.fast` kernels exist for it (``"linear"`` or ``"conv"``: channel
  folds, and spatial folds for convs, for inference and for fold-path training), or ``None``: gather path only
  (``fold_training`` leaves it gathered, ``optimize`` materialises the plain layer); ``bn_fold``: an eval-mode
  BatchNorm after it may be folded into it;
* **export** -- a symmetric layer becomes the plain module of its own class holding the dense weight
  (:meth:`LayerKind.refresh` runs after the parametrization is stripped); ``onnx``: whether ``export_onnx`` covers it;
* what else used to be spelled out elsewhere: the cached forward of layers that read a weight several times per call
  (``forward``), children whose weights the layer's own kernel reads without calling them (``reads``), whether it may
  be taken for the stem or the classifier (``edge``), and whether kernel-symmetry analysis reads its kernels
  (``kernel_analysis``).

Everything else reads this table: :func:`weightsym.symmetrize`/``unsymmetrize`` and counting
(:mod:`weightsym.nn.symmetrize`, :mod:`weightsym.nn.parametrization`), the model-file records, validation and rebuild
(:mod:`weightsym.files`), ``optimize``/``fold_training`` eligibility, BatchNorm folding and export
(:mod:`weightsym.fast`), and the analyses that enumerate layers (:mod:`weightsym.analysis`).  Adding a module type is
one row here (``tests/test_layer_kinds.py`` checks no other module lists layer types).

**Conv3d** kernels ``(kd, kh, kw)``: spatial symmetries act on the ``(kh, kw)`` plane of every one of the ``kd``
depth slices (the elements of the cube's symmetry group that fix the depth axis, e.g. time in video); the slices are
not tied to each other, so a 3x3x3 ``dihedral`` kernel keeps 3 x 3 = 9 of 27 values.  Symmetries that move the depth
axis are not offered.  **ConvTranspose2d** stores ``(in, out/groups, kh, kw)``: its channel plane per group is the
transpose of that block, ``(out/groups, in/groups)``, so ``repeat:2:out`` repeats along the output channels as on a
Conv2d.

>>> import torch
>>> from weightsym.nn.layers import layer_kind
>>> kind = layer_kind(torch.nn.ConvTranspose2d(4, 6, 3, groups=2))
>>> kind.name, kind.fold, kind.planes((4, 3, 3, 3), row_blocks=2).canonical     # (out, in/groups, kh, kw)
('ConvTranspose2d', None, (6, 2, 3, 3))
>>> layer_kind(torch.nn.Conv3d(4, 4, 3)).planes((4, 4, 3, 3, 3)).canonical      # depth slices become row blocks
(12, 4, 3, 3)
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn


@dataclass(frozen=True)
class Planes:
    """Where one weight tensor's channel plane and kernel sit: the map from the tensor (``shape``) to the axes the
    symmetry mechanism works on, ``canonical = (rows, in[, kh][, kw])`` cut into ``row_blocks`` row blocks.

    ``groups`` is the tensor's own block count (conv groups, recurrent gates, q/k/v slices), what files record as
    ``row_blocks``; ``transposed``: the tensor is ``(in, out/in_groups, ...)``, its ``in`` axis cut into ``in_groups``
    conv groups (ConvTranspose: ``groups``; GPT-2's ``Conv1D``: 1, the whole ``(in, out)`` matrix transposed, whatever
    its row blocks); ``lead``: kernel axes before the last two (Conv3d's depth), whose slices become row blocks of
    their own.  For a kind whose weights are already ``(out, in, *kernel)``
    with at most two kernel axes the map is the identity.
    """

    kind: str
    shape: tuple[int, ...]
    canonical: tuple[int, ...]
    row_blocks: int
    groups: int
    transposed: bool = False
    lead: int = 0
    in_groups: int = 1

    @property
    def identity(self) -> bool:
        return not self.transposed and self.lead == 0

    def to_canonical(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (of ``shape``) on the canonical axes (a reshape/permute; the identity for most kinds)."""
        if self.identity:
            return tensor
        t = tensor
        if self.transposed:  # (g·in/g, out/g, *k) -> (g, out/g, in/g, *k) -> (out, in/g, *k)
            t = t.reshape(self.in_groups, t.shape[0] // self.in_groups, *t.shape[1:]).transpose(1, 2)
            t = t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])
        if self.lead:  # (R, C, *lead, kh, kw) -> (*lead, R, C, kh, kw) -> (lead·R, C, kh, kw)
            n = self.lead
            t = t.permute(*range(2, 2 + n), 0, 1, *range(2 + n, t.dim()))
            t = t.reshape(-1, *t.shape[n + 1:])
        return t

    @cached_property
    def gather(self) -> torch.Tensor:
        """For each entry of the tensor (row-major), its position in the canonical tensor."""
        numel = math.prod(self.shape)
        canonical_to_tensor = self.to_canonical(torch.arange(numel).view(self.shape)).reshape(-1)
        out = torch.empty_like(canonical_to_tensor)
        out[canonical_to_tensor] = torch.arange(numel)
        return out

    def from_canonical(self, tensor: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_canonical`: a canonical tensor back in the tensor's own layout."""
        if self.identity:
            return tensor
        return tensor.reshape(-1).index_select(0, self.gather.to(tensor.device)).view(self.shape)

    def block_mask(self, mask):
        """A mask over the tensor's ``groups`` blocks as a mask over the canonical row blocks."""
        return None if mask is None else tuple(mask) * (self.row_blocks // self.groups)

    def applies(self, symmetry) -> tuple[bool, str]:
        """``symmetry.applies_to`` on the canonical axes: ``(True, "")`` or ``(False, why)``.  A symmetry that ties
        row blocks of a certain kind to each other (``block_kind``, e.g. ``qk-tie``: the q, k, v blocks of attention)
        applies only to a tensor of a layer kind whose row blocks are of that kind."""
        needs = getattr(symmetry, "block_kind", None)
        if needs is not None:
            row = next((k for k in KINDS if k.name == self.kind), None)
            if row is None or row.blocks != needs:
                what = f"a {self.kind} weight" if self.kind else "a weight of no known layer kind"
                return False, f"{symmetry.spec} {symmetry.needs}, not to {what} of shape {self.shape}"
        return symmetry.applies_to(self.canonical, self.row_blocks)

    def layout(self, symmetry, block_mask=None):
        """The symmetry's cached layout of the canonical axes."""
        return symmetry.layout(self.canonical, self.row_blocks, self.block_mask(block_mask))

    def index(self, layout) -> torch.Tensor:
        """The gather index of the tensor itself, ``tensor = core[index].view(shape)``: the layout's, permuted."""
        return layout.index if self.identity else layout.index.index_select(0, self.gather)

    def expand(self, symmetry, free: torch.Tensor, block_mask=None) -> torch.Tensor:
        """The dense tensor, in its own layout, of the free values ``free``."""
        return self.from_canonical(self.layout(symmetry, block_mask).expand(free))


@dataclass(frozen=True)
class LayerKind:
    """One row of the table (see the module docstring for what each field drives)."""

    type: type | str                # the module class, or "package.module.Class" of a library weightsym never imports
    kernel_dims: int = 0            # kernel axes of its weight: Linear and recurrent 0, Conv1d 1, Conv2d 2, Conv3d 3
    blocks: str = "groups"          # what cuts rows into blocks: "groups" (conv groups, 1 for Linear), "gates", "qkv",
                                    #   "slices" (equal slices of the outputs where qkv_names says so, else one block)
    gates: int = 1                  # blocks per recurrent tensor (LSTM 4: i f g o; GRU 3: r z n; RNN 1); qkv: 3
    transposed: bool = False        # the weight is (in, out/groups, *kernel) ("slices": (in, out), one transpose)
    qkv_names: tuple[str, ...] = () # "slices": layers so named hold the q, k, v projections as 3 slices of the outputs
    no_spatial: str = ""            # spatial symmetries never apply: the reason the report gives
    spatial_note: str = ""          # added when a spatial symmetry cannot act on its kernel
    fold: str | None = None         # fast/ kernels: "linear", "conv", or None (gather path only)
    bn_fold: bool = False           # fast.fold_bn folds a following eval-mode BatchNorm into it
    kernel_analysis: bool = False   # analysis.kernel_symmetry reads its (kh, kw) kernels
    forward: str | None = None      # "rnn" / "attention": the forward that expands each symmetric weight once per call
    reads: tuple[str, ...] = ()     # children whose weights its own kernel reads without calling them
    edge: bool = True               # may be taken for the stem or the classifier by symmetrize's default placement
    onnx: bool = True               # export_onnx covers it (after optimize: structured kernels or the plain layer)

    @property
    def name(self) -> str:
        return self.type.rpartition(".")[2] if isinstance(self.type, str) else self.type.__name__

    @property
    def cls(self) -> type | None:
        """The module class; for a row named by a dotted path, the class if its module is already imported (a model
        holding such a layer exists only then, so weightsym never imports the library itself), else None."""
        if not isinstance(self.type, str):
            return self.type
        module, _, name = self.type.rpartition(".")
        return getattr(sys.modules.get(module), name, None)

    def qkv_slices(self, name: str, module: nn.Module) -> bool:
        """Whether the layer ``name`` (a layer of this kind) holds the q, k, v projections as 3 equal slices of its
        outputs: a "slices" kind, a name ending in one of ``qkv_names``, and out == 3 x in (GPT-2's ``c_attn``)."""
        if self.blocks != "slices" or name.rpartition(".")[2] not in self.qkv_names:
            return False
        rows, cols = self.planes(tuple(module.weight.shape)).canonical[:2]
        return rows == 3 * cols

    def tensors(self, module: nn.Module) -> list[str]:
        """Names of the weight tensors of ``module`` (a layer of this kind)."""
        if self.blocks == "gates":
            return [t for t in module._flat_weights_names if t.startswith("weight")]
        if self.blocks == "qkv":
            return ["in_proj_weight"] if module._qkv_same_embed_dim else ["q_proj_weight", "k_proj_weight",
                                                                         "v_proj_weight"]
        return ["weight"]

    def blocked_rows(self, shape) -> int:
        """How many rows of a weight of ``shape`` its row blocks cut: the out axis of a "slices" kind stored
        transposed (GPT-2's ``Conv1D``: ``shape[1]``), otherwise the tensor's first axis."""
        return int(shape[1] if self.blocks == "slices" and self.transposed else shape[0])

    def planes(self, shape, row_blocks: int = 1) -> Planes:
        """Where the channel plane and the kernel sit in a weight of ``shape`` cut into ``row_blocks`` blocks."""
        shape = tuple(int(s) for s in shape)
        lead = self.kernel_dims - 2 if self.kernel_dims > 2 and len(shape) == 2 + self.kernel_dims else 0
        if not self.transposed and not lead:
            return Planes(self.name, shape, shape, int(row_blocks), int(row_blocks))
        g = int(row_blocks)
        split = g if self.blocks == "groups" else 1  # conv groups cut the in axis; q/k/v slices only the outputs
        if self.transposed and shape[0] % split:
            raise ValueError(f"{self.name} weight {shape}: {shape[0]} input channels are not divisible into {g} groups")
        rows, cols = (shape[1] * split, shape[0] // split) if self.transposed else (shape[0], shape[1])
        depth = math.prod(shape[2:2 + lead])
        canonical = (depth * rows, cols, *shape[2 + lead:])
        return Planes(self.name, shape, canonical, depth * g, g, self.transposed, lead, split)

    def refresh(self, module: nn.Module) -> None:
        """After a weight tensor became a plain parameter again (unsymmetrize, plain copies, export)."""
        if self.blocks == "gates":
            module._init_flat_weights()  # the fused kernel's list of weights points at the removed tensors


RECURRENT = "spatial symmetries do not apply to recurrent weights"

# ---- the table -------------------------------------------------------------------------------------------------------
KINDS: tuple[LayerKind, ...] = (
    LayerKind(nn.Linear, fold="linear"),
    LayerKind(nn.Conv1d, kernel_dims=1, fold="conv", bn_fold=True),
    LayerKind(nn.Conv2d, kernel_dims=2, fold="conv", bn_fold=True, kernel_analysis=True),
    LayerKind(nn.Conv3d, kernel_dims=3,
              spatial_note="a Conv3d's spatial symmetries tie the kh x kw plane of each of its kd depth slices"),
    LayerKind(nn.ConvTranspose2d, kernel_dims=2, transposed=True),
    LayerKind(nn.ConvTranspose3d, kernel_dims=3, transposed=True,
              spatial_note="a ConvTranspose3d's spatial symmetries tie the kh x kw plane of each of its kd depth "
                           "slices"),
    LayerKind(nn.LSTM, blocks="gates", gates=4, no_spatial=RECURRENT, forward="rnn"),
    LayerKind(nn.GRU, blocks="gates", gates=3, no_spatial=RECURRENT, forward="rnn"),
    LayerKind(nn.RNN, blocks="gates", gates=1, no_spatial=RECURRENT, forward="rnn"),
    LayerKind(nn.MultiheadAttention, blocks="qkv", gates=3, forward="attention", reads=("out_proj",), edge=False,
              no_spatial="spatial symmetries do not apply to attention weights"),
    # Hugging Face transformers' GPT-2 linear layer: weight (in, out), y = x W + b; its attention's c_attn is
    # Conv1D(3d, d), the q, k, v projections side by side (resolved only once transformers is imported)
    LayerKind("transformers.pytorch_utils.Conv1D", blocks="slices", gates=3, transposed=True, qkv_names=("c_attn",),
              onnx=False),
)
# Input layers that are never symmetric but count as the stem for symmetrize's default placement (an embedding in
# front of an LSTM makes the LSTM an inner layer).
STEMS: tuple[type, ...] = (nn.Embedding, nn.EmbeddingBag)
# Containers whose inference fast path reads their children's weights without calling them (never replaced by a
# structured kernel; their own symmetric weights, if any, are rows above).
FAST_PATH_READERS: tuple[tuple[type, tuple[str, ...]], ...] = ((nn.TransformerEncoderLayer, ("linear1", "linear2")),)

MAX_WEIGHT_DIMS = max(2 + k.kernel_dims for k in KINDS)


def _rows() -> list[tuple[type, LayerKind]]:
    """``(class, row)`` of every row whose class exists in this process (rows of libraries not imported drop out)."""
    return [(cls, k) for k in KINDS if (cls := k.cls) is not None]


def _types() -> tuple[type, ...]:
    return tuple(cls for cls, _ in _rows())


def layer_kind(module: nn.Module) -> LayerKind | None:
    """The row of ``module``'s type (subclasses included; the first row that matches), or None."""
    return next((k for cls, k in _rows() if isinstance(module, cls)), None)


def kind_named(name: str) -> LayerKind:
    """The row whose type is called ``name`` (``ValueError`` listing the kinds otherwise)."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise ValueError(f"{name!r} is not a layer kind weightsym knows; the kinds: {', '.join(kind_names())}")


def kind_names() -> list[str]:
    return [k.name for k in KINDS]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every layer of the table in ``model``, in ``named_modules()`` order (an attention
    layer's ``out_proj`` is a Linear of its own, listed after it)."""
    types = _types()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, types)]


def stem_order(model: nn.Module) -> list[str]:
    """Names of the weight layers and the embeddings (:data:`STEMS`) of ``model`` in order: the first is the stem."""
    types = _types() + STEMS
    return [n for n, m in model.named_modules() if isinstance(m, types)]


def read_directly(model: nn.Module, inference: bool = False) -> dict[str, str]:
    """``{layer name: owner name}`` of the layers whose weight a kernel of their owner reads without calling them:
    the ``reads`` of every layer of the table (attention's ``out_proj``: ``F.multi_head_attention_forward``), and
    with ``inference=True`` also those of :data:`FAST_PATH_READERS` (``linear1``/``linear2`` of an
    ``nn.TransformerEncoderLayer``, whose inference fast path reads them).  Such a layer may be symmetric, but is
    never swapped for a structured kernel."""
    readers = [(cls, k.reads) for cls, k in _rows() if k.reads] + (list(FAST_PATH_READERS) if inference else [])
    out = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for owner_type, children in readers:
            if isinstance(module, owner_type):
                out.update({prefix + child: name for child in children})
                break
    return out


def planes_of(module: nn.Module, tensor: str, row_blocks: int = 1) -> Planes:
    """The :class:`Planes` of ``module.<tensor>`` (the identity map for a module outside the table)."""
    shape = tuple(getattr(module, tensor).shape)
    kind = layer_kind(module)
    if kind is None:
        return Planes(type(module).__name__, shape, shape, int(row_blocks), int(row_blocks))
    return kind.planes(shape, row_blocks)


def record_planes(kind: str | None, shape, row_blocks: int = 1) -> Planes:
    """The :class:`Planes` of a model-file layer entry: its ``kind`` (written only when the map is not the identity)
    with its ``shape`` and ``row_blocks``.  ``ValueError`` for a kind outside the table or a shape it cannot have."""
    shape = tuple(int(s) for s in shape)
    if kind is None:
        return Planes("", shape, shape, int(row_blocks), int(row_blocks))
    row = kind_named(kind)
    if len(shape) != 2 + row.kernel_dims:
        raise ValueError(f"a {kind} weight has {2 + row.kernel_dims} axes, not {len(shape)} ({shape})")
    return row.planes(shape, row_blocks)


def refresh(module: nn.Module) -> None:
    """What a layer of the table needs after a weight tensor became a plain parameter again (see
    :meth:`LayerKind.refresh`); nothing for other modules."""
    kind = layer_kind(module)
    if kind is not None:
        kind.refresh(module)


def markdown() -> str:
    """The table as Markdown (docs/fast.md, README): kinds, where their planes sit, spatial symmetries, fast kernels,
    export."""
    kernels = {0: "", 1: ", k", 2: ", kh, kw", 3: ", kd, kh, kw"}
    lines = ["| layer | weight tensors: channel plane | spatial symmetries | fast kernels | export |",
             "|---|---|---|---|---|"]
    for k in KINDS:
        axes = kernels[k.kernel_dims]
        if k.blocks == "gates":
            weights = f"`weight_hh_l*`, `weight_ih_l*`: each of the {k.gates} gate block(s)"
        elif k.blocks == "qkv":
            weights = "`in_proj_weight`: each of the q, k, v blocks (or `q/k/v_proj_weight`)"
        elif k.blocks == "slices":
            weights = (f"`weight` (in, out) (Hugging Face `{k.type}`): (out, in), the transpose; "
                       f"`{'`, `'.join(k.qkv_names)}` (out = 3 x in): each of the q, k, v slices")
        elif k.transposed:
            weights = f"`weight` (in, out/groups{axes}): (out, in) per group, the transpose of each block"
        else:
            weights = f"`weight` (out, in{'/groups' if k.kernel_dims else ''}{axes})" + (": per group"
                                                                                      if k.kernel_dims else "")
        spatial = k.no_spatial and "none" or {0: "none (no kernel)", 1: "on the k taps", 2: "on the kh x kw kernel",
                                              3: "on the kh x kw plane of each depth slice"}[k.kernel_dims]
        fast = {"linear": "channel folds", "conv": "channel and spatial folds"}.get(k.fold, "gather path only")
        if k.bn_fold:
            fast += "; BatchNorm folding"
        export = "plain layer" + (", ONNX" if k.onnx else "")
        lines.append(f"| `{k.name}` | {weights} | {spatial} | {fast} | {export} |")
    return "\n".join(lines)


# Attention modules laid out as separate query and key projections (BERT: query/key; Llama-style and others:
# q_proj/k_proj), read for their query-key form; heads from ``num_heads``, ``num_attention_heads``, the module's
# ``config.num_attention_heads`` (Hugging Face), or the query rows over ``head_dim``.
QK_CHILDREN: tuple[tuple[str, str], ...] = (("q_proj", "k_proj"), ("query", "key"))


def qkv_slices_child(module: nn.Module) -> nn.Module | None:
    """The child of ``module`` that holds its q, k, v projections side by side (GPT-2's ``c_attn``), or None."""
    for name, child in module.named_children():
        kind = layer_kind(child)
        if kind is not None and kind.qkv_slices(name, child):
            return child
    return None


def _heads(module: nn.Module, w_q: torch.Tensor) -> int:
    config = getattr(module, "config", None)
    for heads in (getattr(module, "num_heads", None), getattr(module, "num_attention_heads", None),
                  getattr(config, "num_attention_heads", None)):
        if isinstance(heads, int) and heads > 0:
            return heads
    head_dim = getattr(module, "head_dim", None)
    return w_q.shape[0] // head_dim if isinstance(head_dim, int) and head_dim > 0 else 1


def query_key(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """``(W_q, W_k, heads)`` of an attention module, or None: a kind of the table whose blocks are q, k, v
    (``MultiheadAttention``: ``in_proj_weight`` or ``q_proj_weight``/``k_proj_weight``), a module with
    :data:`QK_CHILDREN` linear children (BERT, Llama: with grouped-query attention ``W_k`` has fewer rows, one block
    per key head), or a module with a q/k/v-slices child (GPT-2's ``c_attn``).  The weights are views of the module's
    own tensors (dense views of symmetric ones), ``(out, in)``."""
    kind = layer_kind(module)
    if kind is not None and kind.blocks == "qkv":
        if module._qkv_same_embed_dim:
            d = module.embed_dim
            return module.in_proj_weight[:d], module.in_proj_weight[d:2 * d], module.num_heads
        return module.q_proj_weight, module.k_proj_weight, module.num_heads
    for q_name, k_name in QK_CHILDREN:
        q, k = getattr(module, q_name, None), getattr(module, k_name, None)
        if isinstance(q, nn.Linear) and isinstance(k, nn.Linear):
            return q.weight, k.weight, _heads(module, q.weight)
    fused = qkv_slices_child(module)
    if fused is not None:  # (in, 3d): its transpose is (3d, d), the q, k, v row blocks
        w = fused.weight.T
        d = w.shape[1]
        return w[:d], w[d:2 * d], _heads(module, w[:d])
    return None


def query_key_biases(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The query and key biases (views) of an attention module :func:`query_key` reads, or None."""
    bias = getattr(module, "in_proj_bias", None)
    fused = qkv_slices_child(module)
    if bias is None and fused is not None:
        bias = fused.bias
    if isinstance(bias, torch.Tensor):
        d = bias.shape[0] // 3
        return bias[:d], bias[d:2 * d]
    for q_name, k_name in QK_CHILDREN:
        q, k = getattr(module, q_name, None), getattr(module, k_name, None)
        if q is not None and k is not None and getattr(q, "bias", None) is not None and \
                getattr(k, "bias", None) is not None:
            return q.bias, k.bias
    return None
