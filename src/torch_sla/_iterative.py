"""Iterative (Krylov) solves: the C++ core on the CPU (backend "core") and torch ops on any device
(backend "torch"), with one autograd node per solve and an adjoint Krylov solve in backward."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._autograd import LinearSolve
from ._checks import INT32_MAX, as_float, as_int, as_shape, to_core
from ._checks import check_finite as check_finite_values
from .errors import BackendUnavailableError, ConvergenceError, InvalidArgumentError

ITERATIVE_METHODS = ("cg", "bicgstab", "gmres", "minres")
CORE_PRECONDITIONERS = ("jacobi", "ssor", "ic0", "ilu0")
TORCH_PRECONDITIONERS = ("jacobi", "chebyshev")


@dataclasses.dataclass
class SolveInfo:
    """What an iterative solve did. ``adjoint`` is filled by the backward pass (its own solve)."""

    method: str
    backend: str
    preconditioner: str
    iterations: int = 0
    residual: float = 0.0
    converged: bool = True
    reason: str = "converged"
    residual_history: list[float] = dataclasses.field(default_factory=list)
    adjoint: SolveInfo | None = None

    def _merge(self, d: dict) -> None:
        """Fold one batch member's result into this summary (worst case wins)."""
        self.iterations = max(self.iterations, int(d["iterations"]))
        self.residual = (
            max(self.residual, float(d["residual"])) if math.isfinite(d["residual"]) else float("nan")
        )
        if not d["converged"] and self.converged:
            self.converged, self.reason = False, d["reason"]
        hist = list(d.get("residual_history") or [])
        if len(hist) > len(self.residual_history):
            self.residual_history.extend([0.0] * (len(hist) - len(self.residual_history)))
        for i, h in enumerate(hist):
            self.residual_history[i] = max(self.residual_history[i], h)


class LinearOperator:
    """A matrix-free linear operator for the ``torch`` backend.

    Parameters
    ----------
    matvec : callable
        ``matvec(x) -> A x`` for ``x`` of shape ``(n, k)``; written with torch ops, so autograd can
        differentiate it with respect to ``parameters``.
    shape : (n, n)
    dtype, device : of the vectors it acts on.
    rmatvec : callable, optional
        ``A^H x``. When omitted, it is the vector-Jacobian product of ``matvec`` (exact for linear maps).
    parameters : sequence of tensors
        The tensors ``matvec`` depends on. The solution's gradient to each is one adjoint solve plus one
        vector-Jacobian product of ``matvec``.
    """

    def __init__(
        self,
        matvec: Callable[[torch.Tensor], torch.Tensor],
        shape: Sequence[int],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        rmatvec: Callable[[torch.Tensor], torch.Tensor] | None = None,
        parameters: Sequence[torch.Tensor] = (),
    ):
        shape = as_shape(shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InvalidArgumentError(f"shape: expected a square (n, n), got {shape}")
        self.matvec, self._rmatvec = matvec, rmatvec
        self.shape, self.dtype, self.device = shape, dtype, torch.device(device)
        self.parameters = tuple(parameters)

    def rmatvec(self, x: torch.Tensor) -> torch.Tensor:
        if self._rmatvec is not None:
            return self._rmatvec(x)
        with torch.enable_grad():
            z = torch.zeros_like(x, requires_grad=True)
            (y,) = torch.autograd.grad(self.matvec(z), z, x)
        return y


def _check_options(rtol, atol, maxiter, restart, check_every, on_fail) -> dict:
    """Validated, normalized options of an iterative solve (a clear error naming the bad one)."""
    rtol = as_float(rtol, "rtol", lo=0.0)
    atol = as_float(atol, "atol", lo=0.0)
    if not (rtol > 0 or atol > 0):
        raise InvalidArgumentError(f"rtol: need rtol > 0 (or atol > 0), got rtol={rtol}, atol={atol}")
    if on_fail not in ("warn", "raise"):
        raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {on_fail!r}")
    return dict(
        rtol=rtol,
        atol=atol,
        maxiter=None if maxiter is None else as_int(maxiter, "maxiter", lo=1, hi=2**62),
        restart=as_int(restart, "restart", lo=1, hi=INT32_MAX),
        check_every=as_int(check_every, "check_every", lo=1, hi=2**62),
        on_fail=on_fail,
    )


def _report(info: SolveInfo, on_fail: str, what: str) -> None:
    if info.converged:
        return
    msg = (
        f"{what}: {info.method} ({info.backend}, preconditioner {info.preconditioner}) did not converge: "
        f"{info.reason} after {info.iterations} iterations, relative residual {info.residual:.3g}. "
        "Raise maxiter, use a stronger preconditioner, or a direct solve."
    )
    if on_fail == "raise":
        raise ConvergenceError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=4)


class KrylovSolver:
    """Everything one iterative solve needs, kept for the adjoint solve in backward: the matrix values
    (detached), its preconditioners (built once, per batch member) and the options."""

    def __init__(self, A, method: str, backend: str, preconditioner: Any, opts: dict):
        self.A = A
        self.pattern = A.pattern
        self.method = method
        self.backend = backend
        self.opts = opts
        self.values = A.values.detach().reshape(A.batch_size, A.nnz)
        self.n = A.shape[-1]
        self.x0 = opts.pop("x0", None)
        self._precond_spec = preconditioner
        self.preconditioner_name, self._pre = self._build_preconditioners(preconditioner)
        self.info = SolveInfo(method, backend, self.preconditioner_name)
        self._adjoint_values = None
        self._forward_done = False

    # -- preconditioners ---------------------------------------------------------------------------
    def _build_preconditioners(self, spec):
        from ._sparse_tensor import SparseTensor

        if spec is None or (isinstance(spec, str) and spec == "none"):
            return "none", None
        if isinstance(spec, SparseTensor):
            P = spec
            if P.shape[-2:] != (self.n, self.n) or P.dtype != self.A.dtype:
                raise InvalidArgumentError(
                    f"preconditioner: a SparseTensor preconditioner must be ({self.n}, {self.n}) with dtype "
                    f"{self.A.dtype}, got {P.shape} {P.dtype}"
                )
            return "sparse", ("callable", lambda r: P.detach() @ r)
        if callable(spec):
            # The core copies the callable's result from raw memory: materialize lazy conj/neg views.
            return getattr(spec, "__name__", "callable"), ("callable", lambda r: to_core(spec(r)))
        if not isinstance(spec, str):
            raise InvalidArgumentError(
                f"preconditioner: expected a name, a callable or a SparseTensor, got {spec!r}"
            )
        if self.backend == "core":
            if spec not in CORE_PRECONDITIONERS:
                raise BackendUnavailableError(
                    f"preconditioner: {spec!r} is not available on backend 'core' (it has "
                    f"{', '.join(CORE_PRECONDITIONERS)}); use backend='torch' for 'chebyshev'"
                )
            from . import _C

            crow, col = self.pattern.csr_for_core()
            threads = torch.get_num_threads()
            pres = [
                _C.make_preconditioner(spec, self.n, crow, col, to_core(v), self.opts["omega"], threads)
                for v in self.values
            ]
            return spec, ("core", pres)
        if spec not in TORCH_PRECONDITIONERS:
            raise BackendUnavailableError(
                f"preconditioner: {spec!r} is not available on backend 'torch' (it has "
                f"{', '.join(TORCH_PRECONDITIONERS)}); use backend='core' on the CPU for ssor, ic0 and ilu0"
            )
        return spec, ("torch", spec)

    def _torch_preconditioner(self, i: int, values: torch.Tensor, matvec, op: str):
        from . import _krylov_torch as kt

        kind = self._pre[1]
        diag_pos = self.pattern.diag_positions
        if diag_pos is None:
            raise InvalidArgumentError(
                f"preconditioner: {kind!r} needs every diagonal entry of A to be stored"
            )
        diag = values[diag_pos]
        jac = kt.JacobiPreconditioner(diag.conj() if op == "H" else diag)
        if kind == "jacobi":
            return jac
        return kt.ChebyshevPreconditioner(
            matvec, self.n, values.dtype, values.device, degree=self.opts["degree"], inner=jac
        )

    # -- solves ------------------------------------------------------------------------------------
    def _operator_values(self, op: str) -> tuple[Any, torch.Tensor]:
        """Pattern and (B, nnz) values of op(A)."""
        if op == "N" or self.method in ("cg", "minres"):  # Hermitian methods: A^H = A
            return self.pattern, self.values
        if self._adjoint_values is None:
            pt, perm = self.pattern.transpose()
            v = self.values[:, perm]
            self._adjoint_values = (pt, v.conj() if v.is_complex() else v)
        return self._adjoint_values

    def _raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        info = SolveInfo(self.method, self.backend, self.preconditioner_name)
        if self.n == 0 or b.shape[0] == 0:  # an empty system: nothing to iterate on
            return torch.zeros_like(b)
        pattern, values = self._operator_values(op)
        out = torch.empty_like(b)
        for i in range(b.shape[0]):
            x0 = self.x0[i] if (op == "N" and self.x0 is not None) else None
            if self.backend == "core":
                out[i], d = self._solve_core(pattern, values[i], b[i], x0, i, op)
            else:
                out[i], d = self._solve_torch(pattern, values[i], b[i], x0, i, op)
            info._merge(d)
        if not self._forward_done:  # the first call is the forward solve, later ones are backward's
            self.info, self._forward_done = info, True
            _report(info, self.opts["on_fail"], "solve")
        else:
            self.info.adjoint = info
            _report(info, self.opts["on_fail"], "adjoint solve (backward)")
        return out

    def _solve_core(self, pattern, values, b, x0, i, op):
        from . import _C

        crow, col = pattern.csr_for_core()
        x = to_core(x0.clone() if x0 is not None else torch.zeros_like(b))
        pre = self._pre
        M = None
        if pre is not None and pre[0] == "core":
            M = pre[1][i]
        elif pre is not None:
            M = _C.callable_preconditioner(pre[1], str(b.dtype).replace("torch.", ""), self.n)
        o = self.opts
        d = _C.krylov_solve(
            self.method,
            self.n,
            crow,
            col,
            to_core(values),
            to_core(b),
            x,
            M,
            op,
            o["rtol"],
            o["atol"],
            o["maxiter"] or 10 * max(self.n, 1),
            min(
                o["restart"], self.n
            ),  # a Krylov space has at most n dimensions; GMRES allocates restart + 1 vectors
            torch.get_num_threads(),
            o["return_info"],
            o["callback"],
        )
        return x, d

    def _solve_torch(self, pattern, values, b, x0, i, op):
        from . import _krylov_torch as kt

        crow, col = pattern.csr_for_core()  # int32 indices when they fit: less index traffic in SpMV
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            mat = torch.sparse_csr_tensor(crow, col, values, (self.n, self.n))

        def matvec(v):
            return mat @ v

        pre = self._pre
        if pre is None:
            M = None
        elif pre[0] == "torch":
            M = self._torch_preconditioner(i, self.values[i], matvec, op)
        else:
            M = pre[1]
        o = self.opts
        x, info = kt.krylov_solve(
            matvec,
            b,
            method=self.method,
            rtol=o["rtol"],
            atol=o["atol"],
            maxiter=o["maxiter"],
            x0=x0,
            restart=o["restart"],
            M=M,
            callback=o["callback"],
            check_every=o["check_every"],
            record_history=o["return_info"],
        )
        return x, dataclasses.asdict(info)


def iterative_solve(
    A,
    b: torch.Tensor,
    *,
    method: str,
    backend: str,
    preconditioner="auto",
    rtol=1e-8,
    atol=0.0,
    maxiter=None,
    x0=None,
    restart=30,
    callback=None,
    return_info=False,
    on_fail="warn",
    check_every=10,
    omega=1.0,
    degree=4,
    check_finite=True,
):
    """Iterative solve of a SparseTensor system (see :func:`torch_sla.solve`)."""
    from ._solve import _check_rhs, _normalize_rhs

    opts = _check_options(rtol, atol, maxiter, restart, check_every, on_fail)
    opts.update(
        callback=callback,
        return_info=bool(return_info),
        omega=as_float(omega, "omega", lo=0.0, hi=2.0, open_lo=True, open_hi=True),
        degree=as_int(degree, "degree", lo=1, hi=1000),
    )
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: an iterative solve needs a square matrix, got shape {A.shape}")
    if check_finite:
        check_finite_values(A.values.detach(), "A.values")
    b = _check_rhs(A, b, check_finite)
    bb, restore = _normalize_rhs(A, b, name="b", n=A.shape[-1])
    x0b = None
    if x0 is not None:
        x0 = torch.as_tensor(x0)
        if x0.shape != b.shape or x0.dtype != b.dtype or x0.device != b.device:
            raise InvalidArgumentError(
                f"x0: expected shape {tuple(b.shape)}, dtype {b.dtype}, device {b.device} like b, got "
                f"{tuple(x0.shape)}, {x0.dtype}, {x0.device}"
            )
        x0b, _ = _normalize_rhs(A, x0.detach(), name="x0", n=A.shape[-1])
    if A.shape[-1] == 0 or A.batch_size == 0:
        preconditioner = "none"  # nothing to precondition (and nothing to build one from)
    elif preconditioner == "auto":
        preconditioner = _auto_preconditioner(A, method, backend)
    opts["x0"] = x0b
    solver = KrylovSolver(A, method, backend, preconditioner, opts)
    x = LinearSolve.apply(A.values.reshape(A.batch_size, A.nnz), bb, solver, "N")
    x = restore(x)
    return (x, solver.info) if return_info else x


def _auto_preconditioner(A, method: str, backend: str) -> str:
    """Jacobi when the diagonal is stored and nonzero (positive for the Hermitian methods), else none."""
    pos = A.pattern.diag_positions
    if pos is None:
        return "none"
    d = A.values.detach()[..., pos]
    if method in ("cg", "minres"):
        ok = bool((d.real > 0).all()) if d.is_complex() else bool((d > 0).all())
        return "jacobi" if ok else "none"
    if backend == "core":
        return "ilu0" if bool((d != 0).all()) else "none"
    return "jacobi" if bool((d != 0).all()) else "none"


class _MatrixFreeSolve(torch.autograd.Function):
    """x = A(theta)^{-1} b for a matrix-free operator.

    Backward: lambda = A^{-H} g (one adjoint Krylov solve with rmatvec), grad_b = lambda, and
    grad_theta = VJP of theta -> A(theta) x at cotangent -lambda (dL = -<lambda, dA x>).
    """

    @staticmethod
    def forward(ctx, b, solver, *params):
        x = solver.solve(b.detach(), adjoint=False)
        ctx.solver = solver
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        solver = ctx.solver
        lam = solver.solve(g, adjoint=True)
        grads = [None] * len(solver.op.parameters)
        want = [i for i, p in enumerate(solver.op.parameters) if ctx.needs_input_grad[2 + i]]
        if want:
            with torch.enable_grad():
                y = solver.op.matvec(x.detach())
                got = torch.autograd.grad(y, [solver.op.parameters[i] for i in want], -lam, allow_unused=True)
            for i, gi in zip(want, got):
                grads[i] = gi
        return (lam if ctx.needs_input_grad[0] else None), None, *grads


class _MatrixFreeSolver:
    def __init__(self, op: LinearOperator, method, preconditioner, opts):
        self.op, self.method, self.opts = op, method, opts
        self.M = preconditioner
        self.info = SolveInfo(method, "torch", "none" if preconditioner is None else "callable")

    def solve(self, b, adjoint: bool):
        from . import _krylov_torch as kt

        o = self.opts
        mv = self.op.rmatvec if adjoint and self.method not in ("cg", "minres") else self.op.matvec
        with torch.no_grad() if not adjoint else torch.enable_grad():
            x, info = kt.krylov_solve(
                (lambda v: mv(v).detach()),
                b,
                method=self.method,
                rtol=o["rtol"],
                atol=o["atol"],
                maxiter=o["maxiter"],
                x0=None if adjoint else o["x0"],
                restart=o["restart"],
                M=self.M,
                callback=o["callback"],
                check_every=o["check_every"],
                record_history=o["return_info"],
            )
        si = SolveInfo(self.method, "torch", self.info.preconditioner)
        si._merge(dataclasses.asdict(info))
        if adjoint:
            self.info.adjoint = si
        else:
            adj = self.info.adjoint
            self.info = si
            self.info.adjoint = adj
        _report(si, o["on_fail"], "adjoint solve (backward)" if adjoint else "solve")
        return x


def matrix_free_solve(
    op: LinearOperator,
    b,
    *,
    method="auto",
    preconditioner=None,
    rtol=1e-8,
    atol=0.0,
    maxiter=None,
    x0=None,
    restart=30,
    callback=None,
    return_info=False,
    on_fail="warn",
    check_every=10,
):
    """Solve ``op x = b`` for a :class:`LinearOperator` with a torch-native Krylov method."""
    opts = _check_options(rtol, atol, maxiter, restart, check_every, on_fail)
    b = torch.as_tensor(b)
    n = op.shape[0]
    if b.dim() not in (1, 2) or b.shape[0] != n:
        raise InvalidArgumentError(f"b: expected shape ({n},) or ({n}, k), got {tuple(b.shape)}")
    if b.dtype != op.dtype or b.device != op.device:
        raise InvalidArgumentError(
            f"b: expected dtype {op.dtype} on {op.device}, got {b.dtype} on {b.device}"
        )
    if method == "auto":
        method = "gmres"
    if method not in ITERATIVE_METHODS:
        raise InvalidArgumentError(
            f"method: a LinearOperator needs one of {ITERATIVE_METHODS}, got {method!r}"
        )
    if isinstance(preconditioner, str) and preconditioner not in ("none", "auto"):
        raise InvalidArgumentError(
            "preconditioner: a LinearOperator takes a callable preconditioner (or None)"
        )
    if isinstance(preconditioner, str):
        preconditioner = None
    vec = b.dim() == 1
    bb = b.unsqueeze(-1) if vec else b
    x0b = None if x0 is None else torch.as_tensor(x0).reshape(bb.shape)
    opts.update(x0=x0b, callback=callback, return_info=bool(return_info))
    solver = _MatrixFreeSolver(op, method, preconditioner, opts)
    x = _MatrixFreeSolve.apply(bb, solver, *op.parameters)
    x = x.squeeze(-1) if vec else x
    return (x, solver.info) if return_info else x


# -- least squares -------------------------------------------------------------------------------------
class _LstsqSolver:
    """LSQR on a (possibly rectangular) unbatched SparseTensor, for min ||A x - b||."""

    def __init__(self, A, opts):
        self.A, self.opts = A, opts
        p = A.pattern
        crow, col = p.csr_for_core()
        v = A.values.detach()
        pt, perm = p.transpose()
        vt = v[perm].conj() if v.is_complex() else v[perm]
        ct, colt = pt.csr_for_core()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.mat = torch.sparse_csr_tensor(crow, col, v, A.shape)
            self.mat_h = torch.sparse_csr_tensor(ct, colt, vt, (A.shape[1], A.shape[0]))
        self.info = SolveInfo("lsqr", "torch", "none")

    def run(self, adjoint: bool, rhs, what: str):
        from . import _krylov_torch as kt

        o = self.opts
        fwd, bwd = (self.mat_h, self.mat) if adjoint else (self.mat, self.mat_h)
        x, info = kt.lsqr(
            lambda v: fwd @ v,
            lambda v: bwd @ v,
            rhs,
            rtol=o["rtol"],
            atol=o["atol"],
            maxiter=o["maxiter"],
            callback=o["callback"],
            check_every=o["check_every"],
            record_history=o["return_info"],
        )
        si = SolveInfo("lsqr", "torch", "none")
        si._merge(dataclasses.asdict(info))
        if what == "solve":
            self.info = si
        else:
            self.info.adjoint = si
        # In least squares the residual need not vanish: judge convergence by LSQR's own test.
        if not info.converged:
            _report(si, o["on_fail"], what)
        return x


class _Lstsq(torch.autograd.Function):
    """x = argmin ||A x - b|| for A (m x n) of full column rank, r = b - A x.

    dx = (A^H A)^{-1} (dA^H r - A^H dA x) + A^+ db. With lambda = (A^H A)^{-1} g and y = A lambda = A^{+H} g:
      dL = <lambda, dA^H r> - <y, dA x> + <y, db>
      =>  grad_b = y,   grad_A = r lambda^H - y x^H   (on the pattern: r[row] conj(lambda[col]) - y[row] conj(x[col])).
    y is the minimum-norm solution of A^H y = g and lambda solves A lambda = y (consistent): two LSQR solves.
    """

    @staticmethod
    def forward(ctx, values, b, solver):
        x = solver.run(False, b.detach(), "solve")
        r = b.detach() - solver.mat @ x
        ctx.solver = solver
        ctx.save_for_backward(x, r)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, r = ctx.saved_tensors
        s = ctx.solver
        y = s.run(True, g, "adjoint solve (backward)")
        grad_values = None
        if ctx.needs_input_grad[0]:
            lam = s.run(False, y, "adjoint solve (backward)")
            p = s.A.pattern
            grad_values = (r[p.row] * lam[p.col].conj() - y[p.row] * x[p.col].conj()).sum(-1)
        return grad_values, y, None


def lstsq(
    A,
    b,
    *,
    rtol=1e-10,
    atol=0.0,
    maxiter=None,
    callback=None,
    return_info=False,
    on_fail="warn",
    check_every=10,
):
    """Least squares ``min ||A x - b||`` for a sparse, possibly rectangular ``A`` (LSQR, torch backend).

    Differentiable with respect to ``b`` and A's values when A has full column rank (two extra LSQR
    solves in backward). ``b``: ``(m,)`` or ``(m, k)``. Returns ``x`` (``(n,)`` / ``(n, k)``), and a
    :class:`SolveInfo` with ``return_info=True``.
    """
    from ._solve import as_sparse_tensor

    opts = _check_options(rtol, atol, maxiter, 1, check_every, on_fail)
    A = as_sparse_tensor(A)
    if A.batch_shape:
        raise InvalidArgumentError(f"A: lstsq takes an unbatched matrix, got batch shape {A.batch_shape}")
    b = torch.as_tensor(b)
    m = A.shape[0]
    if b.dim() not in (1, 2) or b.shape[0] != m:
        raise InvalidArgumentError(
            f"b: expected shape ({m},) or ({m}, k) for A of shape {A.shape}, got {tuple(b.shape)}"
        )
    if b.dtype != A.dtype or b.device != A.device:
        raise InvalidArgumentError(f"b: expected dtype {A.dtype} on {A.device}, got {b.dtype} on {b.device}")
    vec = b.dim() == 1
    bb = b.unsqueeze(-1) if vec else b
    opts.update(callback=callback, return_info=bool(return_info))
    solver = _LstsqSolver(A, opts)
    x = _Lstsq.apply(A.values, bb, solver)
    x = x.squeeze(-1) if vec else x
    return (x, solver.info) if return_info else x
