"""Batches of matrices with distinct patterns: every entry point against a loop of single solves (values
and gradients), gradcheck, mixed sizes, failing members, graph batches, dtypes."""

from __future__ import annotations

import warnings

import pytest
import torch

import torch_sla as sla
from conftest import poisson2d, random_sparse

F32, F64, C64, C128 = torch.float32, torch.float64, torch.complex64, torch.complex128
TOL = {F32: 2e-4, F64: 1e-10, C64: 2e-4, C128: 1e-10}


def members(sizes, kind="general", dtype=F64, seed=0):
    return [
        sla.SparseTensor.from_dense(
            random_sparse(n, min(1.0, 4.0 / n), dtype=dtype, kind=kind, seed=seed + i)
        )
        for i, n in enumerate(sizes)
    ]


def rhs(As, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (lambda n: (n,)) if k is None else (lambda n: (n, k))
    return [torch.randn(shape(A.shape[0]), generator=g, dtype=torch.float64).to(A.dtype) for A in As]


@pytest.mark.parametrize("dtype", [F32, F64, C64, C128])
@pytest.mark.parametrize("kind", ["general", "spd"])
@pytest.mark.parametrize("strategy", ["members", "block_diagonal"])
def test_solve_batch_matches_single_solves(dtype, kind, strategy):
    As = members([1, 3, 17, 40, 120, 300], kind, dtype)  # dense and sparse blocks (dense_max 96)
    bs = rhs(As)
    xs, info = sla.solve_batch(As, bs, strategy=strategy, return_info=True)
    assert info["strategy"] == strategy
    if strategy == "members":
        assert info["dense_blocks"] == 4 and info["sparse_blocks"] == 2
    if strategy == "members":  # method "auto" is chosen per block
        assert info["method"] == "auto"
        expected = sum(A.is_hermitian() and A.has_positive_real_diagonal() for A in As)
        assert info["cholesky_blocks"] == expected and (kind != "spd" or expected == len(As))
    else:
        assert info["method"] == ("cholesky" if kind == "spd" else "lu")
    for A, b, x in zip(As, bs, xs):
        ref = sla.solve(A, b)
        torch.testing.assert_close(x, ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("method", ["cholesky", "ldl", "lu"])
def test_every_method_and_several_right_hand_sides(method):
    As = members([5, 30, 150], "spd")
    bs = rhs(As, k=3)
    xs = sla.solve_batch(As, bs, method=method)
    for A, b, x in zip(As, bs, xs):
        assert x.shape == b.shape
        torch.testing.assert_close(A @ x, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("strategy", ["members", "block_diagonal"])
def test_gradients_match_a_loop_of_single_solves(strategy):
    As = members([4, 30, 110], "general")
    bs = rhs(As)
    vs = [A.values.clone().requires_grad_() for A in As]
    bq = [b.clone().requires_grad_() for b in bs]
    xs = sla.solve_batch([A.with_values(v) for A, v in zip(As, vs)], bq, strategy=strategy)
    w = [torch.randn_like(x) for x in xs]
    sum((x * wi).sum() for x, wi in zip(xs, w)).backward()
    for A, v, b, bi, wi in zip(As, vs, bs, bq, w):
        v2 = A.values.clone().requires_grad_()
        b2 = b.clone().requires_grad_()
        (sla.solve(A.with_values(v2), b2) * wi).sum().backward()
        torch.testing.assert_close(v.grad, v2.grad)
        torch.testing.assert_close(bi.grad, b2.grad)


@pytest.mark.parametrize("dtype", [F64, C128])
def test_gradcheck_small_batch_of_distinct_patterns(dtype):
    As = members([2, 4, 5], "general", dtype, seed=3)
    bs = rhs(As, seed=1)
    inputs = tuple(A.values.clone().requires_grad_() for A in As) + tuple(
        b.clone().requires_grad_() for b in bs
    )

    def f(*args):
        vs, bb = args[:3], args[3:]
        xs = sla.solve_batch([A.with_values(v) for A, v in zip(As, vs)], bb)
        return tuple(torch.view_as_real(x) if x.is_complex() else x for x in xs)

    torch.autograd.gradcheck(f, inputs)
    torch.autograd.gradgradcheck(f, inputs)


def test_mixed_sizes_from_1_to_5000():
    As = members([1, 2, 50, 97, 800, 5000], "spd", seed=5)
    bs = rhs(As)
    xs = sla.solve_batch(As, bs)
    for A, b, x in zip(As, bs, xs):
        torch.testing.assert_close(A @ x, b, rtol=1e-9, atol=1e-9)


def test_cholesky_breakdown_of_one_member_falls_back_to_lu_for_that_member():
    good = members([6, 120], "spd")
    d = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)  # symmetric, positive diagonal, indefinite
    big = random_sparse(130, 0.05, kind="symmetric", seed=2)
    big = big + torch.diag(0.5 - big.diagonal())  # diagonal 0.5, random off-diagonal part: indefinite
    As = good + [sla.SparseTensor.from_dense(d), sla.SparseTensor.from_dense(big)]
    bs = rhs(As)
    xs, info = sla.solve_batch(As, bs, return_info=True)
    assert info["cholesky_blocks"] == 4 and info["lu_fallbacks"] == 2
    for A, b, x in zip(As, bs, xs):
        torch.testing.assert_close(A @ x, b, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("size", [3, 150])  # a dense block and a sparse block
def test_a_singular_member_is_named_or_reported(size):
    As = members([5, 20], "general")
    bad = torch.ones(size, size, dtype=F64)  # rank 1
    As.insert(1, sla.SparseTensor.from_dense(bad))
    bs = rhs(As)
    with pytest.raises(sla.SingularMatrixError, match="batch member 1"):
        sla.solve_batch(As, bs)
    with pytest.warns(RuntimeWarning, match="batch member 1"):
        xs, info = sla.solve_batch(As, bs, on_fail="warn", return_info=True)
    assert info["failed"] == [1]
    assert torch.isnan(xs[1]).all()
    for i in (0, 2):
        torch.testing.assert_close(As[i] @ xs[i], bs[i])


def test_not_positive_definite_member_with_explicit_cholesky():
    As = members([5], "spd") + [sla.SparseTensor.from_dense(-torch.eye(3, dtype=F64))]
    with pytest.raises(sla.NotPositiveDefiniteError, match="batch member 1"):
        sla.solve_batch(As, rhs(As), method="cholesky")


def random_graph_laplacians(count, seed=0, max_nodes=24):
    """Block-diagonal COO of `count` random graphs (graph Laplacian + I), and the batch vector."""
    g = torch.Generator().manual_seed(seed)
    rows, cols, vals, batch = [], [], [], []
    offset = 0
    for k in range(count):
        n = int(torch.randint(1, max_nodes + 1, (), generator=g))
        m = 2 * n
        r = torch.randint(0, n, (m,), generator=g)
        c = torch.randint(0, n, (m,), generator=g)
        keep = r != c
        r, c = torch.cat([r[keep], c[keep]]), torch.cat([c[keep], r[keep]])
        deg = torch.bincount(r, minlength=n).to(F64)
        idx = torch.arange(n)
        rows += [idx + offset, r + offset]
        cols += [idx + offset, c + offset]
        vals += [deg + 1.0, -torch.ones(r.numel(), dtype=F64)]
        batch.append(torch.full((n,), k))
        offset += n
    return torch.cat(vals), torch.cat(rows), torch.cat(cols), torch.cat(batch)


def test_graph_batch_with_batch_vector_or_ptr_matches_single_solves():
    values, row, col, batch = random_graph_laplacians(40)
    n = batch.numel()
    b = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(1))
    v = values.clone().requires_grad_()
    bq = b.clone().requires_grad_()
    x = sla.solve_graph_batch(v, row, col, bq, batch=batch)
    ptr = torch.zeros(41, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(batch, minlength=40), 0)
    torch.testing.assert_close(sla.solve_graph_batch(values, row, col, b, ptr=ptr), x.detach())
    # Against one solve of the whole (block-diagonal) matrix, values and gradients.
    A = sla.SparseTensor(values, row, col, (n, n))
    torch.testing.assert_close(x.detach(), sla.solve(A, b))
    w = torch.randn(n, dtype=F64)
    (x * w).sum().backward()
    v2 = values.clone().requires_grad_()
    b2 = b.clone().requires_grad_()
    (sla.solve(sla.SparseTensor(v2, row, col, (n, n)), b2) * w).sum().backward()
    torch.testing.assert_close(v.grad, v2.grad)
    torch.testing.assert_close(bq.grad, b2.grad)


def test_graph_batch_errors():
    values, row, col, batch = random_graph_laplacians(5)
    n = batch.numel()
    b = torch.ones(n, dtype=F64)
    with pytest.raises(sla.InvalidArgumentError, match="exactly one"):
        sla.solve_graph_batch(values, row, col, b)
    with pytest.raises(sla.InvalidArgumentError, match="sorted"):
        sla.solve_graph_batch(values, row, col, b, batch=batch.flip(0))
    # An entry coupling two graphs: not block diagonal.
    bad_row = torch.cat([row, torch.tensor([0])])
    bad_col = torch.cat([col, torch.tensor([n - 1])])
    with pytest.raises(sla.InvalidArgumentError, match="block diagonal"):
        sla.solve_graph_batch(torch.cat([values, torch.ones(1, dtype=F64)]), bad_row, bad_col, b, batch=batch)
    with pytest.raises(sla.InvalidArgumentError, match="ptr"):
        sla.solve_graph_batch(values, row, col, b, ptr=torch.tensor([0, 3]))


def test_empty_batch_and_empty_members():
    assert sla.solve_batch([], []) == []
    xs, info = sla.solve_batch([], [], return_info=True)
    assert xs == [] and info["strategy"] == "empty"
    A = sla.SparseTensor.from_dense(2 * torch.eye(3, dtype=F64))
    E = sla.SparseTensor.from_dense(torch.zeros(0, 0, dtype=F64))
    for method in ("auto", "cg"):
        xs = sla.solve_batch(
            [A, E, A],
            [torch.ones(3, dtype=F64), torch.ones(0, dtype=F64), torch.ones(3, dtype=F64)],
            method=method,
        )
        assert [x.shape for x in xs] == [(3,), (0,), (3,)]
        torch.testing.assert_close(xs[2], torch.full((3,), 0.5, dtype=F64))
    # A graph batch without nodes, with one or two right-hand sides, takes part in autograd.
    v = torch.zeros(0, dtype=F64, requires_grad=True)
    idx = torch.zeros(0, dtype=torch.int64)
    x = sla.solve_graph_batch(v, idx, idx, torch.zeros(0, dtype=F64), batch=idx)
    assert x.shape == (0,)
    x.sum().backward()
    assert v.grad.shape == (0,)
    x = sla.solve_graph_batch(
        v.detach(), idx, idx, torch.zeros(0, 2, dtype=F64), ptr=torch.zeros(1, dtype=torch.int64)
    )
    assert x.shape == (0, 2)


def test_bad_arguments():
    As = members([3, 4])
    with pytest.raises(sla.InvalidArgumentError, match="bs"):
        sla.solve_batch(As, rhs(As)[:1])
    with pytest.raises(sla.InvalidArgumentError, match=r"bs\[1\]"):
        sla.solve_batch(As, [torch.ones(3, dtype=F64), torch.ones(5, dtype=F64)])
    with pytest.raises(sla.InvalidArgumentError, match="square"):
        sla.solve_batch(
            [sla.SparseTensor.from_dense(torch.ones(2, 3, dtype=F64))], [torch.ones(2, dtype=F64)]
        )
    with pytest.raises(sla.InvalidArgumentError, match="dtype"):
        sla.solve_batch([As[0], As[1].to(dtype=F32)], rhs(As))
    with pytest.raises(sla.InvalidArgumentError, match="method"):
        sla.solve_batch(As, rhs(As), method="qr")
    with pytest.raises(sla.InvalidArgumentError, match="strategy"):
        sla.solve_batch(As, rhs(As), strategy="fast")
    with pytest.raises(sla.InvalidArgumentError, match="NaN"):
        sla.solve_batch(As, [torch.full((3,), float("nan"), dtype=F64), torch.ones(4, dtype=F64)])
    nan_member = As[1].with_values(As[1].values.clone())
    nan_member.values[2] = float("nan")
    for strategy in ("members", "block_diagonal"):
        with pytest.raises(sla.InvalidArgumentError, match="NaN"):
            sla.solve_batch([As[0], nan_member], rhs(As), strategy=strategy, on_fail="warn")


def test_torch_sla_names_and_sparse_tensor_list():
    As = members([6, 9, 12], "spd")
    bs = rhs(As)
    L = sla.SparseTensorList(As)
    assert len(L) == 3 and L[1] is As[1]
    for x, A, b in zip(L.solve(bs), As, bs):
        torch.testing.assert_close(A @ x, b)
    triples = [(A.values, A.pattern.row, A.pattern.col, A.shape) for A in As]
    for method in ("auto", "cg"):
        xs = sla.spsolve_batch_different_layout(triples, bs, method=method)
        for x, A, b in zip(xs, As, bs):
            torch.testing.assert_close(A @ x, b, rtol=1e-7, atol=1e-7)
    coo = [A.to_torch_sparse(torch.sparse_coo) for A in As]
    for x, A, b in zip(sla.spsolve_batch_coo_different_layout(coo, bs), As, bs):
        torch.testing.assert_close(A @ x, b)
    # Same layout: one pattern, a batch of values.
    A = As[0]
    vals = torch.stack([A.values, 2 * A.values])
    bb = torch.ones(2, A.shape[0], dtype=F64)
    x = sla.spsolve_batch_same_layout(vals, A.pattern.row, A.pattern.col, A.shape, bb)
    torch.testing.assert_close(x[1], sla.solve(A, bb[1]) / 2)
    x2 = sla.spsolve_batch_coo_same_layout(coo[0], vals, bb)
    torch.testing.assert_close(x2, x)


def test_method_auto_is_chosen_per_member():
    As = members([4, 30, 120], "spd") + members([5, 110], "general")
    bs = rhs(As)
    xs, info = sla.solve_batch(As, bs, return_info=True)
    assert info["cholesky_blocks"] == 3 and info["lu_fallbacks"] == 0
    for A, b, x in zip(As, bs, xs):
        torch.testing.assert_close(A @ x, b)


def test_explain_says_which_strategy():
    As = members([5, 10])
    _, info = sla.solve_batch(As, rhs(As), return_info=True)
    assert any("separately in parallel" in r for r in info["reasons"])
    L = sla.SparseTensorList(As)
    c = L.explain()
    assert c.kind == "members" and "separately in parallel" in str(c)
    assert L.explain(strategy="block_diagonal").kind == "block_diagonal"
    k = sla.SparseTensorList(members([5, 10], "spd")).explain(method="cg")
    assert k.kind == "krylov" and k.preconditioner == "jacobi" and "together" in str(k)
    _, info = sla.solve_batch(As, rhs(As), strategy="block_diagonal", return_info=True)
    assert info["strategy"] == "block_diagonal"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sla.solve_batch(As, rhs(As))  # no warning on a healthy batch


# -- every entry point against a loop of single solves, values and gradients ---------------------------------
def _graph_triples(As):
    """The block-diagonal COO (row-major) of the members, and its batch vector."""
    rows, cols, vals, batch, off = [], [], [], [], 0
    for k, A in enumerate(As):
        rows.append(A.pattern.row + off)
        cols.append(A.pattern.col + off)
        vals.append(A.values)
        batch.append(torch.full((A.shape[0],), k))
        off += A.shape[0]
    return torch.cat(vals), torch.cat(rows), torch.cat(cols), torch.cat(batch)


ENTRY_POINTS = ["solve_batch", "list", "different_layout", "graph_batch", "graph_ptr", "same_layout"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("method", ["auto", "gmres"])
def test_every_entry_point_matches_a_loop_of_single_solves_with_gradients(entry, method):
    same = entry == "same_layout"
    base = members([7, 7, 7] if same else [3, 30, 110], "general", seed=11)
    if same:  # one pattern, three sets of values
        base = [base[0].with_values(base[0].values * s) for s in (1.0, 1.5, 2.0)]
    bs = rhs(base, seed=2)
    kw = {"rtol": 1e-12} if method != "auto" else {}
    vs = [A.values.clone().requires_grad_() for A in base]
    bq = [b.clone().requires_grad_() for b in bs]
    As = [A.with_values(v) for A, v in zip(base, vs)]
    if entry == "solve_batch":
        xs = sla.solve_batch(As, bq, method=method, **kw)
    elif entry == "list":
        xs = sla.SparseTensorList(As).solve(bq, method=method, **kw)
    elif entry == "different_layout":
        triples = [(v, A.pattern.row, A.pattern.col, A.shape) for A, v in zip(As, vs)]
        xs = sla.spsolve_batch_different_layout(triples, bq, method=method, atol=1e-300 if kw else None)
    elif entry == "same_layout":
        p = base[0].pattern
        x = sla.spsolve_batch_same_layout(
            torch.stack(vs), p.row, p.col, base[0].shape, torch.stack(bq), method=method, **kw
        )
        xs = list(x)
    else:
        values, row, col, batch = _graph_triples(As)
        b = torch.cat(bq)
        if entry == "graph_batch":
            x = sla.solve_graph_batch(values, row, col, b, batch=batch, method=method, **kw)
        else:
            ptr = torch.tensor([0, 3, 33, 143])
            x = sla.solve_graph_batch(values, row, col, b, ptr=ptr, method=method, **kw)
        xs = list(torch.split(x, [A.shape[0] for A in As]))
    w = [
        torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(i)) for i, x in enumerate(xs)
    ]
    sum((x * wi).sum() for x, wi in zip(xs, w)).backward()
    tol = 1e-9 if method == "auto" else 1e-7
    for A, v, b, bi, x, wi in zip(base, vs, bs, bq, xs, w):
        v2, b2 = A.values.clone().requires_grad_(), b.clone().requires_grad_()
        x2 = sla.solve(A.with_values(v2), b2)
        (x2 * wi).sum().backward()
        torch.testing.assert_close(x.detach(), x2.detach(), rtol=tol, atol=tol)
        torch.testing.assert_close(v.grad, v2.grad, rtol=tol, atol=tol)
        torch.testing.assert_close(bi.grad, b2.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", ["auto", "gmres"])
def test_gradcheck_graph_batch(method):
    values, row, col, batch = random_graph_laplacians(3, seed=4, max_nodes=6)
    b = torch.randn(batch.numel(), dtype=F64, generator=torch.Generator().manual_seed(0))
    kw = {"rtol": 1e-13} if method == "gmres" else {}

    def f(v, bb):
        return sla.solve_graph_batch(v, row, col, bb, batch=batch, method=method, **kw)

    inputs = (values.clone().requires_grad_(), b.clone().requires_grad_())
    torch.autograd.gradcheck(f, inputs, fast_mode=method == "gmres")  # fast mode: a Krylov solve per probe


@pytest.mark.parametrize("dtype", [F32, C128])
def test_graph_batch_in_float32_and_complex(dtype):
    values, row, col, batch = random_graph_laplacians(12, seed=6)
    values = values.to(dtype)
    b = torch.randn(batch.numel(), dtype=F64, generator=torch.Generator().manual_seed(3)).to(dtype)
    x = sla.solve_graph_batch(values, row, col, b, batch=batch)
    n = batch.numel()
    torch.testing.assert_close(
        x, sla.solve(sla.SparseTensor(values, row, col, (n, n)), b), rtol=TOL[dtype], atol=TOL[dtype]
    )


def test_small_cholesky_reads_only_the_lower_triangle_like_the_single_solve():
    # The upper triangle differs from the lower one: Cholesky with check_symmetry=False factors
    # tril(A) + tril(A, -1)^H, whatever order the small blocks are eliminated in.
    dense = [random_sparse(n, 0.3, kind="spd", seed=n) for n in (9, 40)]
    for d in dense:
        d += torch.triu(torch.rand(d.shape, dtype=F64, generator=torch.Generator().manual_seed(1)), 1)
    As = [sla.SparseTensor.from_dense(d) for d in dense]
    bs = rhs(As)
    xs = sla.solve_batch(As, bs, method="cholesky", check_symmetry=False)
    for A, b, x in zip(As, bs, xs):
        torch.testing.assert_close(x, sla.solve(A, b, method="cholesky", check_symmetry=False))


# -- analyses cached per distinct pattern ----------------------------------------------------------------------
def test_sparse_block_analyses_are_made_once_per_pattern_and_cached():
    big = members([120, 150], "spd", seed=21)
    again = big[0].with_values(big[0].values * 2)  # block 0's pattern, other values
    As = big + [again, members([6], "spd")[0]]
    bs = rhs(As)
    limit = sla.analysis_cache_info()["limit_bytes"]
    try:
        sla.clear_analysis_cache()
        xs, info = sla.solve_batch(As, bs, return_info=True)
        assert info["sparse_blocks"] == 3 and (info["analyses"], info["analyses_reused"]) == (2, 1)
        assert sla.analysis_cache_info()["batch_entries"] == 2
        xs2, info = sla.solve_batch(As, bs, return_info=True)
        assert (info["analyses"], info["analyses_reused"]) == (0, 3)
        for x, x2 in zip(xs, xs2):
            torch.testing.assert_close(x, x2)
        sla.clear_analysis_cache()
        assert sla.analysis_cache_info()["batch_entries"] == 0
        sla.set_analysis_cache_limit(0)  # nothing kept between calls; within a call still one per pattern
        _, info = sla.solve_batch(As, bs, return_info=True)
        assert (info["analyses"], info["analyses_reused"]) == (2, 1)
        _, info = sla.solve_batch(As, bs, return_info=True)
        assert info["analyses"] == 2
        assert sla.analysis_cache_info()["batch_entries"] == 0
    finally:
        sla.set_analysis_cache_limit(limit)
    for A, b, x in zip(As, bs, xs):
        torch.testing.assert_close(A @ x, b)


# -- iterative methods: all members together, each with its own convergence ------------------------------
@pytest.mark.parametrize("method", ["cg", "minres", "bicgstab", "gmres"])
@pytest.mark.parametrize("dtype", [F64, C128])
def test_iterative_methods_solve_every_member(method, dtype):
    kind = "spd" if method in ("cg", "minres") else "general"
    As = members([1, 3, 17, 40, 120], kind, dtype, seed=30)
    bs = rhs(As, k=2)
    xs, info = sla.solve_batch(As, bs, method=method, rtol=1e-11, return_info=True)
    assert info["strategy"] == "krylov" and info["method"] == method
    assert info["member_converged"] == [True] * 5 and info["failed"] == []
    for A, b, x in zip(As, bs, xs):
        assert torch.linalg.norm(A @ x - b) <= 1e-9 * torch.linalg.norm(b)


def test_each_member_stops_when_it_converges():
    # An easy member (a scaled identity) and a hard one (2D Poisson, no preconditioner) in one call: the
    # easy one is done after one iteration, the hard one takes as many as on its own.
    easy = sla.SparseTensor.from_dense(3 * torch.eye(50, dtype=F64))
    hard = poisson2d(12)
    As, bs = [easy, hard], [torch.ones(50, dtype=F64), torch.ones(144, dtype=F64)]
    xs, info = sla.solve_batch(As, bs, method="cg", preconditioner="none", rtol=1e-10, return_info=True)
    _, single = sla.solve(
        hard, bs[1], method="cg", backend="torch", preconditioner="none", rtol=1e-10, return_info=True
    )
    assert info["member_iterations"][0] == 1
    assert abs(info["member_iterations"][1] - single.iterations) <= 1
    assert info["member_residuals"][0] <= 1e-10 and info["member_residuals"][1] <= 1e-10
    torch.testing.assert_close(xs[0], torch.full((50,), 1 / 3, dtype=F64))


def test_iterative_members_of_very_different_sizes():
    As = members([1, 2, 3, 5, 400], "spd", seed=40)  # solved in groups of similar size
    bs = rhs(As)
    xs = sla.solve_batch(As, bs, method="cg", rtol=1e-12)
    for A, b, x in zip(As, bs, xs):
        torch.testing.assert_close(A @ x, b)


def test_iterative_members_that_do_not_converge_are_named():
    As = [poisson2d(3), poisson2d(10), poisson2d(3)]
    bs = [torch.ones(A.shape[0], dtype=F64) for A in As]
    kw = dict(method="cg", preconditioner="none", maxiter=5, rtol=1e-12)
    with pytest.raises(sla.ConvergenceError, match=r"1 of 3 batch members \(1\)"):
        sla.solve_batch(As, bs, **kw)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        xs, info = sla.solve_batch(As, bs, on_fail="warn", return_info=True, **kw)
    assert info["member_converged"] == [True, False, True] and info["failed"] == [1]
    torch.testing.assert_close(As[0] @ xs[0], bs[0])


def test_iterative_argument_checks():
    As = members([4, 30], "general", seed=50)
    bs = rhs(As)
    with pytest.raises(sla.InvalidArgumentError, match="symmetric"):
        sla.solve_batch(As, bs, method="cg")
    with pytest.raises(sla.InvalidArgumentError, match="backend"):
        sla.solve_batch(As, bs, method="gmres", backend="core")
    with pytest.raises(sla.InvalidArgumentError, match="rtol: applies to iterative methods"):
        sla.solve_batch(As, bs, rtol=1e-6)
    with pytest.raises(sla.InvalidArgumentError, match="preconditioner"):
        sla.solve_batch(As, bs, method="gmres", preconditioner="ilu0")
    with pytest.raises(TypeError):
        sla.solve_batch(As, bs, method="gmres", omega=1.2)
    with pytest.raises(sla.InvalidArgumentError, match="strategy"):
        sla.solve_batch(As, bs, method="gmres", strategy="block_diagonal")


# -- COO input already in CSR order ------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_coo_in_csr_order_gives_the_pattern_of_the_sorting_path(index_dtype):
    d = random_sparse(30, 0.2, seed=60)
    row, col = torch.nonzero(d, as_tuple=True)  # row-major order
    vals = d[row, col]
    A = sla.SparseTensor(vals, row.to(index_dtype), col.to(index_dtype), (30, 30))
    perm = torch.randperm(row.numel(), generator=torch.Generator().manual_seed(0))
    B = sla.SparseTensor(vals[perm], row[perm], col[perm], (30, 30))  # sorted by the general path
    torch.testing.assert_close(A.pattern.crow, B.pattern.crow)
    torch.testing.assert_close(A.pattern.col, B.pattern.col)
    torch.testing.assert_close(A.values, B.values)
    assert A.pattern.crow.dtype == A.pattern.col.dtype == torch.int64
    torch.testing.assert_close(A.to_dense(), d)
    # Out of range, in order or not, names the array and the index.
    bad = row.clone()
    bad[-1] = 30
    with pytest.raises(sla.InvalidArgumentError, match="row_indices: index 30 is out of range"):
        sla.SparseTensor(vals, bad, col, (30, 30))
    badc = col.clone()
    badc[0] = -1
    with pytest.raises(sla.InvalidArgumentError, match="col_indices: index -1 is out of range"):
        sla.SparseTensor(vals, row, badc, (30, 30))
    # Mixed index dtypes and duplicates still work (duplicates summed by the general path).
    C = sla.SparseTensor(
        torch.cat([vals, vals]), torch.cat([row, row]).to(torch.int32), torch.cat([col, col]), (30, 30)
    )
    torch.testing.assert_close(C.to_dense(), 2 * d)


def test_torch_func_grad_through_a_batch():
    As = members([4, 6, 120], "spd", seed=70)
    bs = rhs(As)

    def f(v0, v2, b0):
        xs = sla.solve_batch([As[0].with_values(v0), As[1], As[2].with_values(v2)], [b0, bs[1], bs[2]])
        return sum((x * x).sum() for x in xs)

    g = torch.func.grad(f, argnums=(0, 1, 2))(As[0].values, As[2].values, bs[0])
    leaves = [t.clone().requires_grad_() for t in (As[0].values, As[2].values, bs[0])]
    f(*leaves).backward()
    for a, leaf in zip(g, leaves):
        torch.testing.assert_close(a, leaf.grad)
