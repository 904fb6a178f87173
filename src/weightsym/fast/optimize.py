"""``optimize``: turn a symmetric model into a fast inference model, layer by layer.

>>> import torch, weightsym as ws
>>> from weightsym.fast import optimize
>>> net = torch.nn.Sequential(torch.nn.Linear(16, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
...                           torch.nn.Linear(512, 10))
>>> _ = ws.symmetrize(net, channel="block")
>>> fast = optimize(net)                                    # size rule: 512x512 block Linear -> quarter product
>>> fast.optimize_report.rows[0].chosen
'structured'
>>> x = torch.randn(4, 16)
>>> torch.allclose(fast(x), net(x), atol=1e-5)
True
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from weightsym.fast import calibrate as cal
from weightsym.fast.materialize import materialize, read_directly
from weightsym.fast.structured import StructuredLayer


@dataclass
class LayerChoice:
    """How one symmetric layer was implemented."""

    name: str
    kind: str
    symmetry: str
    shape: tuple
    chosen: str  # "dense" (materialised) or the name of a structured candidate
    kernel: str  # human description of the chosen kernel
    multiply_fraction: float  # multiplies of the chosen kernel / dense multiplies
    how: str  # "calibrated", "size rule", "no structure", "given"
    times_ms: dict = field(default_factory=dict)


@dataclass
class OptimizeReport:
    rows: list[LayerChoice] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows]}

    def __str__(self) -> str:
        from weightsym.nn import format_table

        return format_table(
            ["layer", "symmetry", "shape", "kernel", "multiplies", "how", "times (ms)"],
            [[r.name, r.symmetry, "x".join(map(str, r.shape)), r.kernel, f"{r.multiply_fraction:.3f}", r.how,
              ", ".join(f"{k} {v:.3f}" for k, v in r.times_ms.items())] for r in self.rows],
            numeric={4},
        )

    __repr__ = __str__


def candidates(module: nn.Module) -> dict[str, nn.Module]:
    """Every exact implementation of a symmetric layer: ``dense`` (materialised) plus the structured variants."""
    out: dict[str, nn.Module] = {"dense": materialize(module)}
    variants = {
        "structured": dict(),
        "structured-cl": dict(product="mkldnn-cl"),
        "structured-conv": dict(product="conv"),
        "structured-mm": dict(product="matmul"),
        "channel-only": dict(use_spatial=False),
        "spatial-only": dict(use_channel=False),
    }
    built: list[StructuredLayer] = []
    for name, kw in variants.items():
        layer = StructuredLayer.build(module, **kw)
        if layer is None:
            continue
        key = (layer.plan, layer.spatial is not None, layer.product)
        if any((b.plan, b.spatial is not None, b.product) == key for b in built):
            continue
        built.append(layer)
        out[name] = layer
    return out


def _describe(layer: nn.Module) -> tuple[str, float]:
    if isinstance(layer, StructuredLayer):
        parts = [] if layer.plan == "dense" else [f"channel {layer.plan}"]
        if layer.spatial is not None:
            parts.append(f"spatial fold {layer.spatial.orbits} orbits ({layer.product} 1x1)")
        return " + ".join(parts), layer.multiply_fraction
    return f"materialised {type(layer).__name__}", 1.0


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in root.modules():
        for key, child in list(parent._modules.items()):
            if child is old:
                parent._modules[key] = new


def optimize(model: nn.Module, example_input=None, calibrate: bool = True, compile: bool = False,
             margin: float = 0.03, rounds: int = 5, choices: dict[str, str] | None = None,
             fold_bn: bool = False, verbose: bool = False) -> nn.Module:
    """A copy of ``model`` for inference in which every symmetric layer runs its cheapest exact kernel.

    ``model`` is left untouched.  The copy is in eval mode, its parameters do not require grad, and it contains no
    parametrization: nothing is expanded at call time.  Per symmetric layer the candidates are the materialised
    dense layer and the structured kernels of :class:`~weightsym.fast.structured.StructuredLayer` (channel folding,
    spatial orbit folding, both, with a conv or a matmul 1x1 product).  With ``example_input`` and
    ``calibrate=True`` each candidate is timed on the input the layer sees (see :mod:`weightsym.fast.calibrate`);
    otherwise the documented size rule decides.  ``compile=True`` wraps the result in ``torch.compile`` (CPU
    inductor) and falls back to the eager model, with a warning, when compilation is unavailable.

    ``choices`` (``{layer name: candidate}``, e.g. the ``chosen`` column of an earlier report) replays a plan
    without timing.  ``fold_bn=True`` first folds every eval-mode BatchNorm that directly follows a conv into it
    (:mod:`weightsym.fast.fold_bn`), keeping the part of the conv's symmetry that still holds.  The choices are in ``result.optimize_report`` (an :class:`OptimizeReport`).
    """
    from weightsym.nn import symmetric_layers

    fast = copy.deepcopy(model).eval()
    if fold_bn:
        from weightsym.fast.fold_bn import fold_batchnorm

        fold_batchnorm(fast)
    modules: dict[str, nn.Module] = {}
    for qualified, module, _ in symmetric_layers(fast):
        name = qualified.rsplit(".", 1)[0] if "." in qualified else ""
        if all(m is not module for m in modules.values()):
            modules[name] = module
    owners = read_directly(fast)  # layers an owner's fused kernel reads (attention out_proj): materialise only
    inputs = {}
    if calibrate and example_input is not None and modules:
        inputs = cal.record_inputs(fast, modules, example_input)
    report = OptimizeReport()
    for name, module in modules.items():
        from weightsym.nn import symmetric_parametrization

        param = symmetric_parametrization(module, "weight")
        spec = param.symmetry.spec if param is not None else ",".join(  # the layer's own tensors, not a submodule's
            s.spec for q, m, s in symmetric_layers(module) if m is module)
        shape = tuple(module.weight.shape) if param is not None else ()
        options = candidates(module) if name not in owners else {"dense": materialize(module)}
        times: dict[str, float] = {}
        label = name or type(module).__name__
        if name in owners:
            chosen, how = "dense", f"weight read directly by `{owners[name] or type(fast).__name__}`"
        elif len(options) == 1:
            chosen, how = "dense", "no structure"
        elif choices is not None and label in choices:
            if choices[label] not in options:
                raise ValueError(f"layer `{label}`: no candidate {choices[label]!r}; it has {sorted(options)}")
            chosen, how = choices[label], "given"
        elif name in inputs:
            times = cal.time_candidates(options, inputs[name], rounds=rounds)
            chosen, how = cal.pick(times, margin), "calibrated"
        else:
            structured = options.get("structured")
            chosen = "structured" if structured is not None and cal.size_rule(structured, module) else "dense"
            how = "size rule"
        new = options[chosen]
        kernel, fraction = _describe(new)
        report.rows.append(LayerChoice(label, type(module).__name__, spec, shape, chosen,
                                       kernel, fraction, how, {k: v * 1e3 for k, v in times.items()}))
        if name == "":
            fast = new
        else:
            _replace(fast, module, new)
    for p in fast.parameters():
        p.requires_grad_(False)
    fast.optimize_report = report
    if verbose:
        print(report)
    if compile:
        fast = compile_model(fast, example_input)
    return fast


class CompiledModel(nn.Module):
    """``torch.compile`` of a model that falls back to the eager model (once, with a warning) on any failure."""

    def __init__(self, model: nn.Module, compiled):
        super().__init__()
        self.model = model
        object.__setattr__(self, "_compiled", compiled)
        self.optimize_report = getattr(model, "optimize_report", None)
        self.compiled_ok = True

    def forward(self, *args, **kwargs):
        if self.compiled_ok:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:  # compilation is best effort: an eager model is always correct
                self.compiled_ok = False
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "running the eager optimized model instead", RuntimeWarning, stacklevel=2)
        return self.model(*args, **kwargs)


def compile_model(model: nn.Module, example_input=None) -> nn.Module:
    """Wrap ``model`` in ``torch.compile`` (inductor, CPU) with an eager fallback; compile now if an input is given."""
    try:
        compiled = torch.compile(model, backend="inductor")
    except Exception as exc:
        warnings.warn(f"torch.compile is unavailable ({exc}); returning the eager model", RuntimeWarning,
                      stacklevel=2)
        return model
    wrapped = CompiledModel(model, compiled)
    if example_input is not None:
        with torch.no_grad():
            wrapped(*example_input) if isinstance(example_input, (tuple, list)) else wrapped(example_input)
    return wrapped
