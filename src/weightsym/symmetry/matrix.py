"""Symmetric channel planes that are not orbit tyings: ``average``, ``eigen`` and ``lowrank``.

Each maps a batch of stored parameter vectors to a batch of symmetric ``n x n`` planes (exactly symmetric, bit for
bit: the result is always passed through ``(M + M^T) / 2``).

* ``average`` (paper: ``wwt``): stores a full ``A``; ``W = (A + A^T) / 2``.  Stores ``n^2`` values; the symmetric set
  it spans has dimension ``n(n+1)/2`` (the same set as ``triangular``, with a different optimisation geometry).
* ``eigen`` (paper: ``evd``): ``W = V diag(e) V^T`` with ``V = expm(S - S^T)`` orthogonal and trainable, ``S`` the
  strict upper triangle.  Stores ``n(n-1)/2 + n = n(n+1)/2`` values.  (The original code computed V without gradient,
  so the layer never trained; here V is a differentiable function of the stored values.)
* ``lowrank`` (paper: ``pdpt``): ``W = P diag(d) P^T`` with ``P`` of shape ``n x r``.  Stores ``n r + r`` values;
  the set of symmetric rank-``r`` matrices has dimension ``n r - r(r-1)/2`` (the ``free_count``).  The rank comes
  from a rule applied to each plane size ``n``: ``lowrank:8`` (a fixed ``r = 8``), ``lowrank:0.5`` (a fraction,
  ``r = max(1, ⌊0.5·n⌋)``; plain ``lowrank`` is ``n/4``, the same as ``lowrank:0.25``) or ``lowrank:paper`` (the
  original code's ``r = n − ⌈n/2⌉ − 1``: 7, 15, 31 for n = 16, 32, 64).

Variance-preserving initialisation (``docs/science.md`` §5; :meth:`ChannelMap.variance_preserving_planes`): ``average``
and ``eigen`` start from ``T``, the dense plane's upper triangle mirrored (every entry one dense draw); ``lowrank``
starts from the best rank-``r`` approximation of ``T`` with ``d`` scaled so that the plane keeps ``T``'s Frobenius norm,
i.e. the dense mean square over the plane (a rank-``r`` matrix cannot have iid entries: its diagonal ends up with about
twice the variance of its off-diagonal entries, which hold the dense variance to within about 1/n).
"""

from __future__ import annotations

import math

import torch

from weightsym.symmetry.base import ChannelMap


def _sym(m: torch.Tensor) -> torch.Tensor:
    return (m + m.transpose(-1, -2)) / 2


class _SymmetricPart(torch.autograd.Function):
    """``(A + Aᵀ) / 2`` with a one-kernel-per-pass backward (the map is self-adjoint: grad ↦ (G + Gᵀ) / 2).

    Same values as :func:`_sym` bit for bit (``(a + b) * 0.5 == (a + b) / 2`` in floating point), fewer passes over
    memory than autograd's add/div/transpose chain; this runs once per forward of every ``average`` layer.
    """

    @staticmethod
    def forward(ctx, m):
        return torch.add(m, m.transpose(-1, -2)).mul_(0.5)

    @staticmethod
    def backward(ctx, grad):
        return torch.add(grad, grad.transpose(-1, -2)).mul_(0.5)


class Average(ChannelMap):
    name = "average"
    aliases = ("wwt",)
    invariance = "W = (A + Aᵀ)/2 (stores A)"
    formula = "n² stored (n(n+1)/2 free)"

    @property
    def spec(self) -> str:
        return self.name

    def params_per_plane(self, n: int) -> int:
        return n * n

    def dimension(self, n: int) -> int:
        return n * (n + 1) // 2

    def expand_planes(self, params: torch.Tensor, n: int) -> torch.Tensor:
        return _SymmetricPart.apply(params.view(-1, n, n))

    def project_planes(self, planes: torch.Tensor) -> torch.Tensor:
        return _sym(planes).reshape(planes.shape[0], -1)


def _log_orthogonal(v: torch.Tensor) -> torch.Tensor:
    """Real skew-symmetric ``A`` with ``expm(A) = V`` for a batch of rotations ``V`` (det +1)."""
    lam, u = torch.linalg.eig(v.to(torch.float64))
    log = (u * torch.log(lam).unsqueeze(-2)) @ torch.linalg.inv(u)
    a = log.real
    return ((a - a.transpose(-1, -2)) / 2).to(v.dtype)


class Eigen(ChannelMap):
    name = "eigen"
    aliases = ("evd",)
    invariance = "W = V diag(e) Vᵀ, V = expm(S − Sᵀ) orthogonal"
    formula = "n(n+1)/2"

    @property
    def spec(self) -> str:
        return self.name

    def params_per_plane(self, n: int) -> int:
        return n * (n - 1) // 2 + n

    def dimension(self, n: int) -> int:
        return n * (n + 1) // 2

    def expand_planes(self, params: torch.Tensor, n: int) -> torch.Tensor:
        b = params.shape[0]
        k = n * (n - 1) // 2
        iu = torch.triu_indices(n, n, offset=1, device=params.device)
        s = params.new_zeros(b, n, n)
        s[:, iu[0], iu[1]] = params[:, :k]
        v = torch.linalg.matrix_exp(s - s.transpose(-1, -2))
        e = params[:, k:]
        return _sym((v * e.unsqueeze(-2)) @ v.transpose(-1, -2))

    def project_planes(self, planes: torch.Tensor) -> torch.Tensor:
        n = planes.shape[-1]
        e, v = torch.linalg.eigh(_sym(planes).to(torch.float64))
        flip = torch.linalg.det(v) < 0  # make V a rotation: negate its first column where det = -1
        v[..., :, 0] = torch.where(flip.unsqueeze(-1), -v[..., :, 0], v[..., :, 0])
        a = _log_orthogonal(v)
        iu = torch.triu_indices(n, n, offset=1, device=planes.device)
        return torch.cat([a[:, iu[0], iu[1]], e], dim=1).to(planes.dtype)


class LowRank(ChannelMap):
    """``W = P diag(d) Pᵀ`` with ``P`` of shape ``n x r``; ``rank`` is the rule for ``r`` (see the module docstring).

    ``rank``: None (``n/4``, the default), an int (a fixed ``r``), a float in (0, 1] (a fraction of ``n``,
    ``r = max(1, ⌊fraction·n⌋)``) or ``"paper"`` (``r = n − ⌈n/2⌉ − 1``).

    >>> from weightsym.symmetry import get_symmetry
    >>> [get_symmetry("lowrank:paper").rank_for(n) for n in (16, 32, 64)]
    [7, 15, 31]
    >>> get_symmetry("lowrank:0.5").stored_count((16, 16)) == 16 * 8 + 8
    True
    """

    name = "lowrank"
    aliases = ("pdpt",)
    invariance = "W = P diag(d) Pᵀ, P: n×r"
    formula = "n·r + r (r = n/4 by default)"
    RULES = ("an integer rank such as 8", "a fraction of n in (0, 1] such as 0.25",
             "'paper' for n − ⌈n/2⌉ − 1")

    def __init__(self, rank: int | float | str | None = None):
        if isinstance(rank, bool) or not (rank is None or rank == "paper" or isinstance(rank, (int, float))):
            raise ValueError(f"lowrank rank rule {rank!r} is not one of: {'; '.join(self.RULES)}")
        if isinstance(rank, int) and rank < 1:
            raise ValueError(f"lowrank rank must be >= 1, got {rank}; or give {'; '.join(self.RULES[1:])}")
        if isinstance(rank, float) and not 0.0 < rank <= 1.0:
            raise ValueError(f"lowrank fraction of n must be in (0, 1], got {rank}; or give {self.RULES[0]}")
        self.rank = rank

    @classmethod
    def from_option(cls, option: str) -> "LowRank":
        """``LowRank`` for the text after ``lowrank:`` (``8``, ``0.25``, ``paper``)."""
        text = option.strip().lower()
        try:
            if text == "paper":
                return cls("paper")
            return cls(float(text) if any(c in text for c in ".e") else int(text))
        except ValueError as exc:
            if "lowrank" in str(exc):
                raise
            raise ValueError(f"lowrank option {option!r} is not a rank rule; use {'; '.join(cls.RULES)} "
                             "(e.g. 'lowrank:8', 'lowrank:0.25', 'lowrank:paper')") from None

    @property
    def spec(self) -> str:
        if self.rank is None:
            return self.name
        return f"{self.name}:{self.rank if isinstance(self.rank, str) else repr(self.rank)}"

    def rank_for(self, n: int) -> int:
        if self.rank is None:
            return max(1, n // 4)
        if self.rank == "paper":
            return n - (n + 1) // 2 - 1
        if isinstance(self.rank, float):
            return max(1, math.floor(self.rank * n + 1e-9))  # 1e-9: 0.29 * 100 is 28.999999999999996
        return self.rank

    def _check(self, shape4, row_blocks):
        reason = super()._check(shape4, row_blocks)
        if reason:
            return reason
        n = shape4[1]
        if not 1 <= self.rank_for(n) <= n:
            rule = "" if self.rank is None or isinstance(self.rank, int) else f" (rule {self.spec})"
            return (f"lowrank rank {self.rank_for(n)}{rule} must be between 1 and the plane size {n}; "
                    f"give a rank rule that fits n = {n}, e.g. 'lowrank:{max(1, n // 4)}'")
        return None

    def params_per_plane(self, n: int) -> int:
        r = self.rank_for(n)
        return n * r + r

    def dimension(self, n: int) -> int:
        r = self.rank_for(n)
        return n * r - r * (r - 1) // 2

    def expand_planes(self, params: torch.Tensor, n: int) -> torch.Tensor:
        r = self.rank_for(n)
        p = params[:, : n * r].reshape(-1, n, r)
        d = params[:, n * r :]
        return _sym((p * d.unsqueeze(-2)) @ p.transpose(-1, -2))

    def project_planes(self, planes: torch.Tensor) -> torch.Tensor:
        n = planes.shape[-1]
        r = self.rank_for(n)
        e, v = torch.linalg.eigh(_sym(planes).to(torch.float64))
        top = e.abs().topk(r, dim=-1).indices  # Eckart-Young for symmetric matrices: largest |eigenvalues|
        d = e.gather(-1, top)
        p = v.gather(-1, top.unsqueeze(-2).expand(-1, n, -1))
        return torch.cat([p.reshape(p.shape[0], -1), d], dim=1).to(planes.dtype)

    def variance_preserving_planes(self, planes: torch.Tensor) -> torch.Tensor:
        """The best rank-``r`` approximation of ``T`` (the upper triangle mirrored), ``d`` scaled by ``‖T‖_F / ‖d‖``
        so that the plane keeps ``T``'s Frobenius norm (``P`` has orthonormal columns, so ``‖P diag(d) Pᵀ‖_F = ‖d‖``)."""
        from weightsym.symmetry.base import upper_mirror

        target = upper_mirror(planes)
        params = self.project_planes(target).to(torch.float64)
        n = planes.shape[-1]
        d = params[:, n * self.rank_for(n):]
        norm_t = target.to(torch.float64).flatten(1).norm(dim=1, keepdim=True)
        norm_d = d.norm(dim=1, keepdim=True)
        scale = torch.where(norm_d > 0, norm_t / norm_d.clamp_min(torch.finfo(torch.float64).tiny),
                            torch.ones_like(norm_d))
        params[:, n * self.rank_for(n):] = d * scale
        return params.to(planes.dtype)

    def holds_planes(self, planes: torch.Tensor, atol: float) -> bool:
        if not super().holds_planes(planes, atol):
            return False
        n = planes.shape[-1]
        e = torch.linalg.eigvalsh(_sym(planes).to(torch.float64)).abs()
        tol = torch.clamp(e.amax(-1, keepdim=True) * n * torch.finfo(planes.dtype).eps * 10, min=atol)
        return bool(((e > tol).sum(-1) <= self.rank_for(n)).all())
