"""Determinants and selected inversion from the factorizations, and a stochastic log-determinant estimate.

``slogdet`` / ``logdet`` / ``det`` read the determinant off the factors the library already makes
(Cholesky, LDL^T, LU; the sign from the pivots, the permutations' parity and the row scaling) in log
space, so nothing overflows. Their gradient is exact: ``d log det A = tr(A^{-1} dA)``, i.e. the entries
of ``A^{-T}`` on A's pattern, which the C++ core computes from the same factors by selected inversion
(Takahashi recurrences for Cholesky / LDL^T, Erisman-Tinney for LU) at the cost of the order of the
factorization. ``selected_inverse`` / ``diag_inverse`` expose those entries. ``logdet(A, method="slq")``
is the only approximate path, and only when asked for.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.autograd.function import once_differentiable

from ._checks import as_int, is_wrapped
from ._direct import Factorization, factorize_with
from ._memory import fmt_bytes, get_memory_budget
from ._registry import Choice, check_hermitian, choose
from ._solve import solve
from ._sparse_tensor import SparseTensor, as_sparse_tensor, check_values_finite
from .errors import BackendUnavailableError, InvalidArgumentError, SingularMatrixError

__all__ = ["slogdet", "logdet", "det", "selected_inverse", "diag_inverse", "inverse_entries"]


# -- planning --------------------------------------------------------------------------------------------
def _plan(A: SparseTensor, backend: str, method: str, check_symmetry: bool, operation: str) -> Choice:
    """The factorization for ``operation``: a direct backend that declares it; never iterative. With
    ``method="auto"``, a factorization predicted not to fit the memory budget is refused (the caller may
    ask for the stochastic estimate instead): a determinant is never estimated unless asked for."""
    if method not in ("auto", "cholesky", "ldl", "lu"):
        raise InvalidArgumentError(
            f"method: expected 'auto', 'cholesky', 'ldl' or 'lu' for {operation}, got {method!r}"
            + ("; the stochastic estimate is logdet(A, method='slq')" if operation == "logdet" else "")
        )
    choice = choose(A, backend, method, check_symmetry=check_symmetry, operation=operation)
    if method == "auto" and backend == "auto" and A.shape[-1] > 0 and A.batch_size > 0:
        predicted = choice.impl.predicted_solve_bytes(A, choice.method, 1)
        budget = get_memory_budget()
        if predicted > budget:
            raise InvalidArgumentError(
                f"A: the factorization for {operation} is predicted to take {fmt_bytes(predicted)}, more "
                f"than the memory budget ({fmt_bytes(budget)}, see set_memory_budget). "
                + (
                    "logdet(A, method='slq') gives a stochastic estimate with its standard error."
                    if operation == "logdet"
                    else "Raise the budget or use a smaller problem."
                )
            )
    return choice


def _plan_selected_inverse(A: SparseTensor, backend: str, method: str) -> Choice:
    """A backend with selected inversion for ``method``; when the build has none (Eigen's LU), any direct
    backend: its factors then give the entries by solves (exact, one solve per column needed)."""
    try:
        return _plan(A, backend, method, False, "selected_inverse")
    except BackendUnavailableError:
        if backend != "auto":
            raise
        return _plan(A, backend, method, False, "logdet")


def _checked(A, check_finite_: bool, what: str) -> SparseTensor:
    A = as_sparse_tensor(A)
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: {what} needs a square matrix, got shape {A.shape}")
    if is_wrapped(A.values):
        raise InvalidArgumentError(
            f"A: {what} does not support torch.func transforms (grad, vmap, jvp); use torch.autograd"
        )
    if check_finite_:
        check_values_finite(A)
    return A


# -- slogdet ---------------------------------------------------------------------------------------------
class SLogDet(torch.autograd.Function):
    """``(sign, log|det A_b|)`` for every batch member b, from one factorization; backward is one selected
    inversion of the same factors.

    Derivation. ``d log det A = tr(A^{-1} dA) = sum_m a_m dv_m`` with ``a_m = (A^{-1})[col_m, row_m]`` for
    the stored entries ``v_m`` at ``(row_m, col_m)``. Write ``delta = sum_m a_m dv_m``. Then
    ``d log|det| = Re(delta)`` and, with ``s = det / |det|``, ``ds = i s Im(delta)``. With PyTorch's
    convention for a real loss L (``dL = Re(sum conj(grad) d(input))``): the ``log|det|`` output with
    incoming gradient ``g`` gives ``grad_m = g conj(a_m)``; the sign output with incoming gradient ``h``
    gives ``dL = Re(conj(h) ds) = -Im(conj(h) s) Im(delta)``, i.e. ``grad_m = i c conj(a_m)`` with
    ``c = -Im(conj(h) s)``. Together ``grad_m = (g - i Im(conj(h) s)) conj(a_m)``. For real matrices the
    sign is piecewise constant and only ``g a_m`` remains.
    """

    @staticmethod
    def forward(ctx, fact: Factorization | None, values: torch.Tensor, B: int, real: torch.dtype, cplx: bool):
        if fact is None:  # structurally singular: every member's determinant is 0
            sign = torch.zeros(B, dtype=values.dtype if cplx else real)
            logabs = torch.full((B,), -math.inf, dtype=real)
        else:
            sign, logabs = fact.raw_slogdet()
        ctx.fact = fact
        ctx.values_shape = values.shape
        ctx.save_for_backward(sign)
        if not cplx:
            ctx.mark_non_differentiable(sign)
        return sign, logabs

    @staticmethod
    @once_differentiable
    def backward(ctx, g_sign, g_logabs):
        fact: Factorization | None = ctx.fact
        (sign,) = ctx.saved_tensors
        if fact is None or bool((sign == 0).any()):
            raise SingularMatrixError(
                "slogdet: A is singular (det = 0, log|det| = -inf); the gradient of its log-determinant "
                "is undefined"
            )
        p = fact.A.pattern
        a = fact.raw_inverse_entries(p.col, p.row)  # (B, nnz): (A^{-1})[col_m, row_m]
        coef = g_logabs.to(a.dtype)
        if a.is_complex() and g_sign is not None:
            coef = coef - 1j * (g_sign.conj() * sign).imag
        grad = coef[:, None] * a.conj()
        return None, grad.reshape(ctx.values_shape), None, None, None


def _slogdet_apply(A: SparseTensor, fact: Factorization | None):
    real = torch.float64 if A.dtype in (torch.float64, torch.complex128) else torch.float32
    B = max(A.batch_size, 0)
    sign, logabs = SLogDet.apply(fact, A.values, B, real, A.dtype.is_complex)
    return sign.reshape(A.batch_shape), logabs.reshape(A.batch_shape)


def slogdet(
    A,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign and natural log of the absolute value of ``det(A)``, differentiable with respect to A's values.

    Parameters
    ----------
    A : SparseTensor (or anything :func:`torch_sla.solve` accepts), square, optionally batched.
    backend : {"auto", "suitesparse", "eigen"}
        A direct backend that declares the ``logdet`` operation.
    method : {"auto", "cholesky", "ldl", "lu"}
        ``auto``: Cholesky for Hermitian matrices with a positive real diagonal (LU when it breaks down),
        else LU. ``cholesky`` / ``ldl`` read the lower triangle of a Hermitian matrix.
    check_finite, check_symmetry : bool
        As for :func:`torch_sla.solve`.

    Returns
    -------
    (sign, logabsdet) : tensors of A's batch shape. ``sign`` is +-1 (real dtype) or a unit-modulus
    complex number (complex dtypes), as :func:`torch.linalg.slogdet`; ``logabsdet`` is real (float64 for
    double inputs). A singular matrix gives ``(0, -inf)``: no NaN, no exception; its gradient raises
    :class:`SingularMatrixError`.

    Notes
    -----
    Exact, never estimated: the log of the product of the pivots (and the parity of the permutations
    and the row scaling for LU), summed in log space so that nothing overflows. The gradient
    ``d log|det A| / dA = A^{-T}`` (conjugated for complex) on A's pattern comes from one selected
    inversion of the forward's factors, in time of the order of the factorization.
    """
    A = _checked(A, check_finite, "slogdet")
    try:
        choice = _plan(A, backend, method, check_symmetry, "logdet")
        if A.shape[-1] > 0:
            empty = A.pattern.empty_row_or_col()
            if empty is not None:
                raise SingularMatrixError(f"A is structurally singular: {empty}")
    except SingularMatrixError:
        return _slogdet_apply(A, None)
    if choice.method in ("cholesky", "ldl") and not A.pattern.is_structurally_symmetric:
        # The factors of a Hermitian method cover the pattern of L + L^T only; an entry stored above the
        # diagonal without its mirror would leave its gradient position uncovered. The same matrix on the
        # union with its transpose (explicit zeros) has the same determinant and covers every position.
        none = torch.zeros(0, dtype=torch.int64)
        A = _covering(A, none, none, None)
    try:
        fact = factorize_with(A, choice, allow_singular=True)
    except SingularMatrixError:
        # A library that leaves no factor at a zero pivot (Eigen) raises even with allow_singular. With LU
        # (partial pivoting) a zero pivot proves the matrix singular; a Cholesky that cannot go on is
        # retried by LU when the plan allows; LDL^T does not pivot, so its failure proves nothing.
        if choice.method == "lu":
            return _slogdet_apply(A, None)
        if choice.fallback != "lu":
            raise
        lu = dataclasses.replace(choice, method="lu", fallback=None)
        try:
            fact = factorize_with(A, lu, allow_singular=True)
        except SingularMatrixError:
            return _slogdet_apply(A, None)
    return _slogdet_apply(A, fact)


def logdet(
    A,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    probes: int = 64,
    lanczos_steps: int = 30,
    seed: int | None = None,
):
    """Natural log of ``det(A)``, exact and differentiable (see :func:`slogdet`), as
    :func:`torch.logdet`: ``log|det|`` for a positive determinant, NaN for a negative one (real A), the
    complex logarithm ``log|det| + i arg(det)`` for complex A, ``-inf`` for a singular matrix.

    ``method="slq"`` instead returns an APPROXIMATE ``(estimate, stderr)`` by stochastic Lanczos
    quadrature for a Hermitian positive definite A too large to factor: ``probes`` Rademacher vectors
    (``seed`` fixes them), ``lanczos_steps`` Lanczos steps each; ``stderr`` is the sample standard error
    over the probes. Its gradient is the unbiased Hutchinson estimate ``mean_i (A^{-1} z_i) z_i^H`` on the
    pattern with the same probes (one CG solve per probe). It is never chosen automatically.
    """
    if method == "slq":
        A = _checked(A, check_finite, "logdet")
        return _slq_logdet(A, probes, lanczos_steps, seed, check_symmetry)
    sign, logabs = slogdet(
        A, backend=backend, method=method, check_finite=check_finite, check_symmetry=check_symmetry
    )
    if sign.is_complex():
        return torch.log(sign) + logabs.to(sign.dtype)
    return torch.where(sign < 0, torch.full_like(logabs, math.nan), logabs)


def det(A, **kwargs) -> torch.Tensor:
    """``det(A) = sign * exp(log|det|)`` (may overflow to inf where :func:`slogdet` does not);
    differentiable. Keyword arguments as for :func:`slogdet`."""
    sign, logabs = slogdet(A, **kwargs)
    return sign * torch.exp(logabs).to(sign.dtype)


# -- selected inversion ----------------------------------------------------------------------------------
class InverseEntries(torch.autograd.Function):
    """``(A_b^{-1})[rows_k, cols_k]`` for every batch member b, by selected inversion.

    Derivation of backward. With ``Z = A^{-1}``, ``dZ = -Z dA Z``, so an output ``y_k = Z[r_k, c_k]``
    moves by ``dy_k = -sum_m Z[r_k, row_m] dv_m Z[col_m, c_k]``. For a real loss with incoming gradients
    ``g_k`` (PyTorch's convention), ``grad_m = -sum_k conj(Z[r_k, row_m] Z[col_m, c_k]) g_k
    = -(Z^H G Z^H)[row_m, col_m]`` where G holds ``g_k`` at ``(r_k, c_k)``. ``W = A^{-H} G A^{-H}`` is the
    lower-left block of the inverse of the 2n x 2n block matrix ``K = [[A^H, 0], [-G, A^H]]``, so it is
    read off one more selected inversion: K's LU covers the transpose of K's pattern, and K stores
    explicit zeros at ``(col_m, n + row_m)`` for every stored entry m of A, so that ``(n + row_m, col_m)``
    is covered.
    """

    @staticmethod
    def forward(ctx, fact: Factorization, rows, cols, values):
        ctx.fact, ctx.rows, ctx.cols, ctx.values_shape = fact, rows, cols, values.shape
        return fact.raw_inverse_entries(rows, cols)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        fact: Factorization = ctx.fact
        A = fact.A
        n = A.shape[-1]
        p = A.pattern
        AH = A.detach().H()
        B = g.shape[0]
        ah = AH.values.reshape(max(AH.batch_size, 1), AH.nnz).expand(B, AH.nnz)
        r, c = ctx.rows, ctx.cols
        ar, ac = AH.pattern.row, AH.pattern.col
        # A^H twice on the diagonal, -G below it, explicit zeros above it at (col_m, n + row_m).
        kr = torch.cat([ar, ar + n, r + n, p.col])
        kc = torch.cat([ac, ac + n, c, p.row + n])
        kv = torch.cat([ah, ah, -g, g.new_zeros(B, p.nnz)], -1)
        K = SparseTensor(kv.reshape(A.batch_shape + kv.shape[-1:]), kr, kc, (2 * n, 2 * n))
        KF = factorize_with(K, _plan_selected_inverse(K, "auto", "lu"))
        W = KF.raw_inverse_entries(p.row + n, p.col)  # (B, nnz): W[row_m, col_m]
        return None, None, None, (-W).reshape(ctx.values_shape)


def inverse_entries(
    A,
    rows,
    cols,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    on_pattern: str | None = None,
) -> torch.Tensor:
    """Entries ``(A^{-1})[rows[k], cols[k]]`` (A's batch dims in front), differentiable with respect to
    A's values, by selected inversion of a factorization: A is factorized on the union of its pattern,
    its transpose and the requested positions (explicit zeros where A stores nothing), on which the
    recurrences give every requested entry without forming ``A^{-1}``.

    The cost is of the order of the factorization. The backward pass factorizes a 2n x 2n block matrix
    (see :class:`InverseEntries`), a few times the cost of the forward.
    """
    A = _checked(A, check_finite, "inverse_entries")
    n = A.shape[-1]
    rows = torch.as_tensor(rows)
    cols = torch.as_tensor(cols)
    for name, t in (("rows", rows), ("cols", cols)):
        if t.dim() != 1 or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise InvalidArgumentError(
                f"{name}: expected a 1-D integer tensor, got {t.dtype} {tuple(t.shape)}"
            )
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            raise InvalidArgumentError(
                f"{name}: indices must be in [0, {n}), got range [{int(t.min())}, {int(t.max())}]"
            )
    if rows.shape != cols.shape:
        raise InvalidArgumentError(
            f"rows, cols: expected the same length, got {rows.numel()} and {cols.numel()}"
        )
    rows, cols = rows.to(torch.int64), cols.to(torch.int64)
    if method in ("cholesky", "ldl") and check_symmetry:
        check_hermitian(A, method)
    Af = _covering(A, rows, cols, on_pattern)
    if A.batch_size == 0 or n == 0:
        return torch.zeros(A.batch_shape + (rows.numel(),), dtype=A.dtype)
    choice = _plan_selected_inverse(Af, backend, method)
    empty = Af.pattern.empty_row_or_col()
    if empty is not None:
        raise SingularMatrixError(f"A is structurally singular: {empty}")
    fact = factorize_with(Af.detach(), choice)
    # Gradients go to A's values: Af's values are A's (then zeros), so map back through the pattern.
    out = InverseEntries.apply(fact, rows, cols, Af.values.reshape(max(Af.batch_size, 1), Af.nnz))
    return out.reshape(A.batch_shape + (rows.numel(),))


def _covering(
    A: SparseTensor, rows: torch.Tensor, cols: torch.Tensor, on_pattern: str | None
) -> SparseTensor:
    """A on a pattern that contains its own transpose and the requested positions (and their
    transposes), whose factors then cover every requested entry; A itself when its pattern already does
    (``on_pattern``: "pattern" when the positions are A's pattern, "diag" when they are the diagonal).
    Differentiable: the values are A's, then zeros."""
    p = A.pattern
    if p.is_structurally_symmetric and (
        on_pattern == "pattern" or (on_pattern == "diag" and p.diag_positions is not None)
    ):
        return A
    extra_r = torch.cat([p.col, rows, cols])
    extra_c = torch.cat([p.row, cols, rows])
    batch = A.batch_shape
    zeros = A.values.new_zeros(batch + (extra_r.numel(),))
    values = torch.cat([A.values, zeros], -1)
    U = SparseTensor(values, torch.cat([p.row, extra_r]), torch.cat([p.col, extra_c]), A.shape[-2:])
    return U


def selected_inverse(A, **kwargs) -> SparseTensor:
    """The entries of ``A^{-1}`` on A's pattern, as a SparseTensor with A's pattern (and batch dims);
    differentiable with respect to A's values. Keyword arguments as for :func:`inverse_entries`.
    For a GMRF precision matrix Q these are the posterior covariances of the neighbouring pairs."""
    A = as_sparse_tensor(A)
    p = A.pattern
    return SparseTensor._from_pattern(inverse_entries(A, p.row, p.col, on_pattern="pattern", **kwargs), p)


def diag_inverse(A, **kwargs) -> torch.Tensor:
    """The diagonal of ``A^{-1}`` (``(*batch, n)``), e.g. the marginal variances of a GMRF with precision
    matrix A; differentiable. Keyword arguments as for :func:`inverse_entries`."""
    A = as_sparse_tensor(A)
    i = torch.arange(A.shape[-1])
    return inverse_entries(A, i, i, on_pattern="diag", **kwargs)


# -- stochastic Lanczos quadrature ------------------------------------------------------------------------
class _SLQ(torch.autograd.Function):
    """The SLQ estimate of ``log det A``; backward is the Hutchinson estimate of its gradient.

    ``d log det A = tr(A^{-1} dA) ~ (1/p) sum_i z_i^H A^{-1} dA z_i`` for probes with ``E[z z^H] = I``:
    ``a_m = (1/p) sum_i conj(lam_i[row_m]) z_i[col_m]`` with ``lam_i = A^{-1} z_i`` (A Hermitian), and
    the gradient for an incoming real ``g`` is ``g conj(a_m)``.
    """

    @staticmethod
    def forward(ctx, A: SparseTensor, Z: torch.Tensor, estimate: torch.Tensor, values: torch.Tensor):
        ctx.A, ctx.Z = A, Z
        return estimate.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        lam = solve(ctx.A.detach(), ctx.Z, method="cg", rtol=1e-10)  # (n, p): A^{-1} z_i
        p = ctx.A.pattern
        a = (lam[p.row].conj() * ctx.Z[p.col]).mean(-1)
        return None, None, None, (g * a.conj()).reshape(ctx.A.values.shape)


def _slq_logdet(A: SparseTensor, probes: int, steps: int, seed: int | None, check_symmetry: bool):
    probes = as_int(probes, "probes", lo=2)
    steps = as_int(steps, "lanczos_steps", lo=1)
    if A.batch_shape:
        raise InvalidArgumentError("A: logdet(method='slq') takes one matrix, not a batch")
    n = A.shape[-1]
    if check_symmetry:
        check_hermitian(A, "cg")
    if n == 0:
        z = torch.zeros((), dtype=torch.float64)
        return z, z
    gen = torch.Generator(device=A.device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    real = torch.float64 if A.dtype in (torch.float64, torch.complex128) else torch.float32
    Z = (torch.randint(0, 2, (n, probes), generator=gen, device=A.device) * 2 - 1).to(A.dtype)
    m = min(steps, n)
    Ad = A.detach()
    alphas, betas = [], []
    q_prev = torch.zeros_like(Z)
    q = Z / math.sqrt(n)
    beta = torch.zeros(probes, dtype=real, device=A.device)
    live = torch.ones(probes, dtype=torch.bool, device=A.device)
    scale = None
    for j in range(m):
        w = Ad @ q
        alpha = (q.conj() * w).sum(0).real
        w = w - alpha.to(A.dtype) * q - beta.to(A.dtype) * q_prev
        beta_next = torch.linalg.vector_norm(w, dim=0)
        if scale is None:
            scale = float(alpha.abs().max()) or 1.0
        alphas.append(alpha * live)
        if j == m - 1:
            break
        live = live & (beta_next > 1e-12 * scale)  # an invariant subspace: that probe's quadrature is exact
        betas.append(torch.where(live, beta_next, torch.zeros_like(beta_next)))
        q_prev, q = (
            q,
            torch.where(live, w / torch.where(live, beta_next, 1.0).to(A.dtype), torch.zeros_like(w)),
        )
        beta = betas[-1]
    k = len(alphas)
    T = torch.diag_embed(torch.stack(alphas, -1))  # (p, k, k)
    if k > 1:
        off = torch.stack(betas, -1)
        T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    theta, U = torch.linalg.eigh(T)
    tau = U[:, 0, :].abs() ** 2  # quadrature weights
    used = tau > 1e-14
    if bool(((theta <= 0) & used).any()):
        raise InvalidArgumentError(
            "A: logdet(method='slq') needs a Hermitian positive definite matrix; a Ritz value is <= 0"
        )
    quad = torch.where(used, tau * torch.log(theta.clamp_min(torch.finfo(real).tiny)), torch.zeros_like(tau))
    samples = n * quad.sum(-1)
    estimate = samples.mean()
    stderr = samples.std(unbiased=True) / math.sqrt(probes)
    return _SLQ.apply(A, Z, estimate.detach(), A.values), stderr.detach()


# The SparseTensor methods of this module (attached here to keep _sparse_tensor below it).
def _attach() -> None:
    def _method(fn):
        def m(self, *args, **kwargs):
            return fn(self, *args, **kwargs)

        m.__name__, m.__doc__ = fn.__name__, f"See :func:`torch_sla.{fn.__name__}`."
        return m

    for fn in (slogdet, logdet, det, selected_inverse, diag_inverse):
        setattr(SparseTensor, fn.__name__, _method(fn))


_attach()
