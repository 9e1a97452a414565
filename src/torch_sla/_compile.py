"""``torch.compile`` support: a solve as one PyTorch custom operator, ``torch_sla::sparse_solve``.

Under ``torch.compile`` the planning of a solve (symmetry, the memory budget, the choice of backend) and
the factorization read the matrix's values, which a traced graph cannot do, and the C++ core is opaque
to the compiler. So :func:`torch_sla.solve` hands the whole solve to this operator when it is being
compiled: its real implementation runs the same planner and solvers as eager mode, on real tensors, at
run time; its fake implementation gives the compiler the output's shape; its registered backward is
the adjoint of :class:`~torch_sla._autograd.LinearSolve` (one solve with op flipped, through this
operator again, and the gradient on the pattern) written with traceable torch ops.

The forward solve's solver (factorization or preconditioners) is kept in a small table keyed by the
storage of the forward's output x, which backward holds and passes back to the operator, so that the
adjoint solve reuses it instead of factorizing again.
"""

from __future__ import annotations

import collections
import threading

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from ._autograd import flip
from ._checks import check_finite as check_finite_values
from ._direct import factorize_with
from ._iterative import KrylovSolver
from ._options import KrylovOptions
from ._pattern import Pattern
from ._registry import plan
from ._sparse_tensor import SparseTensor
from .errors import InvalidArgumentError

# Options a compiled solve accepts: numbers and names only (no callables, x0 or info objects).
COMPILED_OPTIONS = (
    "rtol",
    "atol",
    "maxiter",
    "restart",
    "preconditioner",
    "on_fail",
    "check_every",
    "omega",
    "degree",
)

_PATTERNS: collections.OrderedDict[tuple, Pattern] = collections.OrderedDict()
_PATTERN_SLOTS = 16
_SOLVERS: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
_SOLVER_SLOTS = 8
_LOCK = threading.Lock()


def _pattern(crow: torch.Tensor, col: torch.Tensor, n_cols: int) -> Pattern:
    """The Pattern of these index tensors, validated once: later calls with the same tensors (a compiled
    graph passes the same ones every time) find it, with its derived structure and analyses. An entry
    holds its tensors, so their memory cannot be reused while it is cached."""
    key = (crow.data_ptr(), col.data_ptr(), crow.numel() - 1, n_cols, col.numel())
    with _LOCK:
        p = _PATTERNS.get(key)
        if p is not None:
            _PATTERNS.move_to_end(key)
            return p
    p = Pattern.from_csr(crow, col, crow.numel() - 1, n_cols, check=True)
    if p.crow.data_ptr() == key[0] and p.col.data_ptr() == key[1]:  # no copy was made: safe to key on
        with _LOCK:
            _PATTERNS[key] = p
            while len(_PATTERNS) > _PATTERN_SLOTS:
                _PATTERNS.popitem(last=False)
    return p


def _build(values, crow, col, n_cols, backend, method, check_symmetry, opts: KrylovOptions):
    p = _pattern(crow, col, n_cols)
    A = SparseTensor._from_pattern(values.detach(), p)
    choice = plan(A, backend, method, check_symmetry=check_symmetry, nrhs=1)
    return factorize_with(A, choice) if choice.kind == "direct" else KrylovSolver(A, choice, opts, None)


def _remember(x: torch.Tensor, solver) -> None:
    """Keep the solver that produced ``x`` for backward, keyed by x's storage (alive while autograd
    holds x; an entry whose storage died is never used)."""
    ref = StorageWeakRef(x.untyped_storage())
    with _LOCK:
        _SOLVERS[ref.cdata] = (solver, ref)
        while len(_SOLVERS) > _SOLVER_SLOTS:
            _SOLVERS.popitem(last=False)


def _recall(x: torch.Tensor):
    """The solver that produced ``x``, or None."""
    key = StorageWeakRef(x.untyped_storage()).cdata
    with _LOCK:
        hit = _SOLVERS.get(key)
        if hit is None or hit[1].expired():
            return None
        _SOLVERS.move_to_end(key)
        return hit[0]


@torch.library.custom_op("torch_sla::sparse_solve", mutates_args=())
def sparse_solve(
    values: torch.Tensor,
    crow: torch.Tensor,
    col: torch.Tensor,
    b: torch.Tensor,
    forward_x: torch.Tensor | None,
    n_cols: int,
    backend: str,
    method: str,
    op: str,
    check_symmetry: bool,
    check_finite: bool,
    rtol: float,
    atol: float,
    maxiter: int,
    restart: int,
    preconditioner: str,
    check_every: int,
    omega: float,
    degree: int,
    on_fail: str,
) -> torch.Tensor:
    """op(A)^{-1} b for (B, nnz) values on the CSR pattern (crow, col) and a (B, n, k) stack b.

    ``forward_x``: in backward's adjoint solve, the forward solve's output, whose solver (factorization,
    preconditioners) is reused; None in a forward solve, which always plans and factorizes anew (the
    values may have changed in place, and a compiled graph's aliases need not share their version
    counter, so nothing is reused on the values' identity)."""
    opts = KrylovOptions.from_kwargs(
        dict(
            rtol=rtol,
            atol=atol,
            maxiter=maxiter if maxiter > 0 else None,
            restart=restart,
            preconditioner=preconditioner,
            check_every=check_every,
            omega=omega,
            degree=degree,
            on_fail=on_fail,
        )
    )
    if check_finite:
        check_finite_values(values, "A.values")
        check_finite_values(b, "b")
    solver = None if forward_x is None else _recall(forward_x)
    if solver is None:
        solver = _build(values, crow, col, n_cols, backend, method, check_symmetry, opts)
    x = solver.raw_solve(b, op).contiguous().clone()  # contiguous, as the fake implementation says
    if forward_x is None:
        _remember(x, solver)
    return x


@sparse_solve.register_fake
def _(values, crow, col, b, forward_x, n_cols, backend, method, op, check_symmetry, check_finite, *options):
    return b.new_empty(b.shape)  # contiguous


def _setup_context(ctx, inputs, output):
    values, crow, col, _b, _fx, *rest = inputs
    ctx.rest = rest
    ctx.save_for_backward(values, crow, col, output)


def _backward(ctx, gx):
    # The adjoint of LinearSolve (see there): lambda = op(A)^{-H} g through this operator again, and
    # grad_values[k] = -sum_cols left[row_k] conj(right[col_k]) with (left, right) = (lambda, x) for N.
    values, crow, col, x = ctx.saved_tensors
    n_cols, backend, method, op, *options = ctx.rest
    lam = torch.ops.torch_sla.sparse_solve(
        values, crow, col, gx, x, n_cols, backend, method, flip(op), *options
    )
    grad_values = None
    if ctx.needs_input_grad[0]:
        counts = crow[1:] - crow[:-1]
        row = torch.repeat_interleave(
            torch.arange(counts.numel(), device=crow.device), counts, output_size=col.numel()
        )
        left, right = (lam, x) if op == "N" else (x, lam)
        grad_values = -(left[:, row, :] * right[:, col, :].conj()).sum(-1)
    return (grad_values, None, None, lam, None) + (None,) * (len(ctx.rest))


sparse_solve.register_autograd(_backward, setup_context=_setup_context)


def compiled_solve(
    A: SparseTensor,
    bb: torch.Tensor,
    *,
    backend: str,
    method: str,
    check_symmetry: bool,
    check_finite: bool,
    options: dict,
) -> torch.Tensor:
    """The solve of a (B, n, k) stack through the custom operator (used while compiling)."""
    unsupported = sorted(set(options) - set(COMPILED_OPTIONS))
    if unsupported:
        raise InvalidArgumentError(
            f"{unsupported[0]}: not supported under torch.compile (the solve runs as one custom operator, "
            f"which takes numbers and names only); supported options: {', '.join(COMPILED_OPTIONS)}"
        )
    o = KrylovOptions(**options)
    if not isinstance(o.preconditioner, str):
        raise InvalidArgumentError("preconditioner: under torch.compile, give a name ('auto', 'jacobi', ...)")
    p = A.pattern
    return torch.ops.torch_sla.sparse_solve(
        A.values.reshape(A.batch_size, A.nnz),
        p.crow,
        p.col,
        bb,
        None,
        p.n_cols,
        backend,
        method,
        "N",
        check_symmetry,
        check_finite,
        float(o.rtol),
        float(o.atol),
        int(o.maxiter or 0),
        int(o.restart),
        o.preconditioner,
        int(o.check_every),
        float(o.omega),
        int(o.degree),
        o.on_fail,
    )
