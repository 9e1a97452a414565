"""Distributed sparse tensors on real processes (gloo on 127.0.0.1), world sizes 1, 2 and 4.

Each test runs a module-level ``_case_*`` function on every rank of a pool of worker processes (see
``rank_pool.py``) and compares with single-process results computed in the case itself (every rank
holds the small global problem for checking).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

import torch_sla as sla
from conftest import poisson2d
from rank_pool import RankPool, run_once
from torch_sla import DSparseTensor

F64 = torch.float64
_POOLS: dict[int, RankPool] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_pools():
    yield
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


def run(world: int, fn, *args, timeout: float = 120.0):
    pool = _POOLS.get(world)
    if pool is None:
        pool = _POOLS[world] = RankPool(world)
    return pool.run(fn, *args, timeout=timeout)


def unsymmetric(m: int, seed: int = 0) -> sla.SparseTensor:
    """2D Poisson plus a random perturbation of its entries (same pattern, not symmetric)."""
    A = poisson2d(m)
    g = torch.Generator().manual_seed(seed)
    return sla.SparseTensor._from_pattern(
        A.values + 0.2 * torch.rand(A.nnz, generator=g, dtype=F64), A.pattern
    )


def dense(A: sla.SparseTensor) -> torch.Tensor:
    return A.to_dense()


# -- layout and halo exchange -----------------------------------------------------------------------------------
def _case_layout(rank, world, method):
    A = poisson2d(9)
    D = DSparseTensor.partition(A, partition_method=method)
    owned = D.owned_rows
    # the partition is the same everywhere and owned rows are those assigned here
    assert torch.equal(D.partition.owner[owned], torch.full_like(owned, rank))
    # ghosts: exactly the off-rank columns of the owned rows
    rows_mask = D.partition.owner[A.pattern.row] == rank
    cols = torch.unique(A.pattern.col[rows_mask])
    expect_ghosts = cols[D.partition.owner[cols] != rank]
    assert torch.equal(D.ghost_rows, expect_ghosts)
    # halo exchange gives the ghosts' values; its reverse is its adjoint
    x = torch.randn(81, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    gh = D._halo.forward(x[owned])
    assert torch.equal(gh, x[D.ghost_rows])
    y = torch.randn(D.n_ghost, 3, dtype=F64, generator=torch.Generator().manual_seed(2 + rank))
    lhs = D.all_reduce((gh * y).sum().reshape(1))
    rhs = D.all_reduce((x[owned] * D._halo.reverse(y)).sum().reshape(1))
    assert torch.allclose(lhs, rhs, rtol=1e-13)
    # owned sets are disjoint and cover every row
    counts = D.all_reduce(torch.zeros(81, dtype=F64).index_fill(0, owned, 1.0))
    assert torch.equal(counts, torch.ones(81, dtype=F64))
    sent, received = D._halo.entries_sent(), D._halo.entries_received()
    assert received == D.n_ghost and D.halo_bytes(1) == 8 * (sent + received)
    return D.n_owned, D.n_ghost, sent, D.partition.method


@pytest.mark.parametrize("world", [1, 2, 4])
def test_layout_and_halo_exchange_match_the_global_matrix(world):
    out = run(world, _case_layout, "auto")
    assert sum(o[0] for o in out) == 81
    if world > 1:
        assert all(o[1] > 0 for o in out)
        assert sum(o[2] for o in out) == sum(o[1] for o in out)  # every entry sent is received


def test_contiguous_partition_on_4_ranks():
    out = run(4, _case_layout, "contiguous")
    assert [o[0] for o in out] == [21, 20, 20, 20] or sum(o[0] for o in out) == 81
    assert all(o[3] == "contiguous" for o in out)


def _case_products(rank, world, dtype):
    g = torch.Generator().manual_seed(0)
    A = unsymmetric(7)
    if dtype.is_complex:
        vals = A.values.to(dtype) + 1j * torch.rand(A.nnz, generator=g, dtype=F64)
        A = sla.SparseTensor._from_pattern(vals, A.pattern)
    D = DSparseTensor.partition(A)
    x = torch.randn(49, 2, dtype=dtype, generator=g)
    Ad = dense(A)
    # replicated in, replicated out
    assert torch.allclose(D @ x, Ad @ x, rtol=1e-13, atol=1e-13)
    assert torch.allclose(D @ x[:, 0], Ad @ x[:, 0], rtol=1e-13, atol=1e-13)
    # the products' blocks are kept between calls, and made again when the values change in place
    with torch.no_grad():
        D.values.mul_(2)
    assert torch.allclose(D @ x, 2 * Ad @ x, rtol=1e-13, atol=1e-13)
    with torch.no_grad():
        D.values.div_(2)
    # owned entries in, owned entries out (the scalable form), and the adjoint product
    xl = D.shard(x)
    assert torch.allclose(D.gather(D.matvec(xl)), Ad @ x, rtol=1e-13, atol=1e-13)
    assert torch.allclose(D.gather(D.rmatvec(xl)), Ad.mH @ x, rtol=1e-13, atol=1e-13)
    assert torch.allclose(D @ xl, (Ad @ x)[D.owned_rows], rtol=1e-13, atol=1e-13) or world == 1
    # inner products are global
    assert torch.allclose(D.dot(xl, xl), torch.linalg.vecdot(x, x, dim=0), rtol=1e-13)
    assert torch.allclose(D.norm(xl), torch.linalg.vector_norm(x, dim=0), rtol=1e-13)
    # the global matrix back
    G = D.to_global()
    assert torch.allclose(G.to_dense(), Ad)
    # a solve and its gradient with respect to b (complex too: the adjoint solve uses A^H)
    bb = x[:, 0].clone().requires_grad_()
    sol = D.solve(bb, method="gmres", rtol=1e-12)
    assert torch.allclose(sol, torch.linalg.solve(Ad, x[:, 0]), atol=1e-9)
    w = torch.randn(49, dtype=dtype, generator=g)
    (sol * w.conj()).real.sum().backward()
    assert torch.allclose(bb.grad, torch.linalg.solve(Ad.mH, w), atol=1e-9)
    return True


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_matvec_and_rmatvec_equal_the_global_ones(world, dtype):
    assert all(run(world, _case_products, dtype))


def _case_dtensor(rank, world):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    A = poisson2d(6)
    D = DSparseTensor.partition(A, mesh)
    x = torch.randn(36, dtype=F64, generator=torch.Generator().manual_seed(0))
    xd = distribute_tensor(x, mesh, [Shard(0)])
    y = D @ xd
    assert isinstance(y, DTensor)
    assert torch.allclose(y.full_tensor(), A @ x)
    xs = D.solve(xd, rtol=1e-12)
    assert isinstance(xs, DTensor)
    assert torch.allclose(xs.full_tensor(), torch.linalg.solve(dense(A), x), atol=1e-10)
    return True


@pytest.mark.parametrize("world", [2, 4])
def test_dtensor_vectors_in_give_dtensors_out(world):
    assert all(run(world, _case_dtensor))


# -- construction ---------------------------------------------------------------------------------------------
def _case_constructors(rank, world):
    A = unsymmetric(6)
    x = torch.randn(36, dtype=F64, generator=torch.Generator().manual_seed(3))
    ref = A @ x
    p = A.pattern
    # a global COO on every rank
    D1 = DSparseTensor.from_global_distributed(A.values, p.row, p.col, A.shape, rank, world)
    assert torch.allclose(D1 @ x, ref)
    # scattered from rank 0 (the others pass None)
    D2 = DSparseTensor.partition(A if rank == 0 else None, src=0)
    assert torch.allclose(D2 @ x, ref)
    # each rank its own rows with global indices (contiguous rows here)
    lo, hi = rank * 36 // world, (rank + 1) * 36 // world
    mine = (p.row >= lo) & (p.row < hi)
    local = (A.values[mine], p.row[mine], p.col[mine], A.shape)
    D3 = DSparseTensor.from_sparse_local(local)
    assert torch.allclose(D3 @ x, ref)
    assert torch.equal(D3.owned_rows, torch.arange(lo, hi))
    # with_values: same layout, new values
    D4 = D1.with_values(2 * A.values)
    assert torch.allclose(D4 @ x, 2 * ref)
    return D3.partition.edge_cut


@pytest.mark.parametrize("world", [2, 4])
def test_every_constructor_gives_the_same_operator(world):
    cuts = run(world, _case_constructors)
    assert len(set(cuts)) == 1 and cuts[0] > 0


def _case_save_load(rank, world, path):
    A = unsymmetric(5)
    D = DSparseTensor.partition(A)
    sla.save_dsparse(D, path)
    E = sla.load_dsparse(path)
    x = torch.randn(25, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(E.owned_rows, D.owned_rows) and torch.equal(E.ghost_rows, D.ghost_rows)
    assert torch.allclose(E @ x, A @ x)
    return sorted(os.listdir(path))


def test_save_and_load_one_shard_per_rank(tmp_path):
    files = run(2, _case_save_load, str(tmp_path / "m"))[0]
    assert files == ["meta.json", "partition.pt", "rank0.pt", "rank1.pt"]


# -- Krylov solves ---------------------------------------------------------------------------------------------
def _case_krylov(rank, world, cases):
    out = []
    for sym, method, pre, local in cases:
        A = poisson2d(8) if sym else unsymmetric(8)
        D = DSparseTensor.partition(A)
        b = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
        x, info = D.solve(
            b, method=method, preconditioner=pre, local_solver=local, rtol=1e-11, return_info=True
        )
        ref = torch.linalg.solve(dense(A), b)
        assert info.converged, (method, pre, info)
        err = float((x - ref).abs().max() / ref.abs().max())
        assert err < 1e-8, (method, pre, local, err)
        out.append((method, pre, info.iterations))
    return out


SYM_CASES = [
    (True, m, p, "direct")
    for m in ("cg", "minres", "gmres", "bicgstab")
    for p in ("none", "jacobi", "block_jacobi", "asm", "two_level")
] + [(True, "cg", "asm", "ic0"), (True, "auto", "auto", "direct")]
GEN_CASES = [
    (False, m, p, "direct")
    for m in ("gmres", "bicgstab")
    for p in ("none", "block_jacobi", "ras", "two_level")
] + [(False, "gmres", "ras", "ilu0"), (False, "auto", "auto", "direct")]


@pytest.mark.parametrize("world", [1, 2, 4])
def test_every_krylov_method_matches_the_single_process_answer(world):
    out = run(world, _case_krylov, SYM_CASES + GEN_CASES)
    assert all(o == out[0] for o in out)  # every rank took the same iterations


def _case_two_level(rank, world):
    A = poisson2d(24)
    D = DSparseTensor.partition(A)
    b = torch.ones(576, dtype=F64)
    its = {}
    for pre in ("block_jacobi", "asm", "two_level"):
        _, info = D.solve(b, method="cg", preconditioner=pre, rtol=1e-8, return_info=True)
        its[pre] = info.iterations
    # the coarse correction Q = Z E^{-1} Z^T is a Galerkin projection: Z^T (r - A Q r) = 0
    M = D.preconditioner("two_level")
    r = torch.randn(D.n_owned, 2, dtype=F64, generator=torch.Generator().manual_seed(rank))
    resid = r - M.blocks.matvec(M._coarse(r, "N"))
    assert D.all_reduce(M.Z.T @ resid).abs().max() < 1e-12
    # and the two-level preconditioner is symmetric (for CG): <P r, s> = <r, P s>
    s = torch.randn(D.n_owned, 2, dtype=F64, generator=torch.Generator().manual_seed(10 + rank))
    assert torch.allclose(D.dot(M(r), s), D.dot(r, M(s)), rtol=1e-10)
    return its


def test_schwarz_preconditioners_and_the_coarse_level():
    its = run(4, _case_two_level)[0]
    assert its["asm"] <= its["block_jacobi"]
    assert its["two_level"] <= 1.25 * its["asm"]


# -- gradients --------------------------------------------------------------------------------------------------
def _case_solve_gradients(rank, world):
    A = unsymmetric(5)
    g = torch.Generator().manual_seed(0)
    b = torch.randn(25, dtype=F64, generator=g)
    w = torch.randn(25, dtype=F64, generator=g)
    D = DSparseTensor.partition(A)
    # each rank's gradient lands on the entries it owns
    v = A.values.detach().clone().requires_grad_()
    bb = b.clone().requires_grad_()
    x = D.with_values(v).solve(bb, rtol=1e-13)
    (x * w).sum().backward()
    v2 = A.values.detach().clone().requires_grad_()
    b2 = b.clone().requires_grad_()
    Ad = torch.zeros(25, 25, dtype=F64).index_put((A.pattern.row, A.pattern.col), v2)
    (torch.linalg.solve(Ad, b2) * w).sum().backward()
    mine = D.partition.owner[A.pattern.row] == rank
    assert torch.allclose(v.grad[mine], v2.grad[mine], atol=1e-10)
    assert torch.all(v.grad[~mine] == 0)
    assert torch.allclose(bb.grad, b2.grad, atol=1e-10)
    # replicated values: the full gradient on every rank; gradcheck runs the same on every rank
    small = unsymmetric(3)
    E = DSparseTensor.partition(small)

    def f(vals, rhs):
        return E.with_values(vals, replicated=True).solve(rhs, method="gmres", rtol=1e-13)

    inputs = (small.values.detach().clone().requires_grad_(), torch.rand(9, dtype=F64).requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, atol=1e-7)
    return True


@pytest.mark.parametrize("world", [1, 2])
def test_solve_gradients_match_the_single_process_ones(world):
    assert all(run(world, _case_solve_gradients, timeout=240))


# The mission's test: the gradient of a batched nonlinear solve distributed over ranks, by finite differences.
def _case_nonlinear(rank, world, m, check):
    A = poisson2d(m)
    n = m * m
    h = 1.0 / (m + 1)
    D = DSparseTensor.partition(A)

    def F(u, lam, f):  # -Lap u - lam e^u - f = 0 for a batch (B, n_owned); lam (B,), f (n,) replicated
        return D.matvec(u.T).T - h * h * D.replicated(lam)[:, None] * torch.exp(u) - h * h * D.shard(f)

    g = torch.Generator().manual_seed(0)
    lam = (1.0 + torch.rand(2, generator=g, dtype=F64)).requires_grad_()
    f = torch.rand(n, generator=g, dtype=F64).requires_grad_()
    u0 = torch.zeros(2, D.n_owned, dtype=F64)

    def solve(lam, f):
        u = sla.nonlinear_solve(
            F, u0, lam, f, method="jfnk", distributed=D, tol=1e-12, preconditioner=D.preconditioner()
        )
        return D.gather(u.T).T  # (B, n), replicated

    u = solve(lam, f)
    # the single-process solve of the same problem
    lam1, f1 = lam.detach().clone().requires_grad_(), f.detach().clone().requires_grad_()
    Ad = dense(A)

    def F1(u, lam, f):
        return (Ad @ u.T).T - h * h * lam[:, None] * torch.exp(u) - h * h * f

    u1 = sla.nonlinear_solve(F1, torch.zeros(2, n, dtype=F64), lam1, f1, method="newton", tol=1e-12)
    assert torch.allclose(u, u1, atol=1e-10)
    w = torch.randn(2, n, dtype=F64, generator=g)
    (u * w).sum().backward()
    (u1 * w).sum().backward()
    assert torch.allclose(lam.grad, lam1.grad, atol=1e-9) and torch.allclose(f.grad, f1.grad, atol=1e-9)
    if check:
        small_lam = lam.detach().clone().requires_grad_()
        small_f = f.detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(solve, (small_lam, small_f), atol=1e-6, rtol=1e-4)
    return True


def test_gradcheck_of_a_batched_nonlinear_solve_distributed_over_2_ranks():
    assert all(run(2, _case_nonlinear, 3, True, timeout=300))


@pytest.mark.parametrize("world", [1, 4])
def test_distributed_nonlinear_solve_matches_the_single_process_one(world):
    assert all(run(world, _case_nonlinear, 6, False))


def _case_fixed_point(rank, world, method):
    A = poisson2d(5)
    D = DSparseTensor.partition(A)
    M = D.preconditioner("block_jacobi")

    def F(u, c):  # a mildly nonlinear system, solved by preconditioned fixed-point iterations
        return D.matvec(u.T).T + 0.1 * torch.tanh(u) - D.replicated(c)

    c = torch.tensor(1.0, dtype=F64, requires_grad=True)
    u = sla.nonlinear_solve(
        F,
        torch.zeros(1, D.n_owned, dtype=F64),
        c,
        method=method,
        distributed=D,
        preconditioner=M,
        tol=1e-12,
        max_iter=200,
    )
    U = D.gather(u.T).T
    Ad = dense(A)
    c1 = c.detach().clone().requires_grad_()
    u1 = sla.nonlinear_solve(
        lambda u, c: (Ad @ u.T).T + 0.1 * torch.tanh(u) - c, torch.zeros(1, 25, dtype=F64), c1, tol=1e-12
    )
    assert torch.allclose(U, u1, atol=1e-9)
    U.sum().backward()
    u1.sum().backward()
    assert torch.allclose(c.grad, c1.grad, atol=1e-8)
    return True


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_distributed_fixed_point_methods(method):
    assert all(run(2, _case_fixed_point, method))


# -- eigenvalues --------------------------------------------------------------------------------------------------
def _case_eigsh(rank, world):
    P = poisson2d(10)
    diag = P.pattern.row == P.pattern.col  # a random diagonal shift separates the grid's repeated eigenvalues
    shift = torch.rand(P.nnz, dtype=F64, generator=torch.Generator().manual_seed(7)) * diag
    A = sla.SparseTensor._from_pattern(P.values + shift, P.pattern)
    D = DSparseTensor.partition(A)
    ev = torch.linalg.eigvalsh(dense(A))
    lam, V = D.eigsh(4, "LA", tol=1e-9)
    assert torch.allclose(lam, ev[-4:], rtol=1e-7)
    lam_s, _ = D.eigsh(3, "SA", tol=1e-9, preconditioner=D.preconditioner("block_jacobi"))
    assert torch.allclose(lam_s, ev[:3], rtol=1e-6)
    # eigenvectors: orthonormal, with the owned entries of A v = lambda v
    assert torch.allclose(D.all_reduce(V.T @ V), torch.eye(4, dtype=F64), atol=1e-8)
    # eigenvalue gradient: d lambda / d values = v[row] v[col]
    v = A.values.detach().clone().requires_grad_()
    lam2, _ = D.with_values(v, replicated=True).eigsh(2, "LA", tol=1e-11)
    lam2.sum().backward()
    vr = v.detach().clone().requires_grad_()
    Ad = torch.zeros(100, 100, dtype=F64).index_put((A.pattern.row, A.pattern.col), vr)
    torch.linalg.eigvalsh(Ad)[-2:].sum().backward()
    assert torch.allclose(v.grad, vr.grad, atol=1e-6)
    return True


@pytest.mark.parametrize("world", [1, 2])
def test_eigsh_by_lobpcg_on_the_distributed_operator(world):
    assert all(run(world, _case_eigsh))


# -- failures and bad input -----------------------------------------------------------------------------------------
def _case_bad_input(rank, world):
    A = poisson2d(4)
    D = DSparseTensor.partition(A)
    seen = []
    b = torch.ones(16, dtype=F64)
    if rank == world - 1:
        b[D.owned_rows[0]] = float("nan")  # bad input on one rank only: every rank must raise, none may hang
    try:
        D.solve(b)
    except (sla.InvalidArgumentError, sla.DistributedError) as e:
        seen.append(type(e).__name__)
    for call in (
        lambda: D.solve(torch.ones(5, dtype=F64)),
        lambda: D.solve(torch.ones(16, dtype=F64), method="qr"),
        lambda: D.solve(torch.ones(16, dtype=F64), preconditioner="ras", method="cg"),
        lambda: D.eigsh(3, "LM"),
        lambda: D.with_values(torch.ones(3, dtype=F64)),
    ):
        try:
            call()
        except sla.InvalidArgumentError:
            seen.append("InvalidArgumentError")
    # the communicator still works afterwards
    assert torch.allclose(D @ torch.ones(16, dtype=F64), A @ torch.ones(16, dtype=F64))
    return seen


def test_bad_input_on_one_rank_raises_on_every_rank():
    out = run(2, _case_bad_input)
    assert out[1][0] == "InvalidArgumentError" and out[0][0] == "DistributedError"
    assert all(len(o) == 6 for o in out)


def _case_rank_dies(rank, world):
    A = poisson2d(6)
    D = DSparseTensor.partition(A)
    if rank == 1:
        os._exit(3)  # a rank that crashes mid-run
    D.solve(torch.ones(36, dtype=F64), preconditioner="none", rtol=1e-14, maxiter=10_000)
    return "finished"


def test_a_rank_that_dies_does_not_hang_the_others():
    out = run_once(_case_rank_dies, 2, timeout=60, pg_timeout=20)
    assert out[1][2] == 3
    status, text, _ = out[0]
    assert status == "error" and "DistributedError" in text, out[0]


def test_without_a_process_group_the_error_is_clear():
    assert not dist.is_initialized()
    with pytest.raises(sla.InvalidArgumentError, match="init_process_group"):
        DSparseTensor.partition(poisson2d(3))
