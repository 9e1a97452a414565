"""Iterative solves through the public API: every method x backend, preconditioners, gradients, info,
failure reporting and automatic selection."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla
from conftest import ITERATIVE_BACKENDS, autograd_node_names, poisson2d, random_sparse

BACKENDS = ITERATIVE_BACKENDS
F64, C128 = torch.float64, torch.complex128


def spd(n=40, dtype=F64, seed=0):
    return sla.SparseTensor.from_dense(random_sparse(n, 0.1, dtype=dtype, kind="spd", seed=seed))


def general(n=40, dtype=F64, seed=0):
    return sla.SparseTensor.from_dense(random_sparse(n, 0.1, dtype=dtype, kind="general", seed=seed))


def sym_indefinite(n=40, seed=0):
    return sla.SparseTensor.from_dense(random_sparse(n, 0.1, kind="symmetric", seed=seed))


CASES = [("cg", spd), ("minres", spd), ("minres", sym_indefinite), ("gmres", general), ("bicgstab", general)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method,make", CASES)
@pytest.mark.parametrize("dtype", [F64, C128])
def test_methods_match_dense(backend, method, make, dtype):
    if make is sym_indefinite and dtype == C128:
        A = sla.SparseTensor.from_dense(random_sparse(40, 0.1, dtype=C128, kind="symmetric", seed=1))
    else:
        A = make(dtype=dtype) if make is not sym_indefinite else make()
    b = torch.randn(40, 2, dtype=F64).to(A.dtype)
    x, info = A.solve(b, method=method, backend=backend, rtol=1e-10, return_info=True, preconditioner="none")
    assert info.converged and info.reason == "converged", info
    ref = torch.linalg.solve(A.to_dense(), b)
    torch.testing.assert_close(x, ref, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize(
    "pre,method",
    [
        ("jacobi", "cg"),
        ("ssor", "cg"),
        ("ic0", "cg"),
        ("ilu0", "gmres"),
        ("ilu0", "bicgstab"),
        ("jacobi", "minres"),
    ],
)
def test_core_preconditioners_reduce_iterations(pre, method):
    A = poisson2d(20)
    if method != "cg" and method != "minres":
        # Make it unsymmetric: add a convection term on the super-diagonal entries.
        r, c = A.row_indices, A.col_indices
        A = A.with_values(A.values + 0.3 * (c == r + 1))
    b = torch.ones(400, dtype=F64)
    _, plain = A.solve(b, method=method, backend="core", preconditioner="none", rtol=1e-8, return_info=True)
    x, info = A.solve(b, method=method, backend="core", preconditioner=pre, rtol=1e-8, return_info=True)
    assert info.converged and info.preconditioner == pre
    if pre != "jacobi":  # Jacobi on a constant diagonal only rescales
        assert info.iterations < plain.iterations, (info.iterations, plain.iterations)
    torch.testing.assert_close(A @ x, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_preconditioners_callable_and_sparse(backend):
    A = poisson2d(10)
    b = torch.ones(100, dtype=F64)
    d = A.to_dense().diagonal()
    calls = []

    def jac(r):
        calls.append(1)
        return r / d[:, None]

    x = A.solve(b, method="cg", backend=backend, preconditioner=jac, rtol=1e-10)
    assert calls
    torch.testing.assert_close(A @ x, b, rtol=0, atol=1e-8)
    P = sla.SparseTensor.from_dense(torch.diag(1.0 / d))
    x2 = A.solve(b, method="cg", backend=backend, preconditioner=P, rtol=1e-10)
    torch.testing.assert_close(x2, x, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "method,make", [("cg", spd), ("gmres", general), ("bicgstab", general), ("minres", spd)]
)
def test_gradcheck_iterative(backend, method, make):
    A0 = make(n=8, seed=3)
    r, c = A0.row_indices, A0.col_indices
    v = A0.values.clone().requires_grad_()
    b = torch.randn(8, 2, dtype=F64, requires_grad=True)

    def f(values, rhs):
        A = sla.SparseTensor(values, r, c, (8, 8))
        if method in ("cg", "minres"):  # keep the perturbed matrix symmetric
            A = A.with_values(0.5 * (A.values + A.T().values))
        return A.solve(rhs, method=method, backend=backend, rtol=1e-13, maxiter=500)

    assert torch.autograd.gradcheck(f, (v, b), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_complex_hermitian_cg_gradcheck(backend):
    A0 = spd(n=8, dtype=C128, seed=4)
    r, c = A0.row_indices, A0.col_indices
    v = A0.values.clone().requires_grad_()
    b = torch.randn(8, dtype=C128, requires_grad=True)

    def f(values, rhs):
        A = sla.SparseTensor(values, r, c, (8, 8))
        A = A.with_values(0.5 * (A.values + A.H().values))
        return A.solve(rhs, method="cg", backend=backend, rtol=1e-13, maxiter=500)

    assert torch.autograd.gradcheck(f, (v, b), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_iterative_gradients_agree_with_direct(backend, method):
    A0 = general(n=30, seed=6)
    b = torch.randn(30, dtype=F64)
    grads = []
    for kw in (dict(method="lu"), dict(method=method, backend=backend, rtol=1e-12)):
        v = A0.values.clone().requires_grad_()
        bb = b.clone().requires_grad_()
        x = A0.with_values(v).solve(bb, **kw)
        (x * torch.arange(30, dtype=F64)).sum().backward()
        grads.append((v.grad, bb.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_node_and_adjoint_info(backend):
    A = spd(n=30, seed=7)
    v = A.values.clone().requires_grad_()
    b = torch.randn(30, dtype=F64, requires_grad=True)
    x, info = A.with_values(v).solve(b, method="cg", backend=backend, return_info=True)
    names = autograd_node_names(x)
    assert sum("LinearSolve" in nm for nm in names) == 1, names
    x.sum().backward()
    assert info.adjoint is not None and info.adjoint.converged and info.adjoint.iterations > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_info_callback_history_and_warm_start(backend):
    A = poisson2d(12)
    b = torch.ones(144, dtype=F64)
    seen = []
    x, info = A.solve(
        b, method="cg", backend=backend, return_info=True, callback=lambda it, r: seen.append((it, r))
    )
    assert info.converged and info.iterations > 5 and seen
    assert len(info.residual_history) > 0 and info.residual <= 1e-7
    _, warm = A.solve(b, method="cg", backend=backend, x0=x + 1e-6, return_info=True)
    assert warm.iterations < info.iterations


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_convergence_warns_or_raises(backend):
    A = poisson2d(15)
    b = torch.ones(225, dtype=F64)
    with pytest.warns(RuntimeWarning, match="did not converge: maxiter"):
        A.solve(b, method="cg", backend=backend, maxiter=3)
    with pytest.raises(sla.ConvergenceError, match="maxiter after 3 iterations"):
        A.solve(b, method="cg", backend=backend, maxiter=3, on_fail="raise", check_every=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cg_on_indefinite_is_reported_quickly(backend):
    A = sym_indefinite(n=30, seed=2)
    b = torch.ones(30, dtype=F64)
    with pytest.raises(sla.ConvergenceError, match="indefinite"):
        A.solve(b, method="cg", backend=backend, preconditioner="none", on_fail="raise", maxiter=10_000)
    with pytest.warns(RuntimeWarning, match="indefinite"):
        _, info = A.solve(
            b, method="cg", backend=backend, preconditioner="none", maxiter=10_000, return_info=True
        )
    assert info.reason == "indefinite" and info.iterations < 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_mid_iteration_stops(backend):
    A = poisson2d(10)
    b = torch.ones(100, dtype=F64)
    b[5] = float("nan")
    with pytest.warns(RuntimeWarning, match="nan"):
        _, info = A.solve(
            b, method="gmres", backend=backend, check_finite=False, maxiter=10_000, return_info=True
        )
    assert info.reason == "nan" and info.iterations < 50


def test_bad_arguments():
    A = poisson2d(4)
    b = torch.ones(16, dtype=F64)
    with pytest.raises(ValueError, match="rtol"):
        A.solve(b, method="cg", rtol=0.0)
    with pytest.raises(ValueError, match="maxiter"):
        A.solve(b, method="cg", maxiter=0)
    with pytest.raises(ValueError, match="restart"):
        A.solve(b, method="gmres", restart=0)
    with pytest.raises(ValueError, match=r"x0: expected shape \(16,\)"):
        A.solve(b, method="cg", x0=torch.zeros(15, dtype=F64))
    with pytest.raises(ValueError, match="on_fail"):
        A.solve(b, method="cg", on_fail="ignore")
    with pytest.raises(ValueError, match="rtol: applies to iterative methods only"):
        A.solve(b, method="lu", rtol=1e-3)
    with pytest.raises(sla.BackendUnavailableError, match="chebyshev"):
        A.solve(b, method="cg", backend="core", preconditioner="chebyshev")
    with pytest.raises(TypeError, match="unexpected keyword"):
        A.solve(b, method="cg", tolerance=1e-3)


def test_preconditioner_breakdowns_are_clear():
    # IC(0) needs positive pivots: a symmetric indefinite matrix breaks it down.
    A = sym_indefinite(n=20, seed=5)
    with pytest.raises(sla.NotPositiveDefiniteError, match="IC\\(0\\) broke down at row"):
        A.solve(torch.ones(20, dtype=F64), method="minres", backend="core", preconditioner="ic0")
    # ILU(0) / Jacobi need a nonzero diagonal.
    Z = sla.SparseTensor(
        torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=F64),
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0, 1, 0, 1]),
        (2, 2),
    )
    with pytest.raises(sla.SingularMatrixError, match="ILU\\(0\\) found a zero pivot at row 0"):
        Z.solve(torch.ones(2, dtype=F64), method="gmres", backend="core", preconditioner="ilu0")


def test_auto_switches_to_iterative_when_factor_exceeds_budget():
    A = poisson2d(30)
    b = torch.ones(900, dtype=F64)
    if not sla.backends()["suitesparse"].available:
        # Eigen predicts no factor size: auto stays direct and says why (Eigen-only builds).
        try:
            sla.set_memory_budget(100e3)
            c = sla.explain(A, b)
        finally:
            sla.set_memory_budget(None)
        assert c.kind == "direct" and "gives no memory prediction" in str(c)
        return
    try:
        sla.set_memory_budget(100e3)  # 100 kB: the index arrays fit, no factorization does
        c = sla.explain(A, b)
        assert c.kind == "iterative" and c.method == "cg"
        assert "exceeds the memory budget" in str(c) and "preconditioner=" in str(c)
        x = sla.solve(A, b)
    finally:
        sla.set_memory_budget(None)
    c = sla.explain(A, b)
    assert c.kind == "direct" and "fits the memory budget" in str(c)
    torch.testing.assert_close(x, sla.solve(A, b), rtol=1e-6, atol=1e-8)


def test_batched_iterative():
    base = poisson2d(6)
    vals = torch.stack([base.values, 2.0 * base.values])
    A = base.with_values(vals)
    b = torch.randn(2, 36, dtype=F64)
    x = A.solve(b, method="cg", rtol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(A.to_dense(), b.unsqueeze(-1)).squeeze(-1))


def test_named_preconditioner_is_built_once_per_values_of_A(monkeypatch):
    from torch_sla import _iterative

    built = []
    real = _iterative.CoreKrylovBackend.build_preconditioners

    def counting(self, solver, name):
        built.append(name)
        return real(self, solver, name)

    monkeypatch.setattr(_iterative.CoreKrylovBackend, "build_preconditioners", counting)
    A = poisson2d(12)
    b = torch.ones(A.shape[0], dtype=torch.float64)
    kw = dict(method="cg", backend="core", preconditioner="ic0")
    x1 = sla.solve(A, b, **kw)
    x2 = sla.solve(A, b, **kw)
    assert built == ["ic0"]  # the second solve reused it
    sla.solve(A, b, method="cg", backend="core", preconditioner="jacobi")
    assert built == ["ic0", "jacobi"]  # another preconditioner is built (and cached) on its own
    torch.testing.assert_close(x1, x2)
    with torch.no_grad():
        A.values.mul_(2.0)  # in place: the cached preconditioner belongs to the old values
    x3 = sla.solve(A, b, **kw)
    assert built == ["ic0", "jacobi", "ic0"]
    torch.testing.assert_close(x3, x1 / 2, rtol=1e-7, atol=0)
    A.values = A.values * 0.5  # a new tensor: built again
    torch.testing.assert_close(sla.solve(A, b, **kw), x1, rtol=1e-7, atol=0)
    assert built == ["ic0", "jacobi", "ic0", "ic0"]
    # The gradient path (values requiring grad) and the adjoint solve use it too, and stay exact.
    v = A.values.clone().requires_grad_()
    Ag = A.with_values(v)
    sla.solve(Ag, b, **kw).sum().backward()
    n_built = len(built)
    v.grad = None
    sla.solve(Ag, b, **kw).sum().backward()
    assert len(built) == n_built
    lam = sla.solve(A, torch.ones_like(b), method="lu")
    x = sla.solve(A, b, method="lu")
    torch.testing.assert_close(v.grad, -(lam[A.pattern.row] * x[A.pattern.col]), rtol=1e-6, atol=1e-10)
