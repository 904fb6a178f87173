"""How a symmetry attaches to a tensor of a torch module: a ``torch.nn.utils.parametrize`` parametrization.

The trainable tensor holds only the stored (free) values; reading ``module.weight`` gathers them into the dense
symmetric weight.  Because the weight is *computed* from the free vector, the symmetry holds bit for bit after any
optimizer step, weight decay included.

>>> import torch, weightsym as ws
>>> conv = torch.nn.Conv2d(8, 8, 3)
>>> _ = ws.nn.attach(conv, "weight", ws.get_symmetry("tri+spa"))   # init="project": orbit means of the current value
>>> conv.parametrizations.weight.original.shape      # 8*9/2 channel orbits x 6 spatial orbits
torch.Size([216])
>>> bool((conv.weight == conv.weight.transpose(0, 1)).all())
True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from weightsym.symmetry import Symmetry, check_init, get_symmetry


class SymmetricParametrization(nn.Module):
    """``forward(free) -> dense weight``; ``right_inverse(weight) -> free`` (the least-squares projection).

    ``init`` says how ``right_inverse`` turns the dense value into free values the first time it runs, when
    :func:`attach` registers the parametrization: ``"project"`` (orbit means) or ``"variance"`` (one representative
    entry per orbit, :meth:`weightsym.symmetry.layout.Layout.variance_preserving`).  Every later call (assigning
    ``module.weight = W``, loading a dense state dict) projects.

    The gather index lives in a non-persistent buffer: it follows ``.to(device)``, survives ``deepcopy`` and
    never lands in ``state_dict()``.
    """

    def __init__(self, symmetry: Symmetry, shape, row_blocks: int = 1, block_mask=None, init: str = "project"):
        super().__init__()
        self.pending_init = check_init(init)  # consumed by the first right_inverse (registration)
        self.symmetry = symmetry
        self.shape = tuple(int(s) for s in shape)
        self.row_blocks = int(row_blocks)
        self.block_mask = None if block_mask is None else tuple(bool(b) for b in block_mask)
        self.layout = symmetry.layout(self.shape, self.row_blocks, self.block_mask)
        self.register_buffer("index", self.layout.index.clone(), persistent=False)
        # e.g. ``average`` on every gate: the core already is the dense weight in row-major order; skip the gather
        self.identity = bool(torch.equal(self.layout.index, torch.arange(self.layout.index.numel())))

    def forward(self, free: torch.Tensor) -> torch.Tensor:
        if self.identity and free.dim() == 1 and free.numel() == self.layout.stored_count:
            return self.layout.core(free).view(self.shape)
        return self.layout.expand(free, self.index)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        init, self.pending_init = self.pending_init, "project"
        return self.layout.initial(weight, init).to(weight.dtype)

    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """Free values of the symmetric weight nearest to ``weight`` (least squares), in ``weight``'s dtype."""
        return self.layout.project(weight).to(weight.dtype)

    def extra_repr(self) -> str:
        mask = "" if self.block_mask is None else f", gates={''.join('1' if b else '0' for b in self.block_mask)}"
        return f"{self.symmetry.spec}, shape={self.shape}{mask}, stored={self.layout.stored_count}"

    def describe(self) -> dict:
        """Metadata that identifies this parametrization (written into weight files)."""
        return {
            "symmetry": self.symmetry.spec,
            "shape": list(self.shape),
            "row_blocks": self.row_blocks,
            "block_mask": None if self.block_mask is None else "".join("1" if b else "0" for b in self.block_mask),
            "stored": self.layout.stored_count,
        }


def attach(module: nn.Module, tensor_name: str, symmetry: Symmetry | str, row_blocks: int = 1,
           block_mask=None, init: str = "project") -> SymmetricParametrization:
    """Make ``module.<tensor_name>`` symmetric, starting from its current value.

    ``init="project"`` (the default here: ``attach`` is also how trained layers are made symmetric, e.g. by BatchNorm
    folding and when a model is rebuilt from a weight file) stores the nearest symmetric weight, the orbit means.
    ``init="variance"`` is for a freshly initialised layer: each free value is one entry of its orbit, so the
    symmetric weight keeps the dense initialisation's variance entry by entry (``docs/science.md`` §5; orbit means of
    ``m`` iid entries would have variance σ²/m).  :func:`weightsym.symmetrize` defaults to ``"variance"``.

    >>> import torch
    >>> from weightsym.nn import attach
    >>> torch.manual_seed(0) and None
    >>> a, b = torch.nn.Linear(256, 256), torch.nn.Linear(256, 256)
    >>> b.load_state_dict(a.state_dict())
    <All keys matched successfully>
    >>> dense_std = a.weight.std().item()
    >>> _ = attach(a, "weight", "eighth", init="project"); _ = attach(b, "weight", "eighth", init="variance")
    >>> round(a.weight.std().item() / dense_std, 2), round(b.weight.std().item() / dense_std, 2)
    (0.36, 1.0)
    """
    symmetry = get_symmetry(symmetry)
    tensor = getattr(module, tensor_name)
    param = SymmetricParametrization(symmetry, tensor.shape, row_blocks, block_mask, init)
    parametrize.register_parametrization(module, tensor_name, param, unsafe=True)
    return param


def symmetric_parametrization(module: nn.Module, tensor_name: str) -> SymmetricParametrization | None:
    """The weightsym parametrization on ``module.<tensor_name>``, or None."""
    if not parametrize.is_parametrized(module, tensor_name):
        return None
    for p in module.parametrizations[tensor_name]:
        if isinstance(p, SymmetricParametrization):
            return p
    return None


# A symmetric layer may compute its forward from the free values through a structured kernel instead of gathering the
# dense weight (weightsym.fast.fold_training): the kernel is the submodule under this name, and the layer's
# ``forward`` is overridden on the instance.  Whoever removes the parametrization removes both (:func:`clear_kernel`).
KERNEL = "symmetric_kernel"


def set_kernel(module: nn.Module, kernel: nn.Module, forward) -> None:
    """Run ``module`` through ``kernel``: ``forward(module, x)`` replaces the layer's forward on this instance only."""
    import types

    module.add_module(KERNEL, kernel)
    module.forward = types.MethodType(forward, module)


def clear_kernel(module: nn.Module) -> bool:
    """Give ``module`` back its class's own forward; True if it had a kernel."""
    if KERNEL not in module._modules:
        return False
    del module._modules[KERNEL]
    module.__dict__.pop("forward", None)
    return True


def detach(module: nn.Module, tensor_name: str) -> None:
    """Replace the symmetric tensor by a plain parameter holding its current dense value."""
    clear_kernel(module)
    with torch.no_grad():
        dense = getattr(module, tensor_name).detach().clone()
    requires_grad = module.parametrizations[tensor_name].original.requires_grad
    parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=False)
    delattr(module, tensor_name)
    setattr(module, tensor_name, nn.Parameter(dense, requires_grad=requires_grad))
