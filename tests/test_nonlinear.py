"""nonlinear_solve: the methods converge (Newton quadratically), the implicit gradient matches finite
differences and the unrolled solver, batches, sparse Jacobians by coloring, and bad input."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_sla as sla
from conftest import poisson2d
from torch_sla import _coloring

F64 = torch.float64


def laplacian(U: torch.Tensor) -> torch.Tensor:
    """5-point Laplacian (4u - neighbours) of (..., m, m) grids, zero Dirichlet boundary."""
    zr, zc = torch.zeros_like(U[..., :1, :]), torch.zeros_like(U[..., :, :1])
    return (
        4 * U
        - torch.cat([zr, U[..., :-1, :]], -2)
        - torch.cat([U[..., 1:, :], zr], -2)
        - torch.cat([zc, U[..., :, :-1]], -1)
        - torch.cat([U[..., :, 1:], zc], -1)
    )


def bratu(m: int):
    """-Lap u = lambda e^u on an m x m grid: F(u, lam) = A u - h^2 lam e^u, for u (n,) or (B, n) and lam
    a scalar, (B, 1) or an (n,) / (B, n) field."""
    h = 1.0 / (m + 1)

    def F(u, lam):
        U = u.reshape(*u.shape[:-1], m, m)
        return laplacian(U).reshape(u.shape) - h * h * lam * torch.exp(u)

    return F


def burgers(m: int):
    """A non-symmetric Jacobian: A u + c * u * (upwind x-difference of u) + u^3/3 - f(theta)."""

    def F(u, f, c):
        U = u.reshape(*u.shape[:-1], m, m)
        dx = U - torch.cat([torch.zeros_like(U[..., :, :1]), U[..., :, :-1]], -1)
        out = laplacian(U) + c * U * dx + U**3 / 3
        return out.reshape(u.shape) - f

    return F


def dense_newton(F, u0, params, iters):
    """Unrolled dense Newton in plain torch: differentiated by autograd through every iteration."""
    u = u0
    for _ in range(iters):
        J = torch.func.jacfwd(lambda v: F(v, *params))(u)
        u = u - torch.linalg.solve(J, F(u, *params))
    return u


TIGHT = {"tol": 0.0, "atol": 1e-13}


# -- convergence ----------------------------------------------------------------------------------------
def test_newton_converges_quadratically_on_bratu():
    m = 12
    u, info = sla.nonlinear_solve(bratu(m), torch.zeros(m * m, dtype=F64), 6.0, return_info=True, **TIGHT)
    assert info.converged and info.reason == "converged"
    r = info.residual_history
    assert r[-1] <= 1e-13 and info.iterations <= 6
    ratios = [r[k + 1] / r[k] ** 2 for k in range(len(r) - 1) if r[k] < 1e-2 and r[k + 1] > 1e-15]
    assert ratios and max(ratios) < 50  # r_{k+1} <= C r_k^2: quadratic
    assert info.n_colors is not None and info.n_colors <= 9
    assert info.jacobian_products == info.n_colors * info.iterations
    assert info.factorizations == info.iterations and info.linear_iterations == [0] * info.iterations


@pytest.mark.parametrize(
    "method,kw",
    [
        ("newton", {}),
        ("newton", {"linear_method": "gmres"}),
        ("jfnk", {}),
        ("jfnk", {"preconditioner": "jacobian"}),
        ("picard", {"preconditioner": "jacobian"}),
        ("anderson", {"damping": 0.2, "max_iter": 400}),
        ("anderson", {"preconditioner": "jacobian"}),
    ],
)
def test_every_method_finds_the_same_solution(method, kw):
    m = 6
    F = bratu(m)
    ref = sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), 5.0, **TIGHT)
    u, info = sla.nonlinear_solve(
        F, torch.zeros(m * m, dtype=F64), 5.0, method=method, return_info=True, tol=0, atol=1e-12, **kw
    )
    assert info.converged, info
    assert (u - ref).abs().max() < 1e-9
    assert (F(u, 5.0)).abs().max() <= 1e-12
    if method == "jfnk" or kw.get("linear_method") == "gmres":
        assert sum(info.linear_iterations) > 0
    if method == "anderson" and "preconditioner" not in kw:
        plain = sla.nonlinear_solve(
            F,
            torch.zeros(m * m, dtype=F64),
            5.0,
            method="picard",
            damping=0.2,
            max_iter=5000,
            tol=0,
            atol=1e-12,
            return_info=True,
        )[1]
        assert info.iterations < plain.iterations / 3  # the acceleration is worth having


def test_line_search_rescues_a_far_start_and_backtracks_over_nan():
    # arctan(u) - 1 = 0 from u0 = 3: full Newton steps overshoot to a divergent sequence.
    def F(u):
        return torch.atan(u) - 1

    u0 = torch.full((3,), 3.0, dtype=F64)
    u, info = sla.nonlinear_solve(
        F, u0, return_info=True, pattern=sla.SparseTensor.from_dense(torch.eye(3, dtype=F64))
    )
    assert info.converged and sum(info.line_search_steps) > 0
    assert torch.allclose(u, torch.tan(torch.tensor(1.0, dtype=F64)).expand(3))

    # A residual that is NaN beyond u = 2: the line search backtracks instead of failing.
    def G(u):
        return torch.where(u < 2, u**2 - 2, torch.full_like(u, float("nan")))

    u, info = sla.nonlinear_solve(
        G,
        torch.full((2,), 0.3, dtype=F64),
        return_info=True,
        jacobian_fn=lambda u: sla.SparseTensor.from_dense(torch.diag(2 * u)),
    )
    assert info.converged and torch.allclose(u, torch.full((2,), 2**0.5, dtype=F64))
    with pytest.raises(sla.InvalidArgumentError, match="residual_fn: returned NaN/Inf at iteration 1"):
        sla.nonlinear_solve(
            G,
            torch.full((2,), 0.3, dtype=F64),
            line_search="none",
            jacobian_fn=lambda u: sla.SparseTensor.from_dense(torch.diag(2 * u)),
        )


def test_verbose_prints_one_line_per_iteration(capsys):
    m = 5
    _, info = sla.nonlinear_solve(
        bratu(m), torch.zeros(m * m, dtype=F64), 1.0, verbose=True, return_info=True
    )
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("newton")]
    assert len(lines) == info.iterations + 1 and "max|F|" in lines[-1]


# -- implicit gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,kw",
    [
        ("newton", {}),
        ("jfnk", {}),
        ("picard", {"preconditioner": "jacobian"}),
        ("anderson", {"preconditioner": "jacobian"}),
    ],
)
def test_gradcheck_of_the_implicit_gradient(method, kw):
    m = 4
    F = bratu(m)
    g = torch.Generator().manual_seed(0)
    lam = (3.0 + torch.rand(m * m, generator=g, dtype=F64)).requires_grad_()

    def f(lam):
        return sla.nonlinear_solve(
            F, torch.zeros(m * m, dtype=F64), lam, method=method, tol=0, atol=1e-14, max_iter=200, **kw
        )

    assert torch.autograd.gradcheck(f, (lam,), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["newton", "jfnk"])
def test_gradcheck_with_a_non_symmetric_jacobian(method):
    m = 4
    F = burgers(m)
    u0 = torch.zeros(m * m, dtype=F64)
    J = sla.sparse_jacobian(F, torch.rand(m * m, dtype=F64), torch.zeros(m * m, dtype=F64), 3.0)
    dense = J.to_dense()
    assert (dense - dense.T).abs().max() > 0.1  # the test is about a non-symmetric Jacobian
    f0 = torch.linspace(-1, 2, m * m, dtype=F64).requires_grad_()
    c = torch.tensor(1.0, dtype=F64, requires_grad=True)

    def f(f0, c):
        return sla.nonlinear_solve(F, u0, f0, c, method=method, **TIGHT)

    assert torch.autograd.gradcheck(f, (f0, c), atol=1e-6, rtol=1e-5)


def test_gradcheck_of_a_batch():
    m, B = 4, 3
    F = bratu(m)
    lam = torch.tensor([[1.0], [2.5], [4.0]], dtype=F64, requires_grad=True)  # one lambda per member
    shift = torch.linspace(0, 0.1, B * m * m, dtype=F64).reshape(B, m * m).requires_grad_()

    def shifted(u, lam, s):
        return F(u, lam) - s

    def f(lam, shift):
        return sla.nonlinear_solve(shifted, torch.zeros(B, m * m, dtype=F64), lam, shift, **TIGHT)

    # every entry for lambda; for the (B, n) shift, random projections (fast mode: one backward)
    assert torch.autograd.gradcheck(lambda lam: f(lam, shift.detach()), (lam,), atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(f, (lam, shift), atol=1e-6, rtol=1e-5, fast_mode=True)


def test_a_batch_converges_per_member_and_matches_separate_solves():
    m = 6
    F = bratu(m)
    lam = torch.tensor([[0.5], [4.0], [6.5]], dtype=F64)
    U, info = sla.nonlinear_solve(F, torch.zeros(3, m * m, dtype=F64), lam, return_info=True, **TIGHT)
    assert info.converged and info.member_converged == [True] * 3
    assert info.member_iterations[0] < info.member_iterations[2]  # the easy member stops first
    assert info.factorizations == info.iterations  # one batched factorization per iteration
    for b in range(3):
        u = sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), lam[b], **TIGHT)
        assert (U[b] - u).abs().max() < 1e-11


def test_implicit_gradient_matches_the_unrolled_solver():
    m = 3
    F = burgers(m)
    f0 = torch.linspace(0.5, 1.5, m * m, dtype=F64, requires_grad=True)
    c = torch.tensor(2.0, dtype=F64, requires_grad=True)
    w = torch.linspace(-1, 1, m * m, dtype=F64)
    u = sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), f0, c, **TIGHT)
    g_impl = torch.autograd.grad((w * u).sum(), (f0, c))
    u_unrolled = dense_newton(F, torch.zeros(m * m, dtype=F64), (f0, c), 12)
    g_unrolled = torch.autograd.grad((w * u_unrolled).sum(), (f0, c))
    assert (u - u_unrolled).abs().max() < 1e-12
    for a, b in zip(g_impl, g_unrolled):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


def test_backward_reuses_the_last_factorization_and_reports_the_adjoint_solve():
    m = 6
    lam = torch.tensor(5.0, dtype=F64, requires_grad=True)
    u, info = sla.nonlinear_solve(bratu(m), torch.zeros(m * m, dtype=F64), lam, return_info=True, **TIGHT)
    assert info.adjoint is None
    u.sum().backward()
    assert info.adjoint["converged"] and info.adjoint["preconditioner"] == "last Jacobian factorization"
    assert info.adjoint["iterations"] <= 4  # stale factors refined by a few GMRES iterations
    assert info.factorizations == info.iterations  # no new factorization in backward


def test_gradient_when_u0_is_already_the_solution():
    m = 4
    F = bratu(m)
    lam = torch.tensor(2.0, dtype=F64, requires_grad=True)
    u_star = sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), lam.detach(), **TIGHT)
    u, info = sla.nonlinear_solve(F, u_star, lam, return_info=True, tol=0, atol=1e-10)
    assert info.iterations == 0
    (g,) = torch.autograd.grad(u.sum(), lam)
    e = 1e-6
    fd = (
        sla.nonlinear_solve(F, u_star, 2.0 + e, **TIGHT) - sla.nonlinear_solve(F, u_star, 2.0 - e, **TIGHT)
    ).sum() / (2 * e)
    assert abs(float(g) - float(fd)) < 1e-6 * abs(float(fd))


def test_user_jacobian_is_used_as_is_and_second_derivatives_raise():
    m = 4
    A = poisson2d(m)
    h2 = 1.0 / (m + 1) ** 2
    F = bratu(m)
    calls = []

    def jac(u, lam):
        calls.append(1)
        diag = torch.zeros(A.nnz, dtype=F64)
        diag[A.pattern.diag_positions] = h2 * lam * torch.exp(u)
        return A.with_values(A.values - diag)

    lam = torch.tensor(3.0, dtype=F64, requires_grad=True)
    u, info = sla.nonlinear_solve(
        F, torch.zeros(m * m, dtype=F64), lam, jacobian_fn=jac, return_info=True, **TIGHT
    )
    assert info.converged and info.jacobian_products == 0 and len(calls) == info.iterations
    (g,) = torch.autograd.grad(u.sum(), lam, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        torch.autograd.grad(g, lam)


def test_no_graph_without_parameters_that_need_it():
    m = 3
    u = sla.nonlinear_solve(bratu(m), torch.zeros(m * m, dtype=F64), torch.tensor(1.0, dtype=F64))
    assert u.grad_fn is None
    lam = torch.tensor(1.0, dtype=F64, requires_grad=True)
    with torch.no_grad():
        assert sla.nonlinear_solve(bratu(m), torch.zeros(m * m, dtype=F64), lam).grad_fn is None
    assert type(
        sla.nonlinear_solve(bratu(m), torch.zeros(m * m, dtype=F64), lam).grad_fn
    ).__name__.startswith("_ImplicitSolution")


# -- sparse Jacobians by coloring --------------------------------------------------------------------------
@pytest.mark.parametrize("m", [5, 40])
def test_stencil_jacobian_by_coloring_matches_the_dense_one_with_few_products(m):
    F = bratu(m)
    u = torch.rand(m * m, dtype=F64)
    J = sla.sparse_jacobian(F, u, 4.0, pattern=poisson2d(m))
    assert _coloring.color_columns(J.pattern)[1] <= 9
    if m <= 5:
        assert torch.allclose(J.to_dense(), torch.func.jacfwd(lambda v: F(v, 4.0))(u), atol=1e-14)
    # detected pattern (no pattern given): the same matrix
    J2 = sla.sparse_jacobian(F, u, 4.0)
    assert torch.equal(J2.pattern.col, J.pattern.col) and torch.allclose(J2.values, J.values)


@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(1, 30),
    n_cols=st.integers(1, 30),
    density=st.floats(0.02, 0.5),
    seed=st.integers(0, 10_000),
    order=st.sampled_from(["best", "smallest_last", "largest_first", "natural"]),
)
def test_coloring_is_valid_on_random_patterns(n_rows, n_cols, density, seed, order):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_rows, n_cols, generator=g) < density
    row, col = torch.nonzero(mask, as_tuple=True)
    pat = sla.SparseTensor(torch.ones(row.numel(), dtype=F64), row, col, (n_rows, n_cols)).pattern
    colors, k = _coloring.color_columns(pat, order)
    assert colors.shape == (n_cols,) and (colors >= 0).all() and (colors < max(k, 1)).all()
    # no two columns of one color share a row (checked here independently of the core)
    for r in range(n_rows):
        cs = colors[col[row == r]]
        assert cs.unique().numel() == cs.numel()
    assert _coloring.coloring_conflict(pat, colors) is None
    if row.numel():
        assert k >= int(torch.bincount(row).max())
    bad = torch.zeros(n_cols, dtype=torch.int64)
    if row.numel() and int(torch.bincount(row).max()) > 1:
        assert _coloring.coloring_conflict(pat, bad) is not None


def test_a_pattern_missing_a_jacobian_entry_is_caught_by_the_check_mode():
    m = 4
    F = burgers(m)
    diag_only = sla.SparseTensor.from_dense(torch.eye(m * m, dtype=F64))
    f0 = torch.ones(m * m, dtype=F64)
    with pytest.raises(sla.InvalidArgumentError, match="pattern: misses nonzeros of the Jacobian"):
        sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), f0, 1.0, pattern=diag_only, check_pattern=True)
    u, info = sla.nonlinear_solve(
        F, torch.zeros(m * m, dtype=F64), f0, 1.0, pattern=poisson2d(m), check_pattern=True, return_info=True
    )
    assert info.converged


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_arguments_are_named():
    m = 3
    F = bratu(m)
    u0 = torch.zeros(m * m, dtype=F64)
    with pytest.raises(sla.InvalidArgumentError, match="residual_fn: must return a tensor of u's shape"):
        sla.nonlinear_solve(lambda u: u[:-1], u0)
    with pytest.raises(sla.InvalidArgumentError, match="residual_fn: must return"):
        sla.nonlinear_solve(lambda u: u.float(), u0)
    with pytest.raises(sla.InvalidArgumentError, match="residual_fn: returned NaN/Inf at iteration 0"):
        sla.nonlinear_solve(lambda u: u / 0 * 0, u0)
    with pytest.raises(sla.InvalidArgumentError, match="u0"):
        sla.nonlinear_solve(F, torch.zeros(m * m, dtype=torch.int64), 1.0)
    with pytest.raises(sla.InvalidArgumentError, match="u0"):
        sla.nonlinear_solve(F, torch.zeros(2, 2, m * m, dtype=F64), 1.0)
    with pytest.raises(sla.InvalidArgumentError, match="method"):
        sla.nonlinear_solve(F, u0, 1.0, method="bfgs")
    with pytest.raises(sla.InvalidArgumentError, match="line_search"):
        sla.nonlinear_solve(F, u0, 1.0, line_search="wolfe")
    with pytest.raises(sla.InvalidArgumentError, match="damping"):
        sla.nonlinear_solve(F, u0, 1.0, method="anderson", damping=0.0)
    with pytest.raises(sla.InvalidArgumentError, match="params\\[0\\]"):
        sla.nonlinear_solve(F, u0, torch.tensor(float("nan")))
    with pytest.raises(sla.InvalidArgumentError, match="pattern"):
        sla.nonlinear_solve(F, u0, 1.0, pattern=poisson2d(m + 1))
    with pytest.raises(sla.InvalidArgumentError, match="jacobian_fn"):
        sla.nonlinear_solve(F, u0, 1.0, jacobian_fn=lambda u, lam: torch.eye(2, dtype=F64).to_sparse())
    with pytest.raises(sla.InvalidArgumentError, match="on_fail"):
        sla.nonlinear_solve(F, u0, 1.0, on_fail="ignore")


def test_a_singular_jacobian_names_the_iteration():
    # F(u) = u^2 - 1 from u0 = (1, 0): the second component has J = 2 u = 0 at the start.
    def F(u):
        return u**2 - 1

    eye = sla.SparseTensor.from_dense(torch.eye(2, dtype=F64))
    with pytest.raises(sla.SingularMatrixError, match="iteration 1"):
        sla.nonlinear_solve(F, torch.tensor([1.0, 0.0], dtype=F64), pattern=eye)


def test_non_convergence_warns_or_raises():
    m = 6
    F = bratu(m)
    u0 = torch.zeros(m * m, dtype=F64)
    # lambda = 8 is beyond the fold (about 6.81): there is no solution.
    with pytest.warns(RuntimeWarning, match="did not converge"):
        u, info = sla.nonlinear_solve(F, u0, 8.0, max_iter=15, return_info=True)
    assert not info.converged and info.reason
    with pytest.raises(sla.ConvergenceError, match="newton did not converge"):
        sla.nonlinear_solve(F, u0, 1.0, max_iter=1, on_fail="raise", **TIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sla.nonlinear_solve(F, u0, 1.0)  # converges: no warning


def test_tensors_requiring_grad_must_come_through_params():
    m = 3
    F = bratu(m)
    lam = torch.tensor(2.0, dtype=F64, requires_grad=True)
    with pytest.raises(sla.InvalidArgumentError, match="other than through params"):
        sla.nonlinear_solve(lambda u: F(u, lam), torch.zeros(m * m, dtype=F64))
    with torch.no_grad():  # no gradient asked for: fine
        sla.nonlinear_solve(lambda u: F(u, lam), torch.zeros(m * m, dtype=F64))


def test_float32_solve_and_gradient():
    m = 5
    F = bratu(m)
    lam32 = torch.tensor(4.0, requires_grad=True)
    u32, info = sla.nonlinear_solve(F, torch.zeros(m * m), lam32, return_info=True, tol=0, atol=1e-5)
    assert u32.dtype == torch.float32 and info.converged
    (g32,) = torch.autograd.grad(u32.sum(), lam32)
    lam64 = torch.tensor(4.0, dtype=F64, requires_grad=True)
    (g64,) = torch.autograd.grad(sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), lam64).sum(), lam64)
    assert abs(float(g32) - float(g64)) < 1e-3 * abs(float(g64))


def test_empty_problems_and_a_residual_torch_func_cannot_vmap():
    u = sla.nonlinear_solve(lambda u: u, torch.zeros(0, dtype=F64))
    assert u.shape == (0,)
    U, info = sla.nonlinear_solve(lambda u: u, torch.zeros(0, 4, dtype=F64), return_info=True)
    assert U.shape == (0, 4) and info.converged

    def in_place(u):  # in-place writes into a fresh tensor: detection falls back to one product per column
        out = torch.empty_like(u)
        out.copy_(u**3 - 8)
        return out

    u = sla.nonlinear_solve(in_place, torch.ones(4, dtype=F64), **TIGHT)
    assert torch.allclose(u, torch.full((4,), 2.0, dtype=F64))


def test_check_mode_catches_a_wrong_jacobian_fn():
    m = 3
    F = bratu(m)
    A = poisson2d(m)
    with pytest.raises(
        sla.InvalidArgumentError, match="jacobian_fn: its matrix is not the residual's Jacobian"
    ):
        sla.nonlinear_solve(
            F, torch.zeros(m * m, dtype=F64), 3.0, jacobian_fn=lambda u, lam: A, check_pattern=True
        )
    with pytest.raises(sla.InvalidArgumentError, match="pattern: not used with jacobian_fn"):
        sla.nonlinear_solve(F, torch.zeros(m * m, dtype=F64), 3.0, jacobian_fn=lambda u, lam: A, pattern=A)


def test_trust_region_globalizes_newton():
    def F(u):  # Newton's full steps diverge from |u0| > 1.39
        return torch.atan(u)

    eye = sla.SparseTensor.from_dense(torch.eye(3, dtype=F64))
    u0 = torch.tensor([2.0, 10.0, -4.0], dtype=F64)
    with pytest.raises(sla.SingularMatrixError, match="iteration"):  # full Newton steps diverge from here
        sla.nonlinear_solve(F, u0, pattern=eye, line_search="none", max_iter=20)
    u, info = sla.nonlinear_solve(F, u0, pattern=eye, line_search="trust_region", return_info=True, **TIGHT)
    assert info.converged and u.abs().max() < 1e-12
    # near a solution the full Newton step is taken: as fast as with the line search
    m = 8
    ref = sla.nonlinear_solve(bratu(m), torch.zeros(m * m, dtype=F64), 5.0, return_info=True, **TIGHT)[1]
    _, tr = sla.nonlinear_solve(
        bratu(m), torch.zeros(m * m, dtype=F64), 5.0, line_search="trust_region", return_info=True, **TIGHT
    )
    assert tr.converged and tr.iterations <= ref.iterations + 1
