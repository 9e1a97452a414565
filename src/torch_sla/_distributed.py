"""Distributed sparse tensors: rows partitioned over the ranks of a process group, a differentiable halo
exchange, the operator protocol with all-reduced inner products, Schwarz preconditioners and one
autograd node per distributed solve.

Layout. Global rows (= unknowns) are owned by exactly one rank (a :class:`~torch_sla.Partition`). Rank p
stores its owned rows in *local numbering*: columns ``0 .. n_owned-1`` are its owned unknowns (in
increasing global order), columns ``n_owned ..`` its ghosts (unknowns of other ranks that its rows touch,
in increasing global order). A distributed vector is the ``(n_owned, k)`` tensor of owned entries on each
rank. ``D @ x`` fetches the ghosts (one halo exchange, overlapped with the owned block's product) and
multiplies by the local matrix.

Vectors in and out of :meth:`DSparseTensor.matmul` / :meth:`DSparseTensor.solve` come in three forms:
a replicated global tensor (every rank holds all n entries; simple, for small problems and tests), a
``DTensor`` sharded on dim 0 in torch's even chunk layout of the global order (redistributed to the
partition and back), or the local owned slice (the scalable form). The output has the input's form.

Every method here is collective: all ranks call it in the same order, with the same arguments except
the local data.
"""

from __future__ import annotations

import json
import os
import warnings

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor, Shard

from ._autograd import pattern_vjp, solve_through
from ._checks import as_float, as_int, core_array
from ._core import core
from ._dist_comm import Comm, Exchange, LinearMap, agree, apply_linear
from ._eigsh import _lobpcg
from ._krylov_torch import KrylovInfo, krylov_solve
from ._operator import InnerProducts
from ._partition import Partition, make_partition
from ._solve import factorize
from ._sparse_tensor import SparseTensor, as_sparse_tensor
from .errors import ConvergenceError, InvalidArgumentError, TorchSlaError

__all__ = ["DSparseTensor", "DSolveInfo", "DEigshInfo", "save_dsparse", "load_dsparse"]

_METHODS = ("auto", "cg", "minres", "gmres", "bicgstab")
_PRECONDITIONERS = ("auto", "none", "jacobi", "block_jacobi", "asm", "ras", "two_level")
_LOCAL_SOLVERS = ("direct", "ilu0", "ic0")


# -- small helpers ---------------------------------------------------------------------------------------------
def _comm_of(mesh) -> tuple[Comm, object]:
    """(Comm, mesh) from a DeviceMesh (1-D), a process group, or None (the default group)."""
    if mesh is None:
        return Comm(None), None
    if hasattr(mesh, "get_group"):
        if mesh.ndim != 1:
            raise InvalidArgumentError(f"mesh: expected a 1-D DeviceMesh, got {mesh.ndim} dimensions")
        return Comm(mesh.get_group()), mesh
    return Comm(mesh), None


def _sorted_lookup(sorted_ids: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(positions, found) of ``ids`` in the sorted 1-D ``sorted_ids``."""
    if sorted_ids.numel() == 0:
        return torch.zeros_like(ids), torch.zeros(ids.shape, dtype=torch.bool)
    pos = torch.searchsorted(sorted_ids, ids).clamp(max=sorted_ids.numel() - 1)
    return pos, sorted_ids[pos] == ids


# -- the distributed operator ------------------------------------------------------------------------------------
class _LocalBlocks:
    """The local matrix split by columns into the owned block ``A_oo`` (n_owned x n_owned) and the ghost
    block ``A_og``, as CSR tensors for fast products, and (made on first use, by the adjoint products)
    their conjugate transposes. ``A_og`` keeps only the rows that have ghost entries (the boundary rows,
    ``b_rows``): its product costs the boundary, not the whole owned range.

    The local pattern is CSR with the owned columns numbered first, so in every row the owned entries come
    before the ghost ones: each block is a selection of the entries in their order, with row pointers from
    per-row counts (no sort); a transpose is one stable sort by column."""

    def __init__(self, d: DSparseTensor, values: Tensor):
        p = d._local_pattern
        n, ng = d.n_owned, d.n_ghost
        v = values.detach().reshape(-1)
        dev = v.device
        own = p.col < n
        row = p.row
        self.d, self.n, self.ng = d, n, ng
        self._parts = [(row[own], p.col[own], own.to(dev), n, n)]
        self.b_rows = None
        if ng:
            ghost = ~own
            b_rows, b_index = torch.unique_consecutive(row[ghost], return_inverse=True)
            self.b_rows = b_rows.to(dev)
            self._parts.append((b_index, p.col[ghost] - n, ghost.to(dev), b_rows.numel(), ng))
        self._v = v
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            blocks = [_csr_rows(r, c, v[m], rows, cols) for r, c, m, rows, cols in self._parts]
        self.oo = blocks[0]
        self.og = blocks[1] if ng else None
        self._adjoint: list | None = None

    def _adjoints(self) -> list:
        if self._adjoint is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._adjoint = [
                    _csr_rows(c, r, self._v[m].conj(), cols, rows, stable=True)
                    for r, c, m, rows, cols in self._parts
                ]
        return self._adjoint

    def matvec(self, x: Tensor) -> Tensor:
        d = self.d
        if self.og is None:
            return self.oo @ x
        pending = d._halo.forward_start(x)
        y = self.oo @ x  # the owned block while the ghosts travel
        ghosts = d._halo.forward_finish(pending)
        return y.index_add_(0, self.b_rows, self.og @ ghosts)

    def rmatvec(self, x: Tensor) -> Tensor:
        d = self.d
        adj = self._adjoints()
        y = adj[0] @ x
        if self.og is None:
            return y
        return y + d._halo.reverse(adj[1] @ x[self.b_rows])


def _csr_rows(
    row: Tensor, col: Tensor, val: Tensor, n_rows: int, n_cols: int, stable: bool = False
) -> Tensor:
    """A CSR tensor of the entries (row, col, val) on val's device. Entries already in row-major order with
    sorted columns, or (``stable``) in column-major order of the transposed matrix, sorted here by row."""
    if stable:
        order = torch.argsort(row, stable=True)
        row, col, val = row[order], col[order], val[order.to(val.device)]
    crow = torch.zeros(n_rows + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n_rows), 0)
    return torch.sparse_csr_tensor(crow.to(val.device), col.to(val.device), val, (n_rows, n_cols))


class _DOperator(InnerProducts):
    """``op(A)`` of a distributed matrix with fixed values, on ``(n_owned, k)`` blocks: the operator
    protocol with all-reduced inner products (what the torch Krylov kernels run on)."""

    def __init__(self, d: DSparseTensor, blocks: _LocalBlocks, op: str):
        self.d, self.blocks, self.op = d, blocks, op
        self.shape = d.shape
        self.dtype, self.device = d.dtype, d.device

    def reduce(self, partial: Tensor) -> Tensor:
        return self.d.comm.all_reduce(partial, "sum", "inner product")

    def matvec(self, x: Tensor) -> Tensor:
        return self.blocks.matvec(x) if self.op == "N" else self.blocks.rmatvec(x)

    def rmatvec(self, x: Tensor) -> Tensor:
        return self.blocks.rmatvec(x) if self.op == "N" else self.blocks.matvec(x)


class DistributedInnerProducts(InnerProducts):
    """Inner products of vectors sharded over the ranks of ``comm`` (local partial sums, all-reduced)."""

    def __init__(self, comm: Comm):
        self.comm = comm

    def reduce(self, partial: Tensor) -> Tensor:
        return self.comm.all_reduce(partial, "sum", "inner product")


# -- preconditioners ---------------------------------------------------------------------------------------------
class _LocalSolve:
    """``A_S^{-1}`` (or ``A_S^{-H}``) for a local matrix: a sparse factorization, or ILU(0) / IC(0) of the
    C++ core (CPU)."""

    def __init__(self, A: SparseTensor, kind: str, what: str):
        self.kind = kind
        self.n = A.shape[0]
        if kind == "direct":
            self.fact = factorize(A, check_finite=False)
            self.name = f"{self.fact.backend} {self.fact.method}"
        else:
            if A.device.type != "cpu":
                raise InvalidArgumentError(
                    f"local_solver: {kind!r} runs on the CPU; use 'direct' on {A.device}"
                )
            self.pre = core().make_preconditioner(kind, A.pattern.core_handle(), core_array(A.values), 1.0, 1)
            self.name = kind

    def __call__(self, r: Tensor, op: str) -> Tensor:
        if self.n == 0:
            return torch.zeros_like(r)
        if self.kind == "direct":
            return self.fact.raw_solve(r.unsqueeze(0), op)[0]
        from_core = r.contiguous()
        z = torch.empty_like(from_core)
        self.pre.apply(core_array(from_core), core_array(z), op)
        return z


class _Schwarz:
    """One-level preconditioners on the owned rows extended by ``overlap`` layers of neighbours.

    ``block_jacobi`` (overlap 0): ``z = A_oo^{-1} r`` per rank. ``asm`` (additive Schwarz): every rank
    solves its extended block ``A_S`` with the residual restricted to S, and the solutions' entries are
    summed into their owners (symmetric for symmetric A: use it with CG / MINRES). ``ras`` (restricted
    additive Schwarz): the same but each rank keeps only its owned entries (no reverse communication;
    non-symmetric, better for GMRES / BiCGStab).

    With ``coarse=True`` a coarse level with one unknown per rank is added (Nicolaides: Z's columns are
    the indicators of the ranks' rows; ``E = Z^T A Z``, world x world, replicated and factorized densely;
    ``Q = Z E^{-1} Z^T``). It is combined with the one-level preconditioner M1 in the balancing (hybrid)
    form ``P = Q + (I - Q A) M1 (I - A Q)``, symmetric when M1 is (the BNN / A-DEF2 construction), so
    CG can use it; for the non-symmetric M1 (RAS) the cheaper ``P = Q + M1 (I - A Q)``. An additive
    coarse term (``M1 + Q``) was measured to help little or even hurt here: the coarse and local
    corrections double-count the smooth error.
    """

    def __init__(
        self,
        d: DSparseTensor,
        values: Tensor,
        kind: str,
        overlap: int,
        local_solver: str,
        coarse: bool,
        blocks: _LocalBlocks | None = None,
    ):
        self.d, self.kind, self.coarse = d, kind, coarse
        self.blocks = blocks if blocks is not None or not coarse else d._local_blocks(values)
        v = values.detach().reshape(-1)
        err = None
        try:
            if kind == "jacobi":
                diag = d._diagonal(v)
                if bool((diag == 0).any()):
                    raise InvalidArgumentError(
                        "preconditioner: 'jacobi' needs a nonzero diagonal on every row"
                    )
                self.inv_diag = (1 / diag).unsqueeze(1)
                self.name = "jacobi"
            else:
                overlap = 0 if kind == "block_jacobi" else overlap
                self.ext = d._overlap(overlap)
                A_S = self.ext.matrix(v)
                self.local = _LocalSolve(A_S, local_solver, "preconditioner")
                self.name = f"{kind} (overlap {overlap}, local {self.local.name})"
        except TorchSlaError as e:
            err = e
        agree(d.comm, err, "preconditioner setup")
        if coarse:
            self._coarse_setup(v)
            self.name += " + coarse (one smoothed unknown per rank)"

    def _coarse_setup(self, v: Tensor) -> None:
        """Z: the indicator of each rank's rows smoothed by one damped Jacobi step (``Z = (I - w D^{-1} A)
        Z0``, w = 2/3, as smoothed aggregation does), so that the coarse functions decay towards Dirichlet
        boundaries instead of jumping; E = Z^T A Z, all-reduced. Z is stored dense, ``(n_owned, world)``:
        its nonzero columns are this rank's and its neighbours'."""
        d = self.d
        W = d.comm.size
        Z = torch.zeros(d.n_owned, W, dtype=v.dtype, device=v.device)
        Z[:, d.rank] = 1
        diag = d._diagonal(v)
        safe = torch.where(diag != 0, diag, torch.ones_like(diag))
        Z = Z - (2.0 / 3.0) * (self.blocks.matvec(Z) / safe[:, None]) * (diag != 0)[:, None]
        E = d.comm.all_reduce(Z.mH @ self.blocks.matvec(Z), "sum", "coarse operator")  # (world, world)
        self.Z, self.E = Z, E
        self.E_singular = bool(torch.linalg.matrix_rank(E) < W)
        if self.E_singular:
            self.E_pinv = torch.linalg.pinv(E)
        else:
            self.E_lu = torch.linalg.lu_factor(E)

    def _coarse(self, r: Tensor, op: str) -> Tensor:
        """``Q r = Z E^{-1} Z^H r`` (``E^{-H}`` for op H)."""
        d = self.d
        c = d.comm.all_reduce(self.Z.mH @ r, "sum", "coarse restriction")  # (world, k)
        if self.E_singular:
            y = (self.E_pinv if op == "N" else self.E_pinv.mH) @ c
        else:
            y = torch.linalg.lu_solve(*self.E_lu, c, adjoint=op != "N")
        return self.Z @ y

    def _one_level(self, r: Tensor, op: str) -> Tensor:
        if self.kind == "jacobi":
            return r * (self.inv_diag if op == "N" else self.inv_diag.conj())
        ext = self.ext
        n = self.d.n_owned
        rS = torch.cat([r, ext.exchange.forward(r)]) if ext.n_extra else r
        zS = self.local(rS, op)
        if self.kind == "asm" and ext.n_extra:
            return zS[:n] + ext.exchange.reverse(zS[n:])
        return zS[:n].clone()

    def __call__(self, r: Tensor, op: str = "N") -> Tensor:
        if not self.coarse:
            return self._one_level(r, op)
        A = self.blocks.matvec if op == "N" else self.blocks.rmatvec
        q = self._coarse(r, op)  # Q r
        z1 = self._one_level(r - A(q), op)  # M1 (I - A Q) r
        if self.kind == "ras":
            return q + z1
        return q + z1 - self._coarse(A(z1), op)  # + Q r - Q A M1 (I - A Q) r


class _Overlap:
    """The owned rows extended by ``overlap`` layers of neighbouring rows fetched from their owners: the
    set S (owned first, then the extra unknowns), the structure of ``A_S`` (rows of S restricted to the
    columns in S) and the plans that move vector entries (S's extra unknowns) and matrix values (the
    fetched rows' entries, for new values on the same pattern)."""

    def __init__(self, d: DSparseTensor, overlap: int):
        comm = d.comm
        owned = d.owned_rows
        p = d._local_pattern
        # my rows in global numbering, with the global entry ids of their values
        g_row = owned[p.row]
        g_col = d._local_to_global[p.col]
        g_ent = d._entry_offset + torch.arange(p.nnz, dtype=torch.int64)
        rows_r, cols_r, ents_r = [g_row], [g_col], [g_ent]
        have = owned.clone()  # sorted global ids whose rows are known
        members = [owned]
        frontier_cols = g_col
        for _ in range(overlap):
            cand = torch.unique(frontier_cols)
            _, known = _sorted_lookup(have, cand)
            new = cand[~known]
            if comm.size > 1:
                fetched = d._fetch_rows(new)
            else:
                fetched = (torch.empty(0, dtype=torch.int64),) * 3
            fr, fc, fe = fetched
            rows_r.append(fr)
            cols_r.append(fc)
            ents_r.append(fe)
            members.append(new)
            have = torch.sort(torch.cat([have, new])).values
            frontier_cols = fc
        extra = torch.cat(members[1:]) if len(members) > 1 else torch.empty(0, dtype=torch.int64)
        S = torch.cat([owned, extra])
        order = torch.argsort(S)
        S_sorted = S[order]
        R, Cc, Ee = torch.cat(rows_r), torch.cat(cols_r), torch.cat(ents_r)
        rpos, _ = _sorted_lookup(S_sorted, R)
        cpos, cin = _sorted_lookup(S_sorted, Cc)
        keep = cin
        self.n, self.n_extra = S.numel(), extra.numel()
        self.rows = order[rpos[keep]]
        self.cols = order[cpos[keep]]
        self.entries = Ee[keep]  # global entry ids of A_S's entries
        self.exchange = (
            Exchange(comm, owned, extra, d._owner_of, "overlap exchange") if comm.size > 1 else None
        )
        if comm.size > 1:
            self.values_plan = Exchange(comm, d._entry_ids, self.entries, d._entry_owner, "overlap values")
        else:
            self.values_plan = None
        self.d = d
        self.overlap = overlap

    def matrix(self, v: Tensor) -> SparseTensor:
        if self.values_plan is not None:
            vals = self.values_plan.forward(v)
        else:
            vals = v[self.entries - self.d._entry_offset]
        return SparseTensor(vals, self.rows, self.cols, (self.n, self.n))


# -- the autograd source of a distributed solve -------------------------------------------------------------
class DSolveInfo(KrylovInfo):
    """What a distributed solve did: :class:`KrylovInfo` plus the method, the preconditioner and the
    adjoint solve's record (filled by backward)."""

    method: str = ""
    preconditioner: str = ""
    adjoint: dict | None = None


class _DSolver:
    def __init__(self, source: _DSource, values: Tensor):
        d = source.d
        self.source = source
        self.blocks = d._local_blocks(values)
        self.M = source.make_preconditioner(values, self.blocks)

    def raw_solve(self, b: Tensor, op: str) -> Tensor:
        s = self.source
        o = s.opts
        A = _DOperator(s.d, self.blocks, op)
        method = s.method
        M = None if self.M is None else (lambda r: self.M(r, op))
        x, info = krylov_solve(
            A,
            b[0],
            method=method,
            rtol=o["rtol"],
            atol=o["atol"],
            maxiter=o["maxiter"],
            restart=o["restart"],
            M=M,
            check_every=o["check_every"],
        )
        record = {
            "iterations": info.iterations,
            "residual": info.residual,
            "converged": info.converged,
            "reason": info.reason,
        }
        if op == "N" and s.info is None:
            s.info = DSolveInfo(**record)
            s.info.method, s.info.preconditioner = method, "none" if self.M is None else self.M.name
        elif s.info is not None:
            s.info.adjoint = record
        if not info.converged:
            msg = (
                f"DSparseTensor.solve: {method} {'adjoint ' if op != 'N' else ''}did not converge: "
                f"{info.reason} after {info.iterations} iterations, relative residual {info.residual:.3g} "
                f"(rtol {o['rtol']:g})"
            )
            if o["on_fail"] == "raise":
                raise ConvergenceError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return x.unsqueeze(0)


class _DSource:
    """SolverSource of a distributed solve: the solver (Krylov + preconditioner) is built from the local
    values on first use and reused by backward's adjoint solve. A depends on each rank's local values on
    its local pattern, so the vector-Jacobian product is the pattern rule with the right vector's ghost
    entries fetched (a differentiable halo exchange)."""

    def __init__(self, d: DSparseTensor, method: str, precond: str, opts: dict):
        self.d, self.method, self.precond, self.opts = d, method, precond, opts
        self._built = None
        self.info: DSolveInfo | None = None

    def make_preconditioner(self, values: Tensor, blocks: _LocalBlocks | None = None):
        o, d = self.opts, self.d
        kind = self.precond
        if kind == "none":
            return None
        coarse = kind == "two_level"
        if coarse:
            kind = "asm" if self.method in ("cg", "minres") else "ras"
            if o["overlap"] == 0:
                kind = "block_jacobi"
        return _Schwarz(d, values, kind, o["overlap"], o["local_solver"], coarse and d.world_size > 1, blocks)

    def solver_for(self, params):
        if self._built is None:
            self._built = _DSolver(self, params[0])
        return self._built

    def rebatched(self):
        raise InvalidArgumentError("DSparseTensor.solve: vmap over the matrix values is not supported")

    def params_vjp(self, params, left, right):
        # grad_values[k] = -left[row_k] * conj(right_ext[col_k]) (see LinearSolve); right_ext holds the
        # owned entries then the ghosts, fetched by the (differentiable) halo exchange.
        d = self.d
        r = right[0]
        ext = torch.cat([r, apply_linear(d._halo.map, r)]) if d.n_ghost else r
        return (pattern_vjp(d._local_pattern, left, ext.unsqueeze(0)),)

    def params_jvp(self, params, tangents, x, op):
        d = self.d
        dv = tangents[0]
        p = d._local_pattern
        xx = x[0]
        if op == "N":
            ext = torch.cat([xx, apply_linear(d._halo.map, xx)]) if d.n_ghost else xx
            prod = dv[0][:, None] * ext[p.col]
            return torch.zeros_like(xx).index_add(0, p.row, prod).unsqueeze(0)
        prod = dv[0].conj()[:, None] * xx[p.row]
        y = xx.new_zeros((d.n_owned + d.n_ghost, xx.shape[1])).index_add(0, p.col, prod)
        out = y[: d.n_owned]
        if d.n_ghost:
            out = out + apply_linear(d._halo.map.T, y[d.n_owned :])
        return out.unsqueeze(0)


# -- eigenvalues ---------------------------------------------------------------------------------------------------
class DEigshInfo:
    """What a distributed eigsh did: iterations, converged, relative residuals of the returned pairs."""

    def __init__(self):
        self.iterations, self.converged, self.residuals, self.reason = 0, False, [], ""

    def __repr__(self) -> str:
        return f"DEigshInfo(iterations={self.iterations}, converged={self.converged}, residuals={self.residuals})"


class _DMember:
    """The eigensolver's view of a distributed matrix (the interface of the single-process member):
    owned-entry blocks, all-reduced Gram matrices and residual norms."""

    def __init__(self, d: DSparseTensor, values: Tensor):
        self.d = d
        self.blocks = d._local_blocks(values)
        self.n, self.n_local = d.shape[0], d.n_owned
        self.dtype, self.device = d.dtype, d.device
        self.m_op = None
        p = d._local_pattern
        rows = torch.zeros(d.n_owned, dtype=values.abs().dtype).index_add(
            0, p.row, values.detach().abs().cpu()
        )
        local = float(rows.max()) if rows.numel() else 0.0
        self.norm_a = float(d.comm.all_reduce(torch.tensor([local]), "max"))

    def gram(self, X: Tensor, Y: Tensor) -> Tensor:
        return self.d.comm.all_reduce(X.mH @ Y, "sum", "eigsh Gram matrix")

    def amul(self, x: Tensor) -> Tensor:
        return self.blocks.matvec(x)

    def mmul(self, x: Tensor) -> Tensor:
        return x

    def residuals(self, lam: Tensor, Y: Tensor, MY: Tensor | None = None) -> Tensor:
        R = self.amul(Y) - Y * lam.to(Y.dtype)
        rn = torch.real(torch.diagonal(self.gram(R, R))).clamp_min(0).sqrt()
        yn = torch.real(torch.diagonal(self.gram(Y, Y))).clamp_min(0).sqrt()
        scale = self.norm_a if self.norm_a > 0 else 1.0
        return (rn / (torch.where(yn > 0, yn, torch.ones_like(yn)) * scale)).to(lam.dtype)


class _DEigsh(torch.autograd.Function):
    """Eigenpairs of a distributed symmetric matrix as one node. For a simple eigenvalue with unit
    eigenvector v, A v = lambda v gives d lambda = v^T dA v, so the gradient of the local values is
    ``g_lambda * v[row] * v_ext[col]`` summed over the eigenpairs (v_ext: owned entries, then the ghosts
    from a halo exchange). Eigenvector gradients need the whole spectrum's gaps and are not provided."""

    @staticmethod
    def forward(d, settings, info, values):
        member = _DMember(d, values)
        gen = torch.Generator(device=d.device).manual_seed(int(settings["seed"]) * 7919 + d.rank)
        with torch.no_grad():
            lam, V, res, its, _, status = _lobpcg(
                member,
                settings["k"],
                settings["largest"],
                settings["tol"],
                settings["maxiter"],
                settings["X0"],
                settings["M"],
                gen,
            )
            order = torch.argsort(lam)
            lam, V, res = lam[order], V[:, order], res[order]
        info.iterations, info.converged, info.reason = its, status == "converged", status
        info.residuals = res.tolist()
        return lam, V

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.d = inputs[0]
        ctx.save_for_backward(output[1])

    @staticmethod
    def backward(ctx, g_lam, g_V):
        d = ctx.d
        (V,) = ctx.saved_tensors
        err = None
        if g_V is not None and bool((g_V != 0).any()):
            err = InvalidArgumentError(
                "DSparseTensor.eigsh: gradients through the eigenvectors are not supported (only through the "
                "eigenvalues); detach V, or use torch_sla.eigsh on the gathered matrix"
            )
        agree(d.comm, err, "DSparseTensor.eigsh backward")
        p = d._local_pattern
        Vext = torch.cat([V, apply_linear(d._halo.map, V)]) if d.n_ghost else V
        grad = ((V[p.row] * Vext[p.col]) * g_lam[None, :]).sum(1)
        return None, None, None, grad


# -- the distributed sparse tensor -------------------------------------------------------------------------------
class DSparseTensor(DistributedInnerProducts):
    """A square sparse matrix whose rows are partitioned over the ranks of a process group.

    Build it with :meth:`partition` (a global matrix on every rank, or on one rank that scatters it),
    :meth:`from_global_distributed` (a global COO on every rank) or :meth:`from_sparse_local` (each rank
    its own rows with global indices, as a parallel mesh generator produces them). See the module
    docstring for the local layout and the vector forms.

    It implements the operator protocol on ``(n_owned, k)`` blocks of owned entries (``matvec``,
    ``rmatvec``, all-reduced ``dot`` / ``norm`` / ``project``), so the torch Krylov methods run on it
    unchanged; ``D @ x`` and ``D.solve(b)`` take any vector form and are differentiable with respect to
    the local values (each rank's gradient lands on the entries it owns) and to ``x`` / ``b``.

    Attributes
    ----------
    shape : (n, n) global. dtype, device.
    rank, world_size : this rank, the group's size. mesh : the DeviceMesh given (or None).
    partition : :class:`~torch_sla.Partition` (the owner of every row; every rank holds it).
    owned_rows, ghost_rows : int64 global indices, sorted. n_owned, n_ghost.
    local : the local :class:`SparseTensor` ``(n_owned, n_owned + n_ghost)`` (owned columns first).
    values : its values (``(nnz_local,)``, CSR order): where gradients land.
    """

    def __init__(
        self,
        comm: Comm,
        mesh,
        n: int,
        partition: Partition,
        rows: Tensor,
        cols: Tensor,
        values: Tensor,
        select=None,
    ):
        """Internal: use the class methods. ``rows``/``cols``/``values``: global COO of this rank's rows;
        ``select``: their positions in the constructor's input values (for :meth:`with_values`)."""
        super().__init__(comm)
        self.mesh = mesh
        self.rank, self.world_size = comm.rank, comm.size
        self.shape = (n, n)
        self.partition = partition
        owner = partition.owner
        self._owner = owner
        self.owned_rows = torch.nonzero(owner == self.rank).reshape(-1)
        err = None
        rows_c, cols_c = rows.cpu().to(torch.int64), cols.cpu().to(torch.int64)
        if rows_c.numel() and (
            int(rows_c.min()) < 0 or int(rows_c.max()) >= n or int(cols_c.min()) < 0 or int(cols_c.max()) >= n
        ):
            err = InvalidArgumentError(f"row/col: global indices must lie in [0, {n}) on rank {self.rank}")
        elif rows_c.numel() and not bool((owner[rows_c] == self.rank).all()):
            bad = rows_c[owner[rows_c] != self.rank][:5].tolist()
            err = InvalidArgumentError(
                f"rows: rank {self.rank} was given rows {bad} that the partition assigns elsewhere"
            )
        agree(comm, err, "DSparseTensor")
        n_own = self.owned_rows.numel()
        is_own = owner[cols_c] == self.rank
        self.ghost_rows = torch.unique(cols_c[~is_own])
        self.n_owned, self.n_ghost = int(n_own), int(self.ghost_rows.numel())
        lrow, _ = _sorted_lookup(self.owned_rows, rows_c)
        cpos_own, _ = _sorted_lookup(self.owned_rows, cols_c)
        cpos_gh, _ = _sorted_lookup(self.ghost_rows, cols_c)
        lcol = torch.where(is_own, cpos_own, n_own + cpos_gh)
        dev = values.device
        if values.dim() != 1 or values.shape[0] != rows_c.numel():
            raise InvalidArgumentError(
                f"values: expected one matrix ({rows_c.numel()},), got shape {tuple(values.shape)}"
            )
        # CSR order of the local entries; duplicates are summed (differentiably, by index_add)
        width = self.n_owned + self.n_ghost
        keys, inverse = torch.unique(lrow * max(width, 1) + lcol, return_inverse=True)
        self._coo_inverse = inverse.to(dev)
        self._select = select
        self._n_input = None
        csr_values = self._to_csr_values(values)
        self.local = SparseTensor(
            csr_values,
            torch.div(keys, max(width, 1), rounding_mode="floor").to(dev),
            (keys % max(width, 1)).to(dev),
            (self.n_owned, width),
        )
        self.dtype, self.device = self.local.dtype, dev
        self._local_pattern = (
            self.local.pattern.to(torch.device("cpu")) if dev.type != "cpu" else self.local.pattern
        )
        self._local_to_global = torch.cat([self.owned_rows, self.ghost_rows])
        self._col_owner = torch.cat(
            [torch.full((n_own,), self.rank, dtype=torch.int64), owner[self.ghost_rows]]
        )
        self._halo = Exchange(comm, self.owned_rows, self.ghost_rows, self._owner_of, "halo exchange")
        nnz_all = comm.all_gather_sizes(self.local.nnz, "DSparseTensor")
        offsets = torch.tensor([0, *nnz_all], dtype=torch.int64).cumsum(0)
        self._entry_offsets = offsets
        self._entry_offset = int(offsets[self.rank])
        self._entry_ids = self._entry_offset + torch.arange(self.local.nnz, dtype=torch.int64)
        self._owned_cache: dict = {}
        self._overlaps: dict = {}
        self._chunk_plans: dict = {}
        self._maps: dict = {}
        self._hermitian: bool | None = None
        self._blocks_cache: tuple | None = None

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def partition(cls, A, mesh=None, partition_method="auto", *, coords=None, src=None, seed=0):
        """Distribute a global matrix: every rank passes the same ``A`` (each keeps its rows), or, with
        ``src=r``, only rank r passes it (others pass None) and it scatters the rows. ``partition_method``:
        "auto", "metis", "coordinates" (with ``coords`` ``(n, d)``), "contiguous", or a :class:`Partition`.
        On an instance, ``D.partition`` is the Partition in use (an attribute)."""
        return cls._from_global(A, mesh, partition_method, coords, src, seed)

    @staticmethod
    def _partition_of(comm: Comm, A: SparseTensor, method: str, coords, seed) -> Partition:
        """One partition computed on rank 0 and broadcast (identical on every rank by construction)."""
        part, err = None, None
        if comm.rank == 0:
            try:
                part = make_partition(A, comm.size, method=method, coords=coords, seed=seed)
            except TorchSlaError as e:
                err = e
        agree(comm, err, "partition")
        return comm.broadcast_object(part, 0, "partition")

    @classmethod
    def _from_global(cls, A, mesh, partition_method, coords, src, seed):
        D = cls._from_global_impl(A, mesh, partition_method, coords, src, seed)
        if D._select is not None:
            D._n_input = A.nnz
        return D

    @classmethod
    def _from_global_impl(cls, A, mesh, partition_method, coords, src, seed):
        comm, mesh = _comm_of(mesh)
        err = None
        if src is None or comm.rank == src:
            try:
                A = as_sparse_tensor(A)
                if A.batch_shape or A.shape[0] != A.shape[1]:
                    raise InvalidArgumentError(f"A: expected a square, unbatched matrix, got shape {A.shape}")
            except TorchSlaError as e:
                err = e
        agree(comm, err, "DSparseTensor.partition")
        if src is None:
            if isinstance(partition_method, Partition):
                part = partition_method
            else:
                part = cls._partition_of(comm, A, partition_method, coords, seed)
            mine = part.owner[A.pattern.row.cpu()] == comm.rank
            idx = torch.nonzero(mine).reshape(-1).to(A.device)
            return cls(
                comm,
                mesh,
                A.shape[0],
                part,
                A.pattern.row[idx],
                A.pattern.col[idx],
                A.values.index_select(0, idx),
                idx,
            )
        # scatter from rank src: it partitions and sends every rank its rows
        src = as_int(src, "src", lo=0, hi=comm.size - 1)
        meta = None
        if comm.rank == src:
            part = (
                partition_method
                if isinstance(partition_method, Partition)
                else make_partition(A, comm.size, method=partition_method, coords=coords, seed=seed)
            )
            meta = (A.shape[0], A.dtype, part)
        n, dtype, part = comm.broadcast_object(meta, src, "DSparseTensor.partition")
        if comm.rank == src:
            own = part.owner[A.pattern.row.cpu()]
            order = torch.argsort(own, stable=True)
            counts = torch.bincount(own, minlength=comm.size).tolist()
            rows = list(torch.split(A.pattern.row.cpu()[order], counts))
            cols = list(torch.split(A.pattern.col.cpu()[order], counts))
            vals = list(torch.split(A.values.detach().cpu()[order], counts))
        else:
            rows = [torch.empty(0, dtype=torch.int64)] * comm.size
            cols = list(rows)
            vals = [torch.empty(0, dtype=dtype)] * comm.size
        rows = comm.all_to_all_v(rows, "scatter rows")[src]
        cols = comm.all_to_all_v(cols, "scatter cols")[src]
        vals = _all_to_all_values(comm, vals, dtype)[src]
        return cls(comm, mesh, n, part, rows, cols, vals)

    @classmethod
    def from_global_distributed(
        cls,
        values,
        row,
        col,
        shape,
        rank=None,
        world_size=None,
        *,
        mesh=None,
        partition_method="auto",
        coords=None,
        seed=0,
    ):
        """Every rank holds the global COO ``(values, row, col, shape)``; each keeps its rows of the
        partition (computed on rank 0, broadcast). ``rank`` / ``world_size``, when given, must match the
        process group's."""
        comm, _ = _comm_of(mesh)
        if rank is not None and int(rank) != comm.rank:
            raise InvalidArgumentError(f"rank: {rank} but this process is rank {comm.rank} of its group")
        if world_size is not None and int(world_size) != comm.size:
            raise InvalidArgumentError(f"world_size: {world_size} but the group has {comm.size} ranks")
        A = SparseTensor(values, row, col, shape)
        return cls._from_global(A, mesh, partition_method, coords, None, seed)

    @classmethod
    def from_sparse_local(cls, local, mesh=None, partition=None, *, shape=None):
        """Each rank gives its own rows with global indices: ``local`` is a SparseTensor of the global shape
        holding only those rows, or a COO tuple ``(values, row, col, shape)``.

        ``partition``: a :class:`Partition` or an owner tensor ``(n,)`` (the same on every rank); ``None``
        means each rank owns exactly the rows it gives (they are all-gathered once to learn the owners of
        the ghosts, and must cover every row once)."""
        comm, mesh = _comm_of(mesh)
        err = None
        try:
            A = as_sparse_tensor(local)
            if A.batch_shape or A.shape[0] != A.shape[1]:
                raise InvalidArgumentError(f"local: expected a square global shape (n, n), got {A.shape}")
        except TorchSlaError as e:
            err, A = e, None
        agree(comm, err, "DSparseTensor.from_sparse_local")
        n = A.shape[0]
        sizes = comm.all_gather_sizes(n, "DSparseTensor.from_sparse_local")
        if len(set(sizes)) != 1:
            raise InvalidArgumentError(f"local: the ranks disagree on the global size n: {sizes}")
        rows = A.pattern.row.cpu()
        if partition is None:
            mine = torch.unique(rows)
            every = comm.all_gather_v(mine, "DSparseTensor.from_sparse_local")
            counts = comm.all_gather_sizes(mine.numel(), "DSparseTensor.from_sparse_local")
            owner = torch.full((n,), -1, dtype=torch.int64)
            ranks = torch.repeat_interleave(torch.arange(comm.size), torch.tensor(counts))
            seen = torch.bincount(every, minlength=n) if every.numel() else torch.zeros(n, dtype=torch.int64)
            if bool((seen != 1).any()):
                dup = torch.nonzero(seen > 1).reshape(-1)[:5].tolist()
                miss = torch.nonzero(seen == 0).reshape(-1)[:5].tolist()
                raise InvalidArgumentError(
                    f"local: every global row must be given by exactly one rank; rows given twice {dup}, "
                    f"rows given by none {miss} (a row with no entries needs a partition=...)"
                )
            owner[every] = ranks
            part = _given_partition(comm, owner, A)
        elif isinstance(partition, Partition):
            part = partition
        else:
            part = _given_partition(comm, torch.as_tensor(partition), A)
        if part.n != n or part.num_parts != comm.size:
            raise InvalidArgumentError(
                f"partition: {part.num_parts} parts of {part.n} rows, expected {comm.size} parts of {n}"
            )
        return cls(comm, mesh, n, part, A.pattern.row, A.pattern.col, A.values)

    def _to_csr_values(self, values: Tensor) -> Tensor:
        return values.new_zeros(
            int(self._coo_inverse.max()) + 1 if self._coo_inverse.numel() else 0
        ).index_add(0, self._coo_inverse, values)

    def with_values(self, values: Tensor, *, replicated: bool = False) -> DSparseTensor:
        """The same distributed matrix (layout, halo plans, cached overlaps) with new values, in the form
        the constructor took: for :meth:`partition` / :meth:`from_global_distributed` the global values
        (every rank passes the same), for :meth:`from_sparse_local` this rank's local COO values.

        Gradients land on each rank's own entries; with ``replicated=True`` (global values only) they are
        all-reduced, so every rank holds the full, same gradient of its replicated values (what
        ``torch.autograd.gradcheck`` run on every rank needs)."""
        values = torch.as_tensor(values)
        if self._select is None and replicated:
            raise InvalidArgumentError("replicated: only for a matrix built from global values")
        if self._select is not None:
            if values.dim() != 1 or values.shape[0] != self._n_input:
                raise InvalidArgumentError(
                    f"values: expected the global values ({self._n_input},), got {tuple(values.shape)}"
                )
            mine = (
                apply_linear(self._linear("select"), values)
                if replicated
                else values.index_select(0, self._select)
            )
        else:
            if values.dim() != 1 or values.shape[0] != self._coo_inverse.numel():
                raise InvalidArgumentError(
                    f"values: expected this rank's local values ({self._coo_inverse.numel()},), got {tuple(values.shape)}"
                )
            mine = values
        if values.dtype != self.dtype or values.device != self.device:
            raise InvalidArgumentError(
                f"values: expected {self.dtype} on {self.device}, got {values.dtype} on {values.device}"
            )
        new = object.__new__(DSparseTensor)
        new.__dict__.update(self.__dict__)
        new.local = SparseTensor._from_pattern(self._to_csr_values(mine), self.local.pattern)
        new._hermitian = None
        new._blocks_cache = None
        return new

    def _local_blocks(self, values: Tensor) -> _LocalBlocks:
        """The CSR blocks of ``values`` (local values on this matrix's pattern), kept for the tensor last
        asked for while it is not modified in place: repeated solves and products build them once."""
        cached = getattr(self, "_blocks_cache", None)
        if cached is not None and cached[0] is values and cached[1] == values._version:
            return cached[2]
        blocks = _LocalBlocks(self, values)
        self._blocks_cache = (values, values._version, blocks)
        return blocks

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def values(self) -> Tensor:
        return self.local.values

    @property
    def nnz(self) -> int:
        return self.local.nnz

    def to_local(self) -> SparseTensor:
        """The local matrix (owned rows, owned columns first then ghosts)."""
        return self.local

    def __repr__(self) -> str:
        return (
            f"DSparseTensor(shape={self.shape}, rank={self.rank}/{self.world_size}, owned={self.n_owned}, "
            f"ghosts={self.n_ghost}, nnz_local={self.nnz}, dtype={self.dtype})"
        )

    def _owner_of(self, ids: Tensor) -> Tensor:
        return self._owner[ids]

    def _entry_owner(self, ids: Tensor) -> Tensor:
        return torch.searchsorted(self._entry_offsets, ids, right=True) - 1

    def _owned_dev(self, device) -> Tensor:
        hit = self._owned_cache.get(device)
        if hit is None:
            hit = self._owned_cache[device] = self.owned_rows.to(device)
        return hit

    def _diagonal(self, v: Tensor) -> Tensor:
        p = self._local_pattern
        on = p.col == p.row
        return torch.zeros(self.n_owned, dtype=v.dtype, device=v.device).index_add(
            0, p.row[on].to(v.device), v[on.to(v.device)]
        )

    def _overlap(self, overlap: int) -> _Overlap:
        hit = self._overlaps.get(overlap)
        if hit is None:
            hit = self._overlaps[overlap] = _Overlap(self, overlap)
        return hit

    def _fetch_rows(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The rows of global indices ``ids`` from their owners: (row gid, col gid, global entry id) per entry."""
        comm = self.comm
        owners = self._owner[ids] if ids.numel() else torch.empty(0, dtype=torch.int64)
        order = torch.argsort(owners, stable=True)
        counts = torch.bincount(owners, minlength=comm.size).tolist() if ids.numel() else [0] * comm.size
        asked = comm.all_to_all_v(list(torch.split(ids[order], counts)), "fetch rows")
        p = self._local_pattern
        crow = p.crow.cpu()
        out_r, out_c, out_e = [], [], []
        for q_ids in asked:
            pos, _ = _sorted_lookup(self.owned_rows, q_ids.to(torch.int64))
            starts, ends = crow[pos], crow[pos + 1]
            lens = ends - starts
            ent = torch.repeat_interleave(starts, lens) + (
                torch.arange(int(lens.sum())) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
            )
            out_r.append(torch.repeat_interleave(q_ids.to(torch.int64), lens))
            out_c.append(self._local_to_global[p.col[ent].cpu()])
            out_e.append(self._entry_offset + ent)
        got_r = torch.cat(comm.all_to_all_v(out_r, "fetch rows"))
        got_c = torch.cat(comm.all_to_all_v(out_c, "fetch rows"))
        got_e = torch.cat(comm.all_to_all_v(out_e, "fetch rows"))
        return got_r, got_c, got_e

    # -- vectors ------------------------------------------------------------------------------------------------
    def _linear(self, kind: str, n: int | None = None) -> LinearMap:
        """The linear maps between replicated and owned tensors (cached per layout), with their adjoints:

        - "shard": ``x -> x[owned]`` of a replicated x; adjoint: zero-pad and sum over the ranks (the
          gradient of one replicated value is the sum of every rank's contribution);
        - "gather": owned entries -> the replicated global vector; adjoint: the owned entries;
        - "replicated": the identity; adjoint: the sum over the ranks;
        - "select": replicated global values -> this rank's values; adjoint: zero-pad and sum.
        """
        key = (kind, n)
        hit = self._maps.get(key)
        if hit is not None:
            return hit
        comm = self.comm

        def owned(t: Tensor) -> Tensor:
            return t.index_select(0, self._owned_dev(t.device))

        def padded_sum(idx_of, size):
            def adjoint(g: Tensor) -> Tensor:
                full = g.new_zeros((size, *g.shape[1:])).index_add(0, idx_of(g.device), g)
                return comm.all_reduce(full, "sum", "gradient all-reduce")

            return adjoint

        if kind == "shard":
            L = LinearMap(owned, padded_sum(self._owned_dev, n))
        elif kind == "gather":
            L = LinearMap(self._gather_raw, owned)
        elif kind == "replicated":
            L = LinearMap(lambda t: t.view_as(t), lambda g: comm.all_reduce(g, "sum", "gradient all-reduce"))
        else:  # "select"
            sel = self._select
            L = LinearMap(lambda v: v.index_select(0, sel.to(v.device)), padded_sum(sel.to, self._n_input))
        self._maps[key] = L
        return L

    def _gather_raw(self, x: Tensor) -> Tensor:
        full = self.comm.all_gather_v(x.detach(), "gather")
        perm = torch.argsort(self._owner, stable=True).to(
            x.device
        )  # rank-major global order = gathered order
        out = torch.empty_like(full)
        out[perm] = full
        return out

    def shard(self, x: Tensor) -> Tensor:
        """The owned entries of a replicated global vector ``x`` ``(n,)`` / ``(n, k)`` (differentiable: the
        gradient of the replicated x is all-reduced, the same on every rank)."""
        if not isinstance(x, Tensor) or x.dim() not in (1, 2) or x.shape[0] != self.shape[0]:
            raise InvalidArgumentError(
                f"x: expected a replicated global ({self.shape[0]},) or ({self.shape[0]}, k) tensor"
            )
        return apply_linear(self._linear("shard", x.shape[0]), x)

    def replicated(self, t: Tensor) -> Tensor:
        """``t`` itself, marked as one value replicated on every rank: its gradient is the sum of the
        ranks' contributions (an all-reduce in backward), so every rank gets the full, same gradient. Use
        it for a replicated parameter (a scalar, a global vector) used directly in rank-local computations,
        e.g. inside a distributed residual; :meth:`shard` does the same for the owned entries of a global
        vector. Without it, a tensor's gradient on each rank is that rank's contribution only."""
        if not isinstance(t, Tensor):
            raise InvalidArgumentError(f"t: expected a tensor, got {type(t).__name__}")
        return apply_linear(self._linear("replicated"), t)

    def gather(self, x: Tensor) -> Tensor:
        """The replicated global vector from every rank's owned entries ``(n_owned,)`` / ``(n_owned, k)``."""
        if not isinstance(x, Tensor) or x.dim() not in (1, 2) or x.shape[0] != self.n_owned:
            raise InvalidArgumentError(
                f"x: expected the owned entries ({self.n_owned},) or ({self.n_owned}, k)"
            )
        return apply_linear(self._linear("gather"), x)

    def _chunk_plan(self):
        """Exchanges between the partition's layout and torch's even Shard(0) chunks of the global order."""
        if "plan" not in self._chunk_plans:
            n, W = self.shape[0], self.world_size
            size = -(-n // W) if n else 0
            lo = min(self.rank * size, n)
            hi = min(lo + size, n)
            chunk_ids = torch.arange(lo, hi, dtype=torch.int64)

            def chunk_owner(ids: Tensor) -> Tensor:
                return torch.div(ids, max(size, 1), rounding_mode="floor")

            to_part = Exchange(self.comm, chunk_ids, self.owned_rows, chunk_owner, "DTensor redistribution")
            to_chunk = Exchange(
                self.comm, self.owned_rows, chunk_ids, self._owner_of, "DTensor redistribution"
            )
            self._chunk_plans["plan"] = (to_part, to_chunk)
        return self._chunk_plans["plan"]

    def from_dtensor(self, x) -> Tensor:
        """The owned entries of a DTensor sharded on dim 0 (torch's even chunks of the global order)."""
        from_chunks, _ = self._chunk_plan()
        local = (
            x.redistribute(x.device_mesh, [_shard0()]).to_local()
            if tuple(x.placements) != (_shard0(),)
            else x.to_local()
        )
        return apply_linear(from_chunks.map, local)

    def to_dtensor(self, x: Tensor):
        """A DTensor sharded on dim 0 (torch's even chunks of the global order) from owned entries."""
        if self.mesh is None:
            raise InvalidArgumentError("to_dtensor: this DSparseTensor was built without a DeviceMesh")
        _, to_chunks = self._chunk_plan()
        local = apply_linear(to_chunks.map, x)
        shape = (self.shape[0], *x.shape[1:])
        stride = tuple(int(s) for s in torch.empty(shape, device="meta").stride())
        return DTensor.from_local(
            local, self.mesh, [_shard0()], run_check=False, shape=torch.Size(shape), stride=stride
        )

    def _vector_in(self, x, name: str):
        """(owned block (n_owned, k), a function turning an owned block of results back into x's form)."""
        if isinstance(x, DTensor):
            if x.shape[0] != self.shape[0]:
                raise InvalidArgumentError(
                    f"{name}: a DTensor of global shape ({self.shape[0]}, ...) was expected, got {tuple(x.shape)}"
                )
            loc = self.from_dtensor(x)
            one = loc.dim() == 1
            return (loc.unsqueeze(1) if one else loc), lambda y: self.to_dtensor(y[:, 0] if one else y)
        if not isinstance(x, Tensor):
            raise InvalidArgumentError(f"{name}: expected a tensor or a DTensor, got {type(x).__name__}")
        if x.dim() not in (1, 2):
            raise InvalidArgumentError(f"{name}: expected shape (n,) or (n, k), got {tuple(x.shape)}")
        if x.device != self.device:
            raise InvalidArgumentError(f"{name}: on {x.device}, the matrix is on {self.device}")
        one = x.dim() == 1
        n = self.shape[0]
        if x.shape[0] == n and (n != self.n_owned or self.world_size == 1):
            loc = apply_linear(self._linear("shard", n), x)
            back = lambda y: apply_linear(self._linear("gather"), y[:, 0] if one else y)  # noqa: E731
        elif x.shape[0] == self.n_owned:
            loc = x
            back = lambda y: y[:, 0] if one else y  # noqa: E731
        else:
            raise InvalidArgumentError(
                f"{name}: expected the replicated global vector ({n}, ...) or this rank's owned entries "
                f"({self.n_owned}, ...), got {tuple(x.shape)}"
            )
        return (loc.unsqueeze(1) if one else loc), back

    # -- products -----------------------------------------------------------------------------------------------
    def matvec(self, x: Tensor) -> Tensor:
        """``A x`` for an ``(n_owned, k)`` block of owned entries (differentiable; one halo exchange)."""
        ext = torch.cat([x, apply_linear(self._halo.map, x)]) if self.n_ghost else x
        return self.local.matmul(ext)

    def rmatvec(self, x: Tensor) -> Tensor:
        """``A^H x`` for an ``(n_owned, k)`` block (differentiable; one reverse halo exchange)."""
        y = self.local.H().matmul(x)
        if not self.n_ghost:
            return y
        return y[: self.n_owned] + apply_linear(self._halo.map.T, y[self.n_owned :])

    def matmul(self, x):
        """``A @ x`` for a vector in any of the three forms (replicated, DTensor, owned entries); the result
        in the same form. Differentiable to the values and x."""
        xl, back = self._vector_in(x, "x")
        if torch.is_grad_enabled() and (xl.requires_grad or self.values.requires_grad):
            y = self.matvec(xl)
        else:
            with torch.no_grad():
                y = self._local_blocks(self.values).matvec(xl)
        return back(y)

    def __matmul__(self, x):
        return self.matmul(x)

    def to_global(self) -> SparseTensor:
        """The global matrix on every rank (all-gather; for checks and small problems)."""
        p = self._local_pattern
        rows = self.comm.all_gather_v(self.owned_rows[p.row], "to_global")
        cols = self.comm.all_gather_v(self._local_to_global[p.col], "to_global")
        vals = self.comm.all_gather_v(self.values.detach(), "to_global")
        return SparseTensor(vals, rows.to(self.device), cols.to(self.device), self.shape)

    full_tensor = to_global

    def halo_stats(self) -> dict:
        """Counters of this rank's halo exchanges so far (forward and reverse): ``exchanges``,
        ``messages`` sent, ``bytes_sent``, ``bytes_received`` (payload only)."""
        return dict(self._halo.stats)

    def halo_bytes(self, k: int = 1) -> int:
        """Bytes this rank sends plus receives in one halo exchange of ``k`` columns."""
        item = torch.empty(0, dtype=self.dtype).element_size()
        return (self._halo.entries_sent() + self._halo.entries_received()) * k * item

    def is_hermitian(self) -> bool:
        """Whether A equals A^H, to rounding (tested with two random vectors: ``y^H A x = (A^H y)^H x``
        exactly for a Hermitian A; a non-Hermitian one passes with probability zero). Cached."""
        if self._hermitian is None:
            g = torch.Generator().manual_seed(1234 + self.rank)
            x = torch.randn(self.n_owned, 1, generator=g, dtype=self.values.real.dtype).to(self.dtype)
            y = torch.randn(self.n_owned, 1, generator=g, dtype=self.values.real.dtype).to(self.dtype)
            with torch.no_grad():
                B = self._local_blocks(self.values)
                Ax, Ay = B.matvec(x), B.matvec(y)
                a = self.dot(y, Ax)
                b = self.dot(Ay, x)
                scale = self.norm(Ax) * self.norm(y) + self.norm(Ay) * self.norm(x)
            eps = torch.finfo(self.values.real.dtype).eps
            self._hermitian = bool(
                (a - b).abs() <= 1e3 * eps * scale.clamp_min(torch.finfo(scale.dtype).tiny)
            )
        return self._hermitian

    def all_reduce(self, t: Tensor, op: str = "sum") -> Tensor:
        """``t`` reduced over the ranks (``op`` "sum", "max", "min"); used by distributed nonlinear solves."""
        return self.comm.all_reduce(t, op)

    def agree(self, error: BaseException | None, what: str) -> None:
        """Collective error check: when any rank passes an error, every rank raises (see ``agree``)."""
        agree(self.comm, error, what)

    def preconditioner(
        self, kind: str = "auto", *, overlap: int = 1, local_solver: str = "direct", symmetric=None
    ):
        """A preconditioner of this matrix as a callable ``M(r, op="N") -> z`` on ``(n_owned, k)`` blocks
        (``op="H"`` applies the preconditioner of A^H), e.g. for :func:`torch_sla.nonlinear_solve` with a
        distributed residual whose Jacobian this matrix approximates. ``kind`` as in :meth:`solve`;
        ``symmetric`` (default: :meth:`is_hermitian`) picks ASM over RAS for ``two_level``."""
        if kind not in _PRECONDITIONERS or kind == "none":
            raise InvalidArgumentError(
                f"kind: expected one of {_PRECONDITIONERS[2:] + ('auto',)}, got {kind!r}"
            )
        overlap = as_int(overlap, "overlap", lo=0, hi=100)
        if local_solver not in _LOCAL_SOLVERS:
            raise InvalidArgumentError(
                f"local_solver: expected one of {_LOCAL_SOLVERS}, got {local_solver!r}"
            )
        if kind == "auto":
            kind = "two_level" if self.world_size > 1 else "block_jacobi"
        sym = self.is_hermitian() if symmetric is None else bool(symmetric)
        opts = {"overlap": overlap, "local_solver": local_solver}
        return _DSource(self, "cg" if sym else "gmres", kind, opts).make_preconditioner(self.values)

    # -- eigenvalues --------------------------------------------------------------------------------------------
    def eigsh(
        self,
        k: int = 6,
        which: str = "LA",
        *,
        tol: float = 1e-8,
        maxiter: int = 1000,
        X0: Tensor | None = None,
        preconditioner=None,
        seed: int = 0,
        on_fail: str = "warn",
        return_info: bool = False,
    ):
        """The ``k`` largest (``which="LA"``) or smallest (``"SA"``) eigenvalues of a real symmetric
        distributed matrix and their eigenvectors, by block LOBPCG on the distributed operator (Gram
        matrices all-reduced).

        Returns ``(lam, V)``: ``lam`` ``(k,)`` ascending, the same on every rank, differentiable with
        respect to the local values (``d lambda_i = v_i^T dA v_i``: the gradient of each rank's entries is
        ``v_i[row] v_i[col]``, the ghost entries of ``v_i`` fetched by a halo exchange); ``V``
        ``(n_owned, k)``, this rank's entries of the orthonormal eigenvectors (no gradient: differentiating
        through them raises). ``preconditioner``: a callable ``(R, op) -> Z`` on ``(n_owned, m)`` blocks
        (e.g. :meth:`preconditioner`), which speeds up ``"SA"``. ``X0``: ``(n_owned, j)`` starting vectors.
        """
        if self.dtype.is_complex:
            raise InvalidArgumentError("eigsh: the distributed eigensolver takes real symmetric matrices")
        if which not in ("LA", "SA"):
            raise InvalidArgumentError(f"which: expected 'LA' or 'SA', got {which!r}")
        k = as_int(k, "k", lo=1, hi=max(self.shape[0] - 1, 1))
        tol = as_float(tol, "tol", lo=0.0, open_lo=True)
        maxiter = as_int(maxiter, "maxiter", lo=1)
        if on_fail not in ("warn", "raise"):
            raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {on_fail!r}")
        if X0 is not None and (not isinstance(X0, Tensor) or X0.dim() != 2 or X0.shape[0] != self.n_owned):
            raise InvalidArgumentError(f"X0: expected ({self.n_owned}, j) owned entries")
        err = None if self.is_hermitian() else InvalidArgumentError("A: eigsh needs a symmetric matrix")
        agree(self.comm, err, "DSparseTensor.eigsh")
        M = None if preconditioner is None else (lambda R: preconditioner(R, "N"))
        settings = dict(k=k, largest=which == "LA", tol=tol, maxiter=maxiter, X0=X0, M=M, seed=seed)
        info = DEigshInfo()
        lam, V = _DEigsh.apply(self, settings, info, self.values)
        if not info.converged:
            msg = (
                f"DSparseTensor.eigsh: LOBPCG did not converge in {info.iterations} iterations (relative "
                f"residuals {[f'{r:.2g}' for r in info.residuals]}, tol {tol:g})"
            )
            if on_fail == "raise":
                raise ConvergenceError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return (lam, V, info) if return_info else (lam, V)

    # -- solves -------------------------------------------------------------------------------------------------
    def solve(
        self,
        b,
        *,
        method: str = "auto",
        preconditioner: str = "auto",
        overlap: int = 1,
        local_solver: str = "direct",
        rtol: float = 1e-10,
        atol: float = 0.0,
        maxiter: int | None = None,
        restart: int = 50,
        check_every: int = 5,
        on_fail: str = "warn",
        return_info: bool = False,
    ):
        """Solve ``A x = b`` with a distributed Krylov method; ``x`` in ``b``'s form (replicated global,
        DTensor, or owned entries). One autograd node: backward is one distributed adjoint solve (A^H,
        the same preconditioner) and gives gradients to ``b`` and to every rank's local values.

        method : {"auto", "cg", "minres", "gmres", "bicgstab"}
            ``auto``: CG for a Hermitian matrix with a positive diagonal, MINRES for another Hermitian
            one, GMRES otherwise (Hermitian-ness tested once, see :meth:`is_hermitian`).
        preconditioner : {"auto", "none", "jacobi", "block_jacobi", "asm", "ras", "two_level"}
            ``block_jacobi``: each rank's owned block solved exactly (``local_solver``). ``asm``: additive
            Schwarz on the owned rows plus ``overlap`` layers (symmetric: for CG / MINRES). ``ras``:
            restricted additive Schwarz (for GMRES / BiCGStab). ``two_level``: ASM (CG / MINRES) or RAS
            (the others) plus a coarse level with one unknown per rank, so iteration counts stop growing
            with the number of ranks. ``auto``: ``two_level`` on several ranks, ``block_jacobi`` on one.
        overlap : int >= 0, the Schwarz overlap in layers of neighbours.
        local_solver : {"direct", "ilu0", "ic0"}: how each rank solves its (extended) block.
        rtol, atol, maxiter, restart, check_every : Krylov settings (see :func:`torch_sla.solve`);
            ``maxiter`` defaults to ``max(1000, n // 10)``.
        on_fail : {"warn", "raise"}: not converging warns or raises :class:`ConvergenceError` (on every rank).
        return_info : also return a :class:`DSolveInfo`.
        """
        if method not in _METHODS:
            raise InvalidArgumentError(f"method: expected one of {_METHODS}, got {method!r}")
        if preconditioner not in _PRECONDITIONERS:
            raise InvalidArgumentError(
                f"preconditioner: expected one of {_PRECONDITIONERS}, got {preconditioner!r}"
            )
        if local_solver not in _LOCAL_SOLVERS:
            raise InvalidArgumentError(
                f"local_solver: expected one of {_LOCAL_SOLVERS}, got {local_solver!r}"
            )
        if on_fail not in ("warn", "raise"):
            raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {on_fail!r}")
        n = self.shape[0]
        opts = {
            "rtol": as_float(rtol, "rtol", lo=0.0, open_lo=True),
            "atol": as_float(atol, "atol", lo=0.0),
            "maxiter": as_int(maxiter if maxiter is not None else max(1000, n // 10), "maxiter", lo=1),
            "restart": as_int(restart, "restart", lo=1),
            "check_every": as_int(check_every, "check_every", lo=1),
            "overlap": as_int(overlap, "overlap", lo=0, hi=100),
            "local_solver": local_solver,
            "on_fail": on_fail,
        }
        bl, back = self._vector_in(b, "b")
        err = None
        if not bool(torch.isfinite(bl.detach()).all()):
            err = InvalidArgumentError(f"b: contains NaN/Inf (on rank {self.rank})")
        elif not bool(torch.isfinite(self.values.detach()).all()):
            err = InvalidArgumentError(f"values: contain NaN/Inf (on rank {self.rank})")
        elif bl.dtype != self.dtype:
            err = InvalidArgumentError(f"b: dtype {bl.dtype}, the matrix is {self.dtype}")
        agree(self.comm, err, "DSparseTensor.solve")
        if method == "auto":
            if self.is_hermitian():
                diag = self._diagonal(self.values.detach())
                pos = bool((diag.real > 0).all()) if diag.numel() else True
                pos = bool(self.comm.all_reduce(torch.tensor([0.0 if pos else 1.0]), "max") == 0)
                method = "cg" if pos else "minres"
            else:
                method = "gmres"
        if preconditioner == "auto":
            preconditioner = "two_level" if self.world_size > 1 else "block_jacobi"
        if preconditioner == "ras" and method in ("cg", "minres"):
            raise InvalidArgumentError(
                f"preconditioner: 'ras' is not symmetric, so {method} cannot use it; use 'asm' (or gmres / bicgstab)"
            )
        source = _DSource(self, method, preconditioner, opts)
        x = solve_through(source, "N", bl.unsqueeze(0), self.values.unsqueeze(0))[0]
        out = back(x)
        if return_info:
            return out, source.info
        return out


def _all_to_all_values(comm: Comm, chunks: list[Tensor], dtype) -> list[Tensor]:
    if dtype.is_complex:
        real = [torch.view_as_real(c.to(dtype)).reshape(-1) for c in chunks]
        got = comm.all_to_all_v(real, "scatter values")
        return [torch.view_as_complex(g.reshape(-1, 2)) for g in got]
    return comm.all_to_all_v([c.to(dtype) for c in chunks], "scatter values")


def _shard0() -> Shard:
    return Shard(0)


def _given_partition(comm: Comm, owner: Tensor, local: SparseTensor) -> Partition:
    """A Partition from an owner tensor when each rank holds only its own rows: the edge cut is the
    all-reduced count of this rank's stored entries above the diagonal whose ends have different owners
    (the undirected cut for a structurally symmetric pattern)."""
    if owner.dim() != 1 or owner.numel() != local.shape[0] or owner.dtype not in (torch.int32, torch.int64):
        raise InvalidArgumentError(f"partition: expected an integer owner tensor ({local.shape[0]},)")
    owner = owner.to(torch.int64).cpu()
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= comm.size):
        raise InvalidArgumentError(f"partition: owners must lie in [0, {comm.size})")
    r, c = local.pattern.row.cpu(), local.pattern.col.cpu()
    cut_local = int(((r < c) & (owner[r] != owner[c])).sum())
    cut = int(comm.all_reduce(torch.tensor([cut_local], dtype=torch.int64), "sum"))
    sizes = torch.bincount(owner, minlength=comm.size)
    n = owner.numel()
    imb = float(sizes.max()) * comm.size / n if n else 1.0
    return Partition(owner, comm.size, "given", cut, tuple(int(v) for v in sizes), imb)


# -- saving -------------------------------------------------------------------------------------------------------
_FORMAT = "torch_sla.dsparse"


def save_dsparse(D: DSparseTensor, path: str | os.PathLike) -> None:
    """Save a distributed matrix to the folder ``path``: one shard per rank (``rank{r}.pt``: this rank's
    rows as a global COO) plus, from rank 0, ``meta.json`` (size, world size, dtype, format version) and
    ``partition.pt`` (the owner of every row). Collective; the folder must be shared by the ranks (or
    gathered afterwards)."""
    path = os.fspath(path)
    err = None
    try:
        os.makedirs(path, exist_ok=True)
        p = D._local_pattern
        shard = {
            "rows": D.owned_rows[p.row.cpu()],
            "cols": D._local_to_global[p.col.cpu()],
            "values": D.values.detach().cpu(),
        }
        torch.save(shard, os.path.join(path, f"rank{D.rank}.pt"))
        if D.rank == 0:
            part = D.partition
            torch.save({"owner": part.owner}, os.path.join(path, "partition.pt"))
            meta = {
                "format": _FORMAT,
                "version": 1,
                "n": D.shape[0],
                "world_size": D.world_size,
                "dtype": str(D.dtype).replace("torch.", ""),
                "partition_method": part.method,
                "edge_cut": part.edge_cut,
            }
            with open(os.path.join(path, "meta.json"), "w") as f:
                json.dump(meta, f, indent=1)
    except OSError as e:
        err = InvalidArgumentError(f"path: cannot write {path!r} on rank {D.rank}: {e}")
    agree(D.comm, err, "save_dsparse")
    D.comm.barrier("save_dsparse")


def load_dsparse(path: str | os.PathLike, mesh=None, *, device=None) -> DSparseTensor:
    """Load a matrix saved by :func:`save_dsparse` on a group of the same size (rank r reads
    ``rank{r}.pt``). Collective."""
    comm, mesh = _comm_of(mesh)
    path = os.fspath(path)
    err, meta, shard, owner = None, None, None, None
    try:
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        if meta.get("format") != _FORMAT or meta.get("version") != 1:
            raise InvalidArgumentError(
                f"path: {path!r} is not a saved DSparseTensor (format {meta.get('format')!r})"
            )
        if meta["world_size"] != comm.size:
            raise InvalidArgumentError(
                f"path: saved on {meta['world_size']} ranks, loading on {comm.size}; load it on the same number "
                "of ranks (or gather it with to_global and partition again)"
            )
        shard = torch.load(os.path.join(path, f"rank{comm.rank}.pt"), weights_only=True)
        owner = torch.load(os.path.join(path, "partition.pt"), weights_only=True)["owner"]
        n = int(meta["n"])
        if owner.shape != (n,):
            raise InvalidArgumentError(
                f"path: partition.pt holds {tuple(owner.shape)} owners, expected ({n},)"
            )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        err = (
            e
            if isinstance(e, InvalidArgumentError)
            else InvalidArgumentError(f"path: cannot load {path!r}: {e}")
        )
    agree(comm, err, "load_dsparse")
    sizes = torch.bincount(owner, minlength=comm.size)
    part = Partition(
        owner,
        comm.size,
        meta.get("partition_method", "given"),
        int(meta.get("edge_cut", -1)),
        tuple(int(v) for v in sizes),
        float(sizes.max()) * comm.size / max(owner.numel(), 1),
    )
    vals = shard["values"] if device is None else shard["values"].to(device)
    dev = vals.device
    return DSparseTensor(comm, mesh, n, part, shard["rows"].to(dev), shard["cols"].to(dev), vals)
