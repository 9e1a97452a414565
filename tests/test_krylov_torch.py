"""PyTorch-native Krylov solvers: agreement with dense solves, per-column behaviour, failure reporting."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from torch_sla._krylov_torch import (
    ChebyshevPreconditioner,
    JacobiPreconditioner,
    KrylovInfo,
    krylov_solve,
    least_squares,
    lsqr,
    power_lmax,
)
from torch_sla.errors import InvalidArgumentError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The systems here are tiny: threads only add synchronisation cost (a lot of it on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------
# Test matrices, built with torch only


def poisson_dense(m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """5-point Laplacian on an m x m grid (SPD), dense."""
    t = 2 * torch.eye(m, dtype=torch.float64)
    t -= torch.diag(torch.ones(m - 1, dtype=torch.float64), 1)
    t -= torch.diag(torch.ones(m - 1, dtype=torch.float64), -1)
    eye = torch.eye(m, dtype=torch.float64)
    return (torch.kron(eye, t) + torch.kron(t, eye)).to(dtype)


def csr_matvec(dense: torch.Tensor):
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        a = dense.to_sparse_csr()
    return lambda v: a @ v


def dense_matvec(dense: torch.Tensor):
    return lambda v: dense @ v


def _randn(n: int, k: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    re = torch.randn(n, k, generator=g, dtype=torch.float64)
    if dtype.is_complex:
        return torch.complex(re, torch.randn(n, k, generator=g, dtype=torch.float64)).to(dtype)
    return re.to(dtype)


def make_matrix(kind: str, dtype: torch.dtype, n: int = 60, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "poisson":
        return poisson_dense(20, dtype)
    if kind == "hpd":  # Hermitian positive definite, moderately conditioned
        c = _randn(n, n, dtype, g)
        return c.mH @ c / n + 0.2 * torch.eye(n, dtype=dtype)
    if kind == "indefinite":  # Hermitian, eigenvalues of both signs, well away from 0
        c = _randn(n, n, dtype, g)
        signs = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(torch.float64)
        return (c + c.mH) / 2 + torch.diag(signs * 3 * math.sqrt(n)).to(dtype)
    if kind == "general":  # nonsymmetric, diagonally dominant-ish
        c = _randn(n, n, dtype, g)
        return c + 3 * math.sqrt(n) * torch.eye(n, dtype=dtype)
    raise ValueError(kind)


def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    wide = torch.complex128 if a.dtype.is_complex else torch.float64
    return torch.linalg.solve(a.to(wide), b.to(wide))


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.to(ref.dtype) - ref).abs().max() / ref.abs().max())


CASES = [
    ("cg", "poisson", torch.float64),
    ("cg", "poisson", torch.float32),
    ("cg", "hpd", torch.float64),
    ("cg", "hpd", torch.complex128),
    ("minres", "indefinite", torch.float64),
    ("minres", "indefinite", torch.complex128),
    ("minres", "poisson", torch.float64),
    ("bicgstab", "general", torch.float64),
    ("bicgstab", "general", torch.complex128),
    ("gmres", "general", torch.float64),
    ("gmres", "general", torch.complex128),
    ("gmres", "indefinite", torch.float64),
]


def tols(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol given to the solver, accepted error in x)."""
    if dtype in (torch.float32, torch.complex64):
        return 1e-5, 2e-3
    return 1e-10, 1e-7


# ----------------------------------------------------------------------------------------------------
# Accuracy


@pytest.mark.parametrize(("method", "kind", "dtype"), CASES)
@pytest.mark.parametrize("precond", [False, True])
def test_matches_dense_solve(method, kind, dtype, precond):
    a = make_matrix(kind, dtype)
    n = a.shape[0]
    b = _randn(n, 3, dtype, torch.Generator().manual_seed(1))
    rtol, err_tol = tols(dtype)
    matvec = csr_matvec(a) if kind == "poisson" else dense_matvec(a)
    diag = torch.diagonal(a)
    M = None
    if precond:
        # an HPD Jacobi for cg/minres (|diag| for the indefinite case), the plain diagonal otherwise
        M = JacobiPreconditioner(diag.real.abs() if method in ("cg", "minres") else diag)
    x, info = krylov_solve(matvec, b, method=method, rtol=rtol, M=M)
    assert isinstance(info, KrylovInfo)
    assert info.converged and info.reason == "converged", info
    assert x.dtype == dtype and x.shape == b.shape
    assert info.residual <= rtol
    assert 0 < info.iterations < 10 * n
    assert rel_err(x, reference(a, b)) < err_tol


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_columns_are_independent(method):
    """Columns converging at different speeds give what each would give alone; a zero column stays 0."""
    a = poisson_dense(12)
    n = a.shape[0]
    evals, evecs = torch.linalg.eigh(a)
    g = torch.Generator().manual_seed(3)
    b = torch.stack([torch.randn(n, generator=g, dtype=torch.float64), evecs[:, 5], torch.zeros(n)], dim=1)
    b = b.to(torch.float64)
    x, info = krylov_solve(dense_matvec(a), b, method=method, rtol=1e-10)
    assert info.converged
    assert torch.equal(x[:, 2], torch.zeros(n, dtype=torch.float64))
    assert torch.allclose(x[:, 1], evecs[:, 5] / evals[5], rtol=0, atol=1e-10)
    for j in range(2):
        xj, info_j = krylov_solve(dense_matvec(a), b[:, j : j + 1], method=method, rtol=1e-10)
        assert torch.allclose(x[:, j], xj[:, 0], rtol=0, atol=1e-9 * float(xj.abs().max()))
    assert info.iterations == max(
        krylov_solve(dense_matvec(a), b[:, j : j + 1], method=method, rtol=1e-10)[1].iterations
        for j in range(2)
    )


def test_converged_column_stops_changing():
    """Once a column has converged its iterate is frozen while the others go on."""
    a = poisson_dense(12)
    n = a.shape[0]
    evals, evecs = torch.linalg.eigh(a)
    g = torch.Generator().manual_seed(4)
    b = torch.stack([torch.randn(n, generator=g, dtype=torch.float64), evecs[:, 0]], dim=1)
    x_a, _ = krylov_solve(dense_matvec(a), b, method="cg", rtol=1e-10, maxiter=5, check_every=1)
    x_b, _ = krylov_solve(dense_matvec(a), b, method="cg", rtol=1e-10, maxiter=30, check_every=1)
    assert torch.equal(x_a[:, 1], x_b[:, 1])
    assert not torch.equal(x_a[:, 0], x_b[:, 0])


@pytest.mark.parametrize(("method", "kind", "dtype"), [c for c in CASES if c[2] != torch.float32])
def test_many_columns(method, kind, dtype):
    """Nine right-hand sides at once (the reductions switch to matrix products from eight columns)."""
    a = make_matrix(kind, dtype, n=40)
    b = _randn(a.shape[0], 9, dtype, torch.Generator().manual_seed(20))
    x, info = krylov_solve(dense_matvec(a), b, method=method, rtol=1e-10)
    assert info.converged
    assert rel_err(x, reference(a, b)) < 1e-7


def test_gmres_small_restart_and_restart_larger_than_n():
    a = make_matrix("general", torch.float64, n=40)
    b = _randn(40, 2, torch.float64, torch.Generator().manual_seed(2))
    ref = reference(a, b)
    for restart in (3, 500):
        x, info = krylov_solve(dense_matvec(a), b, method="gmres", restart=restart, rtol=1e-10)
        assert info.converged
        assert rel_err(x, ref) < 1e-7


def test_float32_and_complex64_run():
    for method, kind in (
        ("cg", "hpd"),
        ("gmres", "general"),
        ("bicgstab", "general"),
        ("minres", "indefinite"),
    ):
        a = make_matrix(kind, torch.complex64, n=30)
        b = _randn(30, 2, torch.complex64, torch.Generator().manual_seed(5))
        x, info = krylov_solve(dense_matvec(a), b, method=method, rtol=1e-5)
        assert info.converged, (method, info)
        assert rel_err(x, reference(a, b)) < 2e-3


# ----------------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_warm_start_reduces_iterations(method):
    a = poisson_dense(20)
    b = _randn(400, 1, torch.float64, torch.Generator().manual_seed(6))
    ref = reference(a, b)
    _, cold = krylov_solve(csr_matvec(a), b, method=method, rtol=1e-10)
    x0 = ref + 1e-6 * _randn(400, 1, torch.float64, torch.Generator().manual_seed(7))
    x, warm = krylov_solve(csr_matvec(a), b, method=method, rtol=1e-10, x0=x0)
    assert warm.converged and cold.converged
    assert warm.iterations < cold.iterations
    assert rel_err(x, ref) < 1e-7


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_callback_and_history(method):
    a = poisson_dense(20)
    b = _randn(400, 2, torch.float64, torch.Generator().manual_seed(8))
    calls: list[tuple[int, float]] = []
    x, info = krylov_solve(
        csr_matvec(a),
        b,
        method=method,
        rtol=1e-8,
        check_every=5,
        callback=lambda it, res: calls.append((it, res)),
        record_history=True,
    )
    assert info.converged
    its = [c[0] for c in calls]
    res = [c[1] for c in calls]
    assert its[0] == 0 and res[0] == pytest.approx(1.0)
    assert all(i % 5 == 0 for i in its) and its == sorted(its)
    assert len(calls) == 1 + math.ceil(its[-1] / 5)
    assert its[-1] >= info.iterations
    assert res[-1] <= 1e-8 < res[0]
    # decreasing-ish: each check below the first, and the sequence ends lower than its middle
    assert max(res[1:]) < res[0] and res[-1] < res[len(res) // 2]
    assert info.residual_history == res


def test_no_history_by_default():
    a = poisson_dense(10)
    _, info = krylov_solve(dense_matvec(a), torch.ones(100, 1, dtype=torch.float64), method="cg")
    assert info.residual_history == []


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_check_every_does_not_change_the_answer(method):
    a = poisson_dense(20)
    b = _randn(400, 3, torch.float64, torch.Generator().manual_seed(9))
    x1, i1 = krylov_solve(csr_matvec(a), b, method=method, rtol=1e-9, check_every=1)
    x10, i10 = krylov_solve(csr_matvec(a), b, method=method, rtol=1e-9, check_every=10)
    assert i1.converged and i10.converged
    assert i1.iterations == i10.iterations
    assert torch.allclose(x1, x10, rtol=0, atol=1e-12 * float(x1.abs().max()))


def test_host_synchronisations_only_at_checks(monkeypatch):
    """Reads of device values back to Python happen at the checks only, not once per iteration."""
    a = poisson_dense(20)
    mv = csr_matvec(a)
    b = _randn(400, 2, torch.float64, torch.Generator().manual_seed(10))
    matvecs = [0]

    def counting_matvec(v):
        matvecs[0] += 1
        return mv(v)

    syncs = [0]
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, **kwargs):
            syncs[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    checks = [0]
    for method in ("cg", "bicgstab", "gmres", "minres"):
        syncs[0] = matvecs[0] = checks[0] = 0
        _, info = krylov_solve(
            counting_matvec,
            b,
            method=method,
            rtol=1e-8,
            check_every=7,
            callback=lambda it, res: checks.__setitem__(0, checks[0] + 1),
        )
        assert info.converged
        assert info.iterations > 20
        assert checks[0] <= 1 + math.ceil(info.iterations / 7) + 1
        assert syncs[0] <= checks[0] + 2, (method, syncs[0], checks[0])
        per_iteration = 2 if method == "bicgstab" else 1
        restarts = math.ceil(info.iterations / 30) if method == "gmres" else 0
        assert matvecs[0] <= per_iteration * (info.iterations + 7) + restarts + 2


# ----------------------------------------------------------------------------------------------------
# Preconditioners


def badly_scaled_spd(m: int = 15) -> torch.Tensor:
    p = poisson_dense(m)
    d = 10.0 ** torch.linspace(-2, 2, m * m, dtype=torch.float64)
    d = d[torch.randperm(m * m, generator=torch.Generator().manual_seed(11))]
    return d[:, None] * p * d[None, :]


def test_jacobi_and_chebyshev_reduce_cg_iterations():
    a = badly_scaled_spd()
    n = a.shape[0]
    mv = csr_matvec(a)
    b = _randn(n, 2, torch.float64, torch.Generator().manual_seed(12))
    ref = reference(a, b)
    _, plain = krylov_solve(mv, b, method="cg", rtol=1e-8)
    jac = JacobiPreconditioner(torch.diagonal(a))
    xj, with_jacobi = krylov_solve(mv, b, method="cg", rtol=1e-8, M=jac)
    cheb = ChebyshevPreconditioner(mv, n, torch.float64, "cpu", degree=4, inner=jac)
    xc, with_cheb = krylov_solve(mv, b, method="cg", rtol=1e-8, M=cheb)
    assert with_jacobi.converged and with_cheb.converged
    assert with_jacobi.iterations < plain.iterations / 3
    assert with_cheb.iterations < with_jacobi.iterations / 1.5
    assert rel_err(xj, ref) < 1e-5 and rel_err(xc, ref) < 1e-5
    # plain Chebyshev on the well-scaled Poisson matrix helps CG too
    p = poisson_dense(20)
    pb = _randn(400, 1, torch.float64, torch.Generator().manual_seed(13))
    _, p_plain = krylov_solve(csr_matvec(p), pb, method="cg", rtol=1e-8)
    _, p_cheb = krylov_solve(
        csr_matvec(p),
        pb,
        method="cg",
        rtol=1e-8,
        M=ChebyshevPreconditioner(csr_matvec(p), 400, torch.float64, "cpu"),
    )
    assert p_cheb.converged and p_cheb.iterations < p_plain.iterations / 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_chebyshev_is_a_fixed_hermitian_positive_operator(dtype):
    a = make_matrix("hpd", dtype, n=50)
    mv = dense_matvec(a)
    cheb = ChebyshevPreconditioner(mv, 50, dtype, "cpu", degree=5)
    g = torch.Generator().manual_seed(14)
    u, v = _randn(50, 2, dtype, g), _randn(50, 2, dtype, g)
    mu, mv_ = cheb(u), cheb(v)
    assert torch.equal(cheb(u), mu)
    assert torch.allclose(cheb(u + 2 * v), mu + 2 * mv_, atol=1e-10)
    lhs = (u.conj() * mv_).sum(0)
    rhs = (mu.conj() * v).sum(0)
    assert torch.allclose(lhs, rhs, atol=1e-10)
    assert bool(((u.conj() * mu).sum(0).real > 0).all())
    # as a dense operator: Hermitian positive definite
    pm = cheb(torch.eye(50, dtype=dtype))
    assert torch.allclose(pm, pm.mH, atol=1e-10)
    assert float(torch.linalg.eigvalsh(pm).min()) > 0


def test_power_lmax_estimate():
    a = poisson_dense(20)
    true = float(torch.linalg.eigvalsh(a).max())
    est = power_lmax(csr_matvec(a), 400, torch.float64, "cpu", iters=30)
    assert 0.9 * true < est <= true * (1 + 1e-12)
    a = badly_scaled_spd()
    d = torch.diagonal(a)
    scaled = a / d.sqrt()[:, None] / d.sqrt()[None, :]
    true = float(torch.linalg.eigvalsh(scaled).max())
    est = power_lmax(csr_matvec(a), a.shape[0], torch.float64, "cpu", iters=30, inner=JacobiPreconditioner(d))
    assert 0.8 * true < est <= true * (1 + 1e-12)


def test_preconditioners_reject_bad_input():
    with pytest.raises(InvalidArgumentError, match="preconditioner"):
        JacobiPreconditioner(torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(InvalidArgumentError, match="preconditioner"):
        JacobiPreconditioner(torch.tensor([1.0, float("nan")]))
    with pytest.raises(InvalidArgumentError, match="preconditioner"):
        JacobiPreconditioner(torch.ones(2, 2))
    mv = dense_matvec(poisson_dense(4))
    with pytest.raises(InvalidArgumentError, match="degree"):
        ChebyshevPreconditioner(mv, 16, torch.float64, "cpu", degree=0)
    with pytest.raises(InvalidArgumentError, match="lmin"):
        ChebyshevPreconditioner(mv, 16, torch.float64, "cpu", lmin=2.0, lmax=1.0)
    with pytest.raises(InvalidArgumentError, match="positive definite"):
        power_lmax(dense_matvec(-poisson_dense(4)), 16, torch.float64, "cpu")


# ----------------------------------------------------------------------------------------------------
# Failures are reported, quickly


def test_cg_on_indefinite_matrix_stops_quickly():
    a = make_matrix("indefinite", torch.float64)
    b = _randn(60, 2, torch.float64, torch.Generator().manual_seed(15))
    x, info = krylov_solve(dense_matvec(a), b, method="cg", maxiter=10_000)
    assert info.reason == "indefinite" and not info.converged
    assert info.iterations <= 20
    assert bool(torch.isfinite(x).all())


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_indefinite_preconditioner_is_reported(method):
    a = poisson_dense(10)
    b = torch.ones(100, 1, dtype=torch.float64)
    _, info = krylov_solve(dense_matvec(a), b, method=method, M=lambda r: -r, maxiter=1000)
    assert info.reason == "indefinite" and not info.converged
    assert info.iterations <= 10


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_nan_in_b_stops_at_once(method):
    a = poisson_dense(10)
    b = torch.ones(100, 2, dtype=torch.float64)
    b[3, 1] = float("nan")
    _, info = krylov_solve(dense_matvec(a), b, method=method, maxiter=1000)
    assert info.reason == "nan" and not info.converged
    assert info.iterations == 0
    assert math.isnan(info.residual)


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_nan_during_iteration_stops_at_next_check(method):
    a = poisson_dense(10)
    calls = [0]

    def matvec(v):
        calls[0] += 1
        out = a @ v
        if calls[0] >= 4:
            out[0] = float("inf")
        return out

    _, info = krylov_solve(matvec, torch.ones(100, 1, dtype=torch.float64), method=method, maxiter=10_000)
    assert info.reason == "nan" and not info.converged
    assert info.iterations <= 10
    assert calls[0] <= 25


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_maxiter_reached(method):
    a = poisson_dense(20)
    b = _randn(400, 1, torch.float64, torch.Generator().manual_seed(16))
    x, info = krylov_solve(csr_matvec(a), b, method=method, maxiter=7, rtol=1e-12)
    assert not info.converged and info.reason == "maxiter"
    assert info.iterations == 7
    assert 0 < info.residual < 1
    assert bool(torch.isfinite(x).all())


def test_bicgstab_breakdown_is_reported():
    # A rotation by 90 degrees: rhat^H A p = 0 at the first step for b = e1.
    a = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    _, info = krylov_solve(dense_matvec(a), b, method="bicgstab", maxiter=100)
    assert info.reason == "breakdown" and not info.converged
    assert info.iterations <= 1


def test_gmres_breakdown_on_singular_matrix():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # column 1 is inconsistent
    x, info = krylov_solve(dense_matvec(a), b, method="gmres", maxiter=100)
    assert info.reason == "breakdown" and not info.converged
    assert info.iterations <= 1
    assert torch.equal(x, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------
# Zero columns, one-hot right-hand sides and exact convergence are not failures

# Lower bidiagonal: for b = e_0, BiCGStab's r_1 has r_1[0] = 0, so rhat^H r_1 = 0 with rhat = r_0.
_BIDIAGONAL = [[16.0, 0.0, 0.0], [-3.0, 12.0, 0.0], [0.0, -3.0, 10.0]]
# For b = e_3, rhat = r_0 gives rhat^H A p_k = 0 at a later step while rhat^H r_k != 0.
_SHADOW_LOST = [
    [12.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 8.0, 0.0, 0.0, -1.0, 3.0, 0.0],
    [0.0, 0.0, 10.0, -3.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 10.0, 0.0, 1.0, 1.0],
    [0.0, 0.0, 0.0, 3.0, 8.0, 0.0, 3.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 16.0, 0.0],
    [-3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0],
]


def _one_hot_columns(n: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """For each row i, the right-hand sides [e_i, 0] and [0, e_i]."""
    out = []
    for i in range(n):
        for j in range(2):
            b = torch.zeros(n, 2, dtype=dtype)
            b[i, j] = 1
            out.append(b)
    return out


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
@pytest.mark.parametrize("precond", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("check_every", [1, 10])
def test_diagonal_system_solved_exactly_in_one_step(method, precond, dtype, check_every):
    """One-hot columns next to zero columns: every method solves them in one step, with no failure."""
    d = torch.tensor([2.0, 4.0, 0.5, 8.0, 1.0, 0.25], dtype=torch.float64).to(dtype)  # exact reciprocals
    n = d.shape[0]
    a = torch.diag(d)
    b = torch.zeros(n, 4, dtype=dtype)
    b[1, 0] = 1
    b[4, 2] = -3  # columns 1 and 3 stay zero
    M = JacobiPreconditioner(d) if precond else None
    x, info = krylov_solve(
        dense_matvec(a), b, method=method, rtol=1e-12, M=M, maxiter=50, check_every=check_every
    )
    assert info.converged and info.reason == "converged", info
    assert info.iterations == 1
    assert info.residual == 0.0
    assert torch.equal(x, b / d[:, None])


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
@pytest.mark.parametrize("precond", [False, True])
def test_diagonal_system_with_inexact_reciprocals(method, precond):
    d = torch.tensor([3.0, 7.0, 49.0, 0.1, 5.5], dtype=torch.float64)
    a = torch.diag(d)
    M = JacobiPreconditioner(d) if precond else None
    for b in _one_hot_columns(d.shape[0], torch.float64):
        x, info = krylov_solve(dense_matvec(a), b, method=method, rtol=1e-12, M=M, check_every=1)
        assert info.converged and info.reason == "converged", (b, info)
        assert info.iterations == 1
        assert torch.allclose(x, b / d[:, None], rtol=1e-14, atol=0)


@pytest.mark.parametrize("matrix", [_BIDIAGONAL, _SHADOW_LOST], ids=["rho", "rv"])
@pytest.mark.parametrize("precond", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_bicgstab_renews_an_orthogonal_shadow_residual(matrix, precond, dtype):
    """A shadow residual orthogonal to the residual (or to A p) is replaced: no false "breakdown"."""
    a = torch.tensor(matrix, dtype=torch.float64).to(dtype)
    n = a.shape[0]
    M = JacobiPreconditioner(torch.diagonal(a)) if precond else None
    for b in _one_hot_columns(n, dtype):
        for check_every in (1, 10):
            x, info = krylov_solve(
                dense_matvec(a), b, method="bicgstab", rtol=1e-12, M=M, check_every=check_every
            )
            assert info.converged and info.reason == "converged", (b, info)
            assert info.iterations <= 2 * n
            assert rel_err(x, reference(a, b)) < 1e-10


def test_bicgstab_first_step_orthogonal_shadow_residual():
    """The case of the original report: e_0 against a lower bidiagonal matrix, one column at a time."""
    a = torch.tensor(_BIDIAGONAL, dtype=torch.float64)
    b = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    x, info = krylov_solve(dense_matvec(a), b, method="bicgstab", rtol=1e-13, check_every=1)
    assert info.converged and info.reason == "converged", info
    assert rel_err(x, reference(a, b)) < 1e-12


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_one_hot_columns_next_to_zero_columns(method):
    """Every one-hot right-hand side of a sparse matrix, next to a zero column, converges."""
    if method in ("cg", "minres"):
        a = poisson_dense(3)
    else:
        a = torch.tensor(_SHADOW_LOST, dtype=torch.float64)
    n = a.shape[0]
    for precond in (False, True):
        M = JacobiPreconditioner(torch.diagonal(a)) if precond else None
        for b in _one_hot_columns(n, torch.float64):
            x, info = krylov_solve(dense_matvec(a), b, method=method, rtol=1e-12, M=M, check_every=3)
            assert info.converged and info.reason == "converged", (b, info)
            assert rel_err(x, reference(a, b)) < 1e-10
            zero = b.abs().sum(0) == 0
            assert torch.equal(x[:, zero], torch.zeros(n, 1, dtype=torch.float64))


def test_bicgstab_genuine_breakdown_next_to_zero_and_solved_columns():
    """A column that breaks down from a fresh shadow residual is still reported among good columns."""
    a = torch.tensor(
        [[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]],
        dtype=torch.float64,
    )
    b = torch.zeros(4, 3, dtype=torch.float64)
    b[0, 0] = 1  # the rotation block: rhat^H A r = 0 at the first step
    b[2, 2] = 1  # solved in one step; column 1 is zero
    for check_every in (1, 10):
        x, info = krylov_solve(dense_matvec(a), b, method="bicgstab", maxiter=100, check_every=check_every)
        assert info.reason == "breakdown" and not info.converged
        assert info.iterations <= 1
        assert torch.equal(x[:, 1], torch.zeros(4, dtype=torch.float64))
        assert torch.equal(x[:, 2], torch.tensor([0.0, 0.0, 0.5, 0.0], dtype=torch.float64))


def test_zero_rhs_and_empty():
    a = poisson_dense(5)
    x, info = krylov_solve(dense_matvec(a), torch.zeros(25, 2, dtype=torch.float64), method="cg")
    assert info.converged and info.iterations == 0 and info.residual == 0.0
    assert torch.equal(x, torch.zeros(25, 2, dtype=torch.float64))
    x, info = krylov_solve(dense_matvec(a), torch.zeros(25, 0, dtype=torch.float64), method="gmres")
    assert x.shape == (25, 0) and info.converged


def test_atol():
    a = poisson_dense(10)
    b = torch.ones(100, 1, dtype=torch.float64)
    _, loose = krylov_solve(dense_matvec(a), b, method="cg", rtol=1e-14, atol=1e-2)
    _, tight = krylov_solve(dense_matvec(a), b, method="cg", rtol=1e-14, atol=0.0)
    assert loose.converged and loose.iterations < tight.iterations


# ----------------------------------------------------------------------------------------------------
# Least squares


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_lsqr_matches_lstsq(dtype):
    g = torch.Generator().manual_seed(17)
    a = _randn(30, 10, dtype, g)
    b = _randn(30, 3, dtype, g)
    x, info = lsqr((lambda v: a @ v, lambda u: a.mH @ u), b, rtol=1e-10)
    ref = torch.linalg.lstsq(a, b).solution
    assert info.converged and info.reason == "converged"
    assert x.shape == (10, 3)
    assert rel_err(x, ref) < 1e-7
    true_res = float(((b - a @ ref).norm(dim=0) / b.norm(dim=0)).max())
    assert info.residual == pytest.approx(true_res, rel=1e-6)
    assert info.iterations <= 30


def test_lsqr_consistent_system_warm_start_and_alias():
    g = torch.Generator().manual_seed(18)
    a = _randn(30, 10, torch.float64, g)
    xt = _randn(10, 2, torch.float64, g)
    b = a @ xt
    x, info = least_squares((lambda v: a @ v, lambda u: a.mT @ u), b, rtol=1e-10, record_history=True)
    assert least_squares is lsqr
    assert info.converged and info.residual < 1e-9
    assert rel_err(x, xt) < 1e-8
    assert info.residual_history and info.residual_history[0] == pytest.approx(1.0)
    _, warm = lsqr((lambda v: a @ v, lambda u: a.mT @ u), b, rtol=1e-10, x0=xt + 1e-8)
    assert warm.iterations < info.iterations


def test_lsqr_maxiter_and_nan():
    g = torch.Generator().manual_seed(19)
    a = _randn(30, 10, torch.float64, g)
    b = _randn(30, 1, torch.float64, g)
    _, info = lsqr((lambda v: a @ v, lambda u: a.mT @ u), b, maxiter=3, rtol=1e-12)
    assert not info.converged and info.reason == "maxiter" and info.iterations == 3
    b[0, 0] = float("nan")
    _, info = lsqr((lambda v: a @ v, lambda u: a.mT @ u), b, maxiter=100)
    assert info.reason == "nan" and info.iterations == 0


# ----------------------------------------------------------------------------------------------------
# Argument checking


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": -1.0}, "rtol"),
        ({"atol": -1.0}, "atol"),
        ({"maxiter": 0}, "maxiter"),
        ({"restart": 0}, "restart"),
        ({"check_every": 0}, "check_every"),
        ({"method": "qmr"}, "method"),
        ({"x0": torch.zeros(9, 1, dtype=torch.float64)}, "x0"),
        ({"x0": torch.zeros(4, 1, dtype=torch.float32)}, "x0"),
        ({"x0": torch.zeros(4, 1, dtype=torch.float64, device="meta")}, "x0"),
        ({"M": 3}, "M"),
    ],
)
def test_bad_arguments(kwargs, name):
    a = poisson_dense(2)
    args = {"method": "cg", **kwargs}
    with pytest.raises(InvalidArgumentError, match=name):
        krylov_solve(dense_matvec(a), torch.ones(4, 1, dtype=torch.float64), **args)


def test_bad_b():
    a = poisson_dense(2)
    with pytest.raises(InvalidArgumentError, match="b must be 2-D"):
        krylov_solve(dense_matvec(a), torch.ones(4, dtype=torch.float64), method="cg")
    with pytest.raises(InvalidArgumentError, match="dtype"):
        krylov_solve(dense_matvec(a), torch.ones(4, 1, dtype=torch.int64), method="cg")
    with pytest.raises(InvalidArgumentError, match="rtol"):
        lsqr((dense_matvec(a), dense_matvec(a)), torch.ones(4, 1, dtype=torch.float64), rtol=0)
    with pytest.raises(InvalidArgumentError, match="x0"):
        lsqr((dense_matvec(a), dense_matvec(a)), torch.ones(4, 1), x0=torch.zeros(4, 2))
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        krylov_solve(dense_matvec(a), torch.ones(4, 1, dtype=torch.float64), method="cg", check_every=-1)
