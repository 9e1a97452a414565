"""Entry points that accept any matrix form: ``solve`` and ``spsolve``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._sparse_tensor import SparseTensor
from .errors import InvalidArgumentError


def as_sparse_tensor(A) -> SparseTensor:
    """Convert a SparseTensor, torch sparse (COO/CSR) tensor, scipy.sparse matrix or
    ``(values, row, col, shape)`` tuple to a :class:`SparseTensor`."""
    if isinstance(A, SparseTensor):
        return A
    if isinstance(A, torch.Tensor):
        if A.layout in (torch.sparse_coo, torch.sparse_csr):
            return SparseTensor.from_torch_sparse(A)
        raise InvalidArgumentError(
            f"A: a dense tensor was given (layout {A.layout}); use SparseTensor.from_dense(A) if that is intended"
        )
    if isinstance(A, tuple) and len(A) == 4:
        return SparseTensor(*A)
    try:
        import scipy.sparse as sp

        if sp.issparse(A):
            return SparseTensor.from_scipy(A)
    except ImportError:  # pragma: no cover
        pass
    raise InvalidArgumentError(
        f"A: expected a SparseTensor, torch sparse tensor, scipy.sparse matrix or (values, row, col, shape), "
        f"got {type(A).__name__}"
    )


def _check_rhs(A: SparseTensor, b, check_finite: bool) -> torch.Tensor:
    """``b`` as a tensor on A's device with A's dtype (else a clear error), checked for NaN/Inf."""
    b = torch.as_tensor(b)
    if b.device != A.device:
        raise InvalidArgumentError(f"b: on device {b.device} but A is on {A.device}")
    if b.dtype != A.dtype:
        raise InvalidArgumentError(
            f"b: dtype {b.dtype} does not match A's dtype {A.dtype}; convert one of them"
        )
    if check_finite and b.numel() and not bool(torch.isfinite(b).all()):
        raise InvalidArgumentError("b: contains NaN or Inf (pass check_finite=False to skip this check)")
    return b


def _normalize_rhs(
    A: SparseTensor, b: torch.Tensor, *, name: str, n: int
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Bring ``b`` to a (B, n, k) stack matching A's flattened batch; return it and a function that puts
    a (B, m, k) result back into b's layout (with m the result's row count)."""
    batch = A.batch_shape
    nb = len(batch)
    shape = tuple(b.shape)
    if b.dim() == nb + 1 and shape[:nb] == batch and shape[-1] == n:
        vec, bshape = True, batch
    elif b.dim() == nb + 2 and shape[:nb] == batch and shape[-2] == n:
        vec, bshape = False, batch
    elif b.dim() == 1 and shape[0] == n:
        vec, bshape = True, ()
    elif b.dim() == 2 and shape[0] == n:
        vec, bshape = False, ()
    else:
        expected = f"({n},) or ({n}, k)"
        if nb:
            expected += f" or {batch + (n,)} or {batch + (n, 'k')}"
        raise InvalidArgumentError(f"{name}: expected shape {expected} for A of shape {A.shape}, got {shape}")
    bb = b.unsqueeze(-1) if vec else b
    k = bb.shape[-1]
    B = math.prod(batch)
    if bshape != batch:
        bb = bb.expand(batch + (n, k))
    bb = bb.reshape(B, n, k)

    def restore(y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(batch + tuple(y.shape[-2:]))
        return y.squeeze(-1) if vec else y

    return bb, restore


_ITERATIVE_ONLY = (
    "rtol",
    "atol",
    "maxiter",
    "x0",
    "restart",
    "preconditioner",
    "callback",
    "return_info",
    "on_fail",
    "check_every",
    "omega",
    "degree",
)


def solve(
    A,
    b: torch.Tensor,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    **iterative,
) -> torch.Tensor:
    """Solve the sparse linear system ``A x = b``; differentiable with respect to ``b`` and A's values.

    Parameters
    ----------
    A : SparseTensor, torch sparse COO/CSR tensor, scipy.sparse matrix, ``(values, row, col, shape)``, or
        :class:`LinearOperator` (matrix-free, torch backend)
        Square, optionally batched (values with leading batch dims sharing one pattern).
    b : Tensor
        ``(n,)``, ``(n, k)``, or with A's batch dims in front. Same dtype and device as A.
    backend : {"auto", "suitesparse", "eigen", "scipy", "core", "torch"}
        Direct: suitesparse, eigen, scipy (CPU). Iterative: core (C++, CPU), torch (any device).
        ``auto`` takes the fastest available for the device, dtype and method (see :func:`explain`).
    method : {"auto", "cholesky", "ldl", "lu", "cg", "bicgstab", "gmres", "minres"}
        ``auto``: a direct factorization on the CPU (Cholesky for Hermitian matrices with a positive
        diagonal, else LU) unless its predicted size exceeds the memory budget
        (:func:`set_memory_budget`) or the device has no direct backend; then CG (Hermitian, positive
        diagonal), MINRES (other Hermitian) or GMRES.
    check_finite : bool
        Check A and b for NaN/Inf (default True).
    check_symmetry : bool
        The methods that read A as symmetric/Hermitian (``cholesky`` and ``ldl`` use one triangle, ``cg``
        and ``minres`` and their adjoints assume ``A^H = A``) first check that ``max|A - A^H|`` is at most
        100 units of roundoff times ``max|A|``, and raise :class:`InvalidArgumentError` otherwise
        (default). ``False`` skips the check for callers who know A is Hermitian.
    **iterative
        For iterative methods: ``rtol`` (1e-8), ``atol`` (0), ``maxiter`` (10 n), ``x0``, ``restart`` (30,
        GMRES), ``preconditioner`` ("auto", "none", "jacobi", "ssor", "ic0", "ilu0" on core;
        "jacobi", "chebyshev" on torch; a callable ``r -> M^{-1} r`` or a SparseTensor approximating
        ``A^{-1}`` on both), ``callback(iteration, residual)``, ``return_info`` (return ``(x, SolveInfo)``),
        ``on_fail`` ("warn" or "raise" :class:`ConvergenceError`), ``check_every`` (torch backend: test
        convergence every few iterations, 10), ``omega`` (SSOR, 1.0), ``degree`` (Chebyshev, 4).

    Returns
    -------
    x : Tensor with the shape of ``b`` (plus A's batch dims); ``(x, info)`` with ``return_info=True``.

    Notes
    -----
    One autograd node per solve. Backward is one adjoint solve that reuses the forward's factors
    (direct) or preconditioner and tolerance (iterative): ``grad_b = lambda = A^{-H} g`` and
    ``grad_values[k] = -lambda[row_k] * conj(x[col_k])`` on the stored pattern only.
    """
    from ._backends import plan
    from ._iterative import LinearOperator, iterative_solve, matrix_free_solve

    unknown = set(iterative) - set(_ITERATIVE_ONLY)
    if unknown:
        raise TypeError(f"solve() got unexpected keyword arguments {sorted(unknown)}")
    if isinstance(A, LinearOperator):
        if backend not in ("auto", "torch"):
            raise InvalidArgumentError(
                f"backend: a LinearOperator is solved by backend 'torch', not {backend!r}"
            )
        return matrix_free_solve(A, b, method=method, **iterative)
    A = as_sparse_tensor(A)
    if not isinstance(b, torch.Tensor):
        b = torch.as_tensor(b, device=A.device)
    nrhs = b.shape[-1] if b.dim() == len(A.batch_shape) + 2 else 1
    choice = plan(A, backend, method, check_symmetry=check_symmetry, nrhs=nrhs)
    if choice.kind == "iterative":
        return iterative_solve(
            A, b, method=choice.method, backend=choice.backend, check_finite=check_finite, **iterative
        )
    if iterative:
        raise InvalidArgumentError(
            f"{sorted(iterative)[0]}: applies to iterative methods only, but a direct method "
            f"({choice.method}) was chosen; pass method='cg'/'gmres'/... to solve iteratively"
        )
    from ._direct import factorize

    # factorize() repeats the (cheap) choice so that an automatic Cholesky can fall back to LU.
    f = factorize(A, backend=backend, method=method, check_finite=check_finite, check_symmetry=check_symmetry)
    return f.solve(b, check_finite=check_finite)


def spsolve(
    values: torch.Tensor,
    row: torch.Tensor,
    col: torch.Tensor,
    shape,
    b: torch.Tensor,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
) -> torch.Tensor:
    """``solve(SparseTensor(values, row, col, shape), b)``: the COO entry point of torch-sla.

    Gradients to ``values`` come back in the caller's COO order (duplicates each get the gradient of
    their summed entry).
    """
    return solve(
        SparseTensor(values, row, col, shape),
        b,
        backend=backend,
        method=method,
        check_finite=check_finite,
        check_symmetry=check_symmetry,
    )
