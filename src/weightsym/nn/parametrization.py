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

import functools

import torch
from torch import nn
from torch.nn.utils import parametrize

from weightsym.nn.layers import Planes, layer_kind, planes_of, refresh
from weightsym.symmetry import Symmetry, SymmetryError, check_init, get_symmetry


class SymmetricParametrization(nn.Module):
    """``forward(free) -> dense weight``; ``right_inverse(weight) -> free`` (the least-squares projection).

    ``init`` says how ``right_inverse`` turns the dense value into free values the first time it runs, when
    :func:`attach` registers the parametrization: ``"project"`` (orbit means) or ``"variance"`` (one representative
    entry per orbit, :meth:`weightsym.symmetry.layout.Layout.variance_preserving`).  Every later call (assigning
    ``module.weight = W``, loading a dense state dict) projects.

    The gather index lives in a non-persistent buffer: it follows ``.to(device)``, survives ``deepcopy`` and
    never lands in ``state_dict()``.

    ``planes`` (from the table of layer kinds, :func:`weightsym.nn.layers.planes_of`) says where the channel plane and
    the kernel sit in the tensor; the layout is built on those axes and the gather index permuted back to the tensor's
    own layout once, here (for most kinds the map is the identity).
    """

    def __init__(self, symmetry: Symmetry, shape, row_blocks: int = 1, block_mask=None, init: str = "project",
                 planes: Planes | None = None):
        super().__init__()
        self.pending_init = check_init(init)  # consumed by the first right_inverse (registration)
        self.symmetry = symmetry
        self.shape = tuple(int(s) for s in shape)
        self.row_blocks = int(row_blocks)
        self.block_mask = None if block_mask is None else tuple(bool(b) for b in block_mask)
        self.planes = planes or Planes("", self.shape, self.shape, self.row_blocks, self.row_blocks)
        if self.planes.shape != self.shape or self.planes.groups != self.row_blocks:
            raise ValueError(f"planes of {self.planes.shape} x {self.planes.groups} blocks given for a weight of "
                             f"shape {self.shape} x {self.row_blocks} blocks")
        if symmetry.block_kind is not None:  # a tie between row blocks (qk-tie) needs to know the layer kind
            ok, why = self.planes.applies(symmetry)
            if not ok:
                raise SymmetryError(why)
        self.layout = self.planes.layout(symmetry, self.block_mask)
        if symmetry.block_kind is not None:
            self.block_mask = None  # it picks its blocks itself (an all-ones mask means the same; others raised)
        self.permuted = not self.planes.identity
        index = self.planes.index(self.layout)
        self.register_buffer("index", index.clone(), persistent=False)
        # e.g. ``average`` on every gate: the core already is the dense weight in row-major order; skip the gather
        self.identity = bool(torch.equal(index, torch.arange(index.numel())))

    def forward(self, free: torch.Tensor) -> torch.Tensor:
        if self.identity and free.dim() == 1 and free.numel() == self.layout.stored_count:
            return self.layout.core(free).view(self.shape)
        dense = self.layout.expand(free, self.index)
        return dense.view(self.shape) if self.permuted else dense

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        init, self.pending_init = self.pending_init, "project"
        return self.layout.initial(self.planes.to_canonical(weight), init).to(weight.dtype)

    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """Free values of the symmetric weight nearest to ``weight`` (least squares), in ``weight``'s dtype."""
        return self.layout.project(self.planes.to_canonical(weight)).to(weight.dtype)

    def holds(self, weight: torch.Tensor, atol: float = 0.0) -> bool:
        """True if ``weight`` (in the tensor's own layout) obeys the symmetry (bit for bit when ``atol=0``)."""
        return tuple(weight.shape) == self.shape and self.layout.holds(self.planes.to_canonical(weight), atol)

    def extra_repr(self) -> str:
        mask = "" if self.block_mask is None else f", gates={''.join('1' if b else '0' for b in self.block_mask)}"
        return f"{self.symmetry.spec}, shape={self.shape}{mask}, stored={self.layout.stored_count}"

    def describe(self) -> dict:
        """Metadata that identifies this parametrization (written into weight files; ``kind``, the layer kind, only
        when its planes are not the identity: the tensor's axes are not already ``(out, in, *kernel)``; or when the
        symmetry ties row blocks of that kind to each other, ``qk-tie``)."""
        out = {
            "symmetry": self.symmetry.spec,
            "shape": list(self.shape),
            "row_blocks": self.row_blocks,
            "block_mask": None if self.block_mask is None else "".join("1" if b else "0" for b in self.block_mask),
            "stored": self.layout.stored_count,
        }
        if self.permuted or self.symmetry.block_kind is not None:  # a tie between row blocks: which kind's blocks
            out["kind"] = self.planes.kind
        return out


def attach(module: nn.Module, tensor_name: str, symmetry: Symmetry | str, row_blocks: int = 1,
           block_mask=None, init: str = "project") -> SymmetricParametrization:
    """Make ``module.<tensor_name>`` symmetric, starting from its current value: the one routine that attaches a
    symmetry, used by :func:`weightsym.symmetrize`, BatchNorm folding and models rebuilt from files.

    It registers the parametrization, a state-dict hook that lets the layer load a *dense* state dict (projected),
    and, on layers whose kind has a cached ``forward`` (recurrent, attention: :mod:`weightsym.nn.layers`), the forward
    that expands each symmetric weight once per call.  The
    module gets a class of its own first (:func:`own_class`), so attaching to a deep copy never touches the original.

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
    planes = planes_of(module, tensor_name, row_blocks)  # where the layer kind keeps its channel plane and kernel
    param = SymmetricParametrization(symmetry, tensor.shape, row_blocks, block_mask, init, planes)
    own_class(module)  # a deep copy shares its parametrized class with the original: never change a shared one
    parametrize.register_parametrization(module, tensor_name, param, unsafe=True)
    module._register_load_state_dict_pre_hook(functools.partial(_load_dense_hook, tensor=tensor_name),
                                              with_module=True)
    kind = layer_kind(module)
    if kind is not None and kind.forward is not None:
        _expand_once_per_call(module, kind.forward)  # the stock forward reads the weights several times per call
    return param


def own_class(module: nn.Module) -> None:
    """Give a parametrized ``module`` a class of its own.

    ``torch.nn.utils.parametrize`` swaps a module's class for a generated subclass holding one property per
    parametrized tensor, and ``copy.deepcopy`` keeps that class: the copy and the original share it.  Adding or
    removing a parametrization edits the class, so doing it on the copy would change (and, on removal, break) the
    original.  Every attach and detach first calls this, which gives the module a fresh copy of its generated class.
    """
    if not parametrize.is_parametrized(module):
        return
    cls = type(module)
    body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, body)


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


def _cached_attention_forward(self, *args, **kwargs):
    """Forward of a symmetric ``nn.MultiheadAttention``: the stock forward (fast path included), with
    ``in_proj_weight`` expanded once per call (the stock forward reads it up to four times)."""
    with parametrize.cached():
        return super(type(self), self).forward(*args, **kwargs)


_CACHED_FORWARDS = {"rnn": _cached_rnn_forward, "attention": _cached_attention_forward}  # LayerKind.forward


def _expand_once_per_call(module: nn.Module, forward_name: str) -> None:
    # ``parametrize`` gave this module its own subclass (``ParametrizedLSTM``); override forward there only.  Removing
    # the last parametrization (``unsymmetrize``) restores the original class and with it the stock forward.
    cls = type(module)
    forward = _CACHED_FORWARDS[forward_name]
    if cls.__dict__.get("forward") is not forward:
        cls.forward = forward


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
    """Replace the symmetric tensor by a plain parameter holding its current dense value, and undo everything
    :func:`attach` did (its fold-training kernel, the dense-load hook, the recurrent forward) on this module only."""
    clear_kernel(module)
    with torch.no_grad():
        dense = getattr(module, tensor_name).detach().clone()
    requires_grad = module.parametrizations[tensor_name].original.requires_grad
    own_class(module)  # the class may be shared with a deep copy (or the original): remove from a class of its own
    parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=False)
    delattr(module, tensor_name)
    setattr(module, tensor_name, nn.Parameter(dense, requires_grad=requires_grad))
    hooks = module._load_state_dict_pre_hooks
    for key in [k for k, h in hooks.items() if isinstance(getattr(h, "hook", None), functools.partial)
                and h.hook.func is _load_dense_hook and h.hook.keywords.get("tensor") == tensor_name]:
        del hooks[key]
    refresh(module)  # e.g. a recurrent layer's list of flat weights
