"""``eigs``: a few eigenvalues (and eigenvectors) of a general square sparse matrix, differentiable with
respect to the matrix values through both.

The eigenpairs come from an implicitly restarted Arnoldi method (exact shifts, full
reorthogonalization) run in complex torch arithmetic on A itself, or on ``(A - sigma I)^{-1}`` through
one sparse LU factorization for the eigenvalues nearest ``sigma``. Every eigenpair is accepted on its
true residual ``||A v - lambda v|| <= tol * ||A||_F``. Backward finds each needed left eigenvector by
inverse iteration with the adjoint of one factorization of ``A - lambda I``, which also serves the
eigenvector term.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch

from ._checks import as_float, as_int, is_wrapped
from ._operator import CsrOperator
from ._solve import factorize
from ._sparse_tensor import SparseTensor, as_sparse_tensor, check_values_finite, shifted
from .errors import ConvergenceError, InvalidArgumentError

WHICH = ("LM", "SM", "LR", "SR", "LI", "SI")
ALIASES = {"largest": "LM", "smallest": "SM"}
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@dataclasses.dataclass
class EigsInfo:
    """What :func:`eigs` did.

    ``method`` is ``"arnoldi"``, ``"shift-invert arnoldi"`` or ``"dense"``; ``iterations`` counts Arnoldi
    restarts, ``matvecs`` applications of the operator (products with A, or solves with the factors);
    ``residuals`` holds ``||A v - lambda v|| / ||A||_F`` of each returned pair (unit ``v``) and
    ``residual`` their maximum.
    """

    method: str
    which: str
    sigma: complex | None = None
    iterations: int = 0
    matvecs: int = 0
    residual: float = 0.0
    residuals: list[float] = dataclasses.field(default_factory=list)
    converged: bool = True
    nconv: int = 0
    reason: str = "converged"


def _report(info: EigsInfo, k: int, on_fail: str, tol: float) -> None:
    if info.converged:
        return
    msg = (
        f"eigs: {info.method} did not converge: {info.nconv} of {k} eigenpairs reached the tolerance "
        f"{tol:.3g} after {info.iterations} restarts ({info.reason}); largest relative residual "
        f"{info.residual:.3g}. Raise maxiter or ncv, or use sigma (shift-invert) for eigenvalues near a point."
    )
    if on_fail == "raise":
        raise ConvergenceError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


# -- ordering --------------------------------------------------------------------------------------------
def _score(lam: torch.Tensor, which: str, sigma) -> torch.Tensor:
    """A real score, larger = more wanted."""
    if sigma is not None:
        return -(lam - sigma).abs()
    return {
        "LM": lambda z: z.abs(),
        "SM": lambda z: -z.abs(),
        "LR": lambda z: z.real,
        "SR": lambda z: -z.real,
        "LI": lambda z: z.imag,
        "SI": lambda z: -z.imag,
    }[which](lam)


def _order(lam: torch.Tensor, which: str, sigma, pair_tol: float | None) -> list[int]:
    """Indices of ``lam`` best first; with ``pair_tol`` (real A), the two members of a complex conjugate
    pair that are adjacent come with the positive imaginary part first."""
    idx = torch.argsort(_score(lam, which, sigma), descending=True, stable=True).tolist()
    if pair_tol is not None:
        j = 0
        while j + 1 < len(idx):
            a, b = lam[idx[j]], lam[idx[j + 1]]
            if abs(a.imag) > pair_tol and abs(b - a.conj()) <= pair_tol:
                if a.imag < 0:
                    idx[j], idx[j + 1] = idx[j + 1], idx[j]
                j += 2
            else:
                j += 1
    return idx


# -- the operators -----------------------------------------------------------------------------------------
class _ShiftInvert:
    """``x -> (A - sigma I)^{-1} x`` through one sparse LU factorization (real for real A and sigma), on
    the CPU whatever A's device (the vectors travel)."""

    def __init__(self, A: SparseTensor, sigma: complex, cdtype: torch.dtype):
        real = not A.dtype.is_complex and sigma.imag == 0
        M = A.to(device="cpu", dtype=None if real else cdtype)
        self.real, self.device = real, A.device
        self.F = factorize(shifted(M, sigma.real if real else sigma), check_finite=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.cpu()
        if self.real:
            j = x.shape[1]
            y = self.F.solve(torch.cat([x.real, x.imag], 1), check_finite=False)
            y = torch.complex(y[:, :j], y[:, j:])
        else:
            y = self.F.solve(x, check_finite=False)
        return y.to(self.device)


class _Product:
    """``x -> A x`` for complex blocks x by torch's sparse CSR product (a real A is applied to the real and
    imaginary parts)."""

    def __init__(self, A: SparseTensor):
        self.mat = CsrOperator(A.crow_indices, A.col_indices, A.values, A.shape[-1])
        self.real = not A.dtype.is_complex

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.real:
            return self.mat.matvec(x)
        j = x.shape[1]
        y = self.mat.matvec(torch.cat([x.real, x.imag], 1))
        return torch.complex(y[:, :j], y[:, j:])


# -- the Arnoldi method ------------------------------------------------------------------------------------
def _orthogonalize(V: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w minus its projection on the orthonormal columns of V: classical Gram-Schmidt, repeated when the
    norm dropped below 1/sqrt(2) of what it was (cancellation: the first pass lost orthogonality)."""
    before = torch.linalg.vector_norm(w)
    h = V.mH @ w
    w = w - V @ h
    if torch.linalg.vector_norm(w) > 0.7071 * before:
        return w, h
    h2 = V.mH @ w
    return w - V @ h2, h + h2


def _ritz(
    Aop,
    V: torch.Tensor,
    H: torch.Tensor,
    m: int,
    want: int,
    which: str,
    sigma,
    pair_tol,
    normA: float,
):
    """Ritz values of H[:m, :m] ordered by wantedness (in the operator's spectrum), and for the first
    ``want``: unit Ritz vectors, Rayleigh-quotient eigenvalues of A, relative true residuals."""
    theta, Y = torch.linalg.eig(H[:m, :m])
    if sigma is None:
        order = _order(theta, which, None, pair_tol)
    else:  # the operator's eigenvalues are 1 / (lambda - sigma): the largest are nearest sigma
        order = _order(theta, "LM", None, None)
    theta = theta[order]
    X = V[:, :m] @ Y[:, order[:want]]
    X = X / torch.linalg.vector_norm(X, dim=0)
    AX = Aop(X)
    lam = (X.conj() * AX).sum(0)  # Rayleigh quotients: the best eigenvalue for each vector
    res = torch.linalg.vector_norm(AX - X * lam, dim=0) / normA
    return theta, lam, X, res


def _arnoldi(Aop, op, n, kw, m, which, sigma, tol, maxiter, v0, pair_tol, normA, info):
    """Implicitly restarted Arnoldi for ``kw`` wanted eigenpairs with an ``m``-vector basis."""
    cdtype = v0.dtype
    real_eps = torch.finfo(cdtype).eps
    V = torch.zeros(n, m + 1, dtype=cdtype, device=v0.device)
    H = torch.zeros(m + 1, m, dtype=cdtype, device=v0.device)
    V[:, 0] = v0 / torch.linalg.vector_norm(v0)
    gen = torch.Generator(device="cpu").manual_seed(12345)
    start = 0
    lam = X = res = None
    for it in range(1, maxiter + 1):
        info.iterations = it
        for j in range(start, m):
            w = op(V[:, j : j + 1])
            info.matvecs += 1
            w, h = _orthogonalize(V[:, : j + 1], w)
            H[: j + 1, j] = h[:, 0]
            beta = torch.linalg.vector_norm(w)
            if beta <= 100 * real_eps * max(torch.linalg.vector_norm(h).item(), 1e-300):
                # An invariant subspace: continue with a fresh direction orthogonal to the basis.
                H[j + 1, j] = 0
                r = torch.randn(n, 1, generator=gen, dtype=torch.float64).to(cdtype).to(v0.device)
                r, _ = _orthogonalize(V[:, : j + 1], r)
                V[:, j + 1] = (r / torch.linalg.vector_norm(r))[:, 0]
            else:
                H[j + 1, j] = beta
                V[:, j + 1] = w[:, 0] / beta
        theta, lam, X, res = _ritz(Aop, V, H, m, kw, which, sigma, pair_tol, normA)
        done = res <= tol
        info.nconv = int(done.sum())
        if bool(done.all()):
            return lam, X, res, True
        if it == maxiter:
            break
        # Keep kw + (some of the converged count) Ritz values; the rest are exact shifts.
        keep = min(kw + max(1, min(info.nconv, (m - kw) // 2)), m - 1)
        Hm = H[:m, :m].clone()
        Q = torch.eye(m, dtype=cdtype, device=v0.device)
        eye = torch.eye(m, dtype=cdtype, device=v0.device)
        for mu in theta[keep:]:
            Qi, _ = torch.linalg.qr(Hm - mu * eye)
            Hm = Qi.mH @ Hm @ Qi
            Q = Q @ Qi
        Hm = torch.triu(Hm, -1)  # Hessenberg again (removes rounding below the subdiagonal)
        f = V[:, :m] @ Q[:, keep] * Hm[keep, keep - 1] + V[:, m] * (H[m, m - 1] * Q[m - 1, keep - 1])
        Vk = V[:, :m] @ Q[:, :keep]
        V.zero_()
        H.zero_()
        V[:, :keep] = Vk
        H[:keep, :keep] = Hm[:keep, :keep]
        # A V_k = V_k H_k + f e_k^T; the rounding part of f along V_k moves into H's last column
        f, c = _orthogonalize(V[:, :keep], f[:, None])
        H[:keep, keep - 1] += c[:, 0]
        beta = torch.linalg.vector_norm(f)
        if beta > 0:
            H[keep, keep - 1] = beta
            V[:, keep] = f[:, 0] / beta
        else:
            r = torch.randn(n, 1, generator=gen, dtype=torch.float64).to(cdtype).to(v0.device)
            r, _ = _orthogonalize(V[:, :keep], r)
            V[:, keep] = (r / torch.linalg.vector_norm(r))[:, 0]
        start = keep
    return lam, X, res, False


def _dense(A: SparseTensor, cdtype, normA):
    """Every eigenpair of the dense matrix (unit vectors) and the relative residuals."""
    D = A.to_dense()
    lam, X = torch.linalg.eig(D)
    lam, X = lam.to(cdtype), X.to(cdtype)
    X = X / torch.linalg.vector_norm(X, dim=0)
    res = torch.linalg.vector_norm(D.to(cdtype) @ X - X * lam, dim=0) / normA
    return lam, X, res


# -- the autograd primitive ------------------------------------------------------------------------------
class _EigsBackward(torch.autograd.Function):
    """Eigenvalues and eigenvectors computed outside, attached to A's values; backward works per
    eigenpair with a nonzero gradient: its left eigenvector and one adjoint solve, with one factorization."""

    @staticmethod
    def forward(ctx, values, lam, X, A, tol):
        ctx.A, ctx.tol, ctx.real = A, tol, not values.is_complex()
        ctx.save_for_backward(lam, X)
        ctx.set_materialize_grads(False)
        return lam.clone(), X.clone()

    # Eigenvalues. For a simple eigenvalue lambda with right and left eigenvectors v (A v = lambda v) and
    # u (u^H A = lambda u^H): differentiating A v = lambda v and multiplying by u^H on the left cancels
    # the dv terms, so d lambda = u^H dA v / (u^H v). A stored entry k at (r_k, c_k) moves dA by
    # dvalues_k e_{r_k} e_{c_k}^T, hence d lambda / d values_k = s_k = conj(u[r_k]) v[c_k] / (u^H v).
    # lambda is holomorphic in complex values: the vector-Jacobian product of torch's convention is
    # grad_values = sum_i g_i conj(s_i) = sum_i (g_i u / conj(u^H v))[r] conj(v[c]). For real values and
    # complex lambda, L depends on Re and Im of lambda with g = dL/dRe + i dL/dIm, so
    # dL/dvalues_k = Re(conj(g) s_k) = Re(g conj(s_k)): the same sum, real part taken.
    #
    # Eigenvectors (unit 2-norm, entry p of largest magnitude real positive). (A - lambda I) dv =
    # -(dA - dlambda I) v = -P dA v with P = I - v u^H / (u^H v), the projector along v onto the range of
    # A - lambda I. Any solution y of (A - lambda I) y = -P dA v (here y = -S P dA v with S the inverse of
    # A - mu I, mu a hair off lambda) gives dv = y + alpha v, and the gauge fixes alpha: Re(v^H dv) = 0
    # (unit norm) and Im(dv[p]) = 0 (v[p] stays real), so
    #     dv = y - Re(v^H y) v - i (Im(y[p]) / v[p]) v.
    # With g_v = dL/dRe v + i dL/dIm v, dL = Re(g_v^H dv) = Re(h^H y) for
    #     h = g_v - Re(g_v^H v) v + i (Im(g_v^H v) / v[p]) e_p      (note v^H h = 0),
    # and Re(h^H y) = Re(-q^H dA v) with q = P^H S^H h = z - u (v^H z) / (v^H u), z = S^H h: one adjoint
    # solve with the factorization that gave u. Then grad_values[k] = -q[r_k] conj(v[c_k]) (real part
    # for real values), as for the eigenvalue. u^H v -> 0 marks a defective (or repeated) eigenvalue,
    # whose derivatives do not exist: refused when |u| |v| / |u^H v| exceeds 0.1 / sqrt(eps).
    @staticmethod
    def backward(ctx, g_lam, g_X):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative would be silently missing
            raise NotImplementedError(
                "eigs: second derivatives are not supported (backward ran with create_graph=True)"
            )
        return _EigsBackward._backward(ctx, g_lam, g_X)

    @staticmethod
    @torch.no_grad()
    def _backward(ctx, g_lam, g_X):
        lam, X = ctx.saved_tensors
        device = X.device  # the sparse factorizations run on the CPU
        lam, X, A = lam.cpu(), X.cpu(), ctx.A.to(device="cpu")
        g_lam = None if g_lam is None else g_lam.cpu()
        g_X = None if g_X is None else g_X.cpu()
        r, c = A.pattern.row, A.pattern.col
        cdtype = lam.dtype
        eps = torch.finfo(cdtype).eps
        normA = torch.linalg.vector_norm(A.values).item()
        Ac = A.to(dtype=cdtype)
        W = torch.zeros_like(X)  # grad_values[k] = sum_i W[r_k, i] conj(X[c_k, i])
        limit = 0.1 / math.sqrt(eps)
        for i in range(lam.shape[0]):
            gl = None if g_lam is None or g_lam[i] == 0 else g_lam[i]
            gv = None if g_X is None or not bool((g_X[:, i] != 0).any()) else g_X[:, i]
            if gl is None and gv is None:
                continue
            li, v = complex(lam[i].item()), X[:, i]
            u, F = _left_vector(Ac, li, v, normA, ctx.tol, eps, i)
            uv = torch.vdot(u, v)
            cond = (torch.linalg.vector_norm(u) * torch.linalg.vector_norm(v) / uv.abs()).item()
            if not cond <= limit:
                raise InvalidArgumentError(
                    f"A: eigenvalue {i} (lambda = {li:.6g}) is defective or repeated (condition number "
                    f"{cond:.3g} > {limit:.3g}, left and right eigenvectors nearly orthogonal): its gradient "
                    "does not exist or cannot be computed accurately"
                )
            _check_isolated(F, u, v, normA, eps, li, i)
            if gl is not None:
                W[:, i] += gl * u / uv.conj()
            if gv is not None:
                p = int(v.abs().argmax())
                gvv = torch.vdot(gv, v)
                h = gv - gvv.real * v
                h[p] += 1j * gvv.imag / v[p].real
                z = F.solve_adjoint(h, check_finite=False)
                W[:, i] -= z - u * (torch.vdot(v, z) / torch.vdot(v, u))
        grad = (W[r] * X[c].conj()).sum(1)
        if ctx.real:
            grad = grad.real
        return grad.reshape(A.values.shape).to(device), None, None, None, None


def _left_vector(Ac: SparseTensor, lam: complex, v: torch.Tensor, normA: float, tol: float, eps: float, i):
    """A unit u with ``A^H u = conj(lam) u``: inverse iteration with the adjoint of ``A - mu I``, mu a hair
    off lam (an exact eigenvalue would make the factorization singular)."""
    delta = 100 * eps * max(normA, abs(lam), 1e-300) * complex(math.cos(0.7), math.sin(0.7))
    F = factorize(shifted(Ac, lam + delta), check_finite=False)
    u = v / torch.linalg.vector_norm(v)
    AH = Ac.H()
    for _ in range(8):
        u = F.solve_adjoint(u, check_finite=False)
        u = u / torch.linalg.vector_norm(u)
        res = torch.linalg.vector_norm(AH @ u - u * complex(lam).conjugate()).item()
        if res <= max(tol, 1e3 * eps) * normA:
            return u, F
    raise InvalidArgumentError(
        f"A: the left eigenvector of eigenvalue {i} (lambda = {lam:.6g}) did not converge (residual "
        f"{res / normA:.3g} relative to ||A||_F): the eigenvalue is clustered with another or ill-conditioned, "
        "and its gradient cannot be computed accurately"
    )


def _check_isolated(F, u: torch.Tensor, v: torch.Tensor, normA: float, eps: float, lam: complex, i: int):
    """Refuse an eigenvalue with another eigenvalue (a second copy, or a close one) within about
    ``sqrt(eps) ||A||_F``: there its derivatives do not exist or are swamped by rounding.

    The adjoint of ``(A - mu I)^{-1}`` (mu next to lambda) maps the left eigenvector u of every other
    eigenvalue lambda' to ``u' / conj(lambda' - mu)``. A start with its u-component removed by the
    spectral projector ``I - u v^H / (v^H u)`` therefore grows by about ``1 / |lambda' - lambda|`` per
    solve for the nearest other lambda' (more where A is far from normal); a semisimple copy of lambda
    shows up as a growth ~ 1 / |mu - lambda|."""
    g = torch.Generator(device="cpu").manual_seed(31337 + i)
    r = torch.randn(u.shape[0], generator=g, dtype=torch.float64).to(u.dtype)
    vu = torch.vdot(v, u)
    growth = 0.0
    for _ in range(2):
        r = r - u * (torch.vdot(v, r) / vu)
        r = r / torch.linalg.vector_norm(r)
        r = F.solve_adjoint(r, check_finite=False)
        r = r - u * (torch.vdot(v, r) / vu)
        growth = torch.linalg.vector_norm(r).item()
    limit = 1.0 / (math.sqrt(eps) * normA)
    if not growth <= limit:
        raise InvalidArgumentError(
            f"A: eigenvalue {i} (lambda = {lam:.6g}) is defective or repeated (another eigenvalue, or a copy, "
            f"within about {1 / growth:.3g}, below sqrt(eps) ||A||_F = {1 / limit:.3g}): its derivatives do "
            "not exist or cannot be computed accurately"
        )


# -- the entry point -------------------------------------------------------------------------------------------
def _as_sigma(sigma, A: SparseTensor):
    if sigma is None:
        return None
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise InvalidArgumentError(
                f"sigma: expected a number, got a tensor of shape {tuple(sigma.shape)}"
            )
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, complex)):
        raise InvalidArgumentError(f"sigma: expected a real or complex number, got {type(sigma).__name__}")
    sigma = complex(sigma)
    if not (math.isfinite(sigma.real) and math.isfinite(sigma.imag)):
        raise InvalidArgumentError(f"sigma: must be finite, got {sigma}")
    return sigma


def eigs(
    A,
    k: int = 6,
    which: str = "LM",
    sigma=None,
    return_eigenvectors: bool = True,
    *,
    tol: float = 1e-10,
    maxiter: int | None = None,
    ncv: int | None = None,
    v0: torch.Tensor | None = None,
    on_fail: str = "warn",
    return_info: bool = False,
    check_finite: bool = True,
):
    """A few eigenvalues and eigenvectors of a square (in general non-Hermitian) sparse matrix.

    Differentiable with respect to A's values through the eigenvalues and the eigenvectors.

    Parameters
    ----------
    A : SparseTensor (one matrix, not a batch), torch sparse tensor, scipy.sparse matrix, or
        ``(values, row, col, shape)``; real or complex, on any device. The Arnoldi iteration runs on A's
        device; the sparse LU factorizations (shift-invert, backward) run on the CPU, vectors moving to
        and fro.
    k : int
        How many eigenvalues: ``1 <= k <= n - 2``. For a real A, whose complex eigenvalues come in
        conjugate pairs, a pair split by the cut (possible where the order ties conjugates: every
        ``which`` but "LI" / "SI", and real sigma) is returned whole: then ``k + 1`` values, the added
        one the conjugate of its partner, with the conjugate eigenvector.
    which : {"LM", "SM", "LR", "SR", "LI", "SI", "largest", "smallest"}
        Largest / smallest magnitude, real part, imaginary part (signed: "LI" is the most positive
        imaginary parts). "largest" is "LM" and "smallest" is "SM". Without sigma, "SM" runs
        shift-invert at 0 (A must be nonsingular). With sigma, only "LM" (the eigenvalues nearest sigma).
    sigma : number, optional
        Shift-invert: Arnoldi on ``(A - sigma I)^{-1}`` through one sparse LU factorization, for the
        eigenvalues nearest sigma. A complex sigma for a real A factorizes ``A - sigma I`` in complex
        arithmetic.
    return_eigenvectors : bool
        Also return the eigenvectors (default).
    tol : float
        An eigenpair is accepted when ``||A v - lambda v|| <= tol * ||A||_F`` (unit ``v``, ``lambda`` its
        Rayleigh quotient ``v^H A v``). A tol below ``10 eps`` of the dtype is taken as ``10 eps``.
    maxiter : int, optional
        Arnoldi restarts at most (default ``10 n``).
    ncv : int, optional
        Size of the Krylov basis, ``k < ncv <= n``; default ``min(n, max(2 k + 1, 20))``. When
        ``ncv == n`` (by default: every matrix with ``n <= max(2 k + 1, 20)``) the basis would span the
        whole space, and the whole spectrum is computed densely with ``torch.linalg.eig`` instead
        (``maxiter`` and ``v0`` are then unused; ``info.method == "dense"``).
    v0 : Tensor ``(n,)``, optional
        Starting vector (default: a fixed pseudo-random vector, so that results are reproducible).
    on_fail : {"warn", "raise"}
        Without convergence: warn and return the current approximations, or raise ConvergenceError.
    return_info : bool
        Also return an :class:`EigsInfo`.
    check_finite : bool
        Refuse NaN/Inf values (default).

    Returns
    -------
    w : complex Tensor ``(k,)`` (``(k + 1,)`` for a split conjugate pair), best first: descending
        magnitude (LM), ascending magnitude (SM), descending / ascending real part (LR / SR) or imaginary
        part (LI / SI), ascending distance to sigma; for a real A, a conjugate pair comes with the positive
        imaginary part first, and an eigenvalue whose imaginary part is below ``10 tol ||A||_F`` is taken
        as real (its eigenvector too: zero imaginary parts).
    v : complex Tensor ``(n, len(w))``, unit columns ``A v[:, i] = w[i] v[:, i]``, each scaled so that its entry
        of largest magnitude is real and positive. Returned with ``return_eigenvectors=True``.
    info : EigsInfo, with ``return_info=True``.

    Notes
    -----
    Gradients flow from the eigenvalues and the eigenvectors (with the normalization above: unit norm,
    largest entry real positive) to A's values. Backward takes, for each eigenpair with a nonzero
    gradient, one factorization of ``A - lambda I``: inverse iteration with its adjoint gives the
    left eigenvector, and one more adjoint solve the eigenvector term. A defective or repeated
    eigenvalue (condition number ``|u| |v| / |u^H v|`` above ``0.1 / sqrt(eps)``) is refused with
    InvalidArgumentError naming it. Double backward is not supported.
    """
    A = as_sparse_tensor(A)
    if is_wrapped(A.values):
        raise InvalidArgumentError(
            "A: eigs does not run under torch.func transforms (vmap, grad, jacrev); differentiate its "
            "eigenvalues with torch.autograd (loss.backward() or torch.autograd.grad)"
        )
    if A.batch_shape:
        raise InvalidArgumentError(f"A: eigs takes one matrix, got a batch of shape {A.batch_shape}")
    n = A.shape[-1]
    if A.shape[-2] != n:
        raise InvalidArgumentError(f"A: eigs needs a square matrix, got shape {tuple(A.shape)}")
    k = as_int(k, "k", lo=-(2**62))
    if not 1 <= k <= n - 2:
        raise InvalidArgumentError(
            f"k: must satisfy 1 <= k <= n - 2 = {n - 2} for a ({n}, {n}) matrix, got {k}"
        )
    if not isinstance(which, str) or ALIASES.get(which, which) not in WHICH:
        raise InvalidArgumentError(f"which: expected one of {list(WHICH) + list(ALIASES)}, got {which!r}")
    which = ALIASES.get(which, which)
    sigma = _as_sigma(sigma, A)
    if sigma is not None and which != "LM":
        raise InvalidArgumentError(
            f"which: with sigma only 'LM' (the eigenvalues nearest sigma) is supported, got {which!r}"
        )
    if sigma is None and which == "SM":
        sigma = 0j
    if on_fail not in ("warn", "raise"):
        raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {on_fail!r}")
    tol = as_float(tol, "tol", lo=0.0)
    if check_finite:
        check_values_finite(A)
    real = not A.dtype.is_complex
    cdtype = _COMPLEX.get(A.dtype, A.dtype)
    eps = torch.finfo(cdtype).eps
    kw = k
    if ncv is None:
        ncv = min(n, max(2 * kw + 1, 20))
    ncv = as_int(ncv, "ncv")
    if not kw < ncv <= n:
        raise InvalidArgumentError(f"ncv: must satisfy {kw} < ncv <= n = {n} for k = {k}, got {ncv}")
    maxiter = 10 * n if maxiter is None else as_int(maxiter, "maxiter", lo=1)
    if v0 is not None:
        v0 = torch.as_tensor(v0)
        if v0.shape != (n,):
            raise InvalidArgumentError(f"v0: expected shape ({n},), got {tuple(v0.shape)}")
        if not bool(torch.isfinite(v0).all()) or not bool((v0 != 0).any()):
            raise InvalidArgumentError("v0: must be finite and nonzero")
    Ad = A.detach()
    normA = torch.linalg.vector_norm(Ad.values).item()
    tol_eff = max(tol, 10 * eps)
    info = EigsInfo(method="dense", which=which, sigma=sigma)
    if normA == 0:  # the zero matrix: every vector is an eigenvector of 0
        lam_all = torch.zeros(n, dtype=cdtype, device=A.device)
        X_all = torch.eye(n, dtype=cdtype, device=A.device)
        res_all = torch.zeros(n, dtype=cdtype, device=A.device).real
        normA = 1.0
    elif ncv == n:
        lam_all, X_all, res_all = _dense(Ad, cdtype, normA)
    else:
        if v0 is None:
            g = torch.Generator(device="cpu").manual_seed(2718)
            v0 = torch.randn(n, dtype=torch.float64, generator=g)
        v0 = v0.detach().to(device=A.device, dtype=cdtype)
        with torch.no_grad():
            Aop = _Product(Ad)
            if sigma is None:
                info.method = "arnoldi"
                op = Aop
            else:
                info.method = "shift-invert arnoldi"
                op = _ShiftInvert(Ad, sigma, cdtype)
            pair_tol = math.sqrt(tol_eff) * normA if real else None
            lam_all, X_all, res_all, ok = _arnoldi(
                Aop, op, n, kw, ncv, which, sigma, tol_eff, maxiter, v0, pair_tol, normA, info
            )
        if not ok:
            info.converged, info.reason = False, f"maxiter = {maxiter} restarts"
    # Final order (on the eigenvalues of A), the split-pair rule, and tidying.
    pair_tol = math.sqrt(tol_eff) * normA if real else None
    order = _order(lam_all, which, sigma, pair_tol)
    take = order[:k]
    lam, X, res = lam_all[take], X_all[:, take], res_all[take]
    if real and (sigma is None or sigma.imag == 0) and which not in ("LI", "SI"):
        # The order ties conjugates: a pair split by the cut is completed (A real: conj(v) goes with
        # conj(lambda)).
        missing = [
            j
            for j in range(len(take))
            if abs(lam[j].imag) > pair_tol and not bool(((lam - lam[j].conj()).abs() <= pair_tol).any())
        ]
        if missing:
            lam = torch.cat([lam, lam[missing].conj()])
            X = torch.cat([X, X[:, missing].conj()], 1)
            res = torch.cat([res, res[missing]])
            o = _order(lam, which, sigma, pair_tol)
            lam, X, res = lam[o], X[:, o], res[o]
    # Phase: the entry of largest magnitude of each vector real and positive.
    big = X.abs().argmax(0)
    ph = X[big, torch.arange(X.shape[1], device=X.device)]
    X = X * (ph.abs() / ph)
    if real:  # real eigenvalues of a real matrix, and their eigenvectors: drop rounding in the imaginary part
        isreal = lam.imag.abs() <= 10 * tol_eff * normA
        lam = torch.where(isreal, lam.real.to(cdtype), lam)
        X = torch.where(isreal, X.real.to(cdtype), X)
        X = X / torch.linalg.vector_norm(X, dim=0)
    info.residuals = [float(r) for r in res]
    info.residual = max(info.residuals)
    # The dense eigensolver is backward stable: its residuals are reported, never a failure.
    info.nconv = len(take) if info.method == "dense" else sum(r <= tol_eff for r in info.residuals)
    _report(info, k, on_fail, tol)
    if torch.is_grad_enabled() and A.values.requires_grad:
        lam, X = _EigsBackward.apply(A.values, lam, X, Ad, tol_eff)
    out = (lam, X) if return_eigenvectors else (lam,)
    if return_info:
        out = out + (info,)
    return out[0] if len(out) == 1 else out


def _sparse_tensor_eigs(self: SparseTensor, k: int = 6, which: str = "LM", sigma=None, **kwargs):
    """A few eigenvalues (and eigenvectors) of this matrix. See :func:`torch_sla.eigs`."""
    return eigs(self, k, which, sigma, **kwargs)


SparseTensor.eigs = _sparse_tensor_eigs

__all__ = ["eigs", "EigsInfo"]
