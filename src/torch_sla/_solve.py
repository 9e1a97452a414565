"""The entry points: ``solve``, ``spsolve`` and ``factorize`` (also ``SparseTensor.solve`` / ``.factorize``).

Each plans once (:func:`~torch_sla._registry.plan`: backend, method, reasons) and hands the
:class:`~torch_sla._registry.Choice` down to the direct or iterative path; nothing chooses twice.
"""

from __future__ import annotations

import torch

from . import _cupy  # noqa: F401  (registers the CuPy backends)
from ._autograd import solve_through
from ._checks import check_finite as check_finite_values
from ._checks import is_wrapped, outside_transforms, plain
from ._compile import compiled_solve
from ._direct import Factorization, FactorSource, factorize_with
from ._iterative import iterative_solve, matrix_free_solve
from ._memory import get_memory_budget
from ._operator import LinearOperator
from ._options import KrylovOptions
from ._registry import ITERATIVE_METHODS, choose, generation, plan, tune, tuned, with_ordering
from ._sparse_tensor import SparseTensor, as_sparse_tensor, check_rhs, check_values_finite, normalize_rhs
from .errors import InvalidArgumentError


def solve(
    A,
    b: torch.Tensor,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    autotune: bool = False,
    ordering: str = "auto",
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
    backend : {"auto", "suitesparse", "eigen", "scipy", "pardiso", "core", "torch"}
        Direct: suitesparse, eigen, scipy, pardiso (CPU). Iterative: core (C++, CPU), torch (any device).
        ``auto`` takes the fastest available for the device, dtype and method: on the CPU the backend a
        cost model calibrated on this machine predicts fastest (see :func:`explain`, :func:`tune`);
        :func:`show_backends` lists them.
    method : {"auto", "cholesky", "ldl", "lu", "cg", "bicgstab", "gmres", "minres"}
        ``auto``: a direct factorization on the CPU (Cholesky for Hermitian matrices with a positive
        diagonal, else LU) unless its predicted peak memory exceeds the memory budget
        (:func:`set_memory_budget`) or the device has no direct backend; then CG (Hermitian, positive
        diagonal), MINRES (other Hermitian) or GMRES.
    check_finite : bool
        Check A and b for NaN/Inf (default True).
    check_symmetry : bool
        The methods that read A as symmetric/Hermitian (``cholesky`` and ``ldl`` use one triangle, ``cg``
        and ``minres`` and their adjoints assume ``A^H = A``) first check that ``max|A - A^H|`` is at most
        100 units of roundoff times ``max|A|``, and raise :class:`InvalidArgumentError` otherwise
        (default). ``False`` skips the check for callers who know A is Hermitian.
    autotune : bool
        With ``backend="auto"`` on the CPU: on the first solve of a pattern, time every direct backend
        once (factorization + solve, see :func:`tune`) and take the fastest for this pattern from then
        on: for training loops, where the same pattern is solved many times.
    ordering : {"auto", "default", "amd", "metis"}
        The fill-reducing ordering of a direct factorization: ``auto`` lets the cost model choose
        (PARDISO: METIS nested dissection for large 3-D-like problems, minimum degree otherwise; the
        other backends their own), ``default`` is the backend's own choice (CHOLMOD: AMD, or METIS when
        AMD fills too much; UMFPACK: AMD or COLAMD by its strategy; Eigen: AMD, COLAMD for LU; PARDISO:
        METIS), ``amd`` minimum degree, ``metis`` nested dissection (not Eigen, not SciPy).
    **iterative
        For iterative methods: ``rtol`` (1e-8), ``atol`` (0), ``maxiter`` (10 n), ``x0``, ``restart`` (30,
        GMRES), ``preconditioner`` ("auto", "none", "jacobi", "ssor", "ic0", "ilu0" on core;
        "jacobi", "chebyshev" on torch; "amg" on both, see :func:`amg_solve` for its options; a callable ``r -> M^{-1} r`` or a SparseTensor approximating
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
    if isinstance(A, LinearOperator):
        if backend not in ("auto", "torch"):
            raise InvalidArgumentError(
                f"backend: a LinearOperator is solved by backend 'torch', not {backend!r}"
            )
        return matrix_free_solve(A, b, method=method, **iterative)
    if torch.compiler.is_compiling():  # the whole solve as one custom operator (see _compile)
        A = as_sparse_tensor(A)
        bb, restore = normalize_rhs(A, torch.as_tensor(b), name="b", n=A.shape[-1])
        return restore(
            compiled_solve(
                A,
                bb,
                backend=backend,
                method=method,
                check_symmetry=check_symmetry,
                check_finite=check_finite,
                options=iterative,
            )
        )
    opts = KrylovOptions.from_kwargs(iterative)  # validated even when a direct method ends up chosen
    A = as_sparse_tensor(A)
    if autotune and backend == "auto" and method not in ITERATIVE_METHODS and not tuned(A, method):
        tune(A.with_values(plain(A.values)) if is_wrapped(A.values) else A, method)
    if not isinstance(b, torch.Tensor):
        b = torch.as_tensor(b, device=A.device)
    nrhs = b.shape[-1] if b.dim() == len(A.batch_shape) + 2 else 1
    if is_wrapped(A.values):  # inside torch.func: plan on the plain values (every vmapped member at once)
        choice = outside_transforms(plan)(
            A.with_values(plain(A.values)), backend, method, check_symmetry=check_symmetry, nrhs=nrhs
        )
    else:
        # The plan depends on the values (symmetry, diagonal), the budget and the registry: cached on A
        # until its values change, copied for this solve (a fallback may change its method).
        failed = A.pattern._cache.get("cholesky_failed", False)  # a breakdown since changes the plan
        key = ("plan", backend, method, check_symmetry, nrhs, get_memory_budget(), generation(), failed)
        cached = A.values_cached(
            key, lambda: plan(A, backend, method, check_symmetry=check_symmetry, nrhs=nrhs)
        )
        choice = cached  # shared: never changed (a fallback makes a new Choice)
    choice = with_ordering(choice, ordering)
    if choice.kind == "iterative":
        return iterative_solve(A, b, choice, opts, check_finite=check_finite)
    if iterative:
        raise InvalidArgumentError(
            f"{sorted(iterative)[0]}: applies to iterative methods only, but a direct method "
            f"({choice.method}) was chosen; pass method='cg'/'gmres'/... to solve iteratively"
        )
    if check_finite:
        check_values_finite(A)
    b = check_rhs(A, b, check_finite)
    bb, restore = normalize_rhs(A, b, name="b", n=A.shape[-1])
    # The factorization is built inside LinearSolve's forward (FactorSource), where torch.func transforms
    # hand over plain tensors.
    values = A.values.reshape(A.batch_size, A.nnz)
    source = FactorSource(A, choice, None if is_wrapped(A.values) else values)
    return restore(solve_through(source, "N", bb, values))


def amg_solve(A, b: torch.Tensor, *, accel: str = "cg", backend: str = "core", **options) -> torch.Tensor:
    """Solve ``A x = b`` with smoothed-aggregation algebraic multigrid accelerated by a Krylov method.

    The same as ``solve(A, b, method=accel, backend=backend, preconditioner="amg", **options)``: one
    multigrid cycle preconditions each iteration of ``accel`` ("cg" for symmetric positive definite A,
    the default; "minres", "gmres" or "bicgstab" otherwise). ``backend``: "core" (C++ cycle, CPU) or
    "torch" (the hierarchy exported to A's device, cycled with torch ops; setup stays on the CPU).
    ``options``: those of :func:`solve` for iterative methods, among them ``amg_cycle`` ("V" or "W"),
    ``amg_smoother`` ("auto": symmetric Gauss-Seidel "sgs" on the core backend, "chebyshev" on
    torch; "jacobi", "chebyshev", or "sgs" on the core backend only), ``amg_strength``
    (strength-of-connection threshold: j is a strong neighbour of i when
    ``|a_ij| >= amg_strength * sqrt(|a_ii a_jj|)``, 0.02), ``amg_sweeps`` (1), ``amg_degree`` (Chebyshev, 2),
    ``amg_max_coarse`` (direct solve at or below this size, 500), ``amg_near_nullspace`` (a vector, the
    constant by default, or an ``(n, k)`` matrix of k vectors such as the rigid body modes of
    elasticity: each aggregate then gets one coarse unknown per vector independent on it),
    ``amg_block_size`` (1; b: the unknowns of one node are b consecutive rows, and the strength of
    connection and the aggregates are those of nodes, for block systems), ``amg_coarse_drop`` (0.02: a
    coarse-operator entry weak for both of its rows, ``|c_ij| < amg_coarse_drop * min(|c_ii|, |c_jj|)``,
    between two rows with a common strong neighbour, is added to the diagonal instead (weighted by the
    near-null space, whose product with the operator is kept); this keeps the operator complexity of 3D
    problems low, 0 gives the exact Galerkin operators), ``amg_truncation`` (0.01: an entry of the
    smoothed prolongator below ``amg_truncation`` times its row's largest is dropped, the row rescaled
    to interpolate the near-null space as before; the default drops what smoothing spreads along the
    weak direction of an anisotropy, keeping the coarse operators sparse, and nothing on isotropic
    problems, where larger values cost iterations; both drops apply with a single near-null-space
    vector only) and
    ``amg_setup`` ("auto": reuse the aggregates of the last hierarchy of A's pattern when its strong
    connections are unchanged; "values-only"; "full"). Differentiable like
    :func:`solve`: the adjoint solve uses the same hierarchy. With ``return_info=True`` the
    :class:`SolveInfo` carries the hierarchy (``info.hierarchy``, printable), ``setup_time`` and
    ``solve_time``.
    """
    if accel not in ITERATIVE_METHODS:
        raise InvalidArgumentError(f"accel: expected one of {ITERATIVE_METHODS}, got {accel!r}")
    pre = options.pop("preconditioner", "amg")
    if not (isinstance(pre, str) and pre == "amg"):
        raise InvalidArgumentError(f"preconditioner: amg_solve uses 'amg', got {pre!r}")
    return solve(A, b, backend=backend, method=accel, preconditioner="amg", **options)


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


def factorize(
    A,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    autotune: bool = False,
    ordering: str = "auto",
) -> Factorization:
    """Factorize a sparse matrix once for repeated, differentiable solves.

    Parameters
    ----------
    A : SparseTensor, torch sparse tensor, scipy.sparse matrix, or ``(values, row, col, shape)``
    backend : {"auto", "suitesparse", "eigen", "scipy", "pardiso"}
    method : {"auto", "cholesky", "ldl", "lu"}
        ``auto``: Cholesky for symmetric/Hermitian matrices with a positive real diagonal (LU if the
        Cholesky factorization breaks down), LU otherwise. ``cholesky`` and ``ldl`` read only the lower
        triangle, so they need a symmetric (Hermitian) matrix.
    check_finite : bool
        Check the values for NaN/Inf first (as scipy.linalg does).
    check_symmetry : bool
        With ``method="cholesky"`` or ``"ldl"``, check that A is symmetric (Hermitian) up to 100 units of
        roundoff relative to its largest entry, and raise :class:`InvalidArgumentError` otherwise
        (default). ``False`` skips the check: the lower triangle is then used as it is.
    autotune : bool
        As in :func:`solve`: time the direct backends once for this pattern and keep the fastest.
    ordering : {"auto", "default", "amd", "metis"}
        The fill-reducing ordering, as in :func:`solve`.

    Raises
    ------
    SingularMatrixError, NotPositiveDefiniteError (explicit ``method="cholesky"``), BackendUnavailableError,
    InvalidArgumentError.
    """
    A = as_sparse_tensor(A)
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: a direct solve needs a square matrix, got shape {A.shape}")
    if check_finite:
        check_finite_values(A.values.detach(), "A.values")
    if autotune and backend == "auto" and not tuned(A, method):
        tune(A, method)
    choice = with_ordering(choose(A, backend, method, check_symmetry=check_symmetry), ordering)
    return factorize_with(A, choice)


# The methods of SparseTensor that solve live here, with the entry points, so that _sparse_tensor stays
# below the solvers in the import order (no cycle).
def _sparse_tensor_solve(self: SparseTensor, b, **kwargs):
    """Solve ``A x = b`` (differentiable w.r.t. ``b`` and the values). See :func:`torch_sla.solve`."""
    return solve(self, b, **kwargs)


def _sparse_tensor_factorize(self: SparseTensor, **kwargs) -> Factorization:
    """Factorize once; the returned object's ``solve`` reuses the factors and is differentiable.
    See :func:`torch_sla.factorize`."""
    return factorize(self, **kwargs)


SparseTensor.solve = _sparse_tensor_solve
SparseTensor.factorize = _sparse_tensor_factorize
