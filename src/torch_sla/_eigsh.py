"""Sparse Hermitian eigenproblems and truncated SVD: :func:`eigsh` and :func:`svds`, differentiable.

Forward: thick-restart Lanczos with full reorthogonalization (or LOBPCG), written with torch operations
on CSR operators, so it runs on any device; shift-invert goes through :func:`torch_sla.factorize` of
``A - sigma M``. Backward: one autograd node per eigenproblem (:class:`_EigshFunction`), whose
eigenvector part is one projected adjoint solve per requested vector.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
from torch import Tensor

from ._checks import as_int
from ._checks import check_finite as check_finite_values
from ._krylov_torch import krylov_solve
from ._operator import CallableOperator, CsrOperator
from ._registry import symmetry_tolerance
from ._solve import factorize
from ._sparse_tensor import SparseTensor, as_sparse_tensor, shifted
from .errors import ConvergenceError, InvalidArgumentError, NotPositiveDefiniteError, SingularMatrixError

__all__ = ["eigsh", "svds", "EigshInfo"]

_WHICH = {"LM": "LM", "SM": "SM", "LA": "LA", "SA": "SA", "largest": "LA", "smallest": "SA"}
_METHODS = ("auto", "lanczos", "lobpcg", "dense")
# Eigenvalue pairs closer than this (relative to the larger magnitude) count as degenerate in backward.
_DEGENERATE_GAP = 1e-8


@dataclasses.dataclass
class EigshInfo:
    """What an eigensolve did (the worst batch member when A is batched).

    ``iterations`` counts applications of the operator (``A``, ``M^{-1} A`` or ``(A - sigma M)^{-1} M``);
    ``residuals`` are the final relative residuals ``||A v - lambda M v|| / (||v|| scale)`` of the
    returned pairs (``scale`` = the max abs row sum of A, plus ``|lambda|`` times M's for generalized
    problems), in the order of the returned eigenvalues."""

    method: str
    mode: str
    iterations: int = 0
    restarts: int = 0
    converged: bool = True
    reason: str = "converged"
    residuals: list[float] = dataclasses.field(default_factory=list)
    ncv: int = 0
    adjoint: dict | None = None

    def _merge(self, other: EigshInfo) -> None:
        self.iterations = max(self.iterations, other.iterations)
        self.restarts = max(self.restarts, other.restarts)
        if not other.converged and self.converged:
            self.converged, self.reason = False, other.reason
        if not self.residuals:
            self.residuals = list(other.residuals)
        else:
            self.residuals = [max(a, b) for a, b in zip(self.residuals, other.residuals)]


def _report(info: EigshInfo, on_fail: str, what: str) -> None:
    if info.converged:
        return
    worst = max(info.residuals) if info.residuals else float("nan")
    msg = (
        f"{what}: {info.method} ({info.mode}) did not converge: {info.reason} after {info.iterations} "
        f"operator applications and {info.restarts} restarts, largest relative residual {worst:.3g}. "
        "Raise maxiter or ncv, use sigma (shift-invert) for interior or smallest eigenvalues, or loosen tol."
    )
    if on_fail == "raise":
        raise ConvergenceError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=4)


# -- one member's problem ----------------------------------------------------------------------------------
class _Member:
    """One (unbatched) eigenproblem on plain tensors: A's and M's CSR operators and their norms."""

    def __init__(self, A: SparseTensor, a_values: Tensor, M: SparseTensor | None, m_values: Tensor | None):
        n = A.shape[-1]
        self.n, self.dtype, self.device = n, A.dtype, A.device
        self.A = SparseTensor._from_pattern(a_values, A.pattern)
        self.M = None if M is None else SparseTensor._from_pattern(m_values, M.pattern)
        self.a_op = CsrOperator(A.crow_indices, A.col_indices, a_values, n)
        self.m_op = None if M is None else CsrOperator(M.crow_indices, M.col_indices, m_values, n)
        self.norm_a = _row_sum_norm(A, a_values)
        self.norm_m = 1.0 if M is None else _row_sum_norm(M, m_values)

    @property
    def n_local(self) -> int:
        """Rows of the vectors this member stores (n; fewer for an operator sharded over processes)."""
        return self.n

    def gram(self, X: Tensor, Y: Tensor) -> Tensor:
        """``X^H Y`` (a distributed member all-reduces it)."""
        return X.mH @ Y

    def amul(self, x: Tensor) -> Tensor:
        return self.a_op.matvec(x)

    def mmul(self, x: Tensor) -> Tensor:
        return x if self.m_op is None else self.m_op.matvec(x)

    def residuals(self, lam: Tensor, Y: Tensor, MY: Tensor | None = None) -> Tensor:
        """Relative residuals ``||A y - lambda M y|| / (||y|| (||A|| + |lambda| ||M||))`` (``||A||`` alone
        for a standard problem), one per column."""
        if MY is None:
            MY = self.mmul(Y)
        R = self.amul(Y) - MY * lam.to(Y.dtype)
        scale = self.norm_a + (0.0 if self.m_op is None else lam.abs() * self.norm_m)
        scale = torch.as_tensor(scale, dtype=lam.dtype, device=lam.device)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        ynorm = torch.linalg.vector_norm(Y, dim=0).real.to(lam.dtype)
        ynorm = torch.where(ynorm > 0, ynorm, torch.ones_like(ynorm))
        return torch.linalg.vector_norm(R, dim=0).to(lam.dtype) / (ynorm * scale)


def _row_sum_norm(A: SparseTensor, values: Tensor) -> float:
    """``max_i sum_j |a_ij|``: an upper bound of ``||A||_2`` for a Hermitian matrix, one pass over the values."""
    n = A.shape[-1]
    if values.numel() == 0:
        return 0.0
    s = torch.zeros(n, dtype=values.real.dtype if values.is_complex() else values.dtype, device=values.device)
    s.index_add_(0, A.pattern.row, values.abs())
    return float(s.max())


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _order(theta: Tensor, want: str) -> Tensor:
    """Indices of ``theta`` from the most wanted to the least."""
    if want == "LA":
        return torch.argsort(theta, descending=True)
    if want == "SA":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)  # LM (shift-invert: nearest sigma)


# -- thick-restart Lanczos -----------------------------------------------------------------------------------
def _lanczos(
    member: _Member,
    apply_t,
    bmul,
    to_lambda,
    k: int,
    want: str,
    ncv: int,
    tol: float,
    maxiter: int,
    v0: Tensor | None,
    generator: torch.Generator,
    standard_mode: bool = False,
    sigma: float | None = None,
):
    """Thick-restart Lanczos (Wu & Simon) for an operator ``T`` self-adjoint in the inner product
    ``<x, y> = x^H B y`` (``bmul`` applies B; None for the identity). ``apply_t(v, Bv)`` applies T.

    Every new Lanczos vector is B-orthogonalized against the whole basis, twice (classical Gram-Schmidt):
    the basis stays B-orthonormal to working precision and no spurious copies appear. At a restart the
    ``l`` most wanted Ritz vectors are kept; the projected matrix becomes ``diag(theta_kept)`` bordered by
    the coupling ``beta_m s_{m,kept}`` to the last Lanczos vector, from which the expansion continues.
    Convergence is judged by the true residuals of the k wanted Ritz pairs (``to_lambda`` maps Ritz
    values of T to eigenvalues of the pencil)."""
    n, dtype, device = member.n, member.dtype, member.device
    rdtype = _real_dtype(dtype)
    eps = torch.finfo(rdtype).eps
    V = torch.zeros(n, ncv + 1, dtype=dtype, device=device)
    BV = V if bmul is None else torch.zeros_like(V)
    H = torch.zeros(ncv, ncv, dtype=rdtype, device=device)

    def bnorm(w, Bw):
        return torch.sqrt(torch.clamp(torch.real(torch.vdot(w, Bw)), min=0))

    def random_orth(j):  # a random unit vector B-orthogonal to V[:, :j]
        w = torch.randn(n, dtype=dtype, device=device, generator=generator)
        for _ in range(2):
            w = w - V[:, :j] @ (BV[:, :j].mH @ w)
        Bw = w if bmul is None else bmul(w[:, None])[:, 0]
        nrm = bnorm(w, Bw)
        return w / nrm, Bw / nrm

    if v0 is None:
        v = torch.randn(n, dtype=dtype, device=device, generator=generator)
    else:
        v = v0.to(dtype=dtype, device=device).reshape(n).clone()
    Bv = v if bmul is None else bmul(v[:, None])[:, 0]
    nrm = bnorm(v, Bv)
    if not float(nrm) > 0:
        raise InvalidArgumentError("v0: the starting vector must be nonzero (in the M-norm)")
    V[:, 0] = v / nrm
    if bmul is not None:
        BV[:, 0] = Bv / nrm
    l, nops, restarts, beta = 0, 0, 0, torch.zeros((), dtype=rdtype, device=device)
    tscale, phase, prev = 0.0, 1, None
    standard = standard_mode
    exhausted = False
    norm_a, norm_m = member.norm_a, member.norm_m
    generalized = member.m_op is not None

    def settled(Hj, beta_j, phase_j) -> bool:
        """Whether the Ritz estimates say the k wanted pairs have converged (and, after the first phase,
        the best unwanted one has settled), mapped to the relative residual of the pencil: T y - theta y
        = r with ||r|| = |beta s| gives A y - lambda M y = r (standard), M r (M^{-1} A), or
        -(A - sigma M) r / theta (shift-invert)."""
        th, Sj = torch.linalg.eigh(Hj)
        order = _order(th, want)
        est = (beta_j * Sj[-1, order]).abs()
        t = th[order[:k]]
        lam_j = to_lambda(t)
        scale = norm_a + (lam_j.abs() * norm_m if generalized else 0.0)
        if sigma is not None:
            approx = est[:k] * (norm_a + abs(sigma) * norm_m) / (t.abs() * scale)
        elif generalized:
            approx = est[:k] * norm_m / scale
        else:
            approx = est[:k] / max(norm_a, 1e-300)
        if not bool((approx <= tol).all()):
            return False
        return phase_j == 1 or est.numel() <= k or float(est[k]) <= math.sqrt(tol) * tscale

    while True:
        m = ncv
        for j in range(l, ncv):
            w = apply_t(V[:, j : j + 1], BV[:, j : j + 1])[:, 0]
            nops += 1
            h = BV[:, : j + 1].mH @ w
            w = w - V[:, : j + 1] @ h
            h2 = BV[:, : j + 1].mH @ w
            w = w - V[:, : j + 1] @ h2
            alpha = torch.real(h[j] + h2[j])
            H[j, j] = alpha
            Bw = w if bmul is None else bmul(w[:, None])[:, 0]
            beta = bnorm(w, Bw)
            tscale = max(tscale, abs(float(alpha)), float(beta))
            if j + 1 >= n:  # the whole space is spanned: the Ritz pairs are exact
                beta = torch.zeros_like(beta)
                m, exhausted = j + 1, True
                break
            if float(beta) <= 1e3 * eps * tscale:  # invariant subspace: continue with a fresh direction
                beta = torch.zeros_like(beta)
                w, Bw = random_orth(j + 1)
                V[:, j + 1] = w
                if bmul is not None:
                    BV[:, j + 1] = Bw
            else:
                V[:, j + 1] = w / beta
                if bmul is not None:
                    BV[:, j + 1] = Bw / beta
            if j + 1 < ncv:
                H[j, j + 1] = H[j + 1, j] = beta
                if j + 1 > k + 1 and (j + 1 - l) % 4 == 0 and settled(H[: j + 1, : j + 1], beta, phase):
                    m = j + 1  # converged by the estimates before the basis is full: check now
                    break
        theta, S = torch.linalg.eigh(H[:m, :m])
        idx = _order(theta, want)
        final = nops >= maxiter or exhausted
        keep = idx[: min(k + (m - k) // 2, m - 1)] if m > k else idx[:k]
        if keep.numel() < k:
            keep = idx[:k]
        Sk = S[:, keep].to(dtype)
        Y = V[:, :m] @ Sk
        BY = Y if bmul is None else BV[:, :m] @ Sk
        lam = to_lambda(theta[idx[:k]])
        if standard and not final:
            # T = A: the Ritz residual |beta s_mi| is ||A y - theta y||; check the true one only once the
            # estimates pass (saves k products with A per restart)
            est = (beta * S[m - 1, idx[:k]]).abs()
            if float(est.max()) > tol * member.norm_a:
                res = est / max(member.norm_a, 1e-300)
                ok = False
            else:
                res = member.residuals(lam, Y[:, :k])
                ok = bool((res <= tol).all())
        else:
            res = member.residuals(lam, Y[:, :k], None if bmul is None or member.m_op is None else BY[:, :k])
            ok = bool((res <= tol).all())
        if ok and phase > 1 and m > k:  # the best Ritz pair outside the wanted set must have settled too
            ok = float((beta * S[m - 1, idx[k]]).abs()) <= math.sqrt(tol) * tscale
        if ok and not final:
            spread = math.sqrt(tol) * max(float(lam.abs().max()), 1e-300)
            changed = prev is None or float((lam.sort().values - prev.sort().values).abs().max()) > spread
            if changed and phase <= k and n > k + 1:
                # A single starting vector sees one direction of each eigenspace (in exact arithmetic):
                # copies of a multiple eigenvalue are missed. Lock the converged pairs and search their
                # complement from a fresh random vector until the wanted set no longer changes.
                prev, phase = lam, phase + 1
                restarts += 1
                V[:, :k] = Y[:, :k]
                if bmul is not None:
                    BV[:, :k] = BY[:, :k]
                H.zero_()
                H[:k, :k] = torch.diag(theta[idx[:k]])
                w, Bw = random_orth(k)
                V[:, k] = w
                if bmul is not None:
                    BV[:, k] = Bw
                beta = torch.zeros_like(beta)
                l = k
                continue
        if ok or final:
            status = "converged" if ok else ("maxiter" if nops >= maxiter else "stagnated")
            return lam, Y[:, :k], res, nops, restarts, status
        restarts += 1
        nk = keep.numel()
        coupling = beta * S[m - 1, keep]
        V[:, :nk] = Y
        V[:, nk] = V[:, m]
        if bmul is not None:
            BV[:, :nk] = BY
            BV[:, nk] = BV[:, m]
        H.zero_()
        H[:nk, :nk] = torch.diag(theta[keep])
        H[nk, :nk] = coupling
        H[:nk, nk] = coupling
        l = nk


# -- LOBPCG ----------------------------------------------------------------------------------------------------
def _bortho(S: Tensor, BS: Tensor, drop: float, gram) -> tuple[Tensor, Tensor]:
    """B-orthonormal basis of span(S) (SVQB: scaled Gram matrix, eigendecomposition, directions whose
    eigenvalue is below ``drop`` times the largest are dropped). ``gram(X, Y) = X^H Y``."""
    G0 = gram(S, BS)
    d = torch.real(torch.diagonal(G0)).clamp(min=0).sqrt()
    d = torch.where(d > 0, 1 / d, torch.zeros_like(d)).to(S.dtype)
    G = d[:, None].conj() * G0 * d[None, :]
    G = (G + G.mH) / 2
    w, Q = torch.linalg.eigh(G)
    keep = w > drop * w.max()
    C = (Q[:, keep] / w[keep].sqrt().to(S.dtype)) * d[:, None]
    return S @ C, BS @ C


def _lobpcg(
    member: _Member,
    k: int,
    largest: bool,
    tol: float,
    maxiter: int,
    X0: Tensor | None,
    preconditioner,
    generator: torch.Generator,
):
    """Block LOBPCG (Knyazev) with Rayleigh-Ritz on ``[X, W, P]`` B-orthonormalized by SVQB, for the
    smallest (or, on ``-A``, the largest) eigenpairs of ``A x = lambda M x``. The block holds a few more
    vectors than requested, which speeds up the convergence of the k-th pair."""
    n, dtype, device = member.n, member.dtype, member.device
    sign = -1.0 if largest else 1.0
    nb = min(k + max(2, k // 2), n // 3) if n >= 3 * k else k
    nb = max(nb, k)
    eps = torch.finfo(_real_dtype(dtype)).eps
    drop = 100 * eps
    gram = member.gram
    X = torch.randn(member.n_local, nb, dtype=dtype, device=device, generator=generator)
    if X0 is not None:
        X0 = X0.to(dtype=dtype, device=device).reshape(member.n_local, -1)
        X[:, : min(nb, X0.shape[1])] = X0[:, :nb]
    X, BX = _bortho(X, member.mmul(X), drop, gram)
    P = None
    its = 0
    lam = res = None
    status = "maxiter"
    while True:
        AX = member.amul(X) * sign
        G = gram(X, AX)
        theta, C = torch.linalg.eigh((G + G.mH) / 2)
        X, BX, AX = X @ C.to(dtype), BX @ C.to(dtype), AX @ C.to(dtype)
        nb = X.shape[1]
        R = AX - BX * theta.to(dtype)
        lam = sign * theta[:k]
        res = member.residuals(lam, X[:, :k], None if member.m_op is None else BX[:, :k])
        its += 1
        if bool((res <= tol).all()):
            status = "converged"
            break
        if its >= maxiter:
            break
        W = R if preconditioner is None else preconditioner(R)
        W = W - X @ gram(BX, W)
        parts = [X, W] if P is None else [X, W, P]
        S = torch.cat(parts, 1)
        S, BS = _bortho(S, member.mmul(S), drop, gram)
        S, BS = _bortho(S, BS, drop, gram)
        AS = member.amul(S) * sign
        G = gram(S, AS)
        theta_s, Cs = torch.linalg.eigh((G + G.mH) / 2)
        Cs = Cs[:, :nb].to(dtype)
        Xn, BXn = S @ Cs, BS @ Cs
        P = Xn - X @ gram(BX, Xn)
        if float(torch.real(torch.diagonal(gram(P, P))).sum()) == 0:
            P = None
        X, BX = Xn, BXn
    return lam, X[:, :k], res, its, 0, status


# -- dense fallback ------------------------------------------------------------------------------------------
def _dense(member: _Member, k: int, want: str, sigma):
    """All eigenpairs by ``torch.linalg.eigh`` (through the Cholesky factor of M when generalized), then
    the k wanted ones."""
    A = member.A.to_dense()
    A = (A + A.mH) / 2
    if member.M is None:
        lam, V = torch.linalg.eigh(A)
    else:
        Md = member.M.to_dense()
        L, info = torch.linalg.cholesky_ex((Md + Md.mH) / 2)
        if int(info) != 0:
            raise NotPositiveDefiniteError(
                "M: must be Hermitian positive definite (its Cholesky factorization failed)"
            )
        C = torch.linalg.solve_triangular(L, A, upper=False)
        C = torch.linalg.solve_triangular(L, C.mH, upper=False)
        lam, Y = torch.linalg.eigh((C + C.mH) / 2)
        V = torch.linalg.solve_triangular(L.mH, Y, upper=True)
    if sigma is not None:
        idx = torch.argsort((lam - sigma).abs())
    else:
        idx = _order(lam, want)
    idx = idx[:k]
    lam, V = lam[idx], V[:, idx]
    res = member.residuals(lam, V)
    return lam, V, res, 0, 0, "converged"


# -- the autograd node ---------------------------------------------------------------------------------------
class _EigshFunction(torch.autograd.Function):
    """Eigenpairs of the pencil (A, M) from A's (and M's) values. ``solve`` computes the forward on plain
    tensors; backward is below."""

    @staticmethod
    def forward(ctx, run, a_values, m_values):
        lam, V, shared = run(a_values.detach(), None if m_values is None else m_values.detach())
        ctx.shared, ctx.lam, ctx.V = shared, lam, V
        ctx.has_m = m_values is not None
        return lam.clone(), V.clone()

    # Backward. For a simple eigenvalue of the Hermitian pencil, with A v = lambda M v and v^H M v = 1:
    #   d lambda = v^H (dA - lambda dM) v.
    # Eigenvector: differentiating (A - lambda M) v = 0 gives
    #   (A - lambda_i M) dv_i = -(dA - lambda_i dM) v_i + d lambda_i M v_i.
    # Split dv_i = V c_i + w_i with V^H M w_i = 0 (V the k computed vectors). Multiplying by v_j^H:
    #   c_ji = v_j^H M dv_i = v_j^H (dA - lambda_i dM) v_i / (lambda_i - lambda_j)       (j != i)
    #   Re c_ii = -1/2 v_i^H dM v_i (normalization; Im c_ii is the phase, fixed to 0).
    # A and M map W = {x : V^H M x = 0} onto W' = {y : V^H y = 0}, and K_i = A - lambda_i M is invertible
    # from W to W' when every copy of lambda_i is among the computed pairs, so with Q = I - M V V^H
    #   w_i = -K_i^{-1} Q (dA - lambda_i dM) v_i.
    # For dL = Re sum_i (G_i^H dv_i), the w part is -Re z_i^H (dA - lambda_i dM) v_i, with z_i in W
    # solving K_i z_i = Q G_i (the adjoint solve; K_i is Hermitian). Only Hermitian dA, dM are admissible,
    # so the gradient of L as a function of a matrix C (dL = Re tr(C^H dA)) is taken Hermitian:
    # C <- (C + C^H)/2. In the basis V with E = V^H G that gives, for i != j,
    #   A: S_ji = (E_ji - conj(E_ij)) / (2 (lambda_i - lambda_j)),
    #   M: -lambda_i S_ji - conj(E_ij)/2, and -Re(E_ii)/2 on the diagonal,
    # and the z part -(Z V^H + V Z^H)/2 (A), +(Z L V^H + V L Z^H)/2 (M, L = diag(lambda)). For a
    # degenerate pair, S_ji's numerator vanishes exactly when L does not depend on the basis chosen in
    # the eigenspace (only then is the gradient defined); it is dropped, with a warning if it is not zero.
    # On the pattern, grad_values[p] = C[row_p, col_p] (torch's convention for complex gradients).
    @staticmethod
    def backward(ctx, g_lam, g_V):
        lam, V = ctx.lam, ctx.V
        shared = ctx.shared
        dtype = V.dtype
        n, k = V.shape
        ld = lam.to(dtype)
        if g_lam is None:
            g_lam = torch.zeros_like(lam)
        A_pat, M_pat, member = shared["A_pattern"], shared["M_pattern"], shared["member"]
        g_lam = g_lam.real if g_lam.is_complex() else g_lam
        coef_a = torch.diag(g_lam.to(dtype))
        coef_m = torch.diag(-(g_lam * lam).to(dtype))
        Z = None
        vector_grad = g_V is not None and bool((g_V != 0).any())
        if vector_grad:
            E = V.mH @ g_V
            diff = lam[None, :] - lam[:, None]  # [j, i] = lambda_i - lambda_j
            mag = torch.maximum(lam.abs()[None, :], lam.abs()[:, None])
            degenerate = diff.abs() <= _DEGENERATE_GAP * torch.where(mag > 0, mag, torch.ones_like(mag))
            skew = (E - E.mH) / 2
            gnorm = torch.linalg.vector_norm(g_V, dim=0)
            for i in range(k):
                for j in range(i + 1, k):
                    if degenerate[j, i]:
                        size = float(skew[j, i].abs())
                        if size > 1e-8 * float(gnorm[i] + gnorm[j]) and size > 0:
                            warnings.warn(
                                f"eigsh backward: eigenvalues {i} and {j} are (nearly) degenerate (relative "
                                f"gap {float(diff[j, i].abs() / max(float(mag[j, i]), 1e-300)):.3g}) and the "
                                "loss depends on the choice of eigenvectors within their eigenspace: that "
                                "gradient is not defined and is dropped (only losses of the eigenspace, such "
                                "as projectors, have exact gradients there)",
                                RuntimeWarning,
                                stacklevel=2,
                            )
            safe = torch.where(degenerate, torch.ones_like(diff), diff).to(dtype)
            S = torch.where(degenerate, torch.zeros_like(skew), skew / safe)
            S.diagonal().zero_()
            coef_a = coef_a + S
            cm = -S * ld[None, :] - E.mH / 2
            cm.diagonal().copy_(-torch.real(torch.diagonal(E)).to(dtype) / 2)
            coef_m = coef_m + cm
            Z, info = _adjoint_solve(member, V, lam, g_V, shared)
            shared["info"].adjoint = info
        grad_a = grad_m = None
        if ctx.needs_input_grad[1]:
            L = V @ coef_a
            R = V
            if Z is not None:
                L = torch.cat([L - Z / 2, -V / 2], 1)
                R = torch.cat([V, Z], 1)
            grad_a = _on_pattern(A_pat, L, R)
        if ctx.has_m and ctx.needs_input_grad[2]:
            L = V @ coef_m
            R = V
            if Z is not None:
                L = torch.cat([L + Z * ld / 2, V * ld / 2], 1)
                R = torch.cat([V, Z], 1)
            grad_m = _on_pattern(M_pat, L, R)
        return None, grad_a, grad_m


def _on_pattern(pattern, L: Tensor, R: Tensor) -> Tensor:
    """``(L R^H)[row_p, col_p]`` for every stored entry p."""
    return (L[pattern.row] * R[pattern.col].conj()).sum(-1)


def _adjoint_solve(member: _Member, V: Tensor, lam: Tensor, G: Tensor, shared: dict):
    """``Z`` with ``(A - lambda_i M) z_i = Q g_i`` and ``V^H M z_i = 0``, all columns at once: MINRES on
    ``Q (A - L M) P`` (P = I - V V^H M, Q = P^H), preconditioned by ``Q F P`` with F the forward's
    shifted Cholesky factorization when there is one (GMRES with an LU one)."""
    MV = member.mmul(V)
    ld = lam.to(V.dtype)

    def P(x):
        return x - V @ (MV.mH @ x)

    def Q(y):
        return y - MV @ (V.mH @ y)

    def op(x):
        px = P(x)
        return Q(member.amul(px) - member.mmul(px) * ld)

    b = Q(G)
    fac = shared.get("factor")
    method, prec = "minres", None
    if fac is not None:
        if fac.method != "cholesky":
            method = "gmres"

        def prec(r):
            y = fac.raw_solve(P(r).unsqueeze(0).contiguous(), "N")[0]
            return Q(y)

    operator = CallableOperator(op, member.n, V.dtype, V.device)
    x, info = krylov_solve(
        operator, b, method=method, rtol=shared["tol"], M=prec, restart=60, maxiter=shared["adjoint_maxiter"]
    )
    if not info.converged:
        warnings.warn(
            f"eigsh backward: the projected adjoint solve for the eigenvector gradient did not converge "
            f"({info.reason}, relative residual {info.residual:.3g} after {info.iterations} iterations); "
            "the gradient is approximate. An eigenvalue outside the requested set equal to a requested one "
            "makes it undefined: request the whole cluster.",
            RuntimeWarning,
            stacklevel=3,
        )
    return P(x), {
        "method": method,
        "iterations": info.iterations,
        "residual": info.residual,
        "converged": info.converged,
    }


# -- the entry points ------------------------------------------------------------------------------------------
def _check_pencil(A: SparseTensor, M: SparseTensor | None, check_symmetry: bool, check_finite: bool):
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: eigsh needs a square matrix, got shape {A.shape}")
    if check_finite:
        check_finite_values(A.values.detach(), "A.values")
    tol = symmetry_tolerance(A.dtype)
    if check_symmetry and A.asymmetry(hermitian=True) > tol:
        what = "Hermitian" if A.dtype.is_complex else "symmetric"
        raise InvalidArgumentError(
            f"A: eigsh needs a {what} matrix, but max|A - A^H| / max|A| is {A.asymmetry():.3g} (tolerance "
            f"{tol:.3g}); pass check_symmetry=False if A is {what} up to an error you accept"
        )
    if M is None:
        return
    n = A.shape[-1]
    if M.shape[-2:] != (n, n):
        raise InvalidArgumentError(f"M: expected shape ({n}, {n}) like A, got {M.shape}")
    if M.dtype != A.dtype or M.device != A.device:
        raise InvalidArgumentError(
            f"M: dtype {M.dtype} on {M.device} does not match A's {A.dtype} on {A.device}"
        )
    if M.batch_shape and M.batch_shape != A.batch_shape:
        raise InvalidArgumentError(f"M: batch shape {M.batch_shape} does not match A's {A.batch_shape}")
    if check_finite:
        check_finite_values(M.values.detach(), "M.values")
    if check_symmetry and M.asymmetry(hermitian=True) > tol:
        raise InvalidArgumentError(
            f"M: must be Hermitian positive definite, but max|M - M^H| / max|M| is {M.asymmetry():.3g}"
        )


def _check_sigma(sigma, A: SparseTensor):
    if sigma is None:
        return None
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise InvalidArgumentError(
                f"sigma: expected a real number, got a tensor of shape {tuple(sigma.shape)}"
            )
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise InvalidArgumentError(
            f"sigma: expected a real number (eigenvalues of a Hermitian pencil are real), got {sigma!r}"
        )
    if not math.isfinite(sigma):
        raise InvalidArgumentError(f"sigma: must be finite, got {sigma}")
    return float(sigma)


def eigsh(
    A,
    k: int = 6,
    which: str = "LM",
    sigma=None,
    M=None,
    return_eigenvectors: bool = True,
    *,
    tol: float = 1e-10,
    maxiter: int | None = None,
    ncv: int | None = None,
    v0: Tensor | None = None,
    method: str = "auto",
    preconditioner=None,
    on_fail: str = "warn",
    return_info: bool = False,
    check_symmetry: bool = True,
    check_finite: bool = True,
    generator: torch.Generator | None = None,
):
    """k eigenvalues and eigenvectors of a sparse Hermitian matrix, or of the pencil ``A v = lambda M v``.

    Differentiable with respect to A's values (and M's): one autograd node whose backward costs one
    pattern pass for the eigenvalues and one projected adjoint solve per eigenvector with a gradient.

    Parameters
    ----------
    A : SparseTensor (or anything :func:`as_sparse_tensor` takes)
        Square, symmetric (real) or Hermitian (complex); optional leading batch dims on the values
        (solved member by member, results stacked).
    k : int
        Number of eigenpairs, ``1 <= k < n``.
    which : {"LM", "SM", "LA", "SA", "largest", "smallest"}
        Largest / smallest magnitude, largest / smallest algebraic (``"largest"`` = ``"LA"``,
        ``"smallest"`` = ``"SA"``). ``"SM"`` without ``sigma`` is shift-invert at 0. With ``sigma`` only
        ``"LM"`` (the default) is accepted and means the k eigenvalues nearest ``sigma``.
    sigma : float, optional
        Shift-invert: the operator ``(A - sigma M)^{-1} M``, applied through one sparse factorization of
        ``A - sigma M`` (CPU), Lanczos in the M inner product. Fast for the eigenvalues nearest sigma.
    M : SparseTensor, optional
        Hermitian positive definite mass matrix of the generalized problem (same dtype and device). The
        eigenvectors are M-orthonormal. Without ``sigma`` the generalized problem applies ``M^{-1} A``
        through a Cholesky factorization of M (a not positive definite M raises).
    return_eigenvectors : bool
        ``False``: return the eigenvalues only.
    tol : float
        Pair i has converged when ``||A v_i - lambda_i M v_i|| <= tol ||v_i|| (||A|| + |lambda_i| ||M||)``
        (``tol ||A||`` for a standard problem) with ``||.||`` the max abs row sum. Raised to at least
        100 units of roundoff of the dtype.
    maxiter : int, optional
        Limit on operator applications (Lanczos) or iterations (LOBPCG); default ``max(10 n, 1000)``.
    ncv : int, optional
        Lanczos basis size, ``k < ncv <= n``; default ``min(n, max(2 k + 1, 20))``.
    v0 : Tensor, optional
        Starting vector ``(n,)`` (Lanczos) or block ``(n, j)`` (LOBPCG). Default random (``generator``).
    method : {"auto", "lanczos", "lobpcg", "dense"}
        ``auto``: ``dense`` (``torch.linalg.eigh`` on the dense matrix) when ``n <= ncv`` (a Krylov basis
        would span everything anyway), LOBPCG on non-CPU devices for ``LA``/``SA`` without sigma, else
        Lanczos. LOBPCG computes ``LA``/``SA`` only.
    preconditioner : callable, optional
        LOBPCG only: ``R -> approximately (A - theta M)^{-1} R`` for an ``(n, j)`` block (e.g. an
        incomplete factorization or a multigrid cycle of A).
    on_fail : {"warn", "raise"}
        Not converging within ``maxiter``: a RuntimeWarning with the residuals, or :class:`ConvergenceError`.
    return_info : bool
        Also return an :class:`EigshInfo`.
    check_symmetry, check_finite : bool
        Refuse (InvalidArgumentError) a matrix that is not Hermitian up to 100 units of roundoff, or one
        holding NaN/Inf (default); False skips the check.
    generator : torch.Generator, optional
        For the random starting vectors (reproducible results).

    Returns
    -------
    w : Tensor ``(*batch, k)``, real, ascending (eigenvalues of A, not of the transformed operator).
    v : Tensor ``(*batch, n, k)``, the eigenvectors as columns (M-orthonormal), unless
        ``return_eigenvectors=False``. Each is defined up to a sign (a phase when complex): only losses
        invariant under that choice have meaningful gradients.
    info : EigshInfo, with ``return_info=True``.

    Notes
    -----
    Gradients are those with respect to Hermitian perturbations of A and M (the returned gradient on the
    pattern is the Hermitian part). Eigenvector gradients need every copy of a requested eigenvalue among
    the requested ones; within a degenerate cluster only losses of the eigenspace (projectors, sums of
    eigenvalues) have a gradient, others get a warning naming the pair.
    """
    A = as_sparse_tensor(A)
    if M is not None:
        M = as_sparse_tensor(M)
    if not isinstance(which, str) or which not in _WHICH:
        raise InvalidArgumentError(f"which: expected one of {', '.join(_WHICH)}, got {which!r}")
    want = _WHICH[which]
    if method not in _METHODS:
        raise InvalidArgumentError(f"method: expected one of {', '.join(_METHODS)}, got {method!r}")
    if on_fail not in ("warn", "raise"):
        raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {on_fail!r}")
    _check_pencil(A, M, check_symmetry, check_finite)
    n = A.shape[-1]
    k = as_int(k, "k", lo=1)
    if k >= n:
        raise InvalidArgumentError(
            f"k: must be smaller than n = {n} (got {k}); use torch.linalg.eigh(A.to_dense()) for all of them"
        )
    sigma = _check_sigma(sigma, A)
    if sigma is not None and want != "LM":
        raise InvalidArgumentError(
            f"which: with sigma the k eigenvalues nearest sigma are computed (which='LM'); got {which!r}"
        )
    if sigma is None and want == "SM":
        sigma = 0.0
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0 and math.isfinite(tol)):
        raise InvalidArgumentError(f"tol: expected a positive number, got {tol!r}")
    tol = max(float(tol), 100 * torch.finfo(A.dtype).eps)
    maxiter = max(10 * n, 1000) if maxiter is None else as_int(maxiter, "maxiter", lo=1)
    if ncv is None:
        ncv = min(n, max(2 * k + 1, 20))
    else:
        ncv = as_int(ncv, "ncv", lo=1)
        if not k < ncv <= n:
            raise InvalidArgumentError(f"ncv: expected k < ncv <= n ({k} < ncv <= {n}), got {ncv}")
    if v0 is not None and (not isinstance(v0, torch.Tensor) or v0.shape[0] != n):
        raise InvalidArgumentError(f"v0: expected a tensor of shape ({n},) or ({n}, j)")
    if preconditioner is not None and not callable(preconditioner):
        raise InvalidArgumentError("preconditioner: expected a callable R -> approximately A^{-1} R")
    if method == "auto":
        if n <= ncv:
            method = "dense"
        elif A.device.type != "cpu" and sigma is None and want in ("LA", "SA"):
            method = "lobpcg"
        else:
            method = "lanczos"
    if method == "lobpcg" and (sigma is not None or want not in ("LA", "SA")):
        raise InvalidArgumentError(
            f"method: 'lobpcg' computes the largest or smallest algebraic eigenvalues (which='LA'/'SA' "
            f"without sigma), got which={which!r}, sigma={sigma}"
        )
    if method != "lobpcg" and preconditioner is not None:
        raise InvalidArgumentError("preconditioner: applies to method='lobpcg' only")
    mode = "shift-invert" if sigma is not None else ("generalized" if M is not None else "standard")
    gen = generator
    if gen is None:
        gen = torch.Generator(device=A.device)
        gen.manual_seed(0x5EED)
    info = EigshInfo(method=method, mode=mode, ncv=ncv)
    settings = dict(
        k=k,
        want=want,
        sigma=sigma,
        tol=tol,
        maxiter=maxiter,
        ncv=ncv,
        v0=v0,
        method=method,
        preconditioner=preconditioner,
        generator=gen,
        info=info,
    )

    B = A.batch_size
    a_vals = A.values.reshape(B, A.nnz)
    m_vals = None
    if M is not None:
        m_vals = M.values.reshape(-1, M.nnz)
        if m_vals.shape[0] != B:
            m_vals = m_vals.expand(B, M.nnz)
    lams, vecs = [], []
    for i in range(B):
        run = _Runner(A, M, settings)
        lam, V = _EigshFunction.apply(run, a_vals[i], None if m_vals is None else m_vals[i])
        lams.append(lam)
        vecs.append(V)
    if B == 0:
        lam = torch.zeros(A.batch_shape + (k,), dtype=a_vals.real.dtype, device=A.device)
        V = torch.zeros(A.batch_shape + (n, k), dtype=A.dtype, device=A.device)
    else:
        lam = torch.stack(lams).reshape(A.batch_shape + (k,))
        V = torch.stack(vecs).reshape(A.batch_shape + (n, k))
    _report(info, on_fail, "eigsh")
    out = (lam, V) if return_eigenvectors else lam
    if return_info:
        return (*out, info) if return_eigenvectors else (out, info)
    return out


class _Runner:
    """The forward of one member, on plain values: builds the operator of the chosen mode, runs the
    eigensolver, and keeps what backward reuses (the member's operators, the shifted factorization)."""

    def __init__(self, A: SparseTensor, M: SparseTensor | None, settings: dict):
        self.A, self.M, self.s = A, M, settings

    def __call__(self, a_values: Tensor, m_values: Tensor | None):
        s, A, M = self.s, self.A, self.M
        member = _Member(A, a_values, M, m_values)
        k, want, sigma, tol = s["k"], s["want"], s["sigma"], s["tol"]
        shared = {
            "A_pattern": A.pattern,
            "M_pattern": None if M is None else M.pattern,
            "member": member,
            "tol": tol,
            "adjoint_maxiter": max(10 * member.n, 1000),
            "info": s["info"],
            "factor": None,
        }
        method = s["method"]
        with torch.no_grad():
            if method == "dense":
                lam, V, res, nops, restarts, status = _dense(member, k, want, sigma)
            elif method == "lobpcg":
                lam, V, res, nops, restarts, status = _lobpcg(
                    member, k, want == "LA", tol, s["maxiter"], s["v0"], s["preconditioner"], s["generator"]
                )
            else:
                lam, V, res, nops, restarts, status = self._lanczos(member, shared)
            order = torch.argsort(lam)
            lam, V, res = lam[order], V[:, order], res[order]
        one = EigshInfo(
            method=method,
            mode=s["info"].mode,
            iterations=nops,
            restarts=restarts,
            converged=status == "converged",
            reason=status,
            residuals=res.tolist(),
            ncv=s["ncv"],
        )
        s["info"]._merge(one)
        return lam, V, shared

    def _lanczos(self, member: _Member, shared: dict):
        s = self.s
        k, want, sigma = s["k"], s["want"], s["sigma"]
        bmul = None if member.m_op is None else member.mmul
        if sigma is not None:
            shifted_matrix = shifted(member.A, sigma, member.M)
            try:
                fac = factorize(shifted_matrix, check_finite=False, check_symmetry=False)
            except SingularMatrixError as e:
                raise SingularMatrixError(
                    f"sigma: A - sigma M is singular for sigma = {sigma} (sigma is an eigenvalue?); move "
                    f"sigma slightly. ({e})"
                ) from None
            shared["factor"] = fac
            n = member.n

            def apply_t(v, Bv):
                return fac.raw_solve(Bv.reshape(1, n, 1).contiguous(), "N")[0]

            def to_lambda(theta):
                return sigma + 1.0 / theta

            return _lanczos(
                member,
                apply_t,
                bmul,
                to_lambda,
                k,
                "LM",
                s["ncv"],
                s["tol"],
                s["maxiter"],
                s["v0"],
                s["generator"],
                sigma=sigma,
            )
        if member.m_op is not None:
            try:
                mfac = factorize(member.M, method="cholesky", check_finite=False, check_symmetry=False)
            except NotPositiveDefiniteError:
                raise NotPositiveDefiniteError(
                    "M: must be Hermitian positive definite (its Cholesky factorization failed)"
                ) from None
            n = member.n

            def apply_t(v, Bv):
                return mfac.raw_solve(member.amul(v).reshape(1, n, 1).contiguous(), "N")[0]
        else:

            def apply_t(v, Bv):
                return member.amul(v)

        return _lanczos(
            member,
            apply_t,
            bmul,
            lambda t: t,
            k,
            want,
            s["ncv"],
            s["tol"],
            s["maxiter"],
            s["v0"],
            s["generator"],
            standard_mode=member.m_op is None,
        )


def svds(
    A,
    k: int = 6,
    which: str = "LM",
    return_singular_vectors: bool = True,
    *,
    tol: float = 1e-10,
    maxiter: int | None = None,
    ncv: int | None = None,
    method: str = "auto",
    on_fail: str = "warn",
    return_info: bool = False,
    check_finite: bool = True,
    generator: torch.Generator | None = None,
):
    """The k largest singular triplets of a sparse (rectangular) matrix, differentiable.

    Computed as the k largest eigenpairs of the Hermitian augmented matrix ``[[0, A], [A^H, 0]]``, whose
    eigenvalues are ``+-s_i`` with eigenvectors ``[u_i; +-v_i] / sqrt(2)``: singular values are then
    accurate to about ``tol ||A||`` in absolute terms (no squaring of the condition number as with
    ``A^H A``), but small singular values converge slowly and k must stay below ``min(m, n)``.

    Parameters
    ----------
    A : SparseTensor (unbatched or batched), shape ``(m, n)``
    k : int, ``1 <= k < min(m, n)``
    which : {"LM", "largest"}
        Only the largest singular values are computed.
    return_singular_vectors : bool
        ``False``: return ``s`` only.
    tol, maxiter, ncv, method, on_fail, return_info, check_finite, generator
        As for :func:`eigsh` (applied to the augmented matrix).

    Returns
    -------
    u : ``(*batch, m, k)``, s : ``(*batch, k)`` descending, vh : ``(*batch, k, n)`` (torch.linalg.svd's
    conventions); or ``s`` alone. Gradients flow to A's values from s, u and vh (losses invariant under
    the joint sign/phase of ``(u_i, v_i)``).
    """
    A = as_sparse_tensor(A)
    if not isinstance(which, str) or which not in ("LM", "largest"):
        raise InvalidArgumentError(f"which: svds computes the largest singular values ('LM'), got {which!r}")
    m, n = A.shape[-2:]
    k = as_int(k, "k", lo=1)
    if k >= min(m, n):
        raise InvalidArgumentError(
            f"k: must be smaller than min(m, n) = {min(m, n)} (got {k}); use torch.linalg.svd(A.to_dense())"
        )
    if check_finite:
        check_finite_values(A.values.detach(), "A.values")
    p = A.pattern
    values = A.values
    conj_values = values.conj() if values.is_complex() else values
    H = SparseTensor(
        torch.cat([values, conj_values], -1),
        torch.cat([p.row, p.col + m]),
        torch.cat([p.col + m, p.row]),
        (m + n, m + n),
    )
    out = eigsh(
        H,
        k,
        which="LA",
        tol=tol,
        maxiter=maxiter,
        ncv=ncv,
        method=method,
        on_fail=on_fail,
        return_info=True,
        check_symmetry=False,
        check_finite=False,
        generator=generator,
    )
    lam, W, info = out
    s = lam.flip(-1)
    W = W.flip(-1)
    if not return_singular_vectors:
        return (s, info) if return_info else s
    root2 = math.sqrt(2.0)
    u = W[..., :m, :] * root2
    vh = (W[..., m:, :] * root2).mH
    return (u, s, vh, info) if return_info else (u, s, vh)


def _sparse_tensor_eigsh(self: SparseTensor, k: int = 6, which: str = "LM", sigma=None, M=None, **kwargs):
    """Eigenpairs of this Hermitian matrix (or the pencil with M). See :func:`torch_sla.eigsh`."""
    return eigsh(self, k, which, sigma, M, **kwargs)


def _sparse_tensor_svds(self: SparseTensor, k: int = 6, **kwargs):
    """The k largest singular triplets. See :func:`torch_sla.svds`."""
    return svds(self, k, **kwargs)


SparseTensor.eigsh = _sparse_tensor_eigsh
SparseTensor.svds = _sparse_tensor_svds
