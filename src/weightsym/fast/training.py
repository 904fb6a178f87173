"""Training through the folds: symmetric layers whose forward *and* backward use the structure's smaller products.

A symmetric layer normally trains by gathering its dense weight from the free values every step (one pass over the
weight) and running the dense op.  When the symmetry's group contains a flip or a spatial tying, the same layer can
instead run the structured pipeline of :class:`~weightsym.fast.structured.StructuredKernel` — fold the input, a
smaller product, unfold the output — with its *reduced* weights gathered from the free values.  Everything in that
pipeline is linear, so its backward has the same shape (``docs/science.md``, "Training through the folds"): the
gradient of the reduced weights is ``(Uᵀ g) · F(x)ᵀ``, the gradient of the input ``Fᵀ (Aᵀ · Uᵀ g)``, and every
product is as small as the forward's.  ``block``/``eighth`` channel tyings need a quarter of the multiplies,
``centrosymmetric``/``bisymmetric`` a half, a 3x3 ``dihedral`` kernel a third, ``block + dihedral`` a twelfth.

Nothing else changes: the free values, the optimizer state, ``state_dict()`` and weight files are the same as on the
gather path, and the results agree up to float rounding.

>>> import torch, weightsym as ws
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
...                           torch.nn.Linear(64, 4))
>>> _ = ws.symmetrize(net, channel="block")
>>> report = ws.fast.fold_training(net, policy="always")      # "auto" decides by multiplies and size
>>> [(row.name, row.path, row.multiply_fraction) for row in report.rows]
[('2', 'fold', 0.25)]
>>> net(torch.randn(3, 8)).shape
torch.Size([3, 4])

The layer's ``forward`` is overridden on the instance (the class is untouched) and the kernel sits in the
``symmetric_kernel`` submodule, whose index buffers are non-persistent; ``unsymmetrize``, ``fast.optimize`` and
:func:`unfold_training` take both away again.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from weightsym.fast import channel_fold as cf
from weightsym.fast import timing
from weightsym.fast.spatial_fold import orbit_representatives
from weightsym.fast.structured import StructuredKernel, build_kernel, fold_of, layer_structure
from weightsym.nn.layers import read_directly
from weightsym.nn.parametrization import KERNEL, clear_kernel, set_kernel, symmetric_parametrization

# When does a fold pay?  It saves multiplies, but it moves memory: the input fold, the spatial orbit maps, the output
# mirror and the adjoints of all three in the backward.  Per output element, a layer does ``macs`` multiply-adds
# densely and ``f·macs`` folded, and the folds move about ``traffic`` elements (see ``estimated_speedup``).  Modelled
# step time relative to dense: ``f · PRODUCT_COST + MEMORY_COST · traffic / macs``, with MEMORY_COST the multiply-adds
# one moved element costs, measured on a 2-core CPU (AVX-512, oneDNN) with benchmarks/bench_train_step.py and
# benchmarks/calibrate_fold.py: the spatial orbit maps are masked, strided passes and cost more than the channel folds'
# contiguous ones; eager mode pays every fold as a separate pass.  A layer folds when the model predicts at least
# MIN_SPEEDUP.
PRODUCT_COST = {"spatial": 1.0, "channel": 1.0}  # reduced products run about as efficiently as the dense ones
MEMORY_COST = {  # (compiled?) -> multiply-adds per moved element; fitted by benchmarks/calibrate_fold.py, 2 threads,
    True: {"spatial": 33.0, "channel": 3.0},  # 2026-12-01 (benchmarks/results/calibrate_fold.json)
    False: {"spatial": 54.0, "channel": 5.0},
}
MIN_SPEEDUP = 1.15
# Below these multiply-adds per output element the per-call cost of the extra ops (not modelled) dominates: measured
# on the same grid, e.g. a block Linear of 32 or a 16 -> 64 1x1 conv trains slower folded, compiled or not.
MIN_MACS = {True: {"spatial": 256, "channel": 64}, False: {"spatial": 256, "channel": 128}}
# The model above is fitted on one CPU (an AMD EPYC); another can disagree: on an Intel Xeon the bisymmetric
# WRN-16-4-bottleneck it folds trains 1.05x slower than gathered (docs/results/cifar10-accuracy.md, step time).  policy="measure" times each layer instead: a training
# step (forward, backward to the input and the free values) of the layer on its own input, folded and gathered, and
# folds only where the fold is at least MEASURE_MARGIN faster.
MEASURE_MARGIN = 0.05
POLICIES = ("auto", "measure", "always", "never")


@dataclass
class FoldChoice:
    """How one symmetric layer trains: ``path`` is ``"fold"`` or ``"gather"`` (the dense-weight gather)."""

    name: str
    kind: str
    symmetry: str
    shape: tuple
    path: str
    kernel: str
    multiply_fraction: float
    why: str


@dataclass
class FoldReport:
    rows: list[FoldChoice] = field(default_factory=list)
    note: str = ""  # e.g. that policy="measure" ran on a busy machine

    @property
    def folded(self) -> list[str]:
        """Names of the layers that train through their fold."""
        return [r.name for r in self.rows if r.path == "fold"]

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "note": self.note}

    def __str__(self) -> str:
        from weightsym.nn import format_table

        table = format_table(["layer", "symmetry", "shape", "path", "kernel", "multiplies", "why"],
                             [[r.name or f"({r.kind})", r.symmetry, "x".join(map(str, r.shape)), r.path, r.kernel,
                               f"{r.multiply_fraction:.3f}", r.why] for r in self.rows], numeric={5})
        return f"{table}\nnote: {self.note}" if self.note else table

    __repr__ = __str__


class FoldKernel(StructuredKernel):
    """The structured pipeline of one symmetric layer with its reduced weights gathered from the free values.

    ``block_index`` holds, for every entry of the reduced weights' source block (:func:`channel_fold.block_shape`,
    kernel taps reduced to one per spatial orbit when the spatial part folds), its position in the layout's core
    vector; ``forward(x, core, bias)`` gathers that block (a small gather whose backward is a small scatter), reduces
    it (:func:`channel_fold.reduce_block`) and runs the pipeline.
    """

    flips = True

    def __init__(self, *args, block_index: torch.Tensor, block_shape: tuple[int, ...]):
        super().__init__(*args)
        block_index = block_index.reshape(-1)
        # the free values of a tying are numbered by first appearance, row-major: for block/eighth-free quarters,
        # spatial-only folds and their compositions the source block *is* the core, in order (no gather at all)
        self.in_order = bool(torch.equal(block_index, torch.arange(block_index.numel())))
        self.register_buffer("block_index", None if self.in_order else block_index.clone(), persistent=False)
        self.block_shape = tuple(int(s) for s in block_shape)
        self.block_size = int(block_index.numel())

    def reduced_weights(self, core: torch.Tensor) -> list[torch.Tensor]:
        if self.in_order:  # a prefix of the core, in order: a view
            block = core.narrow(0, 0, self.block_size).view(self.block_shape)
        else:
            block = core.index_select(0, self.block_index).view(self.block_shape)
        weights = cf.reduce_block(block, self.plan, self.n_in // self.conv.get("groups", 1)
                                  if self.kind == "conv" else self.n_in)
        if self.spatial is not None:  # (rows, cols, orbits) -> (rows, orbits·cols): the folded maps' channel order
            weights = [w.transpose(1, 2).reshape(w.shape[0], -1) for w in weights]
        return weights

    def forward(self, x: torch.Tensor, core: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self.run(x, self.reduced_weights(core), bias)


def _folded_forward(self, x):
    """Forward of a symmetric layer that trains through its fold (installed per instance by :func:`fold_training`)."""
    param = self.parametrizations.weight[0]
    core = param.layout.core(self.parametrizations.weight.original)
    return self._modules[KERNEL](x, core, self.bias)


def fold_kernel(module: nn.Module, product: str = "conv") -> FoldKernel | None:
    """The :class:`FoldKernel` of a symmetric Linear/Conv1d/Conv2d, or None if its structure saves no multiplies."""
    found = layer_structure(module)
    if found is None:
        return None
    plan, copies, ids = found
    param = symmetric_parametrization(module, "weight")
    R, C = param.shape[:2]
    rows, cols = cf.block_shape(plan, R, C, copies)
    index = param.layout.index.view(param.shape)[:rows, :cols]
    if ids is not None:
        index = index.flatten(2).index_select(2, orbit_representatives(ids))
    return build_kernel(module, FoldKernel, product=product, block_index=index, block_shape=tuple(index.shape))


def _macs_per_output(kernel: StructuredKernel) -> tuple[int, str]:
    """Dense multiply-adds per output element, and which minimum applies ("spatial" or "channel")."""
    groups = kernel.conv.get("groups", 1) if kernel.kind == "conv" else 1
    taps = kernel.spatial_taps if kernel.kind == "conv" else 1
    return kernel.n_in // groups * taps, "spatial" if kernel.spatial is not None else "channel"


def estimated_speedup(kernel: StructuredKernel, compiled: bool = True) -> float:
    """Modelled dense / fold training-step time of one layer (see :data:`MEMORY_COST`), per output element.

    Dense multiply-adds per output element: ``C_in · taps / groups``.  Memory moved by the folds (forward and
    backward, per output element): the input pair fold reads ``C_in`` and writes half of it; the spatial orbit maps
    write ``F · C'`` (``C'`` the channels after the channel fold) and read the input once; the output mirror writes
    ``R`` from ``R/2``; each adjoint moves the same again; input-side terms scale with the input pixels per output
    pixel (the stride's product).
    """
    conv = kernel.conv
    stride = 1
    for s in conv.get("stride", ()) if kernel.kind == "conv" else ():
        stride *= s
    macs, kind = _macs_per_output(kernel)
    per_out = 1.0 / kernel.n_out  # input-side traffic is shared by all outputs of a pixel
    channel = spatial = 0.0
    channels_after = kernel.n_in
    if kernel.in_mode in ("pair", "centro", "chunks"):
        channels_after = (kernel.n_in + 1) // 2 if kernel.in_mode != "chunks" else kernel.n_in // kernel.copies
        channel += 2 * (kernel.n_in + channels_after) * stride * per_out
    if kernel.spatial is not None:  # maps at output resolution; the input read and its gradient at input resolution
        spatial += (2 * kernel.spatial.orbits + 1 + stride) * channels_after * per_out
    if kernel.out_mode in ("mirror", "tile", "centro"):
        channel += 2 * 1.5  # write R from R/2, and the adjoint
    cost = MEMORY_COST[compiled]
    if macs < MIN_MACS[compiled][kind]:
        return 1.0  # too small to model: keep the gather
    time = kernel.multiply_fraction * PRODUCT_COST[kind] + (cost["spatial"] * spatial + cost["channel"] * channel) / macs
    return 1.0 / time


def _decide(kernel: FoldKernel, policy: str, compiled: bool) -> tuple[bool, str]:
    if policy == "always":
        return True, "policy always"
    speedup = estimated_speedup(kernel, compiled)
    mode = "compiled" if compiled else "eager"
    macs, smallest = _macs_per_output(kernel)
    if macs < MIN_MACS[compiled][smallest]:
        return False, (f"{1 / kernel.multiply_fraction:.1f}x fewer multiplies, but {macs} multiply-adds per output are "
                       f"too few to pay for the extra ops ({mode}; folds from {MIN_MACS[compiled][smallest]})")
    if speedup < MIN_SPEEDUP:
        return False, (f"{1 / kernel.multiply_fraction:.1f}x fewer multiplies, but the folds' memory passes leave an "
                       f"estimated {speedup:.2f}x ({mode}; folds from {MIN_SPEEDUP}x)")
    return True, f"{1 / kernel.multiply_fraction:.1f}x fewer multiplies, estimated {speedup:.2f}x faster ({mode})"


def fold_training(model: nn.Module, policy: str = "auto", compiled: bool = True, *, example_input=None,
                  layers: Iterable[str] | None = None, margin: float = MEASURE_MARGIN) -> FoldReport:
    """Let the symmetric layers of ``model`` that have fold kernels (the ``fold`` column of the table of layer kinds,
    :mod:`weightsym.nn.layers`: Linear, Conv1d, Conv2d) train through their folds (in place).

    ``policy``: ``"auto"`` folds a layer when its structure saves enough multiplies and its product is large enough
    for the saving to outweigh the folds' memory passes (:func:`estimated_speedup`, a cost model measured on one CPU;
    it differs for ``compiled`` models, where the folds fuse into their neighbours, and eager ones); ``"measure"``
    times each such layer's training step on this machine, folded and gathered, on the input it receives from
    ``example_input`` (a batch shaped like the training batches; its values do not matter), compiled per layer when
    ``compiled``, and folds where the fold is at least ``margin`` faster (best of interleaved rounds of process CPU
    time, :func:`weightsym.fast.timing.time_calls`; a few seconds per layer, more when compiling); ``"always"``
    folds every layer whose structure saves multiplies; ``"never"`` removes every fold (same as
    :func:`unfold_training`).  Layers without such structure (``triangular``, ``transpose``, the matrix maps,
    recurrent layers) keep the gather path, and so do kinds the table marks gather-path only (a row each in the
    report).

    ``layers`` replays a decision instead of making one: exactly the named layers fold (names as in
    :attr:`FoldReport.folded`; a name that is not a foldable layer raises ``ValueError``) — e.g. a resumed run, or
    the other processes of a distributed one, taking the measured choice of the first.

    Measuring leaves the model as it was (training mode, BatchNorm statistics, the global RNG) and resets
    ``torch._dynamo`` when it compiled.  Call it after :func:`weightsym.symmetrize` and before
    ``torch.compile``/``DistributedDataParallel``; calling it again re-decides every layer.  Returns a
    :class:`FoldReport` (which layers fold, and why or why not).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r}: use one of {', '.join(map(repr, POLICIES))}")
    chosen = None if layers is None else set(layers)
    if policy == "measure" and chosen is None and example_input is None:
        raise ValueError("policy='measure' needs example_input=: a batch shaped like the training batches (the "
                         "values do not matter), to time each layer on the input it receives")
    from torch.nn.utils import parametrize

    from weightsym.nn import symmetric_layers

    owners = read_directly(model)  # an attention out_proj is never called: its owner reads its weight
    report = FoldReport()
    seen: set[int] = set()
    inputs, foldable, measured = None, [], {}
    if policy == "measure" and chosen is None:
        unfold_training(model)  # record every layer's input on the gather path
        inputs = _layer_inputs(model, example_input)
        report.note = timing.busy_machine_note()
        if report.note:
            warnings.warn(f"fold_training(policy='measure'): {report.note}", stacklevel=2)
    for qualified, module, symmetry in symmetric_layers(model):
        if id(module) in seen:
            continue
        seen.add(id(module))
        clear_kernel(module)
        name = qualified.rsplit(".", 1)[0] if "." in qualified else ""  # "" : the model is the layer
        param = symmetric_parametrization(module, "weight")
        if param is None:  # recurrent and attention weights: gathered into the fused kernel
            continue
        kind = parametrize.type_before_parametrizations(module).__name__
        if fold_of(module) is None:  # the table of layer kinds has no fold kernels for it
            report.rows.append(FoldChoice(name, kind, symmetry.spec, param.shape, "gather", "dense op", 1.0,
                                          f"{kind}: gather path only (no fold kernels)"))
            continue
        if name in owners:
            report.rows.append(FoldChoice(name, kind, symmetry.spec, param.shape, "gather", "dense op", 1.0,
                                          "attention out_proj: the attention kernel reads its weight"))
            continue
        kernel = None if policy == "never" and chosen is None else fold_kernel(module)
        if kernel is None:
            why = "policy never" if policy == "never" else "no fold saves multiplies for this symmetry"
            report.rows.append(FoldChoice(name, kind, symmetry.spec, param.shape, "gather", "dense op", 1.0, why))
            continue
        foldable.append(name)
        if chosen is not None:
            use, why = name in chosen, "replayed" + ("" if name in chosen else ": not among the folded layers")
            chosen.discard(name)
        elif policy == "measure" and name in inputs:  # layers alike on inputs alike share one measurement
            x = inputs[name]
            key = (kind, symmetry.spec, tuple(param.shape), module.bias is not None, repr(sorted(kernel.conv.items())),
                   tuple(x.shape), x.dtype)
            if key not in measured:
                measured[key] = name, _measure(module, kernel, x, compiled, margin)
            first, (use, why) = measured[key]
            why = why if first == name else f"{why}, as {first}"
        elif policy == "measure":
            use, why = _decide(kernel, "auto", compiled)
            why = f"not reached by example_input; estimated: {why}"
        else:
            use, why = _decide(kernel, policy, compiled)
        description = _describe(kernel)
        if use:
            kernel = kernel.to(device=param.index.device)
            set_kernel(module, kernel, _folded_forward)
        report.rows.append(FoldChoice(name, kind, symmetry.spec, param.shape, "fold" if use else "gather",
                                      description if use else "dense op",
                                      kernel.multiply_fraction if use else 1.0, why))
    if chosen:
        raise ValueError(f"layers=: {', '.join(sorted(chosen))} is not a layer that can train through a fold "
                         f"(foldable: {', '.join(foldable) or 'none'})")
    return report


def _layer_inputs(model: nn.Module, example_input) -> dict[str, torch.Tensor]:
    """The input each symmetric layer receives from ``example_input``, model in eval mode (BatchNorm statistics kept)."""
    from weightsym.fast.calibrate import record_inputs
    from weightsym.nn import symmetric_layers

    modules = {}
    for qualified, module, _ in symmetric_layers(model):
        modules.setdefault(qualified.rsplit(".", 1)[0] if "." in qualified else "", module)
    was_training = model.training
    model.eval()
    try:
        seen = record_inputs(model, modules, example_input)
    finally:
        model.train(was_training)
    return {name: args[0] for name, args in seen.items() if args and torch.is_tensor(args[0])}


def _measure(module: nn.Module, kernel: FoldKernel, x: torch.Tensor, compiled: bool, margin: float) -> tuple[bool, str]:
    """Time a training step of ``module`` on ``x``, gathered and folded; fold if the fold is ``margin`` faster."""
    import copy

    folded = copy.deepcopy(module)
    set_kernel(folded, kernel.to(device=x.device), _folded_forward)
    generator = torch.Generator(device=x.device).manual_seed(0)  # never the global RNG: training must not change
    with torch.no_grad():
        grad = torch.randn(module(x).shape, generator=generator, device=x.device, dtype=x.dtype)
    steps = {path: _training_step(layer, x, grad, compiled) for path, layer in (("gather", module),
                                                                                 ("fold", folded))}
    try:
        times = timing.time_calls(steps, rounds=15, budget=4.0)
    finally:
        for layer in (module, folded):
            for p in layer.parameters():
                p.grad = None
        if compiled:
            torch._dynamo.reset()  # one compiled copy per layer: never let them count against the recompile limit
    ratio = times["gather"] / max(times["fold"], 1e-12)
    mode = "compiled" if compiled else "eager"
    saving = f"{1 / kernel.multiply_fraction:.1f}x fewer multiplies"
    if ratio >= 1 / (1 - margin):
        return True, f"{saving}, measured {ratio:.2f}x faster ({mode})"
    return False, f"{saving}, but measured {ratio:.2f}x ({mode}; folds from {1 / (1 - margin):.2f}x)"


def _training_step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, compiled: bool):
    forward = torch.compile(layer, dynamic=False) if compiled else layer
    x = x.detach().clone().requires_grad_(True)
    params = [p for p in layer.parameters() if p.requires_grad]

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        forward(x).backward(grad)

    return step


def unfold_training(model: nn.Module) -> int:
    """Put every symmetric layer of ``model`` back on the gather path; returns how many layers had a fold."""
    return sum(clear_kernel(m) for m in model.modules())


def _describe(kernel: FoldKernel) -> str:
    parts = [] if kernel.plan == "dense" else [f"channel {kernel.plan}"]
    if kernel.spatial is not None:
        parts.append(f"spatial fold {kernel.spatial.orbits} orbits")
    return " + ".join(parts)
