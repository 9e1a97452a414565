"""Batches of matrices with distinct sparsity patterns, solved in one call.

The members become the diagonal blocks of one block-diagonal matrix (a list is concatenated; a graph
batch already is one: a block-diagonal COO and a ``batch`` vector), so they reach the C++ core as a few
arrays however many they are. Two ways to factorize it, chosen by size (``return_info=True`` or
:meth:`SparseTensorList.explain` say which):

- ``members``: every block on its own, in parallel on OpenMP threads with the GIL released once; blocks
  of up to ``dense_max`` rows by a minimum-degree ordering and a dense kernel that touches only the
  entries of the factor (microseconds each), larger ones with their own sparse analysis, kept in the
  core's cache per block pattern (a batch that repeats a mesh, or a later batch with the same meshes,
  analyses it once) and factorization;
- ``block_diagonal``: the whole block-diagonal matrix as one sparse matrix through :func:`solve`.

Iterative methods run every member together on the torch Krylov kernels (``krylov``): member b's
right-hand sides are columns of one block, so every member has its own scalars and its own convergence
test (see ``_PaddedBlocks``).

Either way the solve is one node of the shared autograd primitive (``LinearSolve``) over the
block-diagonal matrix: gradients reach every member's values and right-hand side, double backward and
forward mode work as for any solve.
"""

from __future__ import annotations

import collections
import math
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from . import _costmodel
from ._autograd import pattern_jvp, pattern_vjp, solve_through
from ._checks import core_array, dtype_name, outside_transforms, plain, to_core
from ._core import core
from ._direct import CoreDirectBackend, block_analysis_cache
from ._iterative import HERMITIAN_KRYLOV
from ._krylov_torch import krylov_solve
from ._operator import CsrOperator, InnerProducts
from ._options import KrylovOptions
from ._pattern import Pattern
from ._registry import (
    DIRECT_METHODS,
    HERMITIAN_METHODS,
    ITERATIVE_METHODS,
    Choice,
    check_hermitian,
    choose,
    generation,
    preference,
)
from ._solve import solve
from ._sparse_tensor import SparseTensor, as_sparse_tensor, check_values_finite
from .errors import (
    ConvergenceError,
    InvalidArgumentError,
    NotPositiveDefiniteError,
    SingularMatrixError,
)

__all__ = [
    "solve_batch",
    "solve_graph_batch",
    "SparseTensorList",
    "spsolve_batch_same_layout",
    "spsolve_batch_different_layout",
    "spsolve_batch_coo_same_layout",
    "spsolve_batch_coo_different_layout",
]

# Blocks of at most this many rows are factorized as dense matrices by the ``members`` strategy.
DENSE_MAX = 96
# ``auto`` takes ``members`` unless the largest block has more rows than this and there are few blocks
# (then one sparse factorization of the whole matrix uses the BLAS as well as the per-block path).
_MEMBERS_MAX_ROWS = 200_000

_ERRORS = {"singular": SingularMatrixError, "not_positive_definite": NotPositiveDefiniteError}


# -- the block-diagonal matrix ---------------------------------------------------------------------------
def _repeat(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``values[i]`` repeated ``counts[i]`` times. On the CPU through NumPy: torch's kernel wakes its
    thread pool even for a handful of entries, which costs milliseconds on a busy machine."""
    if values.device.type == "cpu" and counts.device.type == "cpu":
        return torch.from_numpy(np.repeat(values.numpy(), counts.numpy()))
    return torch.repeat_interleave(values, counts)


# The block-diagonal pattern of the last few lists of member patterns (a training loop solves the same
# meshes with new values at every step): its index arrays, the core's copy of them and the offsets are
# built once per list. Keyed by the identities of the members' Pattern objects (immutable), which the entry
# holds, so that an identity cannot be reused while it is cached.
_BLOCK_PATTERNS: collections.OrderedDict = collections.OrderedDict()
_BLOCK_PATTERNS_MAX = 4
_BLOCK_PATTERNS_LOCK = threading.Lock()


def _numpy_ok(tensors) -> bool:
    """Whether the tensors can be concatenated through NumPy: plain CPU tensors without autograd, outside
    torch.func transforms."""
    if torch._C._functorch.maybe_current_level() is not None:
        return False
    return all(t.device.type == "cpu" and not t.requires_grad for t in tensors)


@outside_transforms
def _block_pattern(patterns: list, device: torch.device) -> tuple[Pattern, torch.Tensor]:
    key = tuple(id(p) for p in patterns)
    with _BLOCK_PATTERNS_LOCK:
        hit = _BLOCK_PATTERNS.get(key)
        if hit is not None and hit[2] == device:
            _BLOCK_PATTERNS.move_to_end(key)
            return hit[1]
    sizes_t = torch.tensor([p.n_rows for p in patterns], dtype=torch.int64)
    nnz_t = torch.tensor([p.nnz for p in patterns], dtype=torch.int64)
    offsets = torch.zeros(len(patterns) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(sizes_t, 0)
    nnz_off = torch.zeros(len(patterns), dtype=torch.int64)
    nnz_off[1:] = torch.cumsum(nnz_t, 0)[:-1]
    if device.type == "cpu":
        crow_tail = torch.from_numpy(np.concatenate([p.crow.numpy()[1:] for p in patterns]).astype(np.int64))
        col = torch.from_numpy(np.concatenate([p.col.numpy() for p in patterns]).astype(np.int64))
    else:
        crow_tail = torch.cat([p.crow[1:] for p in patterns]).to(torch.int64).cpu()
        col = torch.cat([p.col for p in patterns]).to(torch.int64).cpu()
    crow = torch.zeros(crow_tail.numel() + 1, dtype=torch.int64)
    crow[1:] = crow_tail + _repeat(nnz_off, sizes_t)
    col = col + _repeat(offsets[:-1], nnz_t)
    N = int(offsets[-1])
    built = (Pattern(crow.to(device), col.to(device), N, N), offsets)
    with _BLOCK_PATTERNS_LOCK:
        _BLOCK_PATTERNS[key] = (tuple(patterns), built, device)
        while len(_BLOCK_PATTERNS) > _BLOCK_PATTERNS_MAX:
            _BLOCK_PATTERNS.popitem(last=False)
    return built


def block_diagonal(As: Sequence[SparseTensor]) -> tuple[SparseTensor, torch.Tensor]:
    """The block-diagonal matrix of square, unbatched SparseTensors (values concatenated, so gradients
    flow back to each member) and its block offsets ``(len(As) + 1,)``. Built from the members' CSR
    arrays without sorting; on the CPU the arrays are concatenated through NumPy (a torch.cat of
    thousands of small tensors costs several microseconds per tensor). The pattern of a list of member
    patterns seen lately is reused (see ``_block_pattern``)."""
    if len(As) == 0:
        raise InvalidArgumentError("As: the batch is empty")
    first = As[0]
    dtype, device = first.dtype, first.device
    patterns = []
    for i, A in enumerate(As):
        p = A.pattern
        if A.batch_shape:
            raise InvalidArgumentError(
                f"As[{i}]: a member of a batch of patterns must be one matrix, got batch dims {A.batch_shape}"
            )
        if p.n_rows != p.n_cols:
            raise InvalidArgumentError(f"As[{i}]: expected a square matrix, got shape {A.shape}")
        if A.values.dtype != dtype or A.values.device != device:
            raise InvalidArgumentError(
                f"As[{i}]: dtype {A.dtype} on {A.device}, but As[0] is {dtype} on {device}; every member "
                "needs the same dtype and device"
            )
        patterns.append(p)
    pattern, offsets = _block_pattern(patterns, device)
    if _numpy_ok([A.values for A in As]):
        values = torch.from_numpy(np.concatenate([A.values.detach().resolve_conj().numpy() for A in As]))
    else:
        values = torch.cat([A.values for A in As])
    return SparseTensor._from_pattern(values, pattern), offsets


def _offsets_from_batch(batch: torch.Tensor, n: int, num_graphs: int | None) -> torch.Tensor:
    batch = torch.as_tensor(batch)
    if batch.dim() != 1 or batch.numel() != n or batch.dtype.is_floating_point or batch.dtype == torch.bool:
        raise InvalidArgumentError(
            f"batch: expected {n} integer graph indices (one per node), got {tuple(batch.shape)} {batch.dtype}"
        )
    batch = batch.to(torch.int64)
    if n and (bool((batch[1:] < batch[:-1]).any()) or int(batch[0]) < 0):
        raise InvalidArgumentError(
            "batch: graph indices must be non-negative and sorted (nodes grouped by graph)"
        )
    count = (int(batch[-1]) + 1 if n else 0) if num_graphs is None else int(num_graphs)
    if n and int(batch[-1]) >= count:
        raise InvalidArgumentError(f"batch: graph index {int(batch[-1])} >= num_graphs {count}")
    offsets = torch.zeros(count + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.bincount(batch.cpu(), minlength=count), 0)
    return offsets


# -- planning --------------------------------------------------------------------------------------------
def _block_backend(
    A: SparseTensor, offsets: torch.Tensor, method: str, check_symmetry: bool, members: list | None = None
) -> Choice | None:
    """The backend of the sparse blocks for backend "auto": the one ``auto`` takes for a single solve of
    the largest block (the cost model's fastest, from one probe analysis of that block, which the cache
    keeps), when it is a C++ direct backend; else the first C++ direct backend of the registry's order
    that runs this dtype (None: none does). Not :func:`choose` on the whole matrix, which would analyse
    all of it to predict one factorization of it: the blocks are analysed and factorized one by one.
    With the batch's ``members`` (a list of SparseTensors), the choice is kept on the largest member
    until its values change, as a single solve's plan is."""
    if check_symmetry and method in HERMITIAN_METHODS:
        check_hermitian(A, method)
    m = "lu" if method == "auto" else method
    sizes = offsets[1:] - offsets[:-1]
    if sizes.numel() and int(sizes.max()) > DENSE_MAX:
        k = int(torch.argmax(sizes))
        r0, r1 = int(offsets[k]), int(offsets[k + 1])
        crow = A.pattern.crow[r0 : r1 + 1]
        e0, e1 = int(crow[0]), int(crow[-1])
        if members is not None:
            block = members[k]
        else:
            block = SparseTensor._from_pattern(
                A.values[e0:e1].detach(), Pattern(crow - e0, A.pattern.col[e0:e1] - r0, r1 - r0, r1 - r0)
            )
        key = ("block backend", method, generation(), _costmodel.setting())
        with torch.no_grad():
            c = block.values_cached(key, lambda: choose(block, "auto", method, check_symmetry=False))
        if isinstance(c.impl, CoreDirectBackend) and c.impl.supports(A.device, A.dtype, m) is None:
            why = (
                f"backend {c.backend!r} for the sparse blocks: auto's choice for the largest block "
                f"({r1 - r0} rows): {c.reasons[-1] if c.reasons else ''}"
            )
            return Choice(c.backend, method, None, [why])
    for b in preference(A.device.type, "direct"):
        if isinstance(b, CoreDirectBackend) and b.supports(A.device, A.dtype, m) is None:
            why = f"backend {b.name!r} for the sparse blocks: the first C++ direct backend for {A.dtype}"
            return Choice(b.name, method, None, [why])
    return None


def _plan(
    A: SparseTensor,
    offsets: torch.Tensor,
    backend: str,
    method: str,
    check_symmetry: bool,
    strategy: str,
    members: list | None = None,
):
    """(strategy, choice, reasons) for the block-diagonal matrix A."""
    if strategy not in ("auto", "members", "block_diagonal"):
        raise InvalidArgumentError(
            f"strategy: expected 'auto', 'members' or 'block_diagonal', got {strategy!r}"
        )
    if method not in ("auto",) + DIRECT_METHODS:
        raise InvalidArgumentError(
            f"method: expected 'auto', one of {DIRECT_METHODS} or of {ITERATIVE_METHODS}, got {method!r}"
        )
    sizes = offsets[1:] - offsets[:-1]
    largest = int(sizes.max()) if sizes.numel() else 0
    # The backend (for the large blocks): the first that factorizes this dtype on this device by LU, or
    # the requested one. With method "auto" the method is chosen per block in C++ (Hermitian with a
    # positive diagonal: Cholesky, else LU), so the whole matrix need not be analysed here.
    per_block_auto = method == "auto" and strategy != "block_diagonal"
    choice = None
    if strategy != "block_diagonal" and backend == "auto":
        choice = _block_backend(A, offsets, method, check_symmetry, members)
    if choice is None:
        choice = choose(A, backend, "lu" if per_block_auto else method, check_symmetry=check_symmetry)
    if per_block_auto:
        choice = Choice(choice.backend, "auto", None, ["method 'auto', chosen per block", *choice.reasons])
    reasons = list(choice.reasons)
    core_backend = isinstance(choice.impl, CoreDirectBackend)
    if strategy == "auto":
        if not core_backend:
            strategy = "block_diagonal"
            reasons.append(
                f"backend {choice.backend!r} has no per-block path: one block-diagonal factorization"
            )
        elif largest > _MEMBERS_MAX_ROWS and sizes.numel() <= 2:
            strategy = "block_diagonal"
            reasons.append(f"few, large blocks (largest {largest} rows): one block-diagonal factorization")
        else:
            strategy = "members"
            dense = int((sizes <= DENSE_MAX).sum())
            reasons.append(
                f"{sizes.numel()} blocks factorized separately in parallel: {dense} with <= {DENSE_MAX} rows "
                f"densely, {sizes.numel() - dense} by {choice.backend}"
            )
    elif strategy == "members" and not core_backend:
        raise InvalidArgumentError(f"strategy: 'members' needs a C++ backend, not {choice.backend!r}")
    else:
        reasons.append(f"strategy {strategy!r} requested")
    if strategy == "block_diagonal" and per_block_auto:  # (only when auto fell back to block_diagonal)
        choice = choose(A, backend, "auto", check_symmetry=check_symmetry)
    return strategy, choice, reasons


# -- the per-block factorization as a SolverSource / Solver of LinearSolve ----------------------------------
class _BlockSolver:
    def __init__(self, handle, n: int):
        self.handle, self.n = handle, n

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        """(1, N, k) -> (1, N, k)."""
        if b.numel() == 0:
            return torch.zeros_like(b)
        bt = to_core(b[0].t())
        xt = torch.empty(bt.shape, dtype=bt.dtype, device=bt.device)
        self.handle.solve(core_array(bt), core_array(xt), op, torch.get_num_threads())
        return xt.t().unsqueeze(0)


class _BlockSource:
    """Builds the per-block factorization from the values LinearSolve is given (the SolverSource
    protocol) and reports failed blocks as ``on_fail`` says."""

    def __init__(
        self,
        A: SparseTensor,
        offsets: torch.Tensor,
        choice: Choice,
        on_fail: str,
        info: dict,
        check_finite: bool,
    ):
        self.A, self.offsets, self.choice, self.on_fail, self.info = A, offsets, choice, on_fail, info
        self.check_finite = check_finite
        self._built: _BlockSolver | None = None

    def solver_for(self, params) -> _BlockSolver:
        if self._built is None:
            values = plain(params[0]).detach().reshape(self.A.nnz)
            per_block = self.choice.method == "auto"
            handle = core().factorize_blocks(
                self.choice.backend,
                "lu" if per_block else self.choice.method,
                dtype_name(self.A.dtype),
                self.A.pattern.core_handle(),
                core_array(self.offsets.cpu()),
                core_array(values),
                torch.get_num_threads(),
                DENSE_MAX,
                self.choice.fallback is not None,
                per_block,
                self.check_finite,
                block_analysis_cache(),
            )
            self.info.update(
                cholesky_blocks=int(handle.cholesky_blocks),
                dense_blocks=int(handle.dense_blocks),
                sparse_blocks=int(handle.sparse_blocks),
                lu_fallbacks=int(handle.lu_fallbacks),
                analyses=int(handle.analyses),
                analyses_reused=int(handle.analyses_reused),
                failed=[int(e[0]) for e in handle.errors],
            )
            _report_failures(handle.errors, self.on_fail)
            self._built = _BlockSolver(handle, self.A.shape[-1])
        return self._built

    def rebatched(self):
        raise InvalidArgumentError(
            "values: vmap over the values of a batch of patterns is not supported; the batch already solves "
            "every member in one call"
        )

    def params_vjp(self, params, left, right):
        return (pattern_vjp(self.A.pattern, left, right),)

    def params_jvp(self, params, tangents, x, op):
        return pattern_jvp(self.A.pattern, tangents[0], x, op)


def _report_failures(errors, on_fail: str) -> None:
    if not errors:
        return
    bad_input = [e for e in errors if e[1] == "invalid_argument"]
    if bad_input:  # bad input (NaN / Inf) is an error whatever on_fail says
        raise InvalidArgumentError(f"batch member {bad_input[0][0]}: {bad_input[0][2]}")
    block, kind, message = errors[0]
    text = f"batch member {block}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more failed members: {[int(e[0]) for e in errors[1:11]]}...)"
    if on_fail == "raise":
        raise _ERRORS.get(kind, InvalidArgumentError)(text)
    warnings.warn(text + "; their solutions are NaN", RuntimeWarning, stacklevel=4)


# -- iterative methods: every member at once, each with its own scalars and convergence -------------------
# The torch Krylov kernels solve the columns of an (n, k) block as independent systems: every scalar is
# per column and a column that has converged is frozen. Member b's right-hand sides become k columns of an
# (n_max, B k) block, its vector in the first n_b rows and zeros below: one run of the kernel iterates every
# member with its own scalars and stops each one when it converges. The padding rows stay zero (the
# operator maps them to zero and they add nothing to the inner products). Members of very different sizes
# are solved in groups of similar size, so that the padding at most doubles the work.
class _PaddedBlocks(InnerProducts):
    """The members of a block-diagonal CSR matrix side by side, as an :class:`Operator` on
    ``(n_max, B k)`` blocks (see above); ``pos[g]`` is the padded position ``i B + b`` of row ``g``, row
    ``i`` of member ``b``."""

    def __init__(self, csr: CsrOperator, pos: torch.Tensor, n_max: int, count: int, k: int):
        self.csr, self.pos, self.n_max, self.count, self.k = csr, pos, n_max, count, k
        self.shape = (n_max, n_max)
        self.dtype, self.device = csr.dtype, csr.device

    def _apply(self, mat: CsrOperator, X: torch.Tensor) -> torch.Tensor:
        rows = X.reshape(self.n_max * self.count, self.k)
        out = torch.zeros_like(rows)
        out[self.pos] = mat.matvec(rows[self.pos])
        return out.reshape(self.n_max, self.count * self.k)

    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        return self._apply(self.csr, X)

    def rmatvec(self, X: torch.Tensor) -> torch.Tensor:
        return self._apply(self.csr._adjoint, X)


class _PaddedJacobi:
    """``r / diag`` on the padded layout, the diagonal of each member in its column (1 on padding)."""

    def __init__(self, diag_padded: torch.Tensor, k: int):
        self.inv = diag_padded.reciprocal().unsqueeze(-1)  # (n_max, B, 1)
        self.k = k

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        n_max, cols = r.shape
        return (r.reshape(n_max, cols // self.k, self.k) * self.inv).reshape(n_max, cols)


def _size_groups(sizes: list[int]) -> list[list[int]]:
    """The non-empty members in groups of similar size, n_max * count <= 2 * (rows of the group) (taken
    largest first), each group in increasing member order."""
    order = sorted((b for b in range(len(sizes)) if sizes[b] > 0), key=lambda b: -sizes[b])
    groups: list[list[int]] = []
    rows = 0
    for b in order:
        if groups and sizes[groups[-1][0]] * (len(groups[-1]) + 1) <= 2 * (rows + sizes[b]):
            groups[-1].append(b)
            rows += sizes[b]
            continue
        groups.append([b])
        rows = sizes[b]
    return [sorted(g) for g in groups]


class _KrylovBatchSolver:
    """The iterative solve of a batch (the Solver protocol of LinearSolve): the members' CSR operators and
    preconditioners, built once and kept for the adjoint solve of backward."""

    def __init__(
        self,
        A: SparseTensor,
        values: torch.Tensor,
        offsets: torch.Tensor,
        method: str,
        preconditioner: str,
        opts: KrylovOptions,
    ):
        self.method, self.opts, self.preconditioner = method, opts, preconditioner
        p = A.pattern
        self.n = p.n_rows
        sizes = (offsets[1:] - offsets[:-1]).tolist()
        self.sizes, self.offsets = sizes, offsets
        self.groups = _size_groups(sizes)
        self.full = len(self.groups) == 1 and len(self.groups[0]) == len(sizes)  # one group of every member
        self.values = values
        self.pattern = p
        self._parts: dict[int, tuple] = {}
        self.info: dict = {}
        self._forward_done = False

    def _group(self, gi: int):
        """(row indices of the group's members in A, the group's CSR operator with its adjoint, pos, n_max,
        its Jacobi diagonal or None), built on first use."""
        part = self._parts.get(gi)
        if part is not None:
            return part
        g = self.groups[gi]
        sizes = torch.tensor([self.sizes[b] for b in g], dtype=torch.int64)
        starts = self.offsets[g]
        count, n_max = len(g), int(sizes.max())
        device = self.values.device
        # The rows of the group's members, member after member, and each row's padded position.
        member = _repeat(torch.arange(count), sizes)
        first = torch.zeros(count, dtype=torch.int64)
        first[1:] = torch.cumsum(sizes, 0)[:-1]
        local = torch.arange(int(sizes.sum())) - first[member]
        rows = (starts[member] + local).to(device)
        pos = (local * count + member).to(device)
        crow, col = self.pattern.crow, self.pattern.col
        if self.full:  # every member: A itself, its rows already in this order
            sub_crow, sub_col, vals = crow, col, self.values
        else:  # the group's rows of A, columns renumbered to the group's rows
            counts = crow[rows + 1] - crow[rows]
            sub_crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=device)
            sub_crow[1:] = torch.cumsum(counts, 0)
            entries = _repeat(crow[rows], counts) + (
                torch.arange(int(sub_crow[-1]), device=device) - _repeat(sub_crow[:-1], counts)
            )
            renumber = torch.full((self.n,), -1, dtype=torch.int64, device=device)
            renumber[rows] = torch.arange(rows.numel(), device=device)
            sub_col, vals = renumber[col[entries]], self.values[entries]
        sub = Pattern(sub_crow, sub_col, rows.numel(), rows.numel())
        adj = None
        if self.method not in HERMITIAN_KRYLOV:  # A^H for the adjoint solve: the transposed pattern
            pt, perm = sub.transpose()
            vt = vals[perm]
            adj = CsrOperator(pt.crow, pt.col, vt.conj() if vt.is_complex() else vt, rows.numel())
        csr = CsrOperator(sub_crow, sub_col, vals, rows.numel(), adjoint_of=adj)
        if self.method in HERMITIAN_KRYLOV:
            csr._adjoint = csr  # A^H = A (checked by choose)
        diag = None
        if self.preconditioner == "jacobi":
            dpos = sub.diag_positions
            if dpos is None:
                raise InvalidArgumentError(
                    "preconditioner: 'jacobi' needs every diagonal entry of A to be stored"
                )
            d = vals[dpos]
            if bool((d == 0).any()) or not bool(torch.isfinite(d).all()):
                raise InvalidArgumentError("preconditioner: 'jacobi' needs a nonzero finite diagonal")
            diag = torch.ones(n_max * count, dtype=vals.dtype, device=device)
            diag[pos] = d
            diag = diag.reshape(n_max, count)
        part = (rows, csr, pos, n_max, diag)
        self._parts[gi] = part
        return part

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        """(1, N, k) -> (1, N, k): every group of members in one Krylov run each."""
        bb = b[0]
        k = bb.shape[1]
        x = torch.zeros_like(bb)
        nb = len(self.sizes)
        its, ok, res = [0] * nb, [True] * nb, [0.0] * nb
        o = self.opts
        for gi, g in enumerate(self.groups):
            rows, csr, pos, n_max, diag = self._group(gi)
            count = len(g)
            padded = bb.new_zeros(n_max * count, k)
            padded[pos] = bb[rows]
            padded = padded.reshape(n_max, count * k)
            A_op = _PaddedBlocks(csr if op == "N" else csr._adjoint, pos, n_max, count, k)
            M = None
            if diag is not None:
                M = _PaddedJacobi(diag.conj() if op == "H" and diag.is_complex() else diag, k)
            xg, info = krylov_solve(
                A_op,
                padded,
                method=self.method,
                rtol=o.rtol,
                atol=o.atol,
                maxiter=o.max_iterations(n_max),
                restart=o.restart,
                M=M,
                check_every=o.check_every,
            )
            x[rows] = xg.reshape(n_max * count, k)[pos]
            for j, m in enumerate(g):
                cols = slice(j * k, (j + 1) * k)
                its[m] = max(info.column_iterations[cols], default=0)
                ok[m] = all(info.column_converged[cols])
                res[m] = max(info.column_residuals[cols], default=0.0)
        failed = [m for m in range(nb) if not ok[m]]
        result = dict(
            member_iterations=its,
            member_converged=ok,
            member_residuals=res,
            iterations=max(its, default=0),
            failed=failed,
        )
        if op == "N" and not self._forward_done:  # the forward solve; later ones are backward's
            self.info.update(result)
            self._forward_done = True
        else:
            self.info["adjoint"] = result
        if failed:
            shown = ", ".join(str(m) for m in failed[:10]) + (", ..." if len(failed) > 10 else "")
            worst = max((res[m] for m in failed), key=lambda r: r if r == r else math.inf)
            text = (
                f"{'adjoint solve (backward): ' if op == 'H' else ''}{self.method} did not converge for "
                f"{len(failed)} of {nb} batch members ({shown}); largest relative residual {worst:.3g} "
                f"after up to {max(its)} iterations. Raise maxiter, use a preconditioner, or a direct method"
            )
            if o.on_fail == "raise":
                raise ConvergenceError(text)
            warnings.warn(text, RuntimeWarning, stacklevel=5)
        return x.unsqueeze(0)


class _KrylovBatchSource:
    """Builds the batch's Krylov solver from the values LinearSolve is given (the SolverSource protocol)."""

    def __init__(self, A, offsets, method, preconditioner, opts, info: dict):
        self.A, self.offsets, self.method, self.preconditioner, self.opts = (
            A,
            offsets,
            method,
            preconditioner,
            opts,
        )
        self.info = info
        self._built: _KrylovBatchSolver | None = None

    def solver_for(self, params) -> _KrylovBatchSolver:
        if self._built is None:
            values = plain(params[0]).detach().reshape(self.A.nnz)
            self._built = _KrylovBatchSolver(
                self.A, values, self.offsets, self.method, self.preconditioner, self.opts
            )
            self._built.info = self.info  # filled by the forward solve
        return self._built

    def rebatched(self):
        raise InvalidArgumentError(
            "values: vmap over the values of a batch of patterns is not supported; the batch already solves "
            "every member in one call"
        )

    def params_vjp(self, params, left, right):
        return (pattern_vjp(self.A.pattern, left, right),)

    def params_jvp(self, params, tangents, x, op):
        return pattern_jvp(self.A.pattern, tangents[0], x, op)


def _solve_krylov(A, offsets, b, method, backend, check_symmetry, opts, info) -> torch.Tensor:
    if backend not in ("auto", "torch"):
        raise InvalidArgumentError(
            f"backend: iterative methods on a batch of distinct patterns run on the torch Krylov kernels "
            f"(backend 'torch' or 'auto'), not {backend!r}"
        )
    choice = choose(A, "torch", method, check_symmetry=check_symmetry)
    spec = opts.preconditioner
    if not isinstance(spec, str) or spec not in ("auto", "none", "jacobi"):
        raise InvalidArgumentError(
            f"preconditioner: a batch of distinct patterns takes 'auto', 'none' or 'jacobi', got {spec!r}"
        )
    pre = (choice.preconditioner or "none") if spec == "auto" else spec
    info.update(
        strategy="krylov",
        backend="torch",
        method=method,
        preconditioner=pre,
        reasons=list(choice.reasons)
        + [f"{offsets.numel() - 1} members iterated together, each with its own scalars and convergence"],
    )
    vec = b.dim() == 1
    bb = (b.unsqueeze(-1) if vec else b).unsqueeze(0)
    source = _KrylovBatchSource(A, offsets, method, pre, opts, info)
    x = solve_through(source, "N", bb, A.values.reshape(1, A.nnz))[0]
    return x.squeeze(-1) if vec else x


# -- entry points ----------------------------------------------------------------------------------------
def _solve_block_diagonal(
    A: SparseTensor,
    offsets: torch.Tensor,
    b: torch.Tensor,
    *,
    backend: str,
    method: str,
    check_finite: bool,
    check_symmetry: bool,
    on_fail: str,
    strategy: str,
    info: dict,
    iterative: dict,
    members: list | None = None,
) -> torch.Tensor:
    if on_fail not in ("raise", "warn"):
        raise InvalidArgumentError(f"on_fail: expected 'raise' or 'warn', got {on_fail!r}")
    if method not in ITERATIVE_METHODS and iterative:
        raise InvalidArgumentError(
            f"{sorted(iterative)[0]}: applies to iterative methods only (method 'cg', 'bicgstab', 'gmres' or "
            f"'minres'), got method {method!r}"
        )
    n = A.shape[-1]
    if b.shape[0] != n or b.dim() not in (1, 2):
        raise InvalidArgumentError(
            f"b: expected ({n},) or ({n}, k) stacked right-hand sides, got {tuple(b.shape)}"
        )
    if b.dtype != A.dtype or b.device != A.device:
        raise InvalidArgumentError(
            f"b: dtype {b.dtype} on {b.device}, but the matrices are {A.dtype} on {A.device}"
        )
    if check_finite:
        if b.numel() and not bool(torch.isfinite(plain(b).detach()).all()):
            raise InvalidArgumentError("b: contains NaN or Inf (pass check_finite=False to skip this check)")
    if method in ITERATIVE_METHODS:
        if strategy not in ("auto", "members"):
            raise InvalidArgumentError(
                f"strategy: iterative methods run every member together ('auto'), got {strategy!r}"
            )
        if check_finite:
            check_values_finite(A)
        opts = KrylovOptions.from_kwargs(
            dict(iterative, on_fail=on_fail),
            allowed=("rtol", "atol", "maxiter", "restart", "preconditioner", "check_every", "on_fail"),
        )
        return _solve_krylov(A, offsets, b, method, backend, check_symmetry, opts, info)
    strategy, choice, reasons = _plan(A, offsets, backend, method, check_symmetry, strategy, members)
    info.update(strategy=strategy, backend=choice.backend, method=choice.method, reasons=reasons)
    if strategy == "block_diagonal":
        return solve(
            A, b, backend=backend, method=method, check_finite=check_finite, check_symmetry=check_symmetry
        )
    vec = b.dim() == 1
    bb = (b.unsqueeze(-1) if vec else b).unsqueeze(0)
    source = _BlockSource(A, offsets, choice, on_fail, info, check_finite)
    x = solve_through(source, "N", bb, A.values.reshape(1, A.nnz))[0]
    return x.squeeze(-1) if vec else x


def solve_batch(
    As,
    bs: Sequence[torch.Tensor],
    *,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    on_fail: str = "raise",
    strategy: str = "auto",
    return_info: bool = False,
    **iterative,
):
    """Solve ``As[i] x_i = bs[i]`` for a batch of matrices with distinct sparsity patterns, in one call.

    Parameters
    ----------
    As : sequence of SparseTensor (or anything :func:`torch_sla.solve` accepts), or a SparseTensorList
        Square, unbatched; sizes may differ; one dtype and device.
    bs : sequence of tensors, ``(n_i,)`` or ``(n_i, k)`` (the same k for all).
    backend, method : as for :func:`torch_sla.solve`. ``auto``: Cholesky for each member that is
        Hermitian with a positive diagonal (LU if its Cholesky breaks down), else LU. An iterative method
        (``cg``, ``bicgstab``, ``gmres``, ``minres``) runs every member together on the torch Krylov
        kernels (any device), each member with its own scalars and its own convergence test, and stops
        each when it converges; ``info`` then has ``member_iterations``, ``member_converged`` and
        ``member_residuals``.
    on_fail : {"raise", "warn"}
        A singular or not positive definite member raises (``SingularMatrixError`` /
        ``NotPositiveDefiniteError`` naming its index) or, with "warn", is reported in a warning and its
        solution is NaN while the others are returned. With an iterative method: members that did not
        converge raise :class:`ConvergenceError` naming them, or are reported in a warning (their last
        iterates returned).
    strategy : {"auto", "members", "block_diagonal"}
        See the module notes; ``return_info=True`` or :meth:`SparseTensorList.explain` say which was used
        and why.
    **iterative
        For iterative methods: ``rtol`` (1e-8), ``atol`` (0), ``maxiter`` (10 times the member's size),
        ``restart`` (GMRES, 30), ``preconditioner`` ("auto": Jacobi when the diagonal allows it, "none",
        "jacobi"), ``check_every`` (10).

    Returns
    -------
    list of tensors (``(xs, info)`` with ``return_info=True``), differentiable with respect to every
    member's values and right-hand side.
    """
    As = list(As.tensors if isinstance(As, SparseTensorList) else As)
    bs = list(bs)
    if len(As) != len(bs):
        raise InvalidArgumentError(f"bs: {len(bs)} right-hand sides for {len(As)} matrices")
    if not As:  # an empty batch: nothing to solve, an empty result
        if on_fail not in ("raise", "warn"):
            raise InvalidArgumentError(f"on_fail: expected 'raise' or 'warn', got {on_fail!r}")
        return ([], {"strategy": "empty", "reasons": ["an empty batch"]}) if return_info else []
    As = [as_sparse_tensor(A) for A in As]
    A, offsets = block_diagonal(As)
    for i, (Ai, bi) in enumerate(zip(As, bs)):
        bi = torch.as_tensor(bi)
        bs[i] = bi
        if bi.dim() not in (1, 2) or bi.shape[0] != Ai.shape[0]:
            raise InvalidArgumentError(
                f"bs[{i}]: expected ({Ai.shape[0]},) or ({Ai.shape[0]}, k), got {tuple(bi.shape)}"
            )
    if len({bi.dim() for bi in bs}) > 1 or len({tuple(bi.shape[1:]) for bi in bs}) > 1:
        raise InvalidArgumentError(
            "bs: every right-hand side must have the same shape after the first dimension"
        )
    info: dict = {}
    opts = dict(backend=backend, method=method, check_finite=check_finite, check_symmetry=check_symmetry)
    if _numpy_ok(bs):  # (through NumPy: see block_diagonal)
        b = torch.from_numpy(np.concatenate([bi.resolve_conj().resolve_neg().numpy() for bi in bs]))
    else:
        b = torch.cat(bs)
    x = _solve_block_diagonal(
        A, offsets, b, on_fail=on_fail, strategy=strategy, info=info, iterative=iterative, members=As, **opts
    )
    xs = list(torch.split(x, [Ai.shape[0] for Ai in As]))
    return (xs, info) if return_info else xs


def solve_graph_batch(
    values: torch.Tensor,
    row: torch.Tensor,
    col: torch.Tensor,
    b: torch.Tensor,
    *,
    batch: torch.Tensor | None = None,
    ptr: torch.Tensor | None = None,
    num_graphs: int | None = None,
    backend: str = "auto",
    method: str = "auto",
    check_finite: bool = True,
    check_symmetry: bool = True,
    on_fail: str = "raise",
    strategy: str = "auto",
    return_info: bool = False,
    **iterative,
):
    """Solve a batch of graphs given as one block-diagonal COO matrix, the layout of graph-learning
    libraries: ``values``, ``row``, ``col`` over all nodes (entries within their graph; duplicates
    summed), ``b`` the stacked right-hand sides ``(num_nodes,)`` or ``(num_nodes, k)``, and either
    ``batch`` (the graph of each node, sorted) or ``ptr`` (node offsets, ``num_graphs + 1``).

    Returns ``x`` stacked like ``b`` (``(x, info)`` with ``return_info=True``), differentiable with respect
    to ``values`` and ``b``. Other arguments as for :func:`solve_batch`.
    """
    b = torch.as_tensor(b)
    if b.dim() not in (1, 2):
        raise InvalidArgumentError(f"b: expected (num_nodes,) or (num_nodes, k), got {tuple(b.shape)}")
    n = b.shape[0]
    A = SparseTensor(values, row, col, (n, n))
    if (batch is None) == (ptr is None):
        raise InvalidArgumentError("batch, ptr: give exactly one of them")
    if ptr is not None:
        offsets = torch.as_tensor(ptr).to(torch.int64).cpu()
        if offsets.dim() != 1 or offsets.numel() < 1:
            raise InvalidArgumentError(
                f"ptr: expected num_graphs + 1 offsets, got shape {tuple(offsets.shape)}"
            )
        if int(offsets[0]) != 0 or int(offsets[-1]) != n or bool((offsets[1:] < offsets[:-1]).any()):
            raise InvalidArgumentError(
                f"ptr: expected non-decreasing node offsets from 0 to num_nodes = {n}, got "
                f"{offsets[:3].tolist()}...{offsets[-1:].tolist()}"
            )
    else:
        offsets = _offsets_from_batch(batch, n, num_graphs)
    info: dict = {}
    opts = dict(backend=backend, method=method, check_finite=check_finite, check_symmetry=check_symmetry)
    x = _solve_block_diagonal(
        A, offsets, b, on_fail=on_fail, strategy=strategy, info=info, iterative=iterative, **opts
    )
    return (x, info) if return_info else x


class SparseTensorList:
    """A list of square SparseTensors with distinct patterns, solved together (:func:`solve_batch`)."""

    def __init__(self, tensors: Sequence):
        self.tensors = [as_sparse_tensor(t) for t in tensors]

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i):
        return self.tensors[i]

    def __iter__(self):
        return iter(self.tensors)

    def __repr__(self) -> str:
        return f"SparseTensorList({len(self)} matrices)"

    def block_diagonal(self) -> tuple[SparseTensor, torch.Tensor]:
        """The block-diagonal SparseTensor of the members and its block offsets."""
        return block_diagonal(self.tensors)

    def solve(self, bs, **kwargs):
        """``solve_batch(self, bs, **kwargs)``."""
        return solve_batch(self, bs, **kwargs)

    def explain(
        self,
        *,
        backend: str = "auto",
        method: str = "auto",
        strategy: str = "auto",
        check_symmetry: bool = True,
    ) -> Choice:
        """What ``solve_batch`` would do with these members (backend, method, strategy) and why. Printable;
        ``kind`` is the strategy: "members" (blocks factorized separately in parallel), "block_diagonal"
        (one factorization of the whole block-diagonal matrix) or "krylov" (iterative, members together)."""
        A, offsets = block_diagonal(self.tensors)
        if method in ITERATIVE_METHODS:
            if backend not in ("auto", "torch"):
                raise InvalidArgumentError(
                    f"backend: iterative methods on a batch of distinct patterns run on the torch Krylov "
                    f"kernels (backend 'torch' or 'auto'), not {backend!r}"
                )
            c = choose(A, "torch", method, check_symmetry=check_symmetry)
            reasons = list(c.reasons) + [
                f"{len(self)} members iterated together, each with its own scalars and convergence"
            ]
            return Choice(c.backend, method, None, reasons, kind="krylov", preconditioner=c.preconditioner)
        strategy, c, reasons = _plan(A, offsets, backend, method, check_symmetry, strategy)
        return Choice(c.backend, c.method, c.fallback, reasons, kind=strategy)


# -- the names of the torch-sla API ------------------------------------------------------------------------
def _iterative_kwargs(method: str, atol, maxiter) -> dict:
    kw = {}
    if method in ("cg", "bicgstab", "gmres", "minres"):
        if atol is not None:
            kw["atol"] = atol
        if maxiter is not None:
            kw["maxiter"] = maxiter
    return kw


def spsolve_batch_same_layout(
    val_batch, row, col, shape, b_batch, method: str = "auto", atol=None, maxiter=None, **kwargs
):
    """Solve ``A_i x_i = b_i`` for matrices sharing one pattern: ``val_batch`` (B, nnz) over COO ``row``,
    ``col``, ``b_batch`` (B, n). One call of :func:`torch_sla.solve` on a batched SparseTensor."""
    A = SparseTensor(val_batch, row, col, shape)
    return solve(A, b_batch, method=method, **_iterative_kwargs(method, atol, maxiter), **kwargs)


def spsolve_batch_coo_same_layout(A_template, val_batch, b_batch, method: str = "auto", **kwargs):
    """As :func:`spsolve_batch_same_layout` with the pattern taken from a torch sparse COO tensor."""
    if not (isinstance(A_template, torch.Tensor) and A_template.layout == torch.sparse_coo):
        raise InvalidArgumentError("A_template: expected a torch sparse COO tensor")
    idx = A_template._indices()
    return spsolve_batch_same_layout(
        val_batch, idx[0], idx[1], tuple(A_template.shape), b_batch, method, **kwargs
    )


def spsolve_batch_different_layout(matrices, b_list, method: str = "auto", atol=None, maxiter=None, **kwargs):
    """Solve ``A_i x_i = b_i`` for matrices with distinct patterns, each ``(values, row, col, shape)``:
    one call of :func:`solve_batch` (an iterative method runs every member together)."""
    As = [SparseTensor(v, r, c, s) for v, r, c, s in matrices]
    return _different_layout(As, b_list, method, atol, maxiter, kwargs)


def spsolve_batch_coo_different_layout(
    A_list, b_list, method: str = "auto", atol=None, maxiter=None, **kwargs
):
    """As :func:`spsolve_batch_different_layout` for a list of torch sparse COO tensors."""
    return _different_layout([as_sparse_tensor(A) for A in A_list], b_list, method, atol, maxiter, kwargs)


def _different_layout(As, b_list, method, atol, maxiter, kwargs):
    return solve_batch(As, b_list, method=method, **_iterative_kwargs(method, atol, maxiter), **kwargs)
