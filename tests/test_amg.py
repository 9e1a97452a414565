"""Smoothed-aggregation AMG: convergence on hard model problems, grid independence, the torch cycle
against the core's, reuse of the setup, gradients through AMG-preconditioned CG, reporting, bad input."""

from __future__ import annotations

import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import torch_sla as sla
from conftest import poisson2d

F64 = torch.float64


def grid2d(m: int, kx, ky) -> sla.SparseTensor:
    """-div(k grad u) on an m x m grid (5-point, Dirichlet), with face coefficients kx(i, j), ky(i, j)
    given per cell as (m, m) tensors (harmonic means on the faces)."""
    idx = torch.arange(m * m).reshape(m, m)
    rows, cols, vals = [], [], []
    diag = torch.zeros(m, m, dtype=F64)

    def face(a, b):
        return 2 * a * b / (a + b)

    for axis, k in ((1, kx), (0, ky)):
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis], hi[axis] = slice(0, m - 1), slice(1, m)
        w = face(k[tuple(lo)], k[tuple(hi)])
        i, j = idx[tuple(lo)].reshape(-1), idx[tuple(hi)].reshape(-1)
        rows += [i, j]
        cols += [j, i]
        vals += [-w.reshape(-1), -w.reshape(-1)]
        diag[tuple(lo)] += w
        diag[tuple(hi)] += w
        # Dirichlet boundary faces
        first = [slice(None), slice(None)]
        last = [slice(None), slice(None)]
        first[axis], last[axis] = 0, m - 1
        diag[tuple(first)] += k[tuple(first)]
        diag[tuple(last)] += k[tuple(last)]
    rows.append(idx.reshape(-1))
    cols.append(idx.reshape(-1))
    vals.append(diag.reshape(-1))
    r, c, v = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    return sla.SparseTensor(v, r, c, (m * m, m * m))


def poisson3d(m: int) -> sla.SparseTensor:
    n = m**3
    idx = torch.arange(n).reshape(m, m, m)
    rows, cols, vals = [idx.reshape(-1)], [idx.reshape(-1)], [torch.full((n,), 6.0, dtype=F64)]
    for axis in range(3):
        a = idx.narrow(axis, 0, m - 1).reshape(-1)
        b = idx.narrow(axis, 1, m - 1).reshape(-1)
        rows += [a, b]
        cols += [b, a]
        vals += [torch.full_like(a, -1.0, dtype=F64)] * 2
    return sla.SparseTensor(torch.cat(vals), torch.cat(rows), torch.cat(cols), (n, n))


def elasticity2d(m: int, nu: float = 0.3):
    """Plane-stress linear elasticity (E = 1) with bilinear elements on an m x m grid of unit squares,
    clamped on the edge x = 0: the SPD stiffness matrix (two unknowns a node, interleaved) and its
    rigid body modes (the translations in x and y and the rotation) on the free unknowns, (n, 3)."""
    D = torch.tensor([[1, nu, 0], [nu, 1, 0], [0, 0, (1 - nu) / 2]], dtype=F64) / (1 - nu**2)
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=F64)
    Ke = torch.zeros(8, 8, dtype=F64)
    g = 3**-0.5
    for xi in (-g, g):
        for eta in (-g, g):
            dxi = corners[:, 0] * (1 + corners[:, 1] * eta) / 4
            deta = corners[:, 1] * (1 + corners[:, 0] * xi) / 4
            dx, dy = 2 * dxi, 2 * deta  # x = (xi + 1) / 2 on a unit square
            Bm = torch.zeros(3, 8, dtype=F64)
            Bm[0, 0::2], Bm[1, 1::2], Bm[2, 0::2], Bm[2, 1::2] = dx, dy, dy, dx
            Ke += Bm.T @ D @ Bm / 4  # det J = 1/4, weights 1
    nodes = torch.arange((m + 1) ** 2).reshape(m + 1, m + 1)  # nodes[y, x]
    quads = torch.stack([nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, 1:], nodes[1:, :-1]], dim=-1).reshape(
        -1, 4
    )
    dofs = torch.stack([2 * quads, 2 * quads + 1], dim=-1).reshape(-1, 8)
    rows = dofs[:, :, None].expand(-1, 8, 8).reshape(-1)
    cols = dofs[:, None, :].expand(-1, 8, 8).reshape(-1)
    n_all = 2 * (m + 1) ** 2
    K = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), Ke.reshape(-1).repeat(len(quads)), (n_all, n_all)
    ).coalesce()
    free = torch.ones(n_all, dtype=torch.bool)
    free[2 * nodes[:, 0]] = free[2 * nodes[:, 0] + 1] = False  # clamped at x = 0
    new = torch.cumsum(free, 0) - 1
    r, c = K.indices()
    keep = free[r] & free[c]
    n = int(free.sum())
    A = sla.SparseTensor(K.values()[keep], new[r[keep]], new[c[keep]], (n, n))
    y, x = (
        t.reshape(-1).to(F64) for t in torch.meshgrid(torch.arange(m + 1), torch.arange(m + 1), indexing="ij")
    )
    B = torch.zeros(n_all, 3, dtype=F64)
    B[0::2, 0] = 1
    B[1::2, 1] = 1
    B[0::2, 2], B[1::2, 2] = -y, x
    return A, B[free]


def amg_cg(A, b=None, **kw):
    b = torch.ones(A.shape[0], dtype=F64) if b is None else b
    kw.setdefault("backend", "core")
    x, info = sla.solve(A, b, method="cg", preconditioner="amg", rtol=1e-8, return_info=True, **kw)
    assert info.converged, info
    res = (A @ x - b).norm() / b.norm()
    assert res < 1e-7
    return info


@pytest.mark.parametrize("smoother", ["jacobi", "chebyshev", "sgs"])
@pytest.mark.parametrize("cycle", ["V", "W"])
def test_poisson2d_converges_in_few_iterations(smoother, cycle):
    info = amg_cg(poisson2d(64), amg_smoother=smoother, amg_cycle=cycle, amg_max_coarse=50)
    assert info.iterations <= 20
    assert info.hierarchy is not None and len(info.hierarchy.levels) >= 3


def test_poisson3d():
    info = amg_cg(poisson3d(20), amg_max_coarse=100)
    assert info.iterations <= 20
    assert info.hierarchy.operator_complexity < 2.0


def test_sparsified_coarse_operators():
    # 3D Poisson: the weak long-range entries of the coarse operators are lumped to the diagonal
    A = poisson3d(20)
    exact = amg_cg(A, amg_coarse_drop=0.0, amg_max_coarse=100, amg_setup="full")
    info = amg_cg(A, amg_max_coarse=100, amg_setup="full")
    he, h = exact.hierarchy, info.hierarchy
    assert h.options["coarse_drop"] == 0.02 and he.options["coarse_drop"] == 0.0
    assert h.levels[0] == he.levels[0] and h.levels[1][0] == he.levels[1][0]
    assert h.levels[1][1] < 0.9 * he.levels[1][1]
    assert h.operator_complexity < he.operator_complexity and h.operator_complexity <= 1.5
    assert info.iterations <= exact.iterations + 1
    # the product with the coarse near-null space is that of the Galerkin operator R A P
    b1 = h.near_nullspace(1)
    assert b1.shape == (h.levels[1][0], 1) and bool((b1 > 0).all())
    G, S = he._matrix(1, "A", "cpu"), h._matrix(1, "A", "cpu")
    torch.testing.assert_close(S @ b1, G @ b1, rtol=1e-12, atol=1e-12)
    Sd = S.to_dense()
    torch.testing.assert_close(Sd, Sd.T, rtol=0, atol=1e-14)


def test_prolongator_truncation():
    A = poisson2d(60)
    full = amg_cg(A, amg_truncation=0.0, amg_max_coarse=40, amg_setup="full")
    trunc = amg_cg(A, amg_truncation=0.3, amg_max_coarse=40, amg_setup="full")
    P, PT = full.hierarchy._matrix(0, "P", "cpu"), trunc.hierarchy._matrix(0, "P", "cpu")
    assert PT.values().numel() < P.values().numel()
    b1 = full.hierarchy.near_nullspace(1)
    torch.testing.assert_close(PT @ b1, P @ b1, rtol=1e-12, atol=1e-12)  # rows rescaled
    assert trunc.iterations <= 25
    # the truncation is structural: a values-only setup needs an earlier one with the same truncation
    B = A.with_values(A.values * 2)
    vo = amg_cg(B, amg_truncation=0.3, amg_max_coarse=40, amg_setup="values-only")
    assert vo.hierarchy.values_only
    assert vo.hierarchy._matrix(0, "P", "cpu").values().numel() == PT.values().numel()
    with pytest.raises(sla.InvalidArgumentError, match="amg_truncation"):
        amg_cg(B, amg_truncation=0.2, amg_max_coarse=40, amg_setup="values-only")


def test_values_only_spectral_radius_estimates():
    # other values on the same pattern (a jumping coefficient): the values-only setup's estimates of
    # rho(D^{-1} A) start from the earlier hierarchy's eigenvector estimates and take fewer steps; like
    # the full setup's, they are within a few percent below the exact values
    m = 30
    A = poisson2d(m)
    amg_cg(A, amg_setup="full", amg_max_coarse=12)
    k = torch.ones(m, m, dtype=F64)
    k[:, m // 2 :] = 10.0
    B = grid2d(m, k, k)
    assert torch.equal(B.pattern.col, A.pattern.col)
    vo = amg_cg(A.with_values(B.values), amg_setup="values-only", amg_max_coarse=12).hierarchy
    full = amg_cg(A.with_values(B.values.clone()), amg_setup="full", amg_max_coarse=12).hierarchy
    assert vo.values_only and not full.values_only
    for h in (vo, full):
        for level in range(len(h.levels)):
            M = h._matrix(level, "A", "cpu")
            M = sp.csr_matrix((M.values().numpy(), M.col_indices().numpy(), M.crow_indices().numpy()))
            s = sp.diags(1 / M.diagonal() ** 0.5)
            exact = spla.eigsh(s @ M @ s, k=1, which="LA", tol=1e-12)[0][0]
            est = h.handle.spectral_radius(level)
            assert 0.97 * exact <= est <= exact * (1 + 1e-10), (level, est, exact)


def test_anisotropic_poisson():
    m = 64
    one = torch.ones(m, m, dtype=F64)
    A = grid2d(m, 1e-3 * one, one)
    info = amg_cg(A, amg_max_coarse=50)
    assert info.iterations <= 30
    # the default truncation keeps the weak direction out of the prolongator: sparse coarse operators
    dense = amg_cg(A, amg_max_coarse=50, amg_truncation=0.0)
    assert info.hierarchy.operator_complexity < 2.0 < dense.hierarchy.operator_complexity
    jac = sla.solve(A, torch.ones(m * m, dtype=F64), method="cg", backend="core", return_info=True)[1]
    assert info.iterations * 5 < jac.iterations


def test_jumping_coefficients():
    m = 64
    k = torch.ones(m, m, dtype=F64)
    k[m // 4 : 3 * m // 4, m // 4 : 3 * m // 4] = 1e4
    A = grid2d(m, k, k)
    info = amg_cg(A, amg_max_coarse=50)
    assert info.iterations <= 25


def test_grid_independence():
    # n = 250^2 against 1000^2 (a few seconds: the large matrix is built from its stencil directly)
    small = amg_cg(poisson2d(250), amg_setup="full")
    large = amg_cg(poisson2d(1000), amg_setup="full")
    assert large.iterations <= 1.5 * small.iterations, (small.iterations, large.iterations)
    assert len(large.hierarchy.levels) > len(small.hierarchy.levels)


@pytest.mark.parametrize("method", ["minres", "gmres", "bicgstab"])
def test_other_krylov_methods(method):
    A = poisson2d(40)
    b = torch.randn(A.shape[0], dtype=F64)
    x, info = sla.solve(
        A, b, method=method, backend="core", preconditioner="amg", rtol=1e-9, return_info=True
    )
    assert info.converged and info.iterations <= 30
    torch.testing.assert_close(A @ x, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("smoother", ["jacobi", "chebyshev"])
@pytest.mark.parametrize("cycle", ["V", "W"])
def test_torch_cycle_equals_core_cycle(smoother, cycle):
    A = poisson2d(24)
    n = A.shape[0]
    kw = dict(method="cg", preconditioner="amg", amg_smoother=smoother, amg_cycle=cycle, amg_max_coarse=20)
    x0, info = sla.solve(A, torch.ones(n, dtype=F64), backend="core", return_info=True, **kw)
    h = info.hierarchy
    assert len(h.levels) >= 3
    r = torch.randn(n, 3, dtype=F64)
    z = torch.empty_like(r)
    h.handle.apply(r, z, "N")
    zt = h.torch_cycle("cpu", False)(r)
    torch.testing.assert_close(zt, z, rtol=1e-12, atol=1e-12)
    if cycle == "V":  # and through the torch backend's solve
        x1, i1 = sla.solve(A, torch.ones(n, dtype=F64), backend="torch", return_info=True, **kw)
        assert i1.converged and abs(i1.iterations - info.iterations) <= 1
        torch.testing.assert_close(x1, x0, rtol=1e-6, atol=1e-8)


def test_transposed_cycle_on_a_nonsymmetric_matrix():
    A = poisson2d(30)
    v = A.values.clone()
    v[A.pattern.col == A.pattern.row + 1] -= 0.3  # convection: not symmetric
    A = A.with_values(v)
    b = torch.randn(900, dtype=F64, requires_grad=True)
    x, info = sla.solve(
        A,
        b,
        method="gmres",
        backend="core",
        preconditioner="amg",
        amg_smoother="jacobi",
        rtol=1e-10,
        return_info=True,
    )
    h = info.hierarchy
    assert not h.handle.symmetric
    u, w = torch.randn(900, 1, dtype=F64), torch.randn(900, 1, dtype=F64)
    mu, mtw = torch.empty_like(u), torch.empty_like(w)
    h.handle.apply(u, mu, "N")
    h.handle.apply(w, mtw, "H")
    torch.testing.assert_close((mu * w).sum(), (u * mtw).sum())
    torch.testing.assert_close(h.torch_cycle("cpu", True)(w), mtw, rtol=1e-12, atol=1e-12)
    x.sum().backward()  # the adjoint GMRES with the transposed cycle
    g = torch.linalg.solve(A.to_dense().T, torch.ones(900, dtype=F64))
    torch.testing.assert_close(b.grad, g, rtol=1e-7, atol=1e-8)
    assert info.adjoint.converged


def test_gradcheck_through_amg_preconditioned_cg():
    A = poisson2d(12)
    v = A.values.clone().requires_grad_()
    b = torch.randn(144, dtype=F64, requires_grad=True)

    _, perm = A.pattern.transpose()  # symmetric perturbations: CG needs a symmetric matrix

    def f(v, b):
        return sla.solve(
            A.with_values(0.5 * (v + v[perm])),
            b,
            method="cg",
            backend="core",
            preconditioner="amg",
            rtol=1e-13,
            amg_max_coarse=20,
            amg_setup="full",
        )

    assert torch.autograd.gradcheck(f, (v, b), atol=1e-6, rtol=1e-5)


def test_values_only_reuse_and_report():
    A = poisson2d(60)
    full = amg_cg(A, amg_setup="full", amg_max_coarse=40)
    assert full.hierarchy.summary()["setup"] == "full" and full.setup_time > 0
    B = A.with_values(A.values * 1.5)  # new values, same pattern and strong connections
    auto = amg_cg(B, amg_max_coarse=40)
    assert auto.hierarchy.values_only and auto.hierarchy.summary()["setup"] == "values-only"
    assert auto.iterations == full.iterations
    forced = amg_cg(B.with_values(B.values * 2), amg_setup="values-only", amg_max_coarse=40)
    assert forced.hierarchy.values_only
    # other strong connections (anisotropy): "auto" sets up anew
    one = torch.ones(60, 60, dtype=F64)
    C = grid2d(60, 1e-3 * one, one)
    assert not amg_cg(C, amg_max_coarse=40).hierarchy.values_only
    assert any("hierarchy of this pattern is kept" in r for r in sla.explain(A, method="cg").reasons)
    text = str(full.hierarchy)
    assert "operator complexity" in text and "grid complexity" in text and "(direct)" in text
    assert full.solve_time > 0


def test_hierarchy_is_cached_per_values():
    A = poisson2d(30)
    i1 = amg_cg(A, amg_max_coarse=30)
    i2 = amg_cg(A, amg_max_coarse=30)
    assert i2.hierarchy is i1.hierarchy and i2.setup_time < i1.setup_time


def test_near_nullspace():
    A = poisson2d(40)
    s = 1.0 + 0.5 * torch.sin(0.05 * torch.arange(1600, dtype=F64))
    S = A.with_values(A.values * s[A.pattern.row] * s[A.pattern.col])
    info = amg_cg(S, amg_near_nullspace=1 / s, amg_max_coarse=30)
    assert info.iterations <= 20
    with pytest.raises(sla.InvalidArgumentError, match="amg_near_nullspace"):
        amg_cg(S, amg_near_nullspace=torch.ones(7, dtype=F64), amg_max_coarse=30)


def test_elasticity_with_rigid_body_modes():
    # a block system: two unknowns a node, aggregated by nodes, with the three rigid body modes as the
    # near-null space (a QR factorization per aggregate: three coarse unknowns an aggregate)
    A, B = elasticity2d(40)
    n = A.shape[0]
    plain = amg_cg(A, amg_max_coarse=60, amg_setup="full")
    rbm = amg_cg(A, amg_near_nullspace=B, amg_block_size=2, amg_max_coarse=60, amg_setup="full")
    assert rbm.iterations <= 30 and rbm.iterations < 0.6 * plain.iterations, (
        rbm.iterations,
        plain.iterations,
    )
    h = rbm.hierarchy
    assert len(h.levels) >= 3 and h.handle.near_nullspace_columns == 3
    torch.testing.assert_close(h.near_nullspace(0), B)
    rows1 = h.levels[1][0]
    assert h.near_nullspace(1).shape == (rows1, 3) and rows1 % 3 == 0
    # T B_1 = B_0: the smoothed prolongator maps B_1 to (I - omega D^{-1} A) B_0
    P, A0 = h._matrix(0, "P", "cpu"), h._matrix(0, "A", "cpu")
    dinv = torch.empty(n, dtype=F64)
    h.handle.export_inv_diag(0, dinv)
    omega = 4 / (3 * h.handle.spectral_radius(0))
    torch.testing.assert_close(P @ h.near_nullspace(1), B - omega * dinv[:, None] * (A0 @ B))
    # the torch cycle is the core's
    r = torch.randn(n, 2, dtype=F64)
    cheb = amg_cg(A, amg_near_nullspace=B, amg_block_size=2, amg_smoother="chebyshev").hierarchy
    z = torch.empty_like(r)
    cheb.handle.apply(r, z, "N")
    torch.testing.assert_close(cheb.torch_cycle("cpu", False)(r), z, rtol=1e-12, atol=1e-12)
    # values-only: another material (Poisson ratio), the same pattern
    A2, _ = elasticity2d(40, nu=0.4)
    assert torch.equal(A2.pattern.col, A.pattern.col)
    A2 = A.with_values(A2.values)
    vo = amg_cg(A2, amg_near_nullspace=B, amg_block_size=2, amg_max_coarse=60, amg_setup="values-only")
    assert vo.hierarchy.values_only and vo.iterations <= rbm.iterations + 3
    with pytest.raises(sla.InvalidArgumentError, match="amg_block_size"):
        amg_cg(A, amg_near_nullspace=B, amg_block_size=7)
    with pytest.raises(sla.InvalidArgumentError, match="amg_near_nullspace"):
        amg_cg(A, amg_near_nullspace=B[:-1])
    with pytest.raises(sla.InvalidArgumentError, match="amg_near_nullspace"):
        amg_cg(A, amg_near_nullspace=torch.ones(n, 2, 2, dtype=F64))


def test_complex_hermitian_through_its_real_form():
    # complex matrices are refused; a Hermitian positive definite A = Ar + i Ai is solved through the SPD
    # real form [[Ar, -Ai], [Ai, Ar]], the real and imaginary parts of each unknown interleaved (blocks of
    # two), with the near-null space (1, 0) and (0, 1) on every unknown (the constant and i times it)
    m = 30
    A = poisson2d(m)
    r, c = A.pattern.row, A.pattern.col
    theta = 0.2 * torch.sin(0.7 * r.to(F64) + 1.3 * c.to(F64))
    theta = torch.where(r < c, theta, -theta[A.pattern.transpose()[1]])  # antisymmetric phases
    vals = A.values.to(torch.complex128) * torch.where(r == c, 1.0, torch.exp(1j * theta))
    Z = sla.SparseTensor(vals, r, c, A.shape)
    b = torch.randn(m * m, dtype=torch.complex128)
    with pytest.raises(sla.InvalidArgumentError, match="real"):
        sla.solve(Z, b, method="cg", backend="core", preconditioner="amg")
    re, im = vals.real, vals.imag
    R = sla.SparseTensor(
        torch.cat([re, -im, im, re]),
        torch.cat([2 * r, 2 * r, 2 * r + 1, 2 * r + 1]),
        torch.cat([2 * c, 2 * c + 1, 2 * c, 2 * c + 1]),
        (2 * m * m, 2 * m * m),
    )
    ns = torch.zeros(2 * m * m, 2, dtype=F64)
    ns[0::2, 0] = ns[1::2, 1] = 1
    rhs = torch.stack([b.real, b.imag], 1).reshape(-1)
    info = amg_cg(R, rhs, amg_near_nullspace=ns, amg_block_size=2, amg_max_coarse=40)
    assert info.iterations <= 15
    x = sla.solve(
        R,
        rhs,
        method="cg",
        backend="core",
        preconditioner="amg",
        rtol=1e-10,
        amg_near_nullspace=ns,
        amg_block_size=2,
        amg_max_coarse=40,
    )
    xz = torch.complex(x[0::2], x[1::2])
    torch.testing.assert_close(xz, torch.linalg.solve(Z.to_dense(), b), rtol=1e-7, atol=1e-8)


def test_bad_input():
    A = poisson2d(10)
    v = A.values.clone()
    v[(A.pattern.row == 3) & (A.pattern.col == 3)] = 0.0
    with pytest.raises(sla.SingularMatrixError, match="diagonal"):
        sla.solve(
            A.with_values(v),
            torch.ones(100, dtype=F64),
            method="gmres",
            backend="core",
            preconditioner="amg",
            check_finite=False,
        )
    # an empty row
    keep = A.pattern.row != 5
    E = sla.SparseTensor(A.values[keep], A.pattern.row[keep], A.pattern.col[keep], (100, 100))
    with pytest.raises((sla.SingularMatrixError, sla.InvalidArgumentError)):
        sla.solve(E, torch.ones(100, dtype=F64), method="gmres", backend="core", preconditioner="amg")
    with pytest.raises(sla.InvalidArgumentError, match="amg_cycle"):
        amg_cg(A, amg_cycle="X")
    with pytest.raises(sla.InvalidArgumentError, match="amg_smoother"):
        amg_cg(A, amg_smoother="ilu")
    with pytest.raises(sla.InvalidArgumentError, match="amg_strength"):
        amg_cg(A, amg_strength=1.5)
    with pytest.raises(sla.InvalidArgumentError, match="amg_setup"):
        amg_cg(A, amg_setup="sometimes")
    with pytest.raises(sla.InvalidArgumentError, match="amg_truncation"):
        amg_cg(A, amg_truncation=1.0)
    with pytest.raises(sla.InvalidArgumentError, match="amg_coarse_drop"):
        amg_cg(A, amg_coarse_drop=-0.5)
    with pytest.raises(sla.InvalidArgumentError, match="sgs"):
        amg_cg(A, backend="torch", amg_smoother="sgs")
    Z = sla.SparseTensor.from_dense(torch.eye(8, dtype=torch.complex128) * 2)
    with pytest.raises(sla.InvalidArgumentError, match="real"):
        sla.solve(
            Z, torch.ones(8, dtype=torch.complex128), method="gmres", backend="core", preconditioner="amg"
        )
    with pytest.raises(sla.InvalidArgumentError, match="values-only"):
        amg_cg(poisson2d(11), amg_setup="values-only", amg_max_coarse=7)
    with pytest.raises(ValueError):  # non-square
        R = sla.SparseTensor(
            torch.ones(3, dtype=F64), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), (3, 4)
        )
        sla.solve(R, torch.ones(3, dtype=F64), method="gmres", backend="core", preconditioner="amg")


def test_amg_solve():
    A = poisson2d(50)
    b = torch.randn(2500, dtype=F64)
    x, info = sla.amg_solve(A, b, rtol=1e-10, return_info=True)
    assert info.method == "cg" and info.preconditioner == "amg" and info.converged
    torch.testing.assert_close(A @ x, b, rtol=0, atol=1e-7)
    x2 = sla.amg_solve(A, b, accel="gmres", rtol=1e-10)
    torch.testing.assert_close(x2, x, rtol=1e-6, atol=1e-8)
    with pytest.raises(sla.InvalidArgumentError, match="accel"):
        sla.amg_solve(A, b, accel="lu")
