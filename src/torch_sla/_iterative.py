"""Iterative (Krylov) solves: the iterative backends (the C++ core on the CPU, fused CUDA kernels on GPUs,
torch ops on any device), matrix-free operators and least squares, all with one autograd node per solve
and an adjoint Krylov solve in backward."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import torch

from . import _krylov_torch as kt
from ._amg import AmgHierarchy, build_amg
from ._autograd import LinearSolve, pattern_jvp, pattern_vjp, solve_through
from ._checks import core_array, dtype_name, is_wrapped, plain, stream_of, to_core
from ._core import core, core_build_info, core_missing
from ._operator import CsrOperator, LinearOperator
from ._options import KrylovOptions
from ._registry import ITERATIVE_METHODS, Backend, Choice, backends, iterative_candidates, register
from ._sparse_tensor import SparseTensor, as_sparse_tensor, check_rhs, check_values_finite, normalize_rhs
from .errors import BackendUnavailableError, ConvergenceError, InvalidArgumentError

HERMITIAN_KRYLOV = ("cg", "minres")


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
    setup_time: float = 0.0  # seconds building the preconditioner for this solve (0: reused)
    solve_time: float = 0.0  # seconds in the Krylov iterations
    hierarchy: AmgHierarchy | None = None  # preconditioner="amg": the hierarchy (of the first member)

    def _merge(self, d: dict) -> None:
        """Fold one batch member's result into this summary (worst case wins)."""
        self.iterations = max(self.iterations, int(d["iterations"]))
        self.residual = (
            max(self.residual, float(d["residual"])) if math.isfinite(d["residual"]) else float("nan")
        )
        if not d["converged"] and self.converged:
            self.converged, self.reason = False, d["reason"]
        hist = d.get("residual_history")
        if not hist:
            return
        if len(hist) > len(self.residual_history):
            self.residual_history.extend([0.0] * (len(hist) - len(self.residual_history)))
        for i, h in enumerate(hist):
            self.residual_history[i] = max(self.residual_history[i], h)


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
    warnings.warn(msg, RuntimeWarning, stacklevel=5)


# -- backends ------------------------------------------------------------------------------------------
class KrylovBackend(Backend):
    """An iterative backend: its preconditioner policy, how it builds preconditioners for a matrix (once
    per batch member, kept for the adjoint solve) and how it solves one batch member."""

    kind = "iterative"
    methods = ITERATIVE_METHODS
    operations = frozenset({"solve", "batch"})

    def auto_preconditioner(self, A: SparseTensor, method: str) -> tuple[str, str]:
        """(what preconditioner="auto" means for this matrix and method, why). Jacobi for CG/MINRES
        when the diagonal is stored and positive; for the general methods the backend's own choice
        (``general_preconditioner``) when the diagonal is stored and nonzero; else none."""
        if A.shape[-1] == 0 or A.batch_size == 0:
            return "none", "an empty system has nothing to precondition"
        pos = A.pattern.diag_positions
        if pos is None:
            return "none", "a diagonal entry is not stored"
        d = A.values.detach()[..., pos]
        if method in HERMITIAN_KRYLOV:
            ok = bool((d.real > 0).all()) if d.is_complex() else bool((d > 0).all())
            return (
                ("jacobi", "Jacobi: the diagonal is positive")
                if ok
                else ("none", "the diagonal is not positive")
            )
        if bool((d != 0).all()):
            return self.general_preconditioner, f"{self.general_preconditioner}: the diagonal is nonzero"
        return "none", "the diagonal has zeros"

    general_preconditioner = "jacobi"

    def build_preconditioners(self, solver: KrylovSolver, name: str) -> Any:
        """Whatever ``solve_member`` needs for the named preconditioner (validated here)."""
        raise NotImplementedError

    def solve_member(self, solver: KrylovSolver, i: int, b: torch.Tensor, x0, op: str):
        """Solve op(A_i) x = b (n, k) for batch member i; returns (x, info dict)."""
        raise NotImplementedError


class CoreKrylovBackend(KrylovBackend):
    """C++ Krylov solvers (OpenMP, fused kernels, int32 indices) on the CPU."""

    name = "core"
    devices = ("cpu",)
    preconditioners = ("jacobi", "ssor", "ic0", "ilu0", "amg")
    general_preconditioner = "ilu0"
    priority = {"cpu": 0}

    def availability(self) -> tuple[bool, str]:
        if (why := core_missing()) is not None:
            return False, why
        return (
            True,
            "C++ Krylov solvers (OpenMP, fused kernels, int32 indices); jacobi/ssor/ic0/ilu0/amg "
            "preconditioners",
        )

    def build_preconditioners(self, solver: KrylovSolver, name: str) -> Any:
        if name == "amg":
            return [
                build_amg(solver.pattern, v, solver.opts, near_nullspace=solver.opts.amg_near_nullspace)
                for v in solver.values
            ]
        handle = solver.pattern.core_handle()
        threads = torch.get_num_threads()
        C = core()
        return [
            C.make_preconditioner(name, handle, core_array(v), solver.opts.omega, threads)
            for v in solver.values
        ]

    def solve_stack(self, solver: KrylovSolver, b: torch.Tensor, x0, op: str):
        """Every batch member in one call (members in parallel, the GIL released once), or None when
        the solve needs per-member calls: a Python callback or a Python preconditioner."""
        kind, pre = solver.precond
        if b.shape[0] < 2 or solver.opts.callback is not None or kind == "callable":
            return None
        C = core()
        pattern, values = solver.operator_values(op)
        x = to_core(x0.clone() if x0 is not None else torch.zeros_like(b))
        o = solver.opts
        results = C.krylov_solve_batch(
            solver.method,
            pattern.core_handle(),
            core_array(values),
            core_array(b),
            core_array(x),
            [_core_precond(p) for p in pre] if kind == "named" else None,
            op,
            o.rtol,
            o.atol,
            o.max_iterations(solver.n),
            min(o.restart, solver.n),
            torch.get_num_threads(),
            o.return_info,
        )
        return x, results

    def solve_member(self, solver: KrylovSolver, i: int, b: torch.Tensor, x0, op: str):
        C = core()
        pattern, values = solver.operator_values(op)
        x = (
            to_core(x0.clone())
            if x0 is not None
            else torch.zeros_like(b, memory_format=torch.contiguous_format)
        )
        kind, pre = solver.precond
        M = None
        if kind == "named":
            M = _core_precond(pre[i])
        elif kind == "callable":
            M = C.callable_preconditioner(pre, dtype_name(b.dtype), solver.n)
        o = solver.opts
        d = C.krylov_solve(
            solver.method,
            pattern.core_handle(),  # validated once per pattern
            core_array(values[i]),
            core_array(b),
            core_array(x),
            M,
            op,
            o.rtol,
            o.atol,
            o.max_iterations(solver.n),
            min(
                o.restart, solver.n
            ),  # a Krylov space has at most n dimensions; GMRES keeps restart + 1 vectors
            torch.get_num_threads(),
            o.return_info,
            o.callback,
        )
        return x, d


def _core_precond(p):
    return p.handle if isinstance(p, AmgHierarchy) else p


class TorchKrylovBackend(KrylovBackend):
    """Krylov solvers written with torch ops (any device), on the operator protocol."""

    name = "torch"
    devices = ("cpu", "cuda", "mps", "xpu")
    preconditioners = ("jacobi", "chebyshev", "amg")
    priority = {"cpu": 1, "cuda": 1, "mps": 0, "xpu": 0}

    def availability(self) -> tuple[bool, str]:
        return (
            True,
            "PyTorch-native Krylov solvers on any device; jacobi/chebyshev/amg preconditioners (amg: set up "
            "on the CPU, cycled on the device); matrix-free",
        )

    def build_preconditioners(self, solver: KrylovSolver, name: str) -> Any:
        if solver.pattern.diag_positions is None:
            raise InvalidArgumentError(
                f"preconditioner: {name!r} needs every diagonal entry of A to be stored"
            )
        if name == "amg":  # set up by the core on the CPU; the cycle runs with torch ops on A's device
            if solver.opts.amg_smoother not in ("auto", "jacobi", "chebyshev"):
                raise InvalidArgumentError(
                    f"amg_smoother: {solver.opts.amg_smoother!r} runs on the core backend only; the torch "
                    "backend has 'jacobi' and 'chebyshev'"
                )
            return [
                build_amg(
                    solver.pattern,
                    v,
                    solver.opts,
                    near_nullspace=solver.opts.amg_near_nullspace,
                    auto_smoother="chebyshev",  # parallel: the symmetric Gauss-Seidel sweeps are sequential
                )
                for v in solver.values
            ]
        return name  # built per member and operator in solve_member (cheap, and Chebyshev needs op(A))

    def _preconditioner(self, solver: KrylovSolver, i: int, A_op, op: str):
        kind, pre = solver.precond
        if kind == "none":
            return None
        if kind == "callable":
            return pre
        if not isinstance(pre, str):  # AMG hierarchies, one per member
            return pre[i].torch_cycle(solver.values.device, op == "H")
        diag = solver.values[i][solver.pattern.diag_positions]
        jac = kt.JacobiPreconditioner(diag.conj() if op == "H" else diag)
        if pre == "jacobi":
            return jac
        return kt.ChebyshevPreconditioner(
            A_op, solver.n, diag.dtype, diag.device, degree=solver.opts.degree, inner=jac
        )

    def solve_member(self, solver: KrylovSolver, i: int, b: torch.Tensor, x0, op: str):
        pattern, values = solver.operator_values(op)
        crow, col = pattern.csr_for_core()  # int32 indices when they fit: less index traffic in SpMV
        A_op = CsrOperator(crow, col, values[i], solver.n)
        o = solver.opts
        x, info = kt.krylov_solve(
            A_op,
            b,
            method=solver.method,
            rtol=o.rtol,
            atol=o.atol,
            maxiter=o.maxiter,
            x0=x0,
            restart=o.restart,
            M=self._preconditioner(solver, i, A_op, op),
            callback=o.callback,
            check_every=o.check_every,
            record_history=o.return_info,
        )
        return x, dataclasses.asdict(info)


def merge_columns(results: list[dict]) -> dict:
    """One info dict for the columns of a block solved one by one: the worst column's figures."""
    out = dict(results[0])
    for d in results[1:]:
        out["iterations"] = max(out["iterations"], d["iterations"])
        out["residual"] = max(out["residual"], d["residual"])
        if out["converged"] and not d["converged"]:
            out["converged"], out["reason"] = False, d["reason"]
        h, g = out.get("residual_history") or [], d.get("residual_history") or []
        out["residual_history"] = [max(a, b) for a, b in zip(h, g)] + (
            h[len(g) :] if len(h) > len(g) else g[len(h) :]
        )
    return out


class CudaKrylovBackend(KrylovBackend):
    """Conjugate gradients in fused CUDA kernels of the C++ core (SpMV fused with its dot product, vector
    updates with theirs, Jacobi inside them; the residual read every ``check_every`` iterations), on
    torch's current stream. CG only; other methods, callbacks and other preconditioners go to the torch
    backend."""

    name = "cuda"
    devices = ("cuda",)
    methods = ("cg",)
    preconditioners = ("jacobi",)
    priority = {"cuda": 0}

    def availability(self) -> tuple[bool, str]:
        if (why := core_missing(needs_cuda=True)) is not None:
            return False, why
        info = core_build_info()
        if not info.get("cuda_device_count"):
            return False, info.get("cuda_error") or "no CUDA device is visible to the core's CUDA runtime"
        return True, "fused CUDA kernels: CG with Jacobi (SpMV + dot fused, fused updates), int32 indices"

    def accepts(self, opts: KrylovOptions) -> str | None:
        if opts.callback is not None:
            return (
                f"backend '{self.name}' takes no callback (it reads the residual every few iterations only)"
            )
        pre = opts.preconditioner
        if pre is None or (isinstance(pre, str) and pre in ("auto", "none", "jacobi")):
            return None
        return f"backend '{self.name}' has no preconditioner {pre if isinstance(pre, str) else type(pre).__name__!r}"

    def build_preconditioners(self, solver: KrylovSolver, name: str) -> Any:
        return name  # the kernels build 1 / diag(A) themselves

    def solve_member(self, solver: KrylovSolver, i: int, b: torch.Tensor, x0, op: str):
        # CG: A is Hermitian (checked by choose), so op(A) = A whatever op.
        C = core()
        crow, col = solver.pattern.csr_for_core()  # on A's device; int32 when the sizes fit
        values = to_core(solver.values[i])
        bt = to_core(b.t())  # (k, n): each right-hand side contiguous
        x = to_core(x0.t()).clone() if x0 is not None else torch.zeros_like(bt)
        jacobi = solver.precond[0] == "named"
        o = solver.opts
        stream = stream_of(bt)
        results = [
            C.cuda_cg(
                core_array(crow),
                core_array(col),
                core_array(values),
                solver.n,
                core_array(bt[j]),
                core_array(x[j]),
                o.rtol,
                o.atol,
                o.max_iterations(solver.n),
                jacobi,
                o.check_every,
                o.return_info,
                stream,
            )
            for j in range(bt.shape[0])
        ]
        return x.t().contiguous(), merge_columns(results)


for _backend in (CoreKrylovBackend(), TorchKrylovBackend(), CudaKrylovBackend()):
    register(_backend)


# -- the solver of one iterative solve (the Solver protocol of LinearSolve) ----------------------------
class KrylovSolver:
    """Everything one iterative solve needs, kept for the adjoint solve in backward: the matrix values
    (detached), its preconditioners (built once, per batch member), the backend and the options."""

    def __init__(
        self,
        A: SparseTensor,
        choice: Choice,
        opts: KrylovOptions,
        x0: torch.Tensor | None,
        *,
        cache: bool = False,
        values: torch.Tensor | None = None,
    ):
        self.A = A
        self.pattern = p = A.pattern
        self.method = choice.method
        self.backend: KrylovBackend = choice.impl
        self.opts = opts
        # (B, nnz) values, detached: given by the caller when it has them in that shape already.
        self.values = (
            values.detach() if values is not None else A.values.detach().reshape(A.batch_size, A.nnz)
        )
        self.n = p.n_cols
        self.x0 = x0
        spec = opts.preconditioner
        if isinstance(spec, str) and spec == "auto":
            spec = choice.preconditioner if choice.preconditioner is not None else "none"
        if cache and isinstance(spec, str) and not (spec == "amg" and opts.amg_near_nullspace is not None):
            # A named preconditioner is built once per values of A (kept on A until they change in place
            # or are replaced) and shared by later solves: repeated solves skip its setup.
            key = ("preconditioner", self.backend.name, spec, opts.omega, opts.degree)
            if spec == "amg":
                key += (
                    opts.amg_cycle,
                    opts.amg_smoother,
                    opts.amg_strength,
                    opts.amg_truncation,
                    opts.amg_coarse_drop,
                    opts.amg_block_size,
                    opts.amg_sweeps,
                    opts.amg_degree,
                    opts.amg_max_coarse,
                    opts.amg_setup,
                )
            t0 = time.perf_counter()
            self.preconditioner_name, self.precond = A.values_cached(key, lambda: self._preconditioner(spec))
        else:
            t0 = time.perf_counter()
            self.preconditioner_name, self.precond = self._preconditioner(spec)
        self.setup_time = time.perf_counter() - t0
        self._forward_done = False
        self.info = self._new_info()
        self._adjoint_values = None

    def _preconditioner(self, spec) -> tuple[str, tuple[str, Any]]:
        if (
            spec is None
            or (isinstance(spec, str) and spec == "none")
            or self.n == 0
            or self.values.shape[0] == 0
        ):
            return "none", ("none", None)
        if isinstance(spec, SparseTensor):
            P = spec
            if P.shape[-2:] != (self.n, self.n) or P.dtype != self.A.dtype:
                raise InvalidArgumentError(
                    f"preconditioner: a SparseTensor preconditioner must be ({self.n}, {self.n}) with dtype "
                    f"{self.A.dtype}, got {P.shape} {P.dtype}"
                )
            return "sparse", ("callable", lambda r: to_core(P.detach() @ r))
        if callable(spec):
            # The core copies the callable's result from raw memory: materialize lazy conj/neg views.
            return getattr(spec, "__name__", "callable"), ("callable", lambda r: to_core(spec(r)))
        if not isinstance(spec, str):
            raise InvalidArgumentError(
                f"preconditioner: expected a name, a callable or a SparseTensor, got {spec!r}"
            )
        if spec not in self.backend.preconditioners:
            others = [b.name for b in _iterative_backends() if spec in b.preconditioners]
            raise BackendUnavailableError(
                f"preconditioner: {spec!r} is not available on backend {self.backend.name!r} (it has "
                f"{', '.join(self.backend.preconditioners)})"
                + (f"; backend {others[0]!r} has it" if others else "")
            )
        return spec, ("named", self.backend.build_preconditioners(self, spec))

    def _new_info(self) -> SolveInfo:
        info = SolveInfo(self.method, self.backend.name, self.preconditioner_name)
        kind, pre = self.precond
        if kind == "named" and isinstance(pre, list) and pre and isinstance(pre[0], AmgHierarchy):
            info.hierarchy = pre[0]
        if not self._forward_done:
            info.setup_time = self.setup_time
        return info

    def operator_values(self, op: str) -> tuple[Any, torch.Tensor]:
        """Pattern and (B, nnz) values of op(A)."""
        if op == "N" or self.method in HERMITIAN_KRYLOV:  # Hermitian methods: A^H = A (checked by choose)
            return self.pattern, self.values
        if self._adjoint_values is None:
            pt, perm = self.pattern.transpose()
            v = self.values[:, perm]
            self._adjoint_values = (pt, v.conj() if v.is_complex() else v)
        return self._adjoint_values

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        # The forward solve fills the info made in __init__, every later (adjoint) solve a new one.
        info = self._new_info() if self._forward_done else self.info
        t0 = time.perf_counter()
        if self.n == 0 or b.shape[0] == 0 or b.shape[-1] == 0:  # empty: nothing to iterate on
            out = torch.zeros_like(b)
        else:
            x0 = self.x0 if op == "N" else None
            stacked = (
                self.backend.solve_stack(self, b, x0, op) if hasattr(self.backend, "solve_stack") else None
            )
            if stacked is not None:
                out, results = stacked
                for d in results:
                    info._merge(d)
            elif b.shape[0] == 1:  # one member: its solution is the result (no copy)
                x, d = self.backend.solve_member(self, 0, b[0], None if x0 is None else x0[0], op)
                out = x.unsqueeze(0)
                info._merge(d)
            else:
                out = torch.empty_like(b)
                for i in range(b.shape[0]):
                    out[i], d = self.backend.solve_member(self, i, b[i], None if x0 is None else x0[i], op)
                    info._merge(d)
        info.solve_time = time.perf_counter() - t0
        if not self._forward_done:  # the first call is the forward solve, later ones are backward's
            self.info, self._forward_done = info, True
            _report(info, self.opts.on_fail, "solve")
        else:
            self.info.adjoint = info
            _report(info, self.opts.on_fail, "adjoint solve (backward)")
        return out


def _iterative_backends() -> list[Backend]:
    return [b for b in backends().values() if b.kind == "iterative"]


class KrylovSource:
    """The KrylovSolver of one solve, built on first use from the values LinearSolve is given (the
    SolverSource protocol), so that the preconditioners are built from plain tensors."""

    def __init__(
        self,
        A: SparseTensor,
        choice: Choice,
        opts: KrylovOptions,
        x0: torch.Tensor | None,
        params: torch.Tensor | None = None,
    ):
        self.A, self.choice, self.opts, self.x0 = A, choice, opts, x0
        self._params = params  # A's own (B, nnz) values, when the caller solves with them untransformed
        self._built: KrylovSolver | None = None

    def solver_for(self, params) -> KrylovSolver:
        if self._built is None:
            if params[0] is self._params:  # A's own values: its cached preconditioners apply
                self._built = KrylovSolver(
                    self.A, self.choice, self.opts, self.x0, cache=True, values=params[0]
                )
            else:  # plain values handed over by torch.func, or a rebatched member
                A = SparseTensor._from_pattern(params[0].detach(), self.A.pattern)
                self._built = KrylovSolver(A, self.choice, self.opts, self.x0)
        return self._built

    def rebatched(self) -> KrylovSource:
        return KrylovSource(self.A, self.choice, self.opts, None)

    def params_vjp(self, params, left, right):
        return (pattern_vjp(self.A.pattern, left, right),)

    def params_jvp(self, params, tangents, x, op):
        return pattern_jvp(self.A.pattern, tangents[0], x, op)

    @property
    def info(self) -> SolveInfo | None:
        return None if self._built is None else self._built.info


def backend_for_options(A: SparseTensor, choice: Choice, opts: KrylovOptions) -> Choice:
    """``choice``, or when ``auto`` chose a backend that cannot run these options (a callback, a
    preconditioner it does not have: the CUDA kernels have Jacobi only) the next one in the device's
    order that can, with the reason. A backend the caller named is kept (its solve then says what it
    lacks)."""
    if choice.requested_backend or choice.impl.accepts(opts) is None:
        return choice
    here, _ = iterative_candidates(A.device, A.dtype, choice.method, opts)
    if not here:
        return choice
    pre, why = here[0].auto_preconditioner(A, choice.method)
    return dataclasses.replace(
        choice,
        backend=here[0].name,
        preconditioner=pre,
        reasons=[
            *choice.reasons,
            f"{choice.impl.accepts(opts)}: {here[0].name} instead (preconditioner='auto' would be {pre!r}: {why})",
        ],
    )


def iterative_solve(A: SparseTensor, b, choice: Choice, opts: KrylovOptions, *, check_finite: bool = True):
    """Iterative solve of a SparseTensor system as ``choice`` says (see :func:`torch_sla.solve`)."""
    p = A.pattern
    if p.n_rows != p.n_cols:
        raise InvalidArgumentError(f"A: an iterative solve needs a square matrix, got shape {A.shape}")
    if check_finite:
        check_values_finite(A)
    b = check_rhs(A, b, check_finite)
    bb, restore = normalize_rhs(A, b, name="b", n=p.n_cols)
    x0b = None
    if opts.x0 is not None:
        x0 = torch.as_tensor(opts.x0)
        if x0.shape != b.shape or x0.dtype != b.dtype or x0.device != b.device:
            raise InvalidArgumentError(
                f"x0: expected shape {tuple(b.shape)}, dtype {b.dtype}, device {b.device} like b, got "
                f"{tuple(x0.shape)}, {x0.dtype}, {x0.device}"
            )
        x0b, _ = normalize_rhs(A, plain(x0.detach()), name="x0", n=A.shape[-1])
    choice = backend_for_options(A, choice, opts)
    values = A.values.reshape(A.batch_size, p.nnz) if A.batch_shape else A.values.view(1, p.nnz)
    source = KrylovSource(A, choice, opts, x0b, None if is_wrapped(A.values) else values)
    x = restore(solve_through(source, "N", bb, values))
    return (x, source.info) if opts.return_info else x


# -- matrix-free operators --------------------------------------------------------------------------------
class MatrixFreeSolver:
    """A :class:`LinearOperator` solve for LinearSolve: torch Krylov kernels on the operator, and the
    gradient to its parameters as one vector-Jacobian product of ``matvec``."""

    def __init__(self, op: LinearOperator, method: str, preconditioner, opts: KrylovOptions):
        self.op, self.method, self.opts = op, method, opts
        self.M = preconditioner
        self.info = SolveInfo(method, "torch", "none" if preconditioner is None else "callable")
        self._forward_done = False

    def solver_for(self, params) -> MatrixFreeSolver:
        return self  # the operator's matvec reads its parameters itself

    def rebatched(self):
        raise InvalidArgumentError(
            "parameters: vmap over the parameters of a LinearOperator is not supported (its matvec closes "
            "over them); vmap over b works, or use a SparseTensor whose values carry the batch"
        )

    def params_jvp(self, params, tangents, x, op):
        raise InvalidArgumentError(
            "forward-mode differentiation (jvp) through a matrix-free solve is not supported; use reverse "
            "mode (backward, torch.func.grad / vjp)"
        )

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        adjoint = op == "H" and self.method not in HERMITIAN_KRYLOV
        A = self.op
        if adjoint:
            A = _AdjointView(self.op)
        o = self.opts
        with torch.no_grad():
            x, info = kt.krylov_solve(
                A,
                b[0],
                method=self.method,
                rtol=o.rtol,
                atol=o.atol,
                maxiter=o.maxiter,
                x0=None if self._forward_done else o.x0,
                restart=o.restart,
                M=self.M,
                callback=o.callback,
                check_every=o.check_every,
                record_history=o.return_info,
            )
        si = SolveInfo(self.method, "torch", self.info.preconditioner)
        si._merge(dataclasses.asdict(info))
        if self._forward_done:
            self.info.adjoint = si
            _report(si, o.on_fail, "adjoint solve (backward)")
        else:
            self.info, self._forward_done = si, True
            _report(si, o.on_fail, "solve")
        return x.unsqueeze(0)

    def params_vjp(self, params, left, right):
        # VJP of theta -> A(theta) right at -left. left and right are constants of this partial
        # derivative (x depends on theta through the solve itself, which LinearSolve accounts for).
        want = [i for i, p in enumerate(params) if p.requires_grad]
        out: list = [None] * len(params)
        if not want:
            return tuple(out)
        chosen = [params[i] for i in want]
        if any(is_wrapped(p) for p in chosen):
            # Inside torch.func.grad: matvec reads the transform's own wrapped parameters, so the VJP is
            # taken on them directly; it is exact to first order. A second derivative would miss the
            # terms through left and right: refuse nested transforms rather than answer wrongly.
            if any(is_wrapped(torch._C._functorch.get_unwrapped(p)) for p in chosen):
                raise InvalidArgumentError(
                    "parameters: nested torch.func transforms (e.g. grad of grad, hessian) through a "
                    "matrix-free solve are not supported; use torch.autograd.grad(..., create_graph=True)"
                )
            with torch.enable_grad():
                y = self.op.matvec(right[0].detach())
                got = torch.autograd.grad(
                    y, chosen, -left[0].detach(), allow_unused=True, create_graph=torch.is_grad_enabled()
                )
        elif torch.is_grad_enabled():  # backward with create_graph: differentiable once more
            got = _ParamsVJP.apply([], self.op.matvec, -left[0], right[0], *chosen)
        else:
            with torch.enable_grad():
                y = self.op.matvec(right[0].detach())
                got = torch.autograd.grad(y, chosen, -left[0].detach(), allow_unused=True)
        for i, g in zip(want, got):
            out[i] = g
        return tuple(out)


class _ParamsVJP(torch.autograd.Function):
    """g = grad_theta of Re <v, A(theta) r> (the VJP of theta -> A(theta) r at the cotangent v), as a
    function of (v, r, theta) that autograd can differentiate once more: double backward through a
    matrix-free solve. Its backward differentiates g by autograd through ``matvec`` (a third derivative
    is not supported). ``holder`` carries the local graph from forward to setup_context."""

    @staticmethod
    def forward(holder, matvec, v, r, *theta):
        with torch.enable_grad():
            vv = v.detach().requires_grad_()
            rr = r.detach().requires_grad_()
            y = matvec(rr)
            g = torch.autograd.grad(y, theta, vv, allow_unused=True, create_graph=True)
        holder.append((vv, rr, theta, g))
        return tuple(torch.zeros_like(t) if gi is None else gi.detach() for gi, t in zip(g, theta))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.graph = inputs[0].pop()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *gg):
        vv, rr, theta, g = ctx.graph
        pairs = [(gi, go) for gi, go in zip(g, gg) if gi is not None and gi.requires_grad and go is not None]
        if not pairs:
            return (None, None, None, None) + (None,) * len(theta)
        got = torch.autograd.grad(
            [p[0] for p in pairs],
            [vv, rr, *theta],
            [p[1] for p in pairs],
            allow_unused=True,
            retain_graph=True,
        )
        return (None, None, got[0], got[1], *got[2:])


class _AdjointView:
    """``A^H`` of an operator, with the operator's own reductions (for adjoint solves)."""

    def __init__(self, op):
        self.op = op
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device

    def matvec(self, x):
        return self.op.rmatvec(x)

    def rmatvec(self, x):
        return self.op.matvec(x)

    def __getattr__(self, name):  # dot, rdot, norm, project, reduce
        return getattr(self.op, name)


def matrix_free_solve(op: LinearOperator, b, *, method: str = "auto", **kwargs):
    """Solve ``op x = b`` for a :class:`LinearOperator` with a torch-native Krylov method."""
    opts = KrylovOptions.from_kwargs(kwargs)
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
    pre = opts.preconditioner
    if isinstance(pre, str) and pre not in ("none", "auto"):
        raise InvalidArgumentError(
            "preconditioner: a LinearOperator takes a callable preconditioner (or None)"
        )
    if isinstance(pre, str):
        pre = None
    vec = b.dim() == 1
    bb = b.unsqueeze(-1) if vec else b
    if opts.x0 is not None:
        opts = dataclasses.replace(opts, x0=torch.as_tensor(opts.x0).reshape(bb.shape))
    solver = MatrixFreeSolver(op, method, pre, opts)
    x = LinearSolve.apply(solver, "N", bb.unsqueeze(0), *op.parameters)[0]
    x = x.squeeze(-1) if vec else x
    return (x, solver.info) if opts.return_info else x


# -- least squares -------------------------------------------------------------------------------------
def _pattern_matvec(
    pattern, values: torch.Tensor, x: torch.Tensor, n_out: int, adjoint: bool
) -> torch.Tensor:
    """A x (or A^H x) for (B, nnz) values on a pattern and a (B, n, k) block, with differentiable ops."""
    if adjoint:
        prod = values.conj()[:, :, None] * x[:, pattern.row, :]
        return x.new_zeros((x.shape[0], n_out, x.shape[2])).index_add(1, pattern.col, prod)
    prod = values[:, :, None] * x[:, pattern.col, :]
    return x.new_zeros((x.shape[0], n_out, x.shape[2])).index_add(1, pattern.row, prod)


class NormalEquations:
    """Least squares as a linear solve: x = argmin ||A x - b|| = N^{-1} A^H b with N = A^H A (A of full
    column rank), so that ``lstsq`` goes through LinearSolve like every other solve (double backward,
    torch.func).

    The source and solver of N (SolverSource and Solver protocols). N is Hermitian, so op N and H
    solve alike. ``raw_solve(c)`` finds x with N x = c by LSQR, which is stabler than iterating on N: the
    minimum-norm y with A^H y = c (LSQR on A^H from zero), then x = argmin ||A x - y||. The forward's
    c is A^H b for the caller's b, and then one LSQR on (A, b) gives x directly.

    params_vjp: d<l, N r> = <dA l, A r> + <A l, dA r>, so the VJP of values -> N r at -l is
    grad_values[k] = -((A r)[row_k] conj(l[col_k]) + (A l)[row_k] conj(r[col_k])), summed over columns.
    """

    def __init__(self, A: SparseTensor, opts: KrylovOptions):
        self.A, self.opts = A, opts
        self.info = SolveInfo("lsqr", "torch", "none")
        self._forward: tuple | None = None  # (b,) until the forward solve has run
        self._solves = 0
        self.mat = self.mat_h = None

    def _build(self, values: torch.Tensor) -> None:
        """A and A^H as torch CSR matrices, from plain values (inside LinearSolve's forward)."""
        p = self.A.pattern
        crow, col = p.csr_for_core()
        v = values.detach().reshape(-1)
        pt, perm = p.transpose()
        vt = v[perm].conj() if v.is_complex() else v[perm]
        ct, colt = pt.csr_for_core()
        m, n = self.A.shape
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.mat = torch.sparse_csr_tensor(crow, col, v, (m, n))
            self.mat_h = torch.sparse_csr_tensor(ct, colt, vt, (n, m))

    def set_forward(self, b: torch.Tensor) -> None:
        """The caller's b: the first solve (LinearSolve's forward, on c = A^H b) is one LSQR on (A, b)."""
        self._forward = (plain(b).detach(),)

    def _lsqr(self, adjoint: bool, rhs: torch.Tensor) -> torch.Tensor:
        o = self.opts
        fwd, bwd = (self.mat_h, self.mat) if adjoint else (self.mat, self.mat_h)
        x, info = kt.lsqr(
            (lambda v: fwd @ v, lambda v: bwd @ v),
            rhs,
            rtol=o.rtol,
            atol=o.atol,
            maxiter=o.maxiter,
            callback=o.callback,
            check_every=o.check_every,
            record_history=o.return_info,
        )
        si = SolveInfo("lsqr", "torch", "none")
        si._merge(dataclasses.asdict(info))
        what = "solve" if self._solves == 0 else "adjoint solve (backward)"
        if self._solves == 0:
            self.info = si
        else:
            self.info.adjoint = si
        self._solves += 1
        # In least squares the residual need not vanish: judge convergence by LSQR's own test.
        if not info.converged:
            _report(si, o.on_fail, what)
        return x

    # SolverSource
    def solver_for(self, params) -> NormalEquations:
        if self.mat is None:
            self._build(params[0])
        return self

    def rebatched(self):
        raise InvalidArgumentError("A: vmap over the values of a least-squares problem is not supported")

    def params_vjp(self, params, left, right):
        (values,) = params
        m = self.A.shape[0]
        p = self.A.pattern
        Ar = _pattern_matvec(p, values, right, m, adjoint=False)
        Al = _pattern_matvec(p, values, left, m, adjoint=False)
        grad = (Ar[:, p.row, :] * left[:, p.col, :].conj() + Al[:, p.row, :] * right[:, p.col, :].conj()).sum(
            -1
        )
        return (-grad,)

    def params_jvp(self, params, tangents, x, op):
        # d(A^H A) x = dA^H (A x) + A^H (dA x)
        (values,), (dv,) = params, tangents
        m, n = self.A.shape
        p = self.A.pattern
        Ax = _pattern_matvec(p, values, x, m, adjoint=False)
        dAx = _pattern_matvec(p, dv, x, m, adjoint=False)
        return _pattern_matvec(p, dv, Ax, n, adjoint=True) + _pattern_matvec(p, values, dAx, n, adjoint=True)

    # Solver
    def raw_solve(self, c: torch.Tensor, op: str) -> torch.Tensor:
        f = self._forward
        if f is not None:  # the forward solve
            self._forward = None
            return self._lsqr(False, f[0][0]).unsqueeze(0)
        y = self._lsqr(True, c[0])  # minimum-norm solution of A^H y = c
        return self._lsqr(False, y).unsqueeze(0)


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

    Differentiable with respect to ``b`` and A's values when A has full column rank, through the same
    primitive as every solve (double backward and torch.func.grad work): x = (A^H A)^{-1} A^H b, whose
    adjoint solve is two LSQR solves. ``b``: ``(m,)`` or ``(m, k)``. Returns ``x`` (``(n,)`` /
    ``(n, k)``), and a :class:`SolveInfo` with ``return_info=True``.
    """
    opts = KrylovOptions.from_kwargs(
        dict(
            rtol=rtol,
            atol=atol,
            maxiter=maxiter,
            callback=callback,
            return_info=return_info,
            on_fail=on_fail,
            check_every=check_every,
        )
    )
    A = as_sparse_tensor(A)
    if A.batch_shape:
        raise InvalidArgumentError(f"A: lstsq takes an unbatched matrix, got batch shape {A.batch_shape}")
    b = torch.as_tensor(b)
    m, n = A.shape
    if b.dim() not in (1, 2) or b.shape[0] != m:
        raise InvalidArgumentError(
            f"b: expected shape ({m},) or ({m}, k) for A of shape {A.shape}, got {tuple(b.shape)}"
        )
    if b.dtype != A.dtype or b.device != A.device:
        raise InvalidArgumentError(f"b: expected dtype {A.dtype} on {A.device}, got {b.dtype} on {b.device}")
    vec = b.dim() == 1
    bb = (b.unsqueeze(-1) if vec else b).unsqueeze(0)
    values = A.values.reshape(1, A.nnz)
    source = NormalEquations(A, opts)
    c = _pattern_matvec(A.pattern, values, bb, n, adjoint=True)  # A^H b, differentiable in values and b
    source.set_forward(bb)
    x = solve_through(source, "N", c, values)[0]
    x = x.squeeze(-1) if vec else x
    return (x, source.info) if opts.return_info else x


__all__ = ["LinearOperator", "SolveInfo", "lstsq", "iterative_solve", "matrix_free_solve"]
