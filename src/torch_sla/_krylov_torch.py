"""Krylov solvers written with torch operations only, so they run on any device torch supports.

These are numerical kernels: they take a linear operator (the :class:`~torch_sla._operator.Operator`
protocol: ``matvec`` mapping an ``(n, k)`` tensor to an ``(n, k)`` tensor, and the inner products and
norms of its vector space; or a plain callable ``matvec`` with local reductions), a right-hand side ``b`` of shape ``(n, k)`` and return ``(x, info)``.
They hold no autograd logic (callers run them under :func:`torch.no_grad` and wrap them in an autograd
``Function``) and know nothing of :class:`~torch_sla.SparseTensor`.

Design points shared by every method:

* The ``k`` columns are independent systems solved together. Every scalar of a method (``alpha``,
  ``beta``, rotations, ...) is a tensor of shape ``(k,)``, one value per column. A column that has
  converged (or broken down) is frozen: its updates are masked with :func:`torch.where`, so its iterate
  stops changing while the other columns go on.
* No host synchronisation inside the iteration: the loop never calls ``.item()``, ``float()`` or
  ``bool()`` on a device tensor. Convergence, NaN/Inf and failure flags are read back only at the
  convergence checks, every ``check_every`` iterations, at ``maxiter``, and once before the first
  iteration (iteration 0).
* A column ``j`` has converged when ``||b_j - A x_j|| <= max(rtol * ||b_j||, atol)``. Inside the loop
  the method's own residual estimate is used; when every column meets it, the true residual is
  recomputed and, if some column does not meet the test after all, the method restarts from the current
  iterate with the true residual (residual replacement) until ``maxiter``.
* Non-convergence never raises: it is reported in :class:`KrylovInfo`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

from ._operator import CallableOperator, InnerProducts, Operator
from .errors import InvalidArgumentError

__all__ = [
    "KrylovInfo",
    "krylov_solve",
    "lsqr",
    "least_squares",
    "JacobiPreconditioner",
    "ChebyshevPreconditioner",
    "power_lmax",
]

_LOCAL = InnerProducts()  # reductions of plain callables (local vectors)


def as_operator(A, b: Tensor) -> Operator:
    """``A`` itself when it has the operator protocol's methods, else a callable wrapped with local
    reductions."""
    if all(hasattr(A, m) for m in ("matvec", "dot", "rdot", "norm", "project")):
        return A
    if callable(A):
        return CallableOperator(A, b.shape[0], b.dtype, b.device)
    raise InvalidArgumentError(
        "A: expected an operator (matvec, dot, rdot, norm, project) or a callable (n, k) -> (n, k)"
    )


_METHODS = ("cg", "bicgstab", "gmres", "minres")
_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


@dataclasses.dataclass
class KrylovInfo:
    """What a Krylov solve did.

    Attributes
    ----------
    iterations : int
        Iterations done, the maximum over the columns (a frozen column stops counting).
    residual : float
        ``max_j ||b_j - A x_j|| / ||b_j||`` with the true residual recomputed at the end
        (``||b_j||`` is taken as 1 when ``b_j == 0``). NaN when the solve hit NaN/Inf.
    converged : bool
        Whether every column met ``||b_j - A x_j|| <= max(rtol * ||b_j||, atol)`` (for :func:`lsqr`,
        its own test, see there).
    residual_history : list of float
        The relative residual estimate (maximum over the columns) at each convergence check, the first
        entry being iteration 0. Filled only when ``record_history=True``.
    reason : str
        ``"converged"``, ``"maxiter"``, ``"indefinite"`` (CG/MINRES met ``p^H A p <= 0`` or a
        preconditioner that is not positive definite), ``"breakdown"`` (a division by an exact zero in
        BiCGStab that renewing the shadow residual does not cure, or a singular Hessenberg matrix in
        GMRES) or ``"nan"`` (NaN/Inf appeared; the solve stops at the next check).
    column_residuals, column_converged, column_iterations : lists, one entry per column
        The same per column (:func:`krylov_solve`): true relative residual, whether the column met its
        test, iterations before it was frozen. Empty for :func:`lsqr`.
    """

    iterations: int = 0
    residual: float = math.nan
    converged: bool = False
    residual_history: list[float] = dataclasses.field(default_factory=list)
    reason: str = "maxiter"
    column_residuals: list[float] = dataclasses.field(default_factory=list)
    column_converged: list[bool] = dataclasses.field(default_factory=list)
    column_iterations: list[int] = dataclasses.field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# Reductions (dot products, norms, projections) come from the operator: see torch_sla._operator.


def _safe(d: Tensor) -> Tensor:
    """``d`` with exact zeros replaced by ones, for divisions whose result is masked anyway."""
    return torch.where(d == 0, torch.ones_like(d), d)


# ----------------------------------------------------------------------------------------------------
# Argument checks


def _check_b(b: object) -> Tensor:
    if not isinstance(b, Tensor):
        raise InvalidArgumentError(f"b must be a torch.Tensor of shape (n, k), got {type(b).__name__}")
    if b.dim() != 2:
        raise InvalidArgumentError(
            f"b must be 2-D of shape (n, k), got shape {tuple(b.shape)}; use b[:, None] for one right-hand side"
        )
    if b.dtype not in _DTYPES:
        raise InvalidArgumentError(
            f"b has dtype {b.dtype}; supported: float32, float64, complex64, complex128"
        )
    return b


def _is_count(value: object, minimum: int = 1) -> bool:
    """Whether ``value`` is an integer (Python, NumPy or 0-d integer tensor) of at least ``minimum``."""
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= minimum
    except TypeError:
        return False


def _check_common(rtol: float, atol: float, maxiter: int | None, check_every: int) -> None:
    if not rtol > 0 or not math.isfinite(rtol):
        raise InvalidArgumentError(f"rtol must be a finite number > 0, got {rtol!r}")
    if not atol >= 0 or not math.isfinite(atol):
        raise InvalidArgumentError(f"atol must be a finite number >= 0, got {atol!r}")
    if maxiter is not None and not _is_count(maxiter):
        raise InvalidArgumentError(f"maxiter must be a positive integer or None, got {maxiter!r}")
    if not _is_count(check_every):
        raise InvalidArgumentError(f"check_every must be a positive integer, got {check_every!r}")


def _check_x0(x0: object, b: Tensor, rows: int | None) -> Tensor:
    if not isinstance(x0, Tensor):
        raise InvalidArgumentError(f"x0 must be a torch.Tensor or None, got {type(x0).__name__}")
    k = b.shape[1]
    if x0.dim() != 2 or x0.shape[1] != k or (rows is not None and x0.shape[0] != rows):
        want = f"({rows}, {k})" if rows is not None else f"(n, {k})"
        raise InvalidArgumentError(f"x0 must have shape {want}, got {tuple(x0.shape)}")
    if x0.dtype != b.dtype:
        raise InvalidArgumentError(f"x0 has dtype {x0.dtype} but b has dtype {b.dtype}; they must match")
    if x0.device != b.device:
        raise InvalidArgumentError(f"x0 is on device {x0.device} but b is on {b.device}; they must match")
    return x0


# ----------------------------------------------------------------------------------------------------
# Iteration bookkeeping


class _Monitor:
    """Counts iterations and performs the (host-synchronising) convergence checks."""

    def __init__(
        self,
        maxiter: int,
        check_every: int,
        callback: Callable[[int, float], None] | None,
        record_history: bool,
    ) -> None:
        self.it = 0
        self.maxiter = maxiter
        self.check_every = check_every
        self.callback = callback
        self.record = record_history
        self.history: list[float] = []

    def due(self) -> bool:
        """Whether the iteration just finished is a convergence check."""
        return self.it % self.check_every == 0 or self.it >= self.maxiter

    def check(self, rel: Tensor, done: Tensor, *flags: Tensor) -> tuple[bool, bool, list[bool]]:
        """One host synchronisation: returns (all columns done, NaN/Inf seen, any() of each flag)."""
        parts = [rel.max(), done.all(), torch.isfinite(rel).all(), *(f.any() for f in flags)]
        # the real dtype of the solve: float64 may not exist on the device (MPS)
        vals = torch.stack([p.to(rel.dtype) for p in parts]).tolist()
        relmax = vals[0]
        if self.record:
            self.history.append(relmax)
        if self.callback is not None:
            self.callback(self.it, relmax)
        return bool(vals[1]), not bool(vals[2]), [bool(v) for v in vals[3:]]


class _State:
    """Per-solve quantities shared by the method kernels; every tensor has shape (k,)."""

    def __init__(self, tol: Tensor, bscale: Tensor, monitor: _Monitor) -> None:
        self.tol = tol  # max(rtol * ||b_j||, atol)
        self.bscale = bscale  # ||b_j||, or 1 where b_j == 0
        self.monitor = monitor
        self.est = torch.zeros_like(tol)  # current residual-norm estimate of each column
        self.col_its = torch.zeros(tol.shape, dtype=torch.int64, device=tol.device)
        self.rel = torch.zeros_like(tol)  # lsqr: the relative quantity compared with rtol
        self.anorm = torch.zeros_like(tol)  # lsqr: estimate of ||A||_F
        self.nonfinite = torch.zeros(tol.shape, dtype=torch.bool, device=tol.device)  # NaN/Inf seen

    def watch(self, active: Tensor, *values: Tensor) -> None:
        """Record (on the device) whether a per-column scalar of an active column is NaN or infinite."""
        for v in values:
            self.nonfinite = self.nonfinite | (active & ~torch.isfinite(v))

    def check(self, *flags: Tensor) -> tuple[bool, bool, list[bool]]:
        done, nan, values = self.monitor.check(
            self.est / self.bscale, self.est <= self.tol, self.nonfinite, *flags
        )
        return done, nan or values[0], values[1:]

    def verdict(self, flag: Tensor, name: str) -> str | None:
        """At a convergence check: why the solve stops ("nan", ``name`` when ``flag`` is set in any
        column, "converged", "maxiter"), or None to go on."""
        done, nan, (flagged,) = self.check(flag)
        if nan:
            return "nan"
        if flagged:
            return name
        if done:
            return "converged"
        if self.monitor.it >= self.monitor.maxiter:
            return "maxiter"
        return None


# ----------------------------------------------------------------------------------------------------
# Conjugate gradients


def _cg(A: Operator, b: Tensor, x: Tensor, r: Tensor, M: Operator | None, st: _State) -> str:
    mon, tol = st.monitor, st.tol
    if isinstance(M, JacobiPreconditioner):  # reuse one buffer for z instead of allocating every step
        jacobi, zbuf = M, torch.empty_like(r)

        def M(v: Tensor) -> Tensor:
            return jacobi(v, out=zbuf)

    z = r if M is None else M(r)
    rz = A.rdot(r, z)
    rnorm = A.norm(r)
    st.est = rnorm
    active = rnorm > tol
    bad = active & (rz <= 0)  # r != 0 but r^H M r <= 0: preconditioner not positive definite
    active = active & ~bad
    p = z.clone()
    while True:
        q = A.matvec(p)
        pq = A.rdot(p, q)
        st.watch(active, pq)
        neg = active & (pq <= 0)
        bad = bad | neg
        active = active & ~neg
        alpha = torch.where(active, rz / _safe(pq), 0.0)
        x.addcmul_(p, alpha)
        r.addcmul_(q, alpha, value=-1)
        if M is None:
            z = r
            rz_new = A.rdot(r, r)
            rnorm = rz_new.clamp(min=0).sqrt()
        else:
            z = M(r)
            rz_new = A.rdot(r, z)
            rnorm = A.norm(r)
        st.est = torch.where(active, rnorm, st.est)
        st.col_its += active
        going = active & (rnorm > tol)
        neg = going & (rz_new <= 0)
        bad = bad | neg
        active = going & ~neg
        beta = torch.where(active, rz_new / _safe(rz), 0.0)
        torch.addcmul(z, p, beta, out=p)  # p = z + beta p
        rz = rz_new
        mon.it += 1
        if mon.due() and (why := st.verdict(bad, "indefinite")) is not None:
            return why


# ----------------------------------------------------------------------------------------------------
# BiCGStab, right preconditioned: solves A M^{-1} u = b, x = M^{-1} u.
#
# The shadow residual rhat starts as r_0. It can become orthogonal to a nonzero residual: rhat^H r_k = 0
# or rhat^H A M^{-1} p_k = 0, typically for sparse structured systems (b = e_i where row i of A has no
# off-diagonal entry gives r_1[i] = 0, so rhat^H r_1 = 0 with rhat = r_0). The column then starts
# again from its current iterate with rhat = r_k, a new shadow residual. "breakdown" is reported only when BiCGStab cannot proceed from
# a fresh shadow residual either: rhat = r with r^H A M^{-1} r = 0, or omega = 0 (t^H s = 0, which
# makes the restarted step break down at once).


def _bicgstab(A: Operator, b: Tensor, x: Tensor, r: Tensor, M: Operator | None, st: _State) -> str:
    mon, tol = st.monitor, st.tol
    k = r.shape[1]
    rhat = r.clone()
    one = torch.ones(k, dtype=r.dtype, device=r.device)
    rho_old, alpha, omega = one, one, one
    p = torch.zeros_like(r)
    v = torch.zeros_like(r)
    rnorm = A.norm(r)
    st.est = rnorm
    active = rnorm > tol
    brk = torch.zeros_like(active)
    lost = torch.zeros_like(active)  # rhat^H A M^{-1} p was zero at the last step: renew rhat
    first = True
    while True:
        rho = A.dot(rhat, r)
        renew = lost | (active & (rho == 0))
        active = active | lost
        rhat.lerp_(r, renew.to(r.dtype))  # rhat = r in the renewed columns (exact for weights 0 and 1)
        rho = torch.where(renew, (rnorm * rnorm).to(rho.dtype), rho)
        stop = active & (rho == 0)  # ||r||^2 underflowed
        brk = brk | stop
        active = active & ~stop
        beta = torch.where(active & ~renew, (rho / _safe(rho_old)) * (alpha / _safe(omega)), 0)
        p.addcmul_(v, -omega).mul_(beta).add_(r)  # p = r + beta (p - omega v)
        phat = p if M is None else M(p)
        v = A.matvec(phat)
        rv = A.dot(rhat, v)
        st.watch(active, rv)
        stop = active & (rv == 0)
        genuine = stop if first else stop & renew  # rhat == r: no other shadow residual to try
        brk = brk | genuine
        lost = stop ^ genuine
        active = active & ~stop
        first = False
        alpha = torch.where(active, rho / _safe(rv), 0)
        r.addcmul_(v, -alpha)  # r now holds s = r - alpha v
        x.addcmul_(phat, alpha)
        snorm = A.norm(r)
        half = active & (snorm > tol)  # columns that need the second half step
        shat = r if M is None else M(r)
        t = A.matvec(shat)
        tt = A.rdot(t, t)
        ts = A.dot(t, r)
        st.watch(active, tt, ts)
        omega_new = ts / _safe(tt).to(ts.dtype)
        stop = half & (omega_new == 0)  # t^H s = 0: with rhat = s the next step breaks down as well
        brk = brk | stop
        half = half & ~stop
        om = torch.where(half, omega_new, 0)
        x.addcmul_(shat, om)
        r.addcmul_(t, -om)
        rnorm = torch.where(half, A.norm(r), snorm)
        st.est = torch.where(active, rnorm, st.est)
        st.col_its += active
        active = active & ~stop & (rnorm > tol)
        omega = torch.where(half, omega_new, omega)
        rho_old = torch.where(active, rho, rho_old)
        mon.it += 1
        if mon.due() and (why := st.verdict(brk, "breakdown")) is not None:
            return why


# ----------------------------------------------------------------------------------------------------
# MINRES (Paige & Saunders), preconditioned with a Hermitian positive definite M.


def _minres(A: Operator, b: Tensor, x: Tensor, r: Tensor, M: Operator | None, st: _State) -> str:
    mon, tol = st.monitor, st.tol
    eps = torch.finfo(st.tol.dtype).eps
    rnorm = A.norm(r)
    st.est = rnorm
    r1 = r
    y = r1 if M is None else M(r1)
    b1sq = A.rdot(r1, y)
    active = rnorm > tol
    bad = active & (b1sq <= 0)  # r != 0 but r^H M r <= 0: preconditioner not positive definite
    active = active & ~bad
    beta = b1sq.clamp(min=0).sqrt()
    zero = torch.zeros_like(beta)
    oldb, dbar, epsln, sn = zero, zero, zero, zero
    cs = -torch.ones_like(beta)
    phibar = beta
    w = torch.zeros_like(r)
    w1 = torch.zeros_like(r)
    w2 = torch.zeros_like(r)
    r2 = r1
    # With a preconditioner phibar estimates the M-norm of the residual; the 2-norm needs the residual
    # vector itself, updated by r_k = sn_k^2 r_{k-1} - phibar_k cs_k / beta_{k+1} r2_{k+1}.
    rres = None if M is None else r.clone()
    first = True
    while True:
        v = y * (1 / _safe(beta))
        y = A.matvec(v)
        if not first:
            y = torch.addcmul(y, r1, -(beta / _safe(oldb)))
        alfa = A.rdot(v, y)
        st.watch(active, alfa)
        y = torch.addcmul(y, r2, -(alfa / _safe(beta)))
        r1, r2 = r2, y
        y = r2 if M is None else M(r2)
        oldb = beta
        b2 = A.rdot(r2, y)
        st.watch(active, b2)
        neg = active & (b2 < 0)
        beta = b2.clamp(min=0).sqrt()
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta
        dbar = -cs * beta
        gamma = torch.hypot(gbar, beta).clamp(min=eps)
        cs = gbar / gamma
        sn = beta / gamma
        phi = cs * phibar
        phibar = sn * phibar
        # w_new = (v - oldeps w2 - delta w) / gamma, written into the buffer of the oldest direction
        buf = torch.mul(w2, -oldeps, out=w1)
        buf.addcmul_(w, -delta).add_(v).mul_(1 / gamma)
        w1, w2, w = w2, w, buf
        x.addcmul_(w, torch.where(active, phi, 0.0))
        if rres is None:
            est = phibar
        else:
            rres.mul_(torch.where(active, sn * sn, 1.0))
            rres.addcmul_(r2, torch.where(active, -phibar * cs / _safe(beta), 0.0))
            est = A.norm(rres)
        st.est = torch.where(active, est, st.est)
        st.col_its += active
        bad = bad | neg
        active = active & ~neg & (est > tol)
        first = False
        mon.it += 1
        if mon.due() and (why := st.verdict(bad, "indefinite")) is not None:
            return why


# ----------------------------------------------------------------------------------------------------
# GMRES(m), right preconditioned, one Arnoldi process per column (batched over the columns).
#
# The basis is stored as V[c, i, :] (column c, basis vector i) so that the projections onto all the
# previous vectors are one batched matrix-vector product per pass (classical Gram-Schmidt, done twice).
# The Givens rotations already applied are accumulated in Q (Q H = R upper triangular, g = beta Q e1),
# so that rotating a new Hessenberg column is a single batched product as well.


def _gmres_cycle_update(
    x: Tensor, V: Tensor, R: Tensor, Q: Tensor, beta: Tensor, nsteps: Tensor, J: int, M: Operator | None
) -> None:
    """x += M^{-1} V y with R y = beta Q e1 over the steps each column actually took."""
    if J == 0:
        return
    idx = torch.arange(J, device=x.device)
    keep = idx[None, :] < nsteps[:, None]  # (k, J)
    eye = torch.eye(J, dtype=R.dtype, device=R.device)
    Rm = torch.where(keep[:, :, None] & keep[:, None, :], R[:, :J, :J], eye)
    g = torch.where(keep, beta[:, None].to(Q.dtype) * Q[:, :J, 0], 0)
    y = torch.linalg.solve_triangular(Rm, g.unsqueeze(2), upper=True)
    u = torch.bmm(V[:, :J].mT, y).squeeze(2).T  # (n, k)
    if M is not None:
        u = M(u.contiguous())
    x.add_(u)


def _subtract(w: Tensor, Vj: Tensor, h: Tensor) -> None:
    """w[c] -= sum_i h[c, i] V[c, i], in place."""
    if w.device.type == "cpu" and w.shape[0] > 1:
        for c in range(w.shape[0]):
            w[c].addmv_(Vj[c].T, h[c], alpha=-1)
    else:
        w.unsqueeze(2).baddbmm_(Vj.mT, h.unsqueeze(2), alpha=-1)


def _gmres(A: Operator, b: Tensor, x: Tensor, r: Tensor, M: Operator | None, st: _State, restart: int) -> str:
    mon, tol = st.monitor, st.tol
    n, k = r.shape
    # the cycle length from the operator's (global) size: for an operator sharded over processes the
    # local n differs between ranks, and every rank must run the same iterations
    m = min(restart, A.shape[0])
    dtype, device = r.dtype, r.device
    V = torch.empty(k, m + 1, n, dtype=dtype, device=device)
    R = torch.zeros(k, m, m, dtype=dtype, device=device)
    Q = torch.empty(k, m + 1, m + 1, dtype=dtype, device=device)
    eye = torch.eye(m + 1, dtype=dtype, device=device)
    brk = torch.zeros(k, dtype=torch.bool, device=device)
    while True:  # one restart cycle per pass
        beta = A.norm(r)
        st.est = beta
        active = (beta > tol) & ~brk
        torch.div(r.T, _safe(beta)[:, None], out=V[:, 0])
        Q.copy_(eye)
        nsteps = torch.zeros(k, dtype=torch.int64, device=device)
        stop = None
        j = 0
        while j < m:
            vj = V[:, j].T
            z = vj.contiguous() if M is None else M(vj.contiguous())
            w = A.matvec(z)
            Vn = V[:, j + 1]
            Vn.copy_(w.T)
            Vj = V[:, : j + 1]
            h = A.project(Vj, Vn)
            _subtract(Vn, Vj, h)
            h2 = A.project(Vj, Vn)  # second pass: classical Gram-Schmidt is stable when done twice
            _subtract(Vn, Vj, h2)
            h = h + h2
            hn = A.norm(Vn.T)
            st.watch(active, hn)
            Vn.div_(_safe(hn)[:, None])
            # previous rotations, then the new one annihilating hn
            rot = torch.bmm(Q[:, : j + 1, : j + 1], h.unsqueeze(2)).squeeze(2)
            a = rot[:, j]
            absa = a.abs()
            den = torch.hypot(absa, hn)
            phase = torch.where(absa > 0, a / _safe(absa), 1)
            c = torch.where(den > 0, absa / _safe(den), 1.0)
            s = torch.where(den > 0, phase * (hn / _safe(den)), 0)
            R[:, :j, j] = rot[:, :j]
            R[:, j, j] = phase * den
            qj = Q[:, j, : j + 2].clone()
            qn = Q[:, j + 1, : j + 2].clone()
            cc = c[:, None].to(dtype)
            Q[:, j, : j + 2] = cc * qj + s[:, None] * qn
            Q[:, j + 1, : j + 2] = cc * qn - s.conj()[:, None] * qj
            est = beta * Q[:, j + 1, 0].abs()
            bd = active & (den == 0)
            brk = brk | bd
            step = active & ~bd
            nsteps += step
            st.col_its += step
            st.est = torch.where(step, est, st.est)
            active = step & (est > tol)
            j += 1
            mon.it += 1
            if mon.due():
                done, nan, (broke,) = st.check(brk)
                if nan:
                    return "nan"
                if broke:
                    stop = "breakdown"
                elif done:
                    stop = "converged"
                elif mon.it >= mon.maxiter:
                    stop = "maxiter"
                if stop is not None:
                    break
        _gmres_cycle_update(x, V, R, Q, beta, nsteps, j, M)
        if stop is not None:
            return stop
        r = b - A.matvec(x)


# ----------------------------------------------------------------------------------------------------
# Driver


def _residual(A: Operator, b: Tensor, x: Tensor) -> Tensor:
    return b - A.matvec(x)


def krylov_solve(
    A: Operator | Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    method: str,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: Tensor | None = None,
    restart: int = 30,
    M: Operator | None = None,
    callback: Callable[[int, float], None] | None = None,
    check_every: int = 10,
    record_history: bool = False,
) -> tuple[Tensor, KrylovInfo]:
    """Solve ``A X = B`` column by column with a Krylov method, using torch operations only.

    Parameters
    ----------
    A : Operator or callable
        The linear operator: an object of the :class:`~torch_sla._operator.Operator` protocol (its
        ``matvec`` maps an ``(n, k)`` tensor to ``A @`` it; its ``dot``, ``rdot``, ``norm`` and
        ``project`` are the reductions every method uses, so a distributed operator brings its own
        all-reduce), or a plain callable ``(n, k) -> (n, k)`` with local reductions. Its result is
        never modified in place.
    b : Tensor
        Right-hand sides, shape ``(n, k)``, float32/float64/complex64/complex128, on any device.
    method : {"cg", "bicgstab", "gmres", "minres"}
        ``"cg"``: preconditioned conjugate gradients, for Hermitian positive definite ``A``.
        ``"minres"``: preconditioned MINRES (Paige-Saunders), for Hermitian, possibly indefinite, ``A``.
        ``"bicgstab"``: right-preconditioned BiCGStab, for general ``A``.
        ``"gmres"``: restarted GMRES with right preconditioning and Givens rotations, for general ``A``.
    rtol, atol : float
        Column ``j`` has converged when ``||b_j - A x_j|| <= max(rtol * ||b_j||, atol)``. ``rtol > 0``.
    maxiter : int, optional
        Iteration limit (for GMRES, inner iterations over all cycles). Default ``10 * n``.
    x0 : Tensor, optional
        Initial guess, same shape, dtype and device as ``b``. Default zero.
    restart : int
        GMRES cycle length (capped at ``n``); ignored by the other methods.
    M : callable, optional
        Preconditioner application ``z = M^{-1} r``, ``(n, k) -> (n, k)``, a fixed linear operator. For
        ``"cg"`` and ``"minres"`` it must be Hermitian positive definite.
    callback : callable, optional
        Called as ``callback(iteration, relative_residual)`` at each convergence check (iteration 0
        included) with the largest relative residual estimate over the columns.
    check_every : int
        Convergence (and NaN/Inf) is tested, with one host synchronisation, every ``check_every``
        iterations and at ``maxiter``. Columns are frozen as soon as they converge regardless.
    record_history : bool
        Record the relative residual at each check in ``info.residual_history``.

    Returns
    -------
    x : Tensor
        The solutions, shape ``(n, k)``.
    info : KrylovInfo
        Iterations, final true relative residual, convergence flag and reason.

    Raises
    ------
    InvalidArgumentError
        For a bad ``b``, ``method``, ``rtol``, ``atol``, ``maxiter``, ``restart``, ``check_every``,
        ``x0``, ``matvec`` or ``M``. Not converging is not an error: see ``info``.
    """
    b = _check_b(b)
    if method not in _METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(_METHODS)}; got {method!r}")
    _check_common(rtol, atol, maxiter, check_every)
    if not _is_count(restart):
        raise InvalidArgumentError(f"restart must be a positive integer, got {restart!r}")
    A = as_operator(A, b)
    if M is not None and not callable(M):
        raise InvalidArgumentError("M (the preconditioner) must be callable or None")
    n, k = b.shape
    if x0 is not None:
        _check_x0(x0, b, n)
    if k == 0 or A.shape[0] == 0:  # the global size: a rank may hold no rows of a sharded operator
        x = torch.zeros_like(b) if x0 is None else x0.clone()
        return x, KrylovInfo(
            iterations=0,
            residual=0.0,
            converged=True,
            reason="converged",
            column_residuals=[0.0] * k,
            column_converged=[True] * k,
            column_iterations=[0] * k,
        )
    if maxiter is None:
        maxiter = 10 * A.shape[0]
    maxiter, check_every, restart = (
        operator.index(maxiter),
        operator.index(check_every),
        operator.index(restart),
    )

    monitor = _Monitor(maxiter, check_every, callback, record_history)
    bnorm = A.norm(b)
    bscale = torch.where(bnorm == 0, torch.ones_like(bnorm), bnorm)
    st = _State(torch.clamp(rtol * bnorm, min=atol), bscale, monitor)

    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.clone()
        r = _residual(A, b, x)
        if r.shape != b.shape:
            raise InvalidArgumentError(f"matvec returned shape {tuple(r.shape)} for input {tuple(x.shape)}")
    st.est = A.norm(r)
    done, nan, _ = st.check()
    verified = False  # whether r is the true residual of the current x
    if nan:
        status = "nan"
    elif done:
        status, verified = "converged", True
    else:
        while True:
            if method == "cg":
                status = _cg(A, b, x, r, M, st)
            elif method == "bicgstab":
                status = _bicgstab(A, b, x, r, M, st)
            elif method == "minres":
                status = _minres(A, b, x, r, M, st)
            else:
                status = _gmres(A, b, x, r, M, st, restart)
            if status != "converged" or monitor.it >= maxiter:
                break
            # every column converged by the method's own estimate: confirm with the true residual
            r = _residual(A, b, x)
            st.est = A.norm(r)
            verified = True
            if bool((st.est <= st.tol).all()):
                break
    rnorm = st.est if verified else A.norm(_residual(A, b, x))
    rel, ok = (rnorm / st.bscale).to(st.tol.dtype), rnorm <= st.tol
    # one host synchronisation: the summary, then the same per column
    vals = torch.cat(
        [
            torch.stack([rel.max(), ok.all().to(st.tol.dtype), st.col_its.max().to(st.tol.dtype)]),
            rel,
            ok.to(st.tol.dtype),
            st.col_its.to(st.tol.dtype),
        ]
    ).tolist()
    info = _info(vals[:3], status, monitor)
    info.column_residuals = vals[3 : 3 + k]
    info.column_converged = [bool(c) and status != "nan" for c in vals[3 + k : 3 + 2 * k]]
    info.column_iterations = [int(c) for c in vals[3 + 2 * k :]]
    return x, info


def _info(vals: list[float], status: str, monitor: _Monitor) -> KrylovInfo:
    """KrylovInfo from [final relative residual, all converged, iterations] and the loop's status."""
    converged = bool(vals[1]) and status != "nan"
    return KrylovInfo(
        iterations=int(vals[2]),
        residual=vals[0],
        converged=converged,
        residual_history=monitor.history,
        reason="converged" if converged else ("maxiter" if status == "converged" else status),
    )


# ----------------------------------------------------------------------------------------------------
# LSQR (Paige & Saunders) for rectangular least-squares problems


def _lsqr_run(
    A: Operator,
    x: Tensor,
    r: Tensor,
    atr: Tensor,
    st: _State,
    rtol: float,
) -> str:
    mon, tol = st.monitor, st.tol
    beta = A.norm(r)
    u = r / _safe(beta)
    alpha = A.norm(atr) / _safe(beta)
    v = atr / (_safe(beta) * _safe(alpha))
    w = v.clone()
    phibar, rhobar = beta, alpha
    anorm2 = torch.zeros_like(beta)
    active = (beta > tol) & (alpha > 0)
    while True:
        u = torch.addcmul(A.matvec(v), u, -alpha)
        beta = A.norm(u)
        u.mul_(1 / _safe(beta))
        anorm2 = anorm2 + torch.where(beta > 0, alpha * alpha + beta * beta, 0.0)
        v = torch.addcmul(A.rmatvec(u), v, -beta)
        alpha = A.norm(v)
        st.watch(active, beta, alpha)
        v.mul_(1 / _safe(alpha))
        rho = torch.hypot(rhobar, beta)
        cs = rhobar / _safe(rho)
        sn = beta / _safe(rho)
        theta = sn * alpha
        rhobar = -cs * alpha
        phi = cs * phibar
        phibar = sn * phibar
        x.addcmul_(w, torch.where(active, phi / _safe(rho), 0.0))
        w = torch.addcmul(v, w, -theta / _safe(rho))
        anorm = anorm2.sqrt()
        st.anorm = torch.maximum(st.anorm, anorm)
        arnorm = alpha * cs.abs() * phibar  # ||A^H r||
        ls = arnorm / _safe(anorm * phibar)
        rel = torch.minimum(phibar / st.bscale, ls)
        st.est = torch.where(active, phibar, st.est)
        st.rel = torch.where(active, rel, st.rel)
        st.col_its += active
        active = active & (phibar > tol) & (arnorm > rtol * anorm * phibar)
        mon.it += 1
        if mon.due():
            done, nan, (nonfinite,) = mon.check(st.rel, ~active, st.nonfinite)
            if nan or nonfinite:
                return "nan"
            if done:
                return "converged"
            if mon.it >= mon.maxiter:
                return "maxiter"


def lsqr(
    A: Operator | tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]],
    b: Tensor,
    *,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: Tensor | None = None,
    callback: Callable[[int, float], None] | None = None,
    check_every: int = 10,
    record_history: bool = False,
) -> tuple[Tensor, KrylovInfo]:
    """Least-squares solutions ``min ||A x_j - b_j||`` for a rectangular ``A`` (m, n), by LSQR.

    Golub-Kahan bidiagonalization with Paige and Saunders' recurrences, one per column, batched.

    Parameters
    ----------
    A : Operator or (matvec, rmatvec)
        An operator whose ``matvec`` maps ``(n, k)`` to ``(m, k)`` and ``rmatvec`` (``A^H @``) maps
        ``(m, k)`` to ``(n, k)``, with the reductions (``norm``) of its vector spaces; or a pair of
        callables with local reductions.
    b : Tensor
        Right-hand sides, shape ``(m, k)``.
    rtol, atol : float
        Column ``j`` has converged when either ``||r_j|| <= max(rtol * ||b_j||, atol)`` (a consistent
        system is solved) or ``||A^H r_j|| <= rtol * ||A|| * ||r_j||`` (``x_j`` is a least-squares
        solution to relative accuracy ``rtol``), where ``r_j = b_j - A x_j`` and ``||A||`` is the
        Frobenius-norm estimate of the bidiagonal matrix built so far. The final test uses the true
        ``r_j`` and ``A^H r_j``.
    maxiter : int, optional
        Iteration limit (each iteration applies ``A`` and ``A^H`` once). Default ``10 * n``.
    x0 : Tensor, optional
        Initial guess, shape ``(n, k)``, same dtype and device as ``b``.
    callback : callable, optional
        ``callback(iteration, value)`` at each check, ``value`` being the largest over the columns of
        ``min(||r_j|| / ||b_j||, ||A^H r_j|| / (||A|| ||r_j||))``, the quantity compared with ``rtol``.
    check_every : int
        Host synchronisation (convergence and NaN/Inf test) every ``check_every`` iterations.
    record_history : bool
        Record ``value`` above at each check in ``info.residual_history``.

    Returns
    -------
    x : Tensor
        Shape ``(n, k)``.
    info : KrylovInfo
        ``info.residual`` is ``max_j ||b_j - A x_j|| / ||b_j||``, which is not small for an inconsistent
        system; ``info.converged`` follows the test above.
    """
    b = _check_b(b)
    _check_common(rtol, atol, maxiter, check_every)
    if isinstance(A, tuple):
        if len(A) != 2 or not all(callable(f) for f in A):
            raise InvalidArgumentError("A: expected an operator or a pair of callables (matvec, rmatvec)")
        A = _Rectangular(*A)
    if x0 is not None:
        _check_x0(x0, b, None)
    mrows, k = b.shape
    bnorm = A.norm(b)
    bscale = torch.where(bnorm == 0, torch.ones_like(bnorm), bnorm)
    if x0 is None:
        r = b.clone()
        atr = A.rmatvec(r)
        x = torch.zeros_like(atr)
    else:
        x = x0.clone()
        r = b - A.matvec(x)
        atr = A.rmatvec(r)
    n = x.shape[0]
    if b.numel() == 0 or n == 0:
        return x, KrylovInfo(iterations=0, residual=0.0, converged=True, reason="converged")
    if maxiter is None:
        maxiter = 10 * n
    maxiter, check_every = operator.index(maxiter), operator.index(check_every)
    monitor = _Monitor(maxiter, check_every, callback, record_history)
    st = _State(torch.clamp(rtol * bnorm, min=atol), bscale, monitor)

    def true_done(rnorm: Tensor, atr: Tensor) -> Tensor:
        return (rnorm <= st.tol) | (A.norm(atr) <= rtol * st.anorm * rnorm)

    rnorm = A.norm(r)
    st.est = rnorm
    st.rel = rnorm / bscale
    done, nan, _ = monitor.check(st.rel, true_done(rnorm, atr))
    if nan:
        status = "nan"
    elif done:
        status = "converged"
    else:
        while True:
            status = _lsqr_run(A, x, r, atr, st, rtol)
            r = b - A.matvec(x)
            atr = A.rmatvec(r)
            rnorm = A.norm(r)
            if status != "converged" or monitor.it >= maxiter or bool(true_done(rnorm, atr).all()):
                break
    vals = torch.stack(
        [
            (rnorm / bscale).max().to(st.tol.dtype),
            true_done(rnorm, atr).all().to(st.tol.dtype),
            st.col_its.max().to(st.tol.dtype),
        ]
    ).tolist()
    return x, _info(vals, status, monitor)


class _Rectangular(InnerProducts):
    """A rectangular operator from two callables, with local reductions (for :func:`lsqr`)."""

    def __init__(self, matvec: Callable[[Tensor], Tensor], rmatvec: Callable[[Tensor], Tensor]):
        self.matvec, self.rmatvec = matvec, rmatvec


least_squares = lsqr


# ----------------------------------------------------------------------------------------------------
# Preconditioners


class JacobiPreconditioner:
    """Diagonal (Jacobi) preconditioner: ``z = r / diag``, column by column.

    Parameters
    ----------
    diag : Tensor
        The diagonal of ``A``, shape ``(n,)``. For CG and MINRES it must be real and positive (the
        solver reports ``"indefinite"`` otherwise).

    Raises
    ------
    InvalidArgumentError
        If ``diag`` is not 1-D or has a zero or non-finite entry.
    """

    def __init__(self, diag: Tensor) -> None:
        if not isinstance(diag, Tensor) or diag.dim() != 1:
            raise InvalidArgumentError("preconditioner: Jacobi needs the diagonal as a 1-D tensor")
        bad = (~torch.isfinite(diag)) | (diag == 0)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise InvalidArgumentError(
                f"preconditioner: Jacobi needs a nonzero finite diagonal, but diag[{i}] = {diag[i].item()}"
            )
        self.inv_diag = diag.reciprocal()
        self._col = self.inv_diag[:, None]

    def __call__(self, r: Tensor, out: Tensor | None = None) -> Tensor:
        """``r / diag[:, None]``, written into ``out`` when given."""
        col = self._col
        if col.dtype != r.dtype or col.device != r.device:
            if col.is_complex() and not r.is_complex():
                raise InvalidArgumentError(
                    "preconditioner: a complex Jacobi diagonal cannot be applied to a real vector"
                )
            col = self._col = col.to(dtype=r.dtype, device=r.device)
        if out is None:
            return r * col
        return torch.mul(r, col, out=out)


def power_lmax(
    A: Operator | Callable[[Tensor], Tensor],
    n: int,
    dtype: torch.dtype,
    device: torch.device | str,
    iters: int = 20,
    inner: Operator | None = None,
) -> float:
    """Estimate the largest eigenvalue of a Hermitian positive definite ``A`` (or of ``B A``).

    Power iteration from a fixed pseudo-random start, returning the Rayleigh quotient
    ``(A v)^H B (A v) / (v^H A v)`` of ``B A`` in the ``A`` inner product (``B = inner``, or the
    identity). It approaches the largest eigenvalue from below.

    Parameters
    ----------
    A : Operator or callable
        ``A @``: ``(n, 1) -> (n, 1)``, with the operator's reductions (local for a callable).
    n : int
        Order of ``A``.
    dtype, device
        Of the vectors to use.
    iters : int
        Number of power iterations (each one application of ``A`` and of ``inner``).
    inner : callable, optional
        A Hermitian positive definite preconditioner ``B``; the estimate is then for ``B A``.

    Returns
    -------
    float
        The estimate (one host synchronisation).

    Raises
    ------
    InvalidArgumentError
        For bad ``n``/``iters``, or when the estimate is not a positive finite number (``A`` not
        positive definite).
    """
    if not _is_count(n):
        raise InvalidArgumentError(f"n must be a positive integer, got {n!r}")
    if not _is_count(iters):
        raise InvalidArgumentError(f"iters must be a positive integer, got {iters!r}")
    n, iters = operator.index(n), operator.index(iters)
    gen = torch.Generator().manual_seed(12345)
    real = torch.float32 if dtype in (torch.float32, torch.complex64) else torch.float64
    v = torch.randn(n, 1, generator=gen, dtype=real)
    if dtype.is_complex:
        v = torch.complex(v, torch.randn(n, 1, generator=gen, dtype=real))
    v = v.to(device=device, dtype=dtype)
    A = as_operator(A, v)
    v = v / A.norm(v)
    lam = torch.zeros(1, dtype=real, device=v.device)
    for _ in range(iters):
        w = A.matvec(v)
        z = w if inner is None else inner(w)
        lam = A.rdot(w, z) / A.rdot(v, w)
        v = z / _safe(A.norm(z))
    value = float(lam[0])
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(
            f"A: the power iteration gave {value}; the operator is not Hermitian positive definite"
        )
    return value


class ChebyshevPreconditioner:
    """Chebyshev polynomial preconditioner ``p(A) ~ A^{-1}`` for Hermitian positive definite ``A``.

    Applying it runs ``degree`` steps of the Chebyshev semi-iteration on ``A z = r`` from ``z = 0``
    (preconditioned by ``inner`` if given), for the eigenvalue interval ``[lmin, lmax]`` of ``A`` (or of
    ``inner A``). The result is a fixed polynomial in ``A`` applied to ``r``: a linear, Hermitian
    operator, positive definite for every eigenvalue in ``(0, lmax + lmin)``, so it is valid inside CG
    and MINRES. Each application costs ``degree - 1`` products with ``A`` and ``degree`` with ``inner``.

    Parameters
    ----------
    A : Operator or callable
        ``A @``: ``(n, k) -> (n, k)`` (an operator brings its own reductions for the estimate).
    n : int
        Order of ``A``.
    dtype, device
        For the eigenvalue estimate.
    degree : int
        Number of Chebyshev steps (>= 1; 1 is a scaled ``inner``).
    lmin, lmax : float, optional
        The eigenvalue interval targeted. By default ``lmax`` is 1.1 times the estimate of
        :func:`power_lmax` (``power_iters`` iterations, on ``inner A`` when ``inner`` is given) and
        ``lmin = lmax / 30``: eigenvalues below ``lmin`` are left to the outer Krylov method.
    inner : callable, optional
        An inner Hermitian positive definite preconditioner, e.g. :class:`JacobiPreconditioner`.
    power_iters : int
        Power iterations for the ``lmax`` estimate.
    """

    def __init__(
        self,
        A: Operator | Callable[[Tensor], Tensor],
        n: int,
        dtype: torch.dtype,
        device: torch.device | str,
        degree: int = 4,
        lmin: float | None = None,
        lmax: float | None = None,
        inner: Operator | None = None,
        power_iters: int = 20,
    ) -> None:
        if not _is_count(degree):
            raise InvalidArgumentError(
                f"preconditioner: Chebyshev degree must be an integer >= 1, got {degree!r}"
            )
        if lmax is None:
            lmax = 1.1 * power_lmax(A, n, dtype, device, iters=power_iters, inner=inner)
        if lmin is None:
            lmin = lmax / 30.0
        try:
            lmin, lmax = float(lmin), float(lmax)
        except (TypeError, ValueError):
            lmin = lmax = math.nan
        if not (math.isfinite(lmax) and math.isfinite(lmin) and 0 < lmin < lmax):
            raise InvalidArgumentError(
                f"preconditioner: Chebyshev needs 0 < lmin < lmax, got lmin={lmin!r}, lmax={lmax!r}"
            )
        self.matvec = A.matvec if hasattr(A, "matvec") else A
        self.inner = inner
        self.degree = operator.index(degree)
        self.lmin = float(lmin)
        self.lmax = float(lmax)
        theta = (self.lmax + self.lmin) / 2
        delta = (self.lmax - self.lmin) / 2
        sigma = theta / delta
        # d_0 = B r / theta; d_i = c_i d_{i-1} + e_i B res_i with rho_i = 1 / (2 sigma - rho_{i-1})
        self._first = 1.0 / theta
        self._coef: list[tuple[float, float]] = []
        rho = 1.0 / sigma
        for _ in range(self.degree - 1):
            rho_new = 1.0 / (2.0 * sigma - rho)
            self._coef.append((rho_new * rho, 2.0 * rho_new / delta))
            rho = rho_new

    def __call__(self, r: Tensor) -> Tensor:
        inner = self.inner
        d = (r if inner is None else inner(r)) * self._first
        if self.degree == 1:
            return d
        z = d.clone()
        res = r - self.matvec(d)
        last = len(self._coef) - 1
        for i, (c, e) in enumerate(self._coef):
            br = res if inner is None else inner(res)
            d.mul_(c).add_(br, alpha=e)
            z.add_(d)
            if i < last:
                res = res - self.matvec(d)
        return z
