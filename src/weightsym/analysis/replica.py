"""Replica distance: how differently do short training runs from different initialisations end up?

Zhang et al. (arXiv 2409.06402, docs/science.md §3) measure the degree of symmetry breaking with a "replica distance"
on short training runs over a subset of the data. **Their exact formula was not available to us**; this module
defines its own, precisely:

1. **Data.** A ``torch.Generator`` seeded with ``seed`` draws a random permutation of ``data``; its first ``subset``
   examples are the training subset, the next ``probe_size`` examples the probe set (if ``data`` is too small for
   both, the probe set is the first ``probe_size`` training examples; ``settings["probe"]`` says which). The same
   generator then draws the batch order: consecutive random permutations of the training subset, cut into
   ``steps`` batches of ``batch_size``. Every replica sees exactly the same batches in the same order.
2. **Replicas.** Replica r = 0 … R−1 is built by ``make_model()`` right after ``torch.manual_seed(seed + 1 + r)``
   (with ``identical=True``: ``seed + 1`` for all), and keeps that random stream while training (dropout masks).
   The caller's global RNG state is restored afterwards.
3. **Training.** ``steps`` steps of SGD (``lr``, ``momentum``, ``weight_decay``) on ``loss_fn`` (cross-entropy on
   logits by default), model in train mode.
4. **Distance**, with the replicas in eval mode, for each pair (a, b), a < b:

   - ``metric="function"`` (default): the mean over the probe set of the **total variation distance** between the
     replicas' predicted class distributions p = softmax(logits),

         d(a, b) = (1/P) Σ_x ½ Σ_c |p_a(c|x) − p_b(c|x)|   ∈ [0, 1].

     Why TV: it is bounded and has a meaning (the largest difference in probability the two replicas assign to any
     set of classes, so it bounds the difference in predicted-class probability), it is symmetric, zero only for
     equal outputs, and — as any function-space distance — automatically invariant to every reparametrisation that
     leaves the function unchanged, hidden-unit permutations included. ``details["disagreement"]`` also gives the
     pairwise fraction of probe inputs with different argmax.
   - ``metric="weights"``: for every effective weight tensor with ≥ 2 axes (Linear/Conv/embedding weights, the dense
     expanded weight for symmetrized layers; biases and norm parameters are left out), reshaped to a matrix
     W (out, rest), the relative distance between singular-value spectra,

         d_ℓ(a, b) = ‖σ(W_a) − σ(W_b)‖₂ / (½ (‖W_a‖_F + ‖W_b‖_F))   ∈ [0, 2],

     averaged over layers: d(a, b) = mean_ℓ d_ℓ(a, b). Singular values do not change when rows (output units) or
     columns (input units, in groups for convs) are permuted, so this is exactly invariant to permuting hidden units
     in any architecture — no matching needed, residual connections included. By Mirsky's inequality
     ‖σ(A) − σ(B)‖₂ ≤ ‖A − P B Q‖_F for all permutations P, Q, so d_ℓ is a **lower bound** on the (relative)
     permutation-aligned weight distance that Hungarian matching would give. It is also blind to orthogonal
     rotations of hidden units, which are not symmetries of ReLU networks: read it as "how different are the layers'
     spectra", and use ``"function"`` as the primary measure. ``details["per_layer"]`` has the per-layer means.

   The result holds the R × R matrix (zero diagonal), and the mean and population standard deviation (ddof = 0) of
   its R(R−1)/2 off-diagonal entries.

Example (a few seconds on CPU):

>>> import torch
>>> from torch import nn
>>> from weightsym.analysis import replica_distance
>>> X, Y = torch.randn(256, 10), torch.randint(0, 3, (256,))
>>> make = lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
>>> result = replica_distance(make, (X, Y), replicas=3, steps=20, subset=128, probe_size=64)
>>> result.pairwise.shape, 0 < result.mean <= 1
(torch.Size([3, 3]), True)
>>> replica_distance(make, (X, Y), replicas=2, steps=20, subset=128, identical=True).mean
0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["METRICS", "ReplicaDistance", "effective_weights", "pairwise_distances", "replica_distance"]

METRICS = ("function", "weights")


@dataclass
class ReplicaDistance:
    """Result of ``replica_distance``.

    Attributes:
        mean, std: mean and population std of the off-diagonal pairwise distances.
        pairwise: (R, R) float64 tensor of distances, symmetric, zero diagonal.
        metric: "function" or "weights".
        settings: every argument that determines the number (replicas, steps, lr, …, probe source).
        final_loss: per replica, the mean training loss over its last min(10, steps) steps.
        details: "disagreement" (R × R, function metric) or "per_layer" (name → mean distance, weights metric).
    """

    mean: float
    std: float
    pairwise: torch.Tensor
    metric: str
    settings: dict[str, Any]
    final_loss: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        details = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.details.items()}
        return {
            "mean": self.mean,
            "std": self.std,
            "pairwise": self.pairwise.tolist(),
            "metric": self.metric,
            "settings": dict(self.settings),
            "final_loss": list(self.final_loss),
            "details": details,
        }


def effective_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) for every weight the model computes with that has ≥ 2 axes, in ``named_modules`` order.

    Uses ``getattr(module, name)``, so a parametrized (symmetrized) layer contributes its dense expanded weight, not
    its stored free parameters.

    >>> [n for n, _ in effective_weights(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)))]
    ['0.weight', '2.weight']
    """
    found = []
    for module_name, module in model.named_modules():
        if "parametrizations" in module_name.split("."):
            continue  # internals of torch.nn.utils.parametrize: reached through the owning module below
        names = list(module._parameters)
        parametrizations = getattr(module, "parametrizations", None)
        if isinstance(parametrizations, nn.ModuleDict):
            names += [n for n in parametrizations.keys() if n not in names]
        if "weight" not in names and isinstance(getattr(type(module), "weight", None), property):
            names.append("weight")
        for name in names:
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor) and tensor.ndim >= 2:
                found.append((f"{module_name}.{name}" if module_name else name, tensor.detach()))
    return found


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


@torch.no_grad()
def _probabilities(model: nn.Module, probe: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    device = _device(model)
    chunks = [F.softmax(model(probe[i : i + batch_size].to(device)).double(), dim=-1).cpu()
              for i in range(0, probe.shape[0], batch_size)]
    return torch.cat(chunks)


def _spectra(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: torch.linalg.svdvals(w.double().reshape(w.shape[0], -1)).cpu() for name, w in effective_weights(model)}


def pairwise_distances(
    models: Sequence[nn.Module], metric: str = "function", probe: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The R × R distance matrix between ``models`` (see module docstring for the metrics) and its details.

    Models are put in eval mode for the measurement and their training flags restored.

    >>> a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> distances, _ = pairwise_distances([a, a], "function", probe=torch.randn(32, 4))
    >>> distances.tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    if metric == "function" and probe is None:
        raise ValueError("metric='function' needs a probe set of inputs")
    count = len(models)
    distances = torch.zeros(count, count, dtype=torch.float64)
    details: dict[str, Any] = {}
    flags = [[m.training for m in model.modules()] for model in models]
    try:
        for model in models:
            model.eval()
        if metric == "function":
            probabilities = [_probabilities(model, probe) for model in models]
            predictions = [p.argmax(-1) for p in probabilities]
            disagreement = torch.zeros(count, count, dtype=torch.float64)
            for a, b in combinations(range(count), 2):
                distances[a, b] = distances[b, a] = 0.5 * (probabilities[a] - probabilities[b]).abs().sum(-1).mean()
                disagreement[a, b] = disagreement[b, a] = (predictions[a] != predictions[b]).double().mean()
            details["disagreement"] = disagreement
        else:
            spectra = [_spectra(model) for model in models]
            names = list(spectra[0])
            if not names:
                raise ValueError("metric='weights': the model has no weight tensor with >= 2 axes")
            per_layer = {name: [] for name in names}
            for a, b in combinations(range(count), 2):
                layer_distances = []
                for name in names:
                    sa, sb = spectra[a][name], spectra[b][name]
                    scale = 0.5 * (torch.linalg.vector_norm(sa) + torch.linalg.vector_norm(sb))
                    d = float(torch.linalg.vector_norm(sa - sb) / scale) if scale > 0 else 0.0
                    layer_distances.append(d)
                    per_layer[name].append(d)
                distances[a, b] = distances[b, a] = sum(layer_distances) / len(layer_distances)
            details["per_layer"] = {name: (sum(v) / len(v) if v else 0.0) for name, v in per_layer.items()}
    finally:
        for model, model_flags in zip(models, flags):
            for module, flag in zip(model.modules(), model_flags):
                module.training = flag
    return distances, details


def _as_tensors(data, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data[0][indices], data[1][indices]
    samples = [data[int(i)] for i in indices]
    inputs = torch.stack([torch.as_tensor(s[0]) for s in samples])
    targets = torch.as_tensor([int(s[1]) for s in samples])
    return inputs, targets


def _length(data) -> int:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        if data[0].shape[0] != data[1].shape[0]:
            raise ValueError(f"data inputs and targets differ in length: {data[0].shape[0]} vs {data[1].shape[0]}")
        return data[0].shape[0]
    return len(data)


def replica_distance(
    make_model: Callable[[], nn.Module],
    data,
    replicas: int = 4,
    steps: int = 100,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    metric: str = "function",
    *,
    subset: int = 1024,
    probe_size: int = 512,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    identical: bool = False,
    device: str | torch.device = "cpu",
) -> ReplicaDistance:
    """Train ``replicas`` copies of ``make_model()`` from different seeded initialisations on the same batches, then
    return their mean pairwise distance (definition in the module docstring).

    Args:
        make_model: builds a fresh classifier (inputs → logits (B, classes)); called once per replica.
        data: ``(inputs, targets)`` tensors or a dataset whose items are ``(input, target)``.
        replicas: R ≥ 2.
        steps, lr, batch_size, momentum, weight_decay: the SGD run of every replica.
        seed: seeds data subset, batch order (generator ``seed``) and initialisations (``seed + 1 + r``).
        metric: "function" (mean total-variation distance of softmax outputs on the probe set) or "weights"
            (hidden-unit-permutation-invariant singular-spectrum distance).
        subset, probe_size: examples used for training / for the function metric.
        loss_fn: defaults to ``F.cross_entropy``.
        identical: give every replica the same initialisation (a control: the distance must be 0).
        device: where the replicas train.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    if replicas < 2:
        raise ValueError(f"replica_distance needs at least 2 replicas; got {replicas}")
    if steps < 1 or batch_size < 1 or subset < 1 or probe_size < 1:
        raise ValueError("steps, batch_size, subset and probe_size must all be >= 1")
    loss_fn = loss_fn or F.cross_entropy
    total = _length(data)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(total, generator=generator)
    subset = min(subset, total)
    train_inputs, train_targets = _as_tensors(data, order[:subset])
    if total - subset >= probe_size:
        probe, probe_source = _as_tensors(data, order[subset : subset + probe_size])[0], "held-out"
    else:
        probe, probe_source = train_inputs[:probe_size], "train"
    batch_size = min(batch_size, subset)
    per_epoch = subset // batch_size
    epochs = math.ceil(steps / per_epoch)
    batches = [p[i * batch_size : (i + 1) * batch_size]
               for p in (torch.randperm(subset, generator=generator) for _ in range(epochs))
               for i in range(per_epoch)][:steps]
    device = torch.device(device)
    train_inputs, train_targets = train_inputs.to(device), train_targets.to(device)

    models, final_loss = [], []
    with torch.random.fork_rng(devices=[]):
        for replica in range(replicas):
            torch.manual_seed(seed + 1 + (0 if identical else replica))
            model = make_model().to(device)
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
            losses = []
            for batch in batches:
                batch = batch.to(device)
                loss = loss_fn(model(train_inputs[batch]), train_targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            tail = losses[-min(10, len(losses)) :]
            final_loss.append(sum(tail) / len(tail))
            models.append(model)

    distances, details = pairwise_distances(models, metric, probe)
    upper = distances[torch.triu_indices(replicas, replicas, offset=1).unbind()]
    settings = dict(
        replicas=replicas, steps=steps, lr=lr, batch_size=batch_size, seed=seed, metric=metric, subset=subset,
        probe_size=int(probe.shape[0]), probe=probe_source, momentum=momentum, weight_decay=weight_decay,
        identical=identical, loss="cross_entropy" if loss_fn is F.cross_entropy else getattr(loss_fn, "__name__", "custom"),
    )
    return ReplicaDistance(
        mean=float(upper.mean()),
        std=float(upper.std(unbiased=False)),
        pairwise=distances,
        metric=metric,
        settings=settings,
        final_loss=final_loss,
        details=details,
    )
