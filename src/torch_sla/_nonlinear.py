"""Nonlinear systems ``F(u, theta) = 0``: Newton on a sparse colored Jacobian with the library's linear
solvers, Jacobian-free Newton-Krylov, Picard and Anderson iterations, and one autograd node per solve
that differentiates the solution implicitly (one adjoint linear solve and one VJP of the residual).

A leading dimension of ``u0`` is a batch of independent problems: member ``b`` of ``residual_fn(u)``
depends on ``u[b]`` only. The members share the Jacobian's pattern, its coloring and the symbolic analysis
of its factorization; each converges (and stops) on its own.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref
from collections.abc import Callable

import torch

from ._checks import as_float, as_int, check_finite
from ._coloring import (
    ColoredJacobian,
    as_pattern,
    batch_residual,
    check_unknowns,
    detect_pattern,
    with_diagonal,
)
from ._direct import Factorization, factorize_with
from ._iterative import KrylovSolver
from ._krylov_torch import krylov_solve
from ._operator import CallableOperator
from ._options import KrylovOptions
from ._registry import plan
from ._sparse_tensor import SparseTensor, as_sparse_tensor
from .errors import ConvergenceError, InvalidArgumentError, SingularMatrixError

METHODS = ("newton", "jfnk", "picard", "anderson")
_ARMIJO_C = 1e-4  # sufficient decrease: ||F(u + t du)||^2 <= (1 - 2 c t s) ||F(u)||^2
_MAX_BACKTRACKS = 30
_EW_GAMMA, _EW_ALPHA, _EW_MAX = 0.9, 2.0, 0.9  # Eisenstat-Walker choice 2

# Patterns detected by probing, per residual function, size and dtype (the probe costs n products).
_DETECTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class NonlinearInfo:
    """What a nonlinear solve did (the worst member of a batch for the scalars).

    ``residual_history[k]`` is ``max|F|`` after ``k`` iterations (``[0]``: at ``u0``), the largest over
    the members; ``linear_iterations[k]`` and ``line_search_steps[k]`` are the Krylov iterations and the
    backtracking steps of iteration ``k + 1`` (0 for a direct linear solve or a full step).
    ``member_iterations`` / ``member_converged`` are per batch member. ``jacobian_products`` counts the
    forward-mode products spent on assembling Jacobians (``n_colors`` per assembly), ``factorizations``
    the sparse factorizations. ``adjoint`` is filled by backward: the iterations and relative residual of
    the adjoint solve."""

    method: str
    iterations: int = 0
    converged: bool = False
    reason: str = ""
    residual: float = math.nan
    residual_history: list[float] = dataclasses.field(default_factory=list)
    linear_iterations: list[int] = dataclasses.field(default_factory=list)
    line_search_steps: list[int] = dataclasses.field(default_factory=list)
    member_iterations: list[int] = dataclasses.field(default_factory=list)
    member_converged: list[bool] = dataclasses.field(default_factory=list)
    jacobian_products: int = 0
    n_colors: int | None = None
    factorizations: int = 0
    linear_solver: str = ""
    adjoint: dict | None = None


def _report(info: NonlinearInfo, on_fail: str, target: float) -> None:
    if info.converged:
        return
    bad = [i for i, ok in enumerate(info.member_converged) if not ok]
    which = (
        f" (batch members {bad[:10]}{'...' if len(bad) > 10 else ''})"
        if len(info.member_converged) > 1
        else ""
    )
    msg = (
        f"nonlinear_solve: {info.method} did not converge{which}: {info.reason} after {info.iterations} "
        f"iterations, max|F| = {info.residual:.3g} (target {target:.3g}). Raise max_iter, start closer to a "
        "solution, or try another method."
    )
    if on_fail == "raise":
        raise ConvergenceError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


class _Space:
    """Reductions over the unknowns of ``(B, n)`` stacks, one value per member: local, or, for a residual
    whose unknowns are sharded over processes (``distributed``: an object with ``all_reduce(t, op)`` and
    ``agree(error, what)``, e.g. a :class:`~torch_sla.DSparseTensor`), all-reduced over the ranks, so that
    every rank takes the same decisions."""

    def __init__(self, distributed=None):
        self.dist = distributed

    def _reduce(self, t: torch.Tensor, op: str) -> torch.Tensor:
        return t if self.dist is None else self.dist.all_reduce(t, op)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduce(x.sum(1), "sum")

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.dist is None:
            return x.norm(dim=1)
        return self.sum(x * x).clamp_min(0).sqrt()

    def amax(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduce(x.amax(1) if x.shape[1] else x.new_zeros(x.shape[0]), "max")

    def any(self, flags: torch.Tensor) -> torch.Tensor:
        """Per member: whether any rank flags it."""
        return self._reduce(flags.to(torch.float64), "max") > 0

    def max_abs(self, F: torch.Tensor) -> torch.Tensor:
        """max|F| per member (NaN for a member with a NaN or Inf on any rank)."""
        finite = torch.isfinite(F).all(1)
        r = self.amax(torch.where(torch.isfinite(F), F.abs(), torch.zeros_like(F)))
        return torch.where(~self.any(~finite), r, torch.full_like(r, math.nan))

    def size(self, n: int) -> int:
        return n if self.dist is None else int(self._reduce(torch.tensor([float(n)]), "sum"))

    def check(self, error: Exception | None, what: str) -> None:
        if self.dist is not None:
            self.dist.agree(error, what)
        elif error is not None:
            raise error

    def operator(self, matvec, n_local: int, dtype, device):
        """A callable ``(n_local, k) -> (n_local, k)`` as an operator with this space's inner products."""
        if self.dist is None:
            return matvec
        return _DistributedCallable(matvec, self.size(n_local), dtype, device, self.dist)

    def lstsq(self, DF: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """argmin_gamma ||DF gamma - f|| per member, DF (B, n, j), f (B, n, 1)."""
        if self.dist is None:
            return torch.linalg.lstsq(DF, f, driver="gelsd").solution
        G = self._reduce(DF.mT @ DF, "sum")  # the normal equations, all-reduced (j x j)
        h = self._reduce(DF.mT @ f, "sum")
        return torch.linalg.lstsq(G, h, driver="gelsd").solution


class _DistributedCallable(CallableOperator):
    """A matrix-free operator on vectors sharded over processes: local products, all-reduced inner
    products, the global size (so that every rank runs the same Krylov iterations)."""

    def __init__(self, matvec, n_global: int, dtype, device, dist):
        super().__init__(matvec, n_global, dtype, device)
        self._dist = dist

    def reduce(self, partial: torch.Tensor) -> torch.Tensor:
        return self._dist.all_reduce(partial, "sum")


class _Problem:
    """The residual as a ``(B, n)`` map with plain (detached) parameters, and its Jacobian: the user's
    ``jacobian_fn``, or colored assembly on a given, cached or detected pattern."""

    def __init__(self, residual_fn, u0, params, jacobian_fn, pattern, check_pattern, space=None):
        self.space = space if space is not None else _Space()
        self.residual_fn = residual_fn
        self.params = tuple(p.detach() if isinstance(p, torch.Tensor) else p for p in params)
        self.batched = u0.dim() == 2
        self.shape = tuple(u0.shape)
        self.fn = batch_residual(residual_fn, self.params, u0)
        self.U0 = (u0 if self.batched else u0.unsqueeze(0)).detach().clone()
        self.B, self.n = self.U0.shape
        self.n_global = self.space.size(self.n)
        self.jacobian_fn = jacobian_fn
        self._pattern_arg = pattern
        self.check_pattern = check_pattern
        self.colored: ColoredJacobian | None = None
        self.evaluations = 0
        self.factorizations = 0

    def user(self, U: torch.Tensor) -> torch.Tensor:
        return U if self.batched else U[0]

    def F(self, U: torch.Tensor, k: int, *, must_be_finite: bool = True) -> torch.Tensor:
        error = None
        if k == 0 and torch.is_grad_enabled():
            # The first evaluation runs with autograd on, to catch tensors that require grad reaching the
            # residual other than through params: they would get no gradient, silently.
            out = self.fn(U)
            if out.requires_grad:
                error = InvalidArgumentError(
                    "residual_fn: its result requires grad although the parameters were passed detached: "
                    "it uses tensors that require grad other than through params (captured in a closure?). "
                    "Pass them as params, so that they get gradients"
                )
            self.space.check(error, "residual_fn")
            out = out.detach()
        else:
            with torch.no_grad():
                out = self.fn(U)
        self.evaluations += 1
        if must_be_finite and bool((bad_members := self.space.any(~torch.isfinite(out).all(1))).any()):
            bad = torch.nonzero(bad_members).flatten().tolist()
            where = f" (batch members {bad[:10]})" if self.batched else ""
            raise InvalidArgumentError(
                f"residual_fn: returned NaN/Inf at iteration {k}{where}; check the residual near these "
                "iterates (or a line search that would avoid them: line_search='armijo')"
            )
        return out

    # -- Jacobians --------------------------------------------------------------------------------------
    def _colored(self) -> ColoredJacobian:
        if self.colored is None:
            if self._pattern_arg is not None:
                pat = with_diagonal(as_pattern(self._pattern_arg, self.n))
            else:
                key = (self.n, self.U0.dtype)
                cached = _weak_get(self.residual_fn).get(key)
                if cached is None:
                    cached = detect_pattern(self.fn, self.U0)
                    _weak_get(self.residual_fn)[key] = cached
                pat = cached
            self.colored = ColoredJacobian(pat)
        return self.colored

    @property
    def products(self) -> int:
        return 0 if self.colored is None else self.colored.products

    @property
    def n_colors(self) -> int | None:
        return None if self.colored is None else self.colored.n_colors

    def jacobian(self, U: torch.Tensor, k: int) -> SparseTensor:
        """J(U): a SparseTensor with values (B, nnz) for a batch, (nnz,) otherwise."""
        if self.jacobian_fn is not None:
            J = self._user_jacobian(U)
        else:
            J = self._colored().matrix(self.fn, U, self.batched)
        if self.check_pattern:
            self._check_jacobian(J, U, k)
        if not bool(torch.isfinite(J.values).all()):
            raise InvalidArgumentError(f"residual_fn: its Jacobian has NaN/Inf entries at iteration {k}")
        return J

    def _user_jacobian(self, U: torch.Tensor) -> SparseTensor:
        with torch.no_grad():
            J = self.jacobian_fn(self.user(U), *self.params)
        try:
            J = as_sparse_tensor(J)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"jacobian_fn: must return a SparseTensor (or a torch/scipy sparse matrix), got {type(J).__name__}"
            ) from exc
        want = ((self.B,) if self.batched else ()) + (self.n, self.n)
        if tuple(J.shape) != want or J.dtype != U.dtype:
            raise InvalidArgumentError(
                f"jacobian_fn: must return a {want} matrix of dtype {U.dtype} (values with the batch "
                f"dimension in front for a batch), got {tuple(J.shape)} {J.dtype}"
            )
        return J.detach()

    def _check_jacobian(self, J: SparseTensor, U: torch.Tensor, k: int) -> None:
        """One extra product with a random vector: J v on the pattern must match the true J v."""
        gen = torch.Generator().manual_seed(4321 + k)
        v = torch.randn(U.shape, generator=gen, dtype=U.dtype).to(U.device)
        exact = torch.func.jvp(self.fn, (U,), (v,))[1]
        pat = J.pattern
        vals = J.values.reshape(self.B, -1)
        on_pattern = torch.zeros_like(v).index_add_(1, pat.row, vals * v[:, pat.col])
        scale = torch.zeros_like(v).index_add_(1, pat.row, (vals * v[:, pat.col]).abs()) + exact.abs()
        eps = torch.finfo(U.dtype).eps
        err = (exact - on_pattern).abs() - 1e3 * eps * (scale + scale.amax(1, keepdim=True) * 1e-3)
        if bool((err > 0).any()):
            b, i = (int(t) for t in torch.nonzero(err > 0)[0])
            where = f"at iteration {k}, row {i}" + (f" of batch member {b}" if self.batched else "")
            diff = float((exact - on_pattern)[b, i].abs())
            if self.jacobian_fn is not None:
                raise InvalidArgumentError(
                    f"jacobian_fn: its matrix is not the residual's Jacobian: {where} of J v differs by "
                    f"{diff:.3g} from the exact product (forward-mode AD of residual_fn)"
                )
            raise InvalidArgumentError(
                f"pattern: misses nonzeros of the Jacobian: {where} of J v differs by {diff:.3g} from the "
                "product on the pattern; pass the Jacobian's full pattern (or pattern=None to detect it)"
            )

    def factorize(self, J: SparseTensor, backend: str, method: str, k: int, choice=None) -> Factorization:
        choice = plan(J, backend, method) if choice is None else choice
        if choice.kind != "direct":
            raise InvalidArgumentError(
                f"linear_method: a direct method is needed here, got {choice.method!r} on {choice.backend!r}"
            )
        try:
            fact = factorize_with(J, choice)
        except SingularMatrixError as exc:
            raise SingularMatrixError(f"the Jacobian is singular at iteration {k}: {exc}") from exc
        self.factorizations += 1
        return fact


def _weak_get(fn) -> dict:
    """The detected-pattern cache entry of a residual function (a throwaway dict when it takes no weak
    reference)."""
    try:
        return _DETECTED.setdefault(fn, {})
    except TypeError:
        return {}


def _forcing(eta_prev: float, ratio: float, floor: float) -> float:
    """Eisenstat-Walker (choice 2) forcing term from ratio = ||F_k|| / ||F_{k-1}||: gamma ratio^alpha,
    kept up to gamma eta_prev^alpha when that is above 0.1 (no sudden drop), at least ``floor`` (no
    oversolving near the tolerance), at most eta_max."""
    eta = _EW_GAMMA * ratio**_EW_ALPHA
    guard = _EW_GAMMA * eta_prev**_EW_ALPHA
    if guard > 0.1:
        eta = max(eta, guard)
    return min(max(eta, floor), _EW_MAX)


class _Newton:
    """Newton and JFNK: a direction from a linear solve, then an Armijo backtracking line search."""

    def __init__(self, prob: _Problem, opts: dict):
        self.prob, self.opts = prob, opts
        self.method = opts["method"]
        self.last_factor: Factorization | None = None  # the last Jacobian factorization (stale at u*)
        self.precond_factor: Factorization | None = None  # JFNK's lagged preconditioner
        self._its_after_rebuild: int | None = None  # GMRES iterations right after the last rebuild
        self._last_its = 0
        self._radius: torch.Tensor | None = None  # the trust-region radius of each member
        self.linear_name = ""

    # -- the linear step: J du = rhs, returning (du, Krylov iterations, relative residual) -------------
    def direction(self, U, rhs, eta, k):
        if self.method == "jfnk":
            return self._krylov_free(U, rhs, eta, k)
        prob, o = self.prob, self.opts
        J = prob.jacobian(U, k)
        choice = plan(J, o["linear_solver"], o["linear_method"])
        if choice.kind == "direct":
            self.last_factor = fact = prob.factorize(J, o["linear_solver"], o["linear_method"], k, choice)
            self.linear_name = f"{fact.backend} {fact.method}"
            du = fact.raw_solve(rhs.unsqueeze(2), "N").squeeze(2)
            return du, 0, 0.0
        opts = KrylovOptions.from_kwargs({"rtol": eta, "maxiter": o["linear_max_iter"], "restart": 50})
        solver = KrylovSolver(J, choice, opts, None)
        self.linear_name = f"{solver.backend.name} {solver.method} ({solver.preconditioner_name})"
        with warnings.catch_warnings():  # an inexact step is the point of inexact Newton
            warnings.simplefilter("ignore", RuntimeWarning)
            du = solver.raw_solve(rhs.unsqueeze(2), "N").squeeze(2)
        return du, solver.info.iterations, solver.info.residual

    def _krylov_free(self, U, rhs, eta, k):
        prob, o = self.prob, self.opts
        M = None
        if callable(o["preconditioner"]):
            user = o["preconditioner"]

            def M(X: torch.Tensor) -> torch.Tensor:
                return user(X, "N")
        elif o["preconditioner"] is not None:
            M = self._lagged_preconditioner(U, k)
        fn = prob.fn

        def matvec(X: torch.Tensor) -> torch.Tensor:  # columns are batch members
            return torch.func.jvp(fn, (U,), (X.T.contiguous(),))[1].T

        x, kinfo = krylov_solve(
            prob.space.operator(matvec, prob.n, U.dtype, U.device),
            rhs.T.contiguous(),
            method="gmres",
            rtol=eta,
            maxiter=o["linear_max_iter"],
            restart=min(50, prob.n_global),
            M=M,
            check_every=1,
        )
        if self._its_after_rebuild is None:
            self._its_after_rebuild = kinfo.iterations
        self._last_its = kinfo.iterations
        self.linear_name = "gmres (matrix-free)" + (
            ", user preconditioner"
            if callable(o["preconditioner"])
            else (", lagged Jacobian preconditioner" if M else "")
        )
        return x.T, kinfo.iterations, float(kinfo.residual)

    def _lagged_preconditioner(self, U, k):
        """A factorization of J at an earlier iterate, rebuilt when GMRES needs twice (plus 5) the
        iterations it needed right after the last rebuild."""
        after = self._its_after_rebuild
        if self.precond_factor is None or (after is not None and self._last_its > 2 * after + 5):
            J = self.prob.jacobian(U, k)
            self.precond_factor = self.prob.factorize(J, self.opts["linear_solver"], "auto", k)
            self._its_after_rebuild = None
        return _factor_operator(self.precond_factor, "N")

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self, info: NonlinearInfo):
        prob, o = self.prob, self.opts
        U = prob.U0.clone()
        F = prob.F(U, 0)
        sp = prob.space
        r = sp.max_abs(F)
        target = torch.clamp(o["tol"] * r, min=o["atol"])
        active = r > target
        its = torch.zeros(prob.B, dtype=torch.int64)
        ok = torch.ones(prob.B, dtype=torch.bool)
        info.residual_history.append(float(r.max()))
        rnorm = sp.norm(F)
        eta = 0.5  # the forcing term of inexact steps (iterative linear solves); a direct solve is exact
        reason = "converged"
        k = 0
        _verbose(o, info, k, r, None, None, None)
        while bool(active.any()):
            if k >= o["max_iter"]:
                reason = f"reached max_iter={o['max_iter']}"
                break
            k += 1
            rhs = torch.where(active[:, None], -F, torch.zeros_like(F))
            du, lin_its, lin_res = self.direction(U, rhs, max(eta, 1e-14), k)
            if bool(sp.any(~torch.isfinite(du).all(1)).any()):
                raise SingularMatrixError(
                    f"the Jacobian is singular at iteration {k}: the Newton step is not finite"
                )
            slope = 1.0 - min(float(lin_res), 1.0)  # the step's decrease of ||F||^2, relative to exact Newton
            if o["line_search"] == "trust_region":
                P, F_new, steps, accepted = self._dogleg(U, F, du, active, k)
            else:
                P, F_new, steps, accepted = self._line_search(U, F, du, active, slope, k)
            # a member whose accepted step no longer moves u (a local minimum of ||F|| that is no root)
            moved = sp.amax(P.abs()) > 4 * torch.finfo(U.dtype).eps * (1 + sp.amax(U.abs()))
            accepted = accepted & (moved | ~active)
            t = sp.norm(P) / sp.norm(du).clamp_min(torch.finfo(U.dtype).tiny)  # the step's fraction
            U = U + P
            F = torch.where(active[:, None], F_new, F)
            its += active
            failed = active & ~accepted
            ok &= ~failed
            r = sp.max_abs(F)
            rnorm_new = sp.norm(F)
            act_norms = (rnorm_new[active], rnorm[active])
            if act_norms[0].numel():
                ratio = float((act_norms[0] / act_norms[1].clamp_min(1e-300)).max())
                floor = 0.5 * float((target[active] / rnorm_new[active].clamp_min(1e-300)).max())
                eta = max(_forcing(eta, ratio, floor), 1e-14)
            rnorm = rnorm_new
            active = active & accepted & (r > target)
            info.residual_history.append(float(r.max()))
            info.linear_iterations.append(int(lin_its))
            info.line_search_steps.append(int(steps.max()))
            _verbose(o, info, k, r, t, lin_its, int(steps.max()))
            if bool(failed.any()):
                reason = "the line search found no step that reduces ||F|| (near a local minimum of ||F||?)"
                if not bool(active.any()):
                    break
        info.iterations = k
        info.member_iterations = its.tolist()
        conv = (r <= target) & ok
        info.member_converged = conv.tolist()
        info.converged = bool(conv.all())
        info.reason = "converged" if info.converged else reason
        info.residual = float(r.max())
        info.linear_solver = self.linear_name
        return U, float(target.max())

    def _line_search(self, U, F, du, active, slope, k):
        """Per member step lengths t: 1, or backtracking by a safeguarded quadratic model of
        phi(t) = ||F(u + t du)||^2 until phi(t) <= (1 - 2 c t s) phi(0). Without a line search the full
        step is taken (and a non-finite residual raises)."""
        prob = self.prob
        B = prob.B
        t = active.to(U.dtype)
        steps = torch.zeros(B, dtype=torch.int64)
        if self.opts["line_search"] == "none":
            return t[:, None] * du, prob.F(U + t[:, None] * du, k), steps, active.clone()
        sp = prob.space
        phi0 = sp.sum(F * F)
        accepted = ~active
        F_new = F.clone()
        s = max(slope, 1e-3)
        for _ in range(_MAX_BACKTRACKS + 1):
            Ft = prob.F(U + t[:, None] * du, k, must_be_finite=False)
            phit = sp.sum(Ft * Ft)
            phit = torch.where(torch.isfinite(phit), phit, torch.full_like(phit, math.inf))
            good = ~accepted & (phit <= (1 - 2 * _ARMIJO_C * t * s) * phi0)
            F_new = torch.where(good[:, None], Ft, F_new)
            accepted = accepted | good
            if bool(accepted.all()):
                break
            curv = phit - phi0 + 2 * s * phi0 * t
            model = torch.where(curv > 0, s * phi0 * t * t / curv.clamp_min(1e-300), 0.5 * t)
            t_new = torch.minimum(torch.maximum(model, 0.1 * t), 0.5 * t)
            t = torch.where(accepted, t, t_new)
            steps += ~accepted
        t = torch.where(accepted & active, t, torch.zeros_like(t))
        return t[:, None] * du, F_new, steps, accepted

    def _dogleg(self, U, F, du, active, k):
        """Dogleg trust-region step per member: the Newton step du when it fits in the radius Delta, else
        the point where the path from the Cauchy point -alpha g (g = J^T F, the steepest descent of
        ||F||^2 / 2, alpha minimizing its linear model) to du leaves the ball. The step is taken when
        rho = actual / predicted decrease of ||F||^2 / 2 exceeds 1e-4; Delta shrinks to |p| / 4 when
        rho < 1/4 (and the step is retried without a new Jacobian) and doubles when rho > 3/4 at the
        boundary. Costs one VJP and two JVPs per iteration beyond Newton's."""
        prob, B = self.prob, self.prob.B
        sp = prob.space
        if self._radius is None:
            self._radius = sp.norm(du).clamp_min(1e-8)  # the first Newton step is allowed in full
        Delta = self._radius
        _, vjp_fn = torch.func.vjp(prob.fn, U)
        g = vjp_fn(F)[0]
        Jg = torch.func.jvp(prob.fn, (U,), (g,))[1]
        Jdu = torch.func.jvp(prob.fn, (U,), (du,))[1]
        gg, JgJg = sp.sum(g * g), sp.sum(Jg * Jg)
        alpha = gg / JgJg.clamp_min(torch.finfo(U.dtype).tiny)
        pc, Jpc = -alpha[:, None] * g, -alpha[:, None] * Jg
        phi0 = 0.5 * sp.sum(F * F)
        accepted = ~active
        P = torch.zeros_like(U)
        F_new = F.clone()
        steps = torch.zeros(B, dtype=torch.int64)
        for _ in range(_MAX_BACKTRACKS + 1):
            # the dogleg point for the current radius: tau in [0, 1] on the segment pc -> du
            d = du - pc
            a, b, c = sp.sum(d * d), sp.sum(pc * d), sp.sum(pc * pc) - Delta * Delta
            tau = (
                (-b + torch.sqrt((b * b - a * c).clamp_min(0))) / a.clamp_min(torch.finfo(U.dtype).tiny)
            ).clamp(0, 1)
            newton = sp.norm(du) <= Delta
            cauchy_out = sp.norm(pc) >= Delta
            scale = (Delta / gg.sqrt().clamp_min(torch.finfo(U.dtype).tiny))[:, None]
            p = torch.where(
                newton[:, None], du, torch.where(cauchy_out[:, None], -scale * g, pc + tau[:, None] * d)
            )
            Jp = torch.where(
                newton[:, None],
                Jdu,
                torch.where(cauchy_out[:, None], -scale * Jg, Jpc + tau[:, None] * (Jdu - Jpc)),
            )
            pred = phi0 - 0.5 * sp.sum((F + Jp) ** 2)
            Ft = prob.F(U + p, k, must_be_finite=False)
            phit = 0.5 * sp.sum(Ft * Ft)
            phit = torch.where(torch.isfinite(phit), phit, torch.full_like(phit, math.inf))
            rho = (phi0 - phit) / pred.clamp_min(torch.finfo(U.dtype).tiny)
            pn = sp.norm(p)
            open_ = ~accepted
            Delta = torch.where(open_ & (rho < 0.25), 0.25 * pn, Delta)
            grow = open_ & (rho > 0.75) & (pn >= 0.99 * Delta)
            Delta = torch.where(grow, 2 * Delta, Delta)
            good = open_ & (rho > _ARMIJO_C)
            P = torch.where(good[:, None], p, P)
            F_new = torch.where(good[:, None], Ft, F_new)
            accepted = accepted | good
            if bool(accepted.all()):
                break
            steps += ~accepted
        self._radius = Delta
        return P, F_new, steps, accepted


def _factor_operator(fact: Factorization, op: str):
    """``X -> op(A)^{-1} X`` on (n, B) blocks whose columns are the batch members."""

    def apply(X: torch.Tensor) -> torch.Tensor:
        return fact.raw_solve(X.T.unsqueeze(2).contiguous(), op).squeeze(2).T

    return apply


class _FixedPoint:
    """Picard and Anderson iterations of ``g(u) = u - P^{-1} F(u)`` (``P`` = I, or a factorization of
    J(u0) with ``preconditioner="jacobian"``): ``f = g(u) - u``; Picard ``u += beta f``; Anderson
    (type II, memory m) ``u += beta f - (dU + beta dF) gamma`` with ``gamma`` the least-squares fit of
    ``f`` by the last m differences ``dF`` of ``f`` (``dU`` those of ``u``)."""

    def __init__(self, prob: _Problem, opts: dict):
        self.prob, self.opts = prob, opts
        self.precond_factor: Factorization | None = None
        self.last_factor = None

    def run(self, info: NonlinearInfo):
        prob, o = self.prob, self.opts
        beta, m = o["damping"], o["memory"]
        U = prob.U0.clone()
        F = prob.F(U, 0)
        if callable(o["preconditioner"]):
            user = o["preconditioner"]
            info.linear_solver = "user preconditioner"

            def direction(F: torch.Tensor) -> torch.Tensor:
                return -user(F.T.contiguous(), "N").T
        elif o["preconditioner"] is not None:
            J = prob.jacobian(U, 0)
            self.precond_factor = prob.factorize(J, o["linear_solver"], "auto", 0)
            P = _factor_operator(self.precond_factor, "N")
            info.linear_solver = f"{self.precond_factor.backend} {self.precond_factor.method} (J(u0))"

            def direction(F: torch.Tensor) -> torch.Tensor:
                return -P(F.T.contiguous()).T
        else:

            def direction(F: torch.Tensor) -> torch.Tensor:
                return -F

        sp = prob.space
        r = sp.max_abs(F)
        target = torch.clamp(o["tol"] * r, min=o["atol"])
        active = r > target
        its = torch.zeros(prob.B, dtype=torch.int64)
        info.residual_history.append(float(r.max()))
        _verbose(o, info, 0, r, None, None, None)
        dU, dF = [], []
        f = direction(F)
        k = 0
        reason = "converged"
        while bool(active.any()):
            if k >= o["max_iter"]:
                reason = f"reached max_iter={o['max_iter']}"
                break
            k += 1
            step = beta * f
            if self.opts["method"] == "anderson" and dF:
                DF = torch.stack(dF, 2)  # (B, n, j)
                DU = torch.stack(dU, 2)
                gamma = sp.lstsq(DF, f.unsqueeze(2))
                step = step - ((DU + beta * DF) @ gamma).squeeze(2)
            step = torch.where(active[:, None], step, torch.zeros_like(step))
            U_new = U + step
            F = torch.where(active[:, None], prob.F(U_new, k), F)
            f_new = direction(F)
            dU.append(U_new - U)
            dF.append(f_new - f)
            if len(dF) > m:
                dU.pop(0), dF.pop(0)
            U, f = U_new, f_new
            its += active
            r = sp.max_abs(F)
            active = active & (r > target)
            info.residual_history.append(float(r.max()))
            info.linear_iterations.append(0)
            info.line_search_steps.append(0)
            _verbose(o, info, k, r, None, None, None)
        info.iterations = k
        info.member_iterations = its.tolist()
        conv = r <= target
        info.member_converged = conv.tolist()
        info.converged = bool(conv.all())
        info.reason = "converged" if info.converged else reason
        info.residual = float(r.max())
        return U, float(target.max())


def _verbose(o, info, k, r, t, lin_its, ls) -> None:
    if not o["verbose"]:
        return
    line = f"{info.method} {k:4d}  max|F| {float(r.max()):.3e}"
    if t is not None:
        line += f"  step {float(t.max()):.3g}"
    if lin_its is not None:
        line += f"  linear its {lin_its}"
    if ls is not None:
        line += f"  backtracks {ls}"
    print(line)


class _Adjoint:
    """Backward's linear solve ``J(u*)^T lambda = g``, and the VJP of the residual to the parameters.

    J(u*)^T is applied exactly, matrix-free, as a VJP of the residual at u*; GMRES solves with it,
    right-preconditioned by the last Jacobian factorization when there is one (Newton's, at the iterate
    before u*, or the lagged one of JFNK / Picard / Anderson): that factorization differs from J(u*) by
    O(|last step|), so GMRES needs a few iterations (the refinement of the stale factors) and no new
    factorization is made. Without a factorization GMRES runs unpreconditioned."""

    def __init__(
        self, prob: _Problem, factor: Factorization | None, info: NonlinearInfo, build=None, user_M=None
    ):
        self.prob, self.factor, self.info, self.build = prob, factor, info, build
        self.user_M = user_M  # a callable (r, op) -> z preconditioner given by the caller
        self.rtol = 1e-11 if prob.U0.dtype == torch.float64 else 1e-5

    def solve(self, U: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        prob = self.prob
        error = None
        if bool(prob.space.any(~torch.isfinite(G).all(1)).any()):
            error = InvalidArgumentError("the gradient of the solution: contains NaN/Inf")
        prob.space.check(error, "nonlinear_solve backward")
        if self.factor is None and self.build is not None:  # Newton took no step: factorize J(u*) now
            self.factor = self.build(U)
        _, vjp_fn = torch.func.vjp(prob.fn, U)

        def rmatvec(X: torch.Tensor) -> torch.Tensor:
            return vjp_fn(X.T.contiguous())[0].T

        M = None if self.factor is None else _factor_operator(self.factor, "H")
        name = "last Jacobian factorization" if M is not None else "none"
        if self.user_M is not None:
            user = self.user_M

            def M(X: torch.Tensor) -> torch.Tensor:
                return user(X, "H")

            name = "user preconditioner (adjoint)"
        lam, kinfo = krylov_solve(
            prob.space.operator(rmatvec, prob.n, U.dtype, U.device),
            G.T.contiguous(),
            method="gmres",
            rtol=self.rtol,
            maxiter=max(100, min(10 * prob.n_global, 20000)),
            restart=min(60, max(prob.n_global, 1)),
            M=M,
            check_every=1,
        )
        self.info.adjoint = {
            "iterations": kinfo.iterations,
            "residual": float(kinfo.residual),
            "converged": kinfo.converged,
            "preconditioner": name,
        }
        if not kinfo.converged:
            warnings.warn(
                f"nonlinear_solve backward: the adjoint GMRES solve did not converge ({kinfo.reason} after "
                f"{kinfo.iterations} iterations, relative residual {kinfo.residual:.3g}); the gradient is "
                "inaccurate",
                RuntimeWarning,
                stacklevel=3,
            )
        return lam.T


class _ImplicitSolution(torch.autograd.Function):
    """``u* = solve(F(u, theta) = 0)`` as one node: ``_ImplicitSolution.apply(adjoint, u_star, *tensors)``
    returns u* (given, computed without a graph) and differentiates it to the tensor parameters."""

    @staticmethod
    def forward(ctx, adjoint, slot, u_star, *tensors):
        ctx.adjoint, ctx.slot = adjoint, slot
        ctx.save_for_backward(u_star, *tensors)
        return u_star.clone()

    # Implicit function theorem. F(u*(theta), theta) = 0 for all theta, so differentiating,
    #   J du* + (dF/dtheta) dtheta = 0   =>   du*/dtheta = -J^{-1} dF/dtheta,   J = dF/du at (u*, theta).
    # For a loss L with g = dL/du*:  dL/dtheta = g^T du*/dtheta = -g^T J^{-1} dF/dtheta = -lambda^T dF/dtheta
    # with the adjoint  J^T lambda = g. So backward is one adjoint linear solve (same Jacobian, transposed)
    # and one vector-Jacobian product of the residual with respect to the parameters at the cotangent
    # -lambda. For a batch, J is block diagonal (members independent): the same formulas per member. u0
    # gets no gradient (u* does not depend on it). The adjoint solve runs without a graph, so the
    # gradients are constants: with create_graph=True they are returned behind a node that raises when
    # differentiated, rather than a silently wrong (zero) second derivative.
    @staticmethod
    def backward(ctx, g):
        create_graph = torch.is_grad_enabled()
        with torch.no_grad():
            grads = _ImplicitSolution._gradients(ctx, g.detach())
        if create_graph:
            _, *tensors = ctx.saved_tensors
            grads = _second_derivative_guard(grads, [g, *tensors])
        return (None, None, None, *grads)

    @staticmethod
    def _gradients(ctx, g):
        u_star, *tensors = ctx.saved_tensors
        adjoint: _Adjoint = ctx.adjoint
        prob = adjoint.prob
        G = g if prob.batched else g.unsqueeze(0)
        U = u_star if prob.batched else u_star.unsqueeze(0)
        lam = adjoint.solve(U, G)
        needs = ctx.needs_input_grad[3:]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip(tensors, needs)]
            params = list(prob.params)
            for pos, leaf in zip(ctx.slot, leaves):
                params[pos] = leaf
            out = prob.residual_fn(u_star.detach(), *params)
            wanted = [leaf for leaf, need in zip(leaves, needs) if need]
            grads = torch.autograd.grad(
                out, wanted, grad_outputs=-(lam if prob.batched else lam[0]), allow_unused=True
            )
        it = iter(grads)
        result = []
        for leaf, need in zip(leaves, needs):
            if not need:
                result.append(None)
                continue
            gr = next(it)
            result.append(torch.zeros_like(leaf) if gr is None else gr.detach())
        return result


def _second_derivative_guard(grads: list, inputs: list) -> tuple:
    """The gradients behind one node whose backward raises (torch's DelayedError, as used by
    once_differentiable), tied (by a zero term) to the backward's inputs that require grad, so that
    differentiating them again reaches that node and is reported rather than silently zero."""
    present = [g for g in grads if g is not None]
    tied = [t for t in inputs if t.requires_grad]
    if not present or not tied:
        return tuple(grads)
    zero = sum(0 * t.sum() for t in tied)
    err = torch._C._functions.DelayedError(
        b"nonlinear_solve: second derivatives are not supported (the implicit gradient is computed "
        b"without a graph); differentiate the gradient by finite differences instead",
        len(present),
    )
    guarded = err(*[g + zero for g in present])
    guarded = guarded if isinstance(guarded, tuple) else (guarded,)
    it = iter(guarded)
    return tuple(None if g is None else next(it) for g in grads)


def _line_search_flag(line_search) -> str:
    if line_search is True or line_search == "armijo":
        return "armijo"
    if line_search is False or line_search is None or line_search == "none":
        return "none"
    if line_search == "trust_region":
        return "trust_region"
    raise InvalidArgumentError(
        f"line_search: expected 'armijo', 'trust_region' or 'none' (or True / False), got {line_search!r}"
    )


def nonlinear_solve(
    residual_fn: Callable[..., torch.Tensor],
    u0: torch.Tensor,
    *params,
    method: str = "newton",
    jacobian_fn: Callable[..., SparseTensor] | None = None,
    pattern=None,
    tol: float = 1e-8,
    atol: float = 0.0,
    max_iter: int = 50,
    line_search="armijo",
    verbose: bool = False,
    linear_solver: str = "auto",
    linear_method: str = "auto",
    preconditioner: str | None = None,
    memory: int = 5,
    damping: float = 1.0,
    check_pattern: bool = False,
    return_info: bool = False,
    on_fail: str = "warn",
    distributed=None,
):
    """Solve the nonlinear system ``residual_fn(u, *params) = 0`` for ``u``; differentiable with respect
    to every tensor in ``params`` (implicit differentiation, one autograd node per solve).

    Parameters
    ----------
    residual_fn : callable ``(u, *params) -> F``
        The residual, a tensor of ``u``'s shape and dtype, written with torch operations that forward-mode
        AD (``torch.func.jvp``) and reverse mode can differentiate. For a batch, member ``b`` of ``F`` must
        depend on ``u[b]`` only (and on member ``b`` of batched parameters).
    u0 : Tensor ``(n,)``, or ``(B, n)`` for a batch of B independent problems (float32 / float64)
        The initial guess. The solution does not depend on it (no gradient flows to it).
    *params : the parameters theta (tensors get gradients; anything else is passed through).
    method : {"newton", "jfnk", "picard", "anderson"}
        ``newton``: Newton's method on the sparse Jacobian, each step a solve with the library's linear
        solvers (``linear_solver`` / ``linear_method``, chosen as :func:`torch_sla.solve` does: a sparse
        factorization on the CPU; the symbolic analysis is made once for the pattern and reused every
        iteration). An iterative ``linear_method`` makes it an inexact Newton method with
        Eisenstat-Walker forcing terms. ``jfnk``: Jacobian-free Newton-Krylov, GMRES on Jacobian-vector
        products (forward-mode AD) with Eisenstat-Walker forcing terms, for any (non-symmetric) Jacobian;
        ``preconditioner="jacobian"`` preconditions it with a lagged factorization of the assembled
        Jacobian. ``picard``: the fixed-point iteration ``u <- u - damping * P^{-1} F(u)``, where P = I
        (write ``F(u) = u - G(u)`` for a fixed-point map G) or, with ``preconditioner="jacobian"``, the
        factorized J(u0) (a chord method). ``anderson``: Anderson acceleration of that map, memory
        ``memory``, mixing ``damping``.
    jacobian_fn : callable ``(u, *params) -> SparseTensor``, optional
        The Jacobian dF/du, used as it is (values with the batch dimension in front for a batch). Without
        it the Jacobian is assembled from one forward-mode product per color of a distance-2 coloring of
        its pattern (at most 7 products for a 2-D 5-point stencil, whatever n).
    pattern : SparseTensor, torch or scipy sparse matrix, optional
        The Jacobian's sparsity pattern (values ignored). Without it (and without ``jacobian_fn``) the
        pattern is detected with n products at a random point near u0, once per residual function, size
        and dtype (cached): pass it for large problems.
    tol, atol : float
        A member has converged when ``max|F| <= max(tol * max|F(u0)|, atol)``.
    max_iter : int
        Nonlinear iterations at most.
    line_search : {"armijo", "trust_region", "none"}
        Newton and JFNK: Armijo backtracking on ``||F||^2`` (a step to a NaN residual is backtracked too),
        or a dogleg trust region (per member radius; one VJP and two JVPs more per iteration), or full
        steps.
    verbose : bool
        Print one line per iteration.
    linear_solver, linear_method : str
        The ``backend`` and ``method`` of the Newton linear solves (see :func:`torch_sla.solve`); also the
        backend of the factorizations behind ``preconditioner="jacobian"``.
    preconditioner : {None, "jacobian"} or callable ``(r, op) -> z``
        JFNK, Picard, Anderson: precondition with a factorization of the assembled Jacobian (JFNK: lagged,
        rebuilt when GMRES slows down; Picard / Anderson: J(u0)). A callable approximates ``J^{-1} r``
        (``op="N"``) and ``J^{-H} r`` (``op="H"``, for backward's adjoint solve) on ``(n, B)`` blocks whose
        columns are the batch members, e.g. :meth:`DSparseTensor.preconditioner` of an approximate
        distributed Jacobian.
    memory, damping : Anderson's memory m (>= 1) and the mixing / damping in (0, 1].
    check_pattern : bool
        Check every Jacobian against one exact product with a random vector, and raise
        :class:`InvalidArgumentError` when the pattern misses entries of the true Jacobian (or
        ``jacobian_fn``'s matrix is not the Jacobian).
    return_info : bool
        Return ``(u, info)`` with a :class:`NonlinearInfo`.
    on_fail : {"warn", "raise"}
        Not converging warns (``RuntimeWarning``) or raises :class:`ConvergenceError`.
    distributed : DSparseTensor, optional
        The unknowns are sharded over the ranks of its process group: ``u0`` (and ``residual_fn``'s
        ``u`` and result) hold this rank's owned entries, ``(n_owned,)`` or ``(B, n_owned)``, and the
        residual couples them through distributed products (``D.matvec``, whose halo exchange is
        differentiable). Norms and inner products are all-reduced, so every rank takes the same steps;
        the methods are ``jfnk`` (GMRES on Jacobian-vector products), ``picard`` and ``anderson``.
        Parameters may be replicated (every rank the same tensor; use ``D.shard`` inside the residual to
        take the owned part, and the gradient is all-reduced) or local. Every rank must call it.

    Returns
    -------
    u : Tensor of u0's shape; ``(u, info)`` with ``return_info=True``.

    Notes
    -----
    Backward solves the adjoint system ``J(u*)^T lambda = g`` (GMRES on exact transposed products,
    preconditioned by the last Jacobian factorization, so a few iterations and no new factorization after
    Newton) and returns ``-lambda^T dF/dtheta`` through one VJP of the residual. Only the solution, the
    parameters and one factorization are kept, whatever the iteration count. Second derivatives are not
    supported (backward raises when differentiated).

    Raises
    ------
    InvalidArgumentError (bad arguments; a residual of the wrong shape or with NaN/Inf at an accepted
    iterate; a pattern missing Jacobian entries with ``check_pattern``), SingularMatrixError (a singular
    Jacobian, naming the iteration), ConvergenceError (``on_fail="raise"``).
    """
    if not callable(residual_fn):
        raise InvalidArgumentError(f"residual_fn: expected a callable (u, *params) -> F, got {residual_fn!r}")
    check_unknowns(u0, "u0")
    if distributed is not None and not all(hasattr(distributed, a) for a in ("all_reduce", "agree")):
        raise InvalidArgumentError(
            "distributed: expected a DSparseTensor (or an object with all_reduce(t, op) and agree(error, what))"
        )
    space = _Space(distributed)
    if distributed is None:
        check_finite(u0.detach(), "u0")
    else:
        bad = not bool(torch.isfinite(u0.detach()).all())
        space.check(InvalidArgumentError("u0: contains NaN/Inf") if bad else None, "nonlinear_solve")
    if method not in METHODS:
        raise InvalidArgumentError(f"method: expected one of {METHODS}, got {method!r}")
    if jacobian_fn is not None and not callable(jacobian_fn):
        raise InvalidArgumentError(f"jacobian_fn: expected a callable or None, got {jacobian_fn!r}")
    if jacobian_fn is not None and pattern is not None:
        raise InvalidArgumentError("pattern: not used with jacobian_fn (whose matrix has its own pattern)")
    if not callable(preconditioner) and preconditioner not in (None, "none", "jacobian"):
        raise InvalidArgumentError(
            f"preconditioner: expected None, 'jacobian' or a callable (r, op) -> z, got {preconditioner!r}"
        )
    if distributed is not None:
        if method == "newton":
            raise InvalidArgumentError(
                "method: a distributed residual is solved matrix-free: use 'jfnk' (or 'picard' / 'anderson'); "
                "'newton' assembles the Jacobian on one process"
            )
        if preconditioner == "jacobian" or jacobian_fn is not None or pattern is not None:
            raise InvalidArgumentError(
                "preconditioner / jacobian_fn / pattern: an assembled Jacobian is not available for a distributed "
                "residual; pass preconditioner=D.preconditioner() of an approximate distributed Jacobian D"
            )
    if on_fail not in ("warn", "raise"):
        raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {on_fail!r}")
    if method == "jfnk" and linear_method not in ("auto", "gmres"):
        raise InvalidArgumentError(f"linear_method: jfnk solves with GMRES, got {linear_method!r}")
    opts = {
        "method": method,
        "tol": as_float(tol, "tol", lo=0.0),
        "atol": as_float(atol, "atol", lo=0.0),
        "max_iter": as_int(max_iter, "max_iter", lo=0),
        "line_search": _line_search_flag(line_search),
        "verbose": bool(verbose),
        "linear_solver": linear_solver,
        "linear_method": linear_method,
        "preconditioner": None if preconditioner == "none" else preconditioner,
        "memory": as_int(memory, "memory", lo=1, hi=1000),
        "damping": as_float(damping, "damping", lo=0.0, hi=1.0, open_lo=True),
    }
    if not (opts["tol"] > 0 or opts["atol"] > 0):
        raise InvalidArgumentError(f"tol: need tol > 0 or atol > 0, got tol={tol}, atol={atol}")
    error = None
    for i, p in enumerate(params):
        if (
            isinstance(p, torch.Tensor)
            and p.is_floating_point()
            and not bool(torch.isfinite(p.detach()).all())
        ):
            error = InvalidArgumentError(f"params[{i}]: contains NaN/Inf")
            break
    space.check(error, "nonlinear_solve")
    if u0.numel() == 0 and distributed is None:  # nothing to solve (n = 0 or an empty batch)
        u = u0.detach().clone()
        return (
            (u, NonlinearInfo(method, converged=True, reason="converged", residual=0.0)) if return_info else u
        )
    prob = _Problem(residual_fn, u0, params, jacobian_fn, pattern, bool(check_pattern), space)
    opts["linear_max_iter"] = max(50, min(prob.n_global, 1000))
    info = NonlinearInfo(method)
    runner = _Newton(prob, opts) if method in ("newton", "jfnk") else _FixedPoint(prob, opts)
    U, target = runner.run(info)
    info.jacobian_products = prob.products
    info.n_colors = prob.n_colors
    info.factorizations = prob.factorizations
    _report(info, on_fail, target)
    u = prob.user(U)
    slot = [i for i, p in enumerate(params) if isinstance(p, torch.Tensor) and p.requires_grad]
    if torch.is_grad_enabled() and slot:
        factor = runner.last_factor if runner.last_factor is not None else runner.precond_factor
        build = None
        if method == "newton" and factor is None and info.linear_solver == "":

            def build(U: torch.Tensor) -> Factorization | None:
                J = prob.jacobian(U, info.iterations)
                choice = plan(J, linear_solver, linear_method)
                return (
                    prob.factorize(J, linear_solver, linear_method, info.iterations, choice)
                    if choice.kind == "direct"
                    else None
                )

        user_M = preconditioner if callable(preconditioner) else None
        adjoint = _Adjoint(prob, factor, info, build, user_M)
        u = _ImplicitSolution.apply(adjoint, tuple(slot), u, *(params[i] for i in slot))
    return (u, info) if return_info else u
