"""Direct solves: factorizations that autograd can differentiate through, with one node per solve."""

from __future__ import annotations

import collections
import math
from typing import Any

import torch

from ._autograd import LinearSolve
from ._backends import Choice, choose
from ._sparse_tensor import SparseTensor
from .errors import InvalidArgumentError, NotPositiveDefiniteError, SingularMatrixError

# Symbolic analyses by (pattern fingerprint, backend, method, dtype): a new matrix with the same
# pattern (the normal case in a training loop) skips the ordering and symbolic factorization.
_ANALYSIS_CACHE: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
_ANALYSIS_CACHE_SIZE = 16


def clear_analysis_cache() -> None:
    """Forget every cached symbolic analysis."""
    _ANALYSIS_CACHE.clear()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_finite(t: torch.Tensor, what: str) -> None:
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise InvalidArgumentError(
            f"{what}: contains NaN or Inf (pass check_finite=False to skip this check)"
        )


# -- raw factors: solve without autograd, one per batch member ----------------------------------------
class _CoreFactor:
    """A numeric factorization from the C++ core (SuiteSparse or Eigen)."""

    __slots__ = ("numeric",)

    def __init__(self, numeric):
        self.numeric = numeric

    def solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        # The core takes right-hand sides column-major: (n, k) row-major b is (k, n) after .T.
        bt = b.t().contiguous()
        xt = torch.empty_like(bt)
        self.numeric.solve(bt, xt, op)
        return xt.t()

    @property
    def factor_nnz(self) -> int:
        return int(self.numeric.factor_nnz)


class _ScipyFactor:
    """``scipy.sparse.linalg.splu`` (SuperLU)."""

    __slots__ = ("lu", "dtype")

    def __init__(self, lu, dtype: torch.dtype):
        self.lu = lu
        self.dtype = dtype

    def solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        x = self.lu.solve(b.detach().cpu().numpy(), trans="N" if op == "N" else "H")
        return torch.from_numpy(x).to(self.dtype)

    @property
    def factor_nnz(self) -> int:
        return int(self.lu.L.nnz + self.lu.U.nnz)


def _analysis(A: SparseTensor, backend: str, method: str) -> tuple[Any, bool]:
    """The (cached) symbolic analysis of A's pattern; returns (symbolic, reused)."""
    from . import _C

    p = A.pattern
    key = (p.fingerprint, backend, method, _dtype_name(A.dtype))
    sym = _ANALYSIS_CACHE.get(key)
    if sym is not None:
        _ANALYSIS_CACHE.move_to_end(key)
        return sym, True
    sym = _C.analyze(backend, method, _dtype_name(A.dtype), p.n_rows, p.n_cols, p.crow, p.col)
    _ANALYSIS_CACHE[key] = sym
    while len(_ANALYSIS_CACHE) > _ANALYSIS_CACHE_SIZE:
        _ANALYSIS_CACHE.popitem(last=False)
    return sym, False


def _factor_all(A: SparseTensor, backend: str, method: str) -> tuple[list, bool]:
    values = A.values.detach().reshape(-1, A.nnz)
    if backend == "scipy":
        import scipy.sparse.linalg as spla

        mats = [A.with_values(v).to_scipy().tocsc() for v in values]
        import numpy as np

        factors = []
        for m in mats:
            try:
                lu = spla.splu(m)
            except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
                raise SingularMatrixError(f"A is singular: {exc}") from exc
            # Same rule as the C++ backends: a pivot ratio below machine epsilon is singular.
            piv = np.abs(lu.U.diagonal())
            eps = float(np.finfo(lu.U.dtype).eps)
            ratio = float(piv.min() / piv.max()) if piv.size and piv.max() > 0 else 0.0
            if not ratio >= eps:
                raise SingularMatrixError(
                    f"A is singular to working precision: the lu factorization's pivot ratio is {ratio:.3g}, "
                    f"below machine epsilon {eps:.3g}"
                )
            factors.append(_ScipyFactor(lu, A.dtype))
        return factors, False
    from . import _C

    _C.set_blas_threads(torch.get_num_threads())
    sym, reused = _analysis(A, backend, method)
    return [_CoreFactor(_C.factorize(sym, v.contiguous())) for v in values], reused


class Factorization:
    """A factorized sparse matrix (or batch). ``solve`` reuses the factors and is differentiable.

    Created by :meth:`SparseTensor.factorize` or :func:`torch_sla.factorize`. Gradients flow to ``b`` and
    to the values of the matrix that was factorized; backward solves with the same factors (no
    refactorization).

    Attributes
    ----------
    backend, method : str
        What was used (after ``auto`` and any fallback).
    info : dict
        ``analysis_reused``, ``factor_nnz`` (fill of the first batch member), ``reasons``.
    """

    def __init__(self, A: SparseTensor, choice: Choice, factors: list, reused: bool):
        self.A = A
        self.backend = choice.backend
        self.method = choice.method
        self._factors = factors
        self.info = {
            "analysis_reused": reused,
            "factor_nnz": factors[0].factor_nnz if factors else 0,
            "reasons": list(choice.reasons),
        }

    def __repr__(self) -> str:
        return f"Factorization(backend={self.backend!r}, method={self.method!r}, A={self.A!r})"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.A.shape

    @property
    def pattern(self):
        return self.A.pattern

    def solve(self, b: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """Solve ``A x = b`` with the stored factors.

        ``b`` has shape ``(n,)`` or ``(n, k)`` (broadcast over the batch) or the batch dims in front:
        ``(*batch, n)`` / ``(*batch, n, k)``. Returns ``x`` of the same shape as ``b`` (with the batch).
        """
        return self._apply(b, "N", check_finite)

    def solve_adjoint(self, b: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """Solve ``A^H x = b`` (``A^T x = b`` for real matrices) with the stored factors."""
        return self._apply(b, "H", check_finite)

    def _apply(self, b: torch.Tensor, op: str, check_finite: bool) -> torch.Tensor:
        from ._solve import _check_rhs, _normalize_rhs

        A = self.A
        b = _check_rhs(A, b, check_finite)
        bb, restore = _normalize_rhs(A, b, name="b", n=A.shape[-1])
        if A.shape[-1] == 0:
            return restore(torch.zeros_like(bb))
        x = LinearSolve.apply(A.values.reshape(-1, A.nnz), bb, self, op)
        return restore(x)

    def _raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        """Solve for a (B, n, k) stack without autograd."""
        if len(self._factors) == 1:
            return self._factors[0].solve(b[0], op).unsqueeze(0)
        return torch.stack([f.solve(b[i], op) for i, f in enumerate(self._factors)])


def factorize(
    A,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
) -> Factorization:
    """Factorize a sparse matrix once for repeated, differentiable solves.

    Parameters
    ----------
    A : SparseTensor, torch sparse tensor, scipy.sparse matrix, or ``(values, row, col, shape)``
    backend : {"auto", "suitesparse", "eigen", "scipy"}
    method : {"auto", "cholesky", "ldl", "lu"}
        ``auto``: Cholesky for symmetric/Hermitian matrices with a positive real diagonal (LU if the
        Cholesky factorization breaks down), LU otherwise.
    check_finite : bool
        Check the values for NaN/Inf first (as scipy.linalg does).

    Raises
    ------
    SingularMatrixError, NotPositiveDefiniteError (explicit ``method="cholesky"``), BackendUnavailableError,
    InvalidArgumentError.
    """
    from ._solve import as_sparse_tensor

    A = as_sparse_tensor(A)
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: a direct solve needs a square matrix, got shape {A.shape}")
    if check_finite:
        _check_finite(A.values.detach(), "A.values")
    choice = choose(A, backend, method)
    if choice.kind != "direct":
        raise InvalidArgumentError(
            f"method: factorize() needs a direct method and backend, got method={choice.method!r} on "
            f"backend {choice.backend!r}; use solve() for iterative methods"
        )
    n = A.shape[-1]
    if n == 0 or math.prod(A.batch_shape) == 0:
        return Factorization(A, choice, [], False)
    empty = A.pattern.empty_row_or_col()
    if empty is not None:
        raise SingularMatrixError(f"A is structurally singular: {empty}")
    try:
        factors, reused = _factor_all(A, choice.backend, choice.method)
    except NotPositiveDefiniteError:
        if choice.fallback is None:
            raise
        A.pattern._cache["cholesky_failed"] = True
        choice.reasons.append(f"Cholesky broke down (not positive definite): fell back to {choice.fallback}")
        choice.method, choice.fallback = choice.fallback, None
        factors, reused = _factor_all(A, choice.backend, choice.method)
    return Factorization(A, choice, factors, reused)
