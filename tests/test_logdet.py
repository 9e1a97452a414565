"""Determinants, selected inversion and the stochastic log-determinant: values against dense torch.linalg,
exact gradients (gradcheck, float64 and complex128), singular cases, batches and bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

import torch_sla as sla
from conftest import poisson2d, random_sparse, registry_cases

F64, C128 = torch.float64, torch.complex128

# Every (backend, method) whose backend declares the operation for that method.
LOGDET_CASES = [
    (b, m) for b, m in registry_cases("direct") if sla.backends()[b].supports_operation("logdet", m)
]
SELINV_CASES = [
    (b, m) for b, m in registry_cases("direct") if sla.backends()[b].supports_operation("selected_inverse", m)
]


def make(kind: str, n: int = 24, dtype=F64, seed: int = 0) -> torch.Tensor:
    """Dense test matrices: 'spd', 'indefinite' (Hermitian), 'general' (unsymmetric, either sign of det)."""
    if kind == "spd":
        return random_sparse(n, 0.15, dtype=dtype, kind="spd", seed=seed)
    if kind == "indefinite":
        return random_sparse(n, 0.15, dtype=dtype, kind="symmetric", seed=seed)
    g = torch.Generator().manual_seed(seed)
    d = random_sparse(n, 0.15, dtype=dtype, kind="general", seed=seed)
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(dtype)
    return d * signs[:, None]  # flipping rows flips the determinant's sign at random


KINDS_FOR = {"cholesky": ("spd",), "ldl": ("spd", "indefinite"), "lu": ("spd", "indefinite", "general")}


@pytest.mark.parametrize("backend,method", LOGDET_CASES)
@pytest.mark.parametrize("dtype", [F64, C128])
def test_slogdet_matches_dense(backend, method, dtype):
    for kind in KINDS_FOR[method]:
        for seed in range(3):
            d = make(kind, dtype=dtype, seed=seed)
            sign, logabs = sla.slogdet(sla.SparseTensor.from_dense(d), backend=backend, method=method)
            ref_sign, ref_logabs = torch.linalg.slogdet(d)
            torch.testing.assert_close(logabs, ref_logabs.to(logabs.dtype), rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(sign, ref_sign, rtol=1e-10, atol=1e-10)


def test_sign_of_det_on_100_random_unsymmetric_matrices():
    wrong = []
    for seed in range(100):
        g = torch.Generator().manual_seed(1000 + seed)
        n = int(torch.randint(3, 30, (), generator=g))
        d = torch.randn(n, n, generator=g, dtype=F64) * (torch.rand(n, n, generator=g) < 0.3)
        d = d + torch.diag(torch.randn(n, generator=g, dtype=F64) * 3)
        d = d[torch.randperm(n, generator=g)]  # a random row permutation: odd or even parity
        ref_sign, ref_logabs = torch.linalg.slogdet(d)
        if ref_sign == 0 or not math.isfinite(ref_logabs):
            continue
        sign, logabs = sla.slogdet(sla.SparseTensor.from_dense(d))
        if float(sign) != float(ref_sign) or abs(float(logabs - ref_logabs)) > 1e-8 * max(
            1, abs(float(ref_logabs))
        ):
            wrong.append((seed, float(sign), float(ref_sign)))
    assert not wrong, wrong


def test_logdet_of_a_huge_determinant_does_not_overflow():
    n = 100_000
    i = torch.arange(n)
    A = sla.SparseTensor(torch.full((n,), 10.0, dtype=F64), i, i, (n, n))  # det = 10^n overflows double
    sign, logabs = sla.slogdet(A)
    assert float(sign) == 1.0
    assert float(logabs) == pytest.approx(n * math.log(10.0), rel=1e-12)
    assert float(sla.logdet(A)) == pytest.approx(n * math.log(10.0), rel=1e-12)
    assert math.isinf(float(sla.det(A)))  # det itself overflows, as documented
    A2 = A.with_values(torch.full((n,), -0.1, dtype=F64))  # 10^-n underflows; sign (-1)^n
    sign, logabs = sla.slogdet(A2)
    assert float(sign) == 1.0 and float(logabs) == pytest.approx(-n * math.log(10.0), rel=1e-12)


@pytest.mark.parametrize("dtype", [F64, C128])
def test_singular_matrix_gives_zero_sign_and_minus_inf(dtype):
    d = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 3.0]], dtype=dtype)  # rank 2
    A = sla.SparseTensor.from_dense(d)
    sign, logabs = sla.slogdet(A)
    assert float(abs(sign)) == 0.0 and float(logabs) == -math.inf
    assert torch.isneginf(sla.logdet(A).real) if dtype.is_complex else float(sla.logdet(A)) == -math.inf
    assert float(abs(sla.det(A))) == 0.0
    v = A.values.clone().requires_grad_()
    with pytest.raises(sla.SingularMatrixError, match="singular"):
        sla.slogdet(A.with_values(v))[1].backward()
    # Structurally singular (an empty row): the same answer, no analysis.
    S = sla.SparseTensor(torch.ones(2, dtype=dtype), torch.tensor([0, 1]), torch.tensor([0, 0]), (2, 2))
    sign, logabs = sla.slogdet(S)
    assert float(abs(sign)) == 0.0 and float(logabs) == -math.inf
    # The solve of a singular matrix still raises.
    with pytest.raises(sla.SingularMatrixError):
        sla.solve(A, torch.ones(3, dtype=dtype))


def test_logdet_follows_torch_for_negative_and_complex_determinants():
    d = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64) + torch.diag(torch.tensor([0.1, 0.2], dtype=F64))
    A = sla.SparseTensor.from_dense(d)
    assert math.isnan(float(sla.logdet(A))) and math.isnan(float(torch.logdet(d)))
    torch.testing.assert_close(sla.det(A), torch.linalg.det(d))
    c = make("general", 12, C128, seed=3)
    torch.testing.assert_close(sla.logdet(sla.SparseTensor.from_dense(c)), torch.logdet(c))
    torch.testing.assert_close(sla.det(sla.SparseTensor.from_dense(c)), torch.linalg.det(c))


@pytest.mark.parametrize("backend,method", LOGDET_CASES)
@pytest.mark.parametrize("dtype", [F64, C128])
def test_slogdet_gradcheck_and_dense_gradient(backend, method, dtype):
    kind = KINDS_FOR[method][-1]
    d = make(kind, 10, dtype, seed=5)
    A = sla.SparseTensor.from_dense(d)
    p = A.pattern

    def f(v):
        sign, logabs = sla.slogdet(A.with_values(v), backend=backend, method=method, check_symmetry=False)
        if dtype.is_complex:
            return logabs, torch.view_as_real(sign)
        return logabs

    v = A.values.clone().requires_grad_()
    if method in ("cholesky", "ldl"):  # only Hermitian perturbations keep the method's reading exact
        torch.autograd.gradcheck(lambda w: f(_hermitian_values(A, w)), (v,))
    else:
        torch.autograd.gradcheck(f, (v,))
    # Against the dense gradient: d log|det| / dA = conj(A^{-T}) on the pattern.
    logabs = sla.slogdet(A.with_values(v), backend=backend, method=method)[1]
    (g,) = torch.autograd.grad(logabs, v)
    dd = d.clone().requires_grad_()
    (gd,) = torch.autograd.grad(torch.linalg.slogdet(dd)[1], dd)
    torch.testing.assert_close(g, gd[p.row, p.col], rtol=1e-9, atol=1e-12)


def _hermitian_values(A: sla.SparseTensor, w: torch.Tensor) -> torch.Tensor:
    """Values of (B + B^H) / 2 where B has values w on A's (symmetric) pattern."""
    pt, perm = A.pattern.transpose()
    return 0.5 * (w + w[perm].conj())


@pytest.mark.parametrize("dtype", [F64, C128])
def test_logdet_and_det_gradcheck(dtype):
    d = make("spd", 8, dtype, seed=2)
    A = sla.SparseTensor.from_dense(d)
    v = A.values.clone().requires_grad_()
    torch.autograd.gradcheck(lambda w: torch.view_as_real(sla.det(A.with_values(w)) * (1 + 0j)), (v,))
    if dtype.is_complex:
        torch.autograd.gradcheck(lambda w: torch.view_as_real(sla.logdet(A.with_values(w))), (v,))
    else:
        torch.autograd.gradcheck(lambda w: sla.logdet(A.with_values(w)), (v,))


def test_batched_slogdet_and_gradient():
    d = make("general", 12, F64, seed=1)
    A = sla.SparseTensor.from_dense(d)
    vals = torch.stack([A.values, 2 * A.values, -A.values]).requires_grad_()
    sign, logabs = sla.slogdet(A.with_values(vals))
    dense = torch.stack([d, 2 * d, -d])
    ref_sign, ref_logabs = torch.linalg.slogdet(dense)
    torch.testing.assert_close(sign, ref_sign)
    torch.testing.assert_close(logabs, ref_logabs)
    torch.autograd.gradcheck(lambda w: sla.slogdet(A.with_values(w))[1], (vals,))


@pytest.mark.parametrize("backend,method", SELINV_CASES)
@pytest.mark.parametrize("dtype", [F64, C128])
def test_selected_inverse_and_diagonal_match_dense(backend, method, dtype):
    for kind in KINDS_FOR[method]:
        d = make(kind, 20, dtype, seed=7)
        A = sla.SparseTensor.from_dense(d)
        inv = torch.linalg.inv(d)
        S = sla.selected_inverse(A, backend=backend, method=method)
        assert S.pattern is A.pattern
        torch.testing.assert_close(S.values, inv[A.pattern.row, A.pattern.col], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(sla.diag_inverse(A, backend=backend, method=method), inv.diagonal())


def test_inverse_entries_anywhere_and_unsymmetric_patterns():
    d = make("general", 16, F64, seed=4)
    d[3, 9] = 2.5  # an entry whose mirror is not stored
    d[9, 3] = 0.0
    A = sla.SparseTensor.from_dense(d)
    inv = torch.linalg.inv(d)
    rows = torch.tensor([0, 15, 3, 9, 7, 7])
    cols = torch.tensor([15, 0, 9, 3, 7, 2])
    torch.testing.assert_close(sla.inverse_entries(A, rows, cols), inv[rows, cols])
    S = sla.selected_inverse(A)
    torch.testing.assert_close(S.values, inv[A.pattern.row, A.pattern.col])


@pytest.mark.parametrize("dtype", [F64, C128])
def test_selected_inverse_gradcheck(dtype):
    d = make("general", 8, dtype, seed=9)
    A = sla.SparseTensor.from_dense(d)
    v = A.values.clone().requires_grad_()

    def sel(w):
        out = sla.selected_inverse(A.with_values(w)).values
        return torch.view_as_real(out) if dtype.is_complex else out

    def diag(w):
        out = sla.diag_inverse(A.with_values(w))
        return torch.view_as_real(out) if dtype.is_complex else out

    torch.autograd.gradcheck(sel, (v,))
    torch.autograd.gradcheck(diag, (v,))
    # Against dense: the gradient of sum(w_k * Z[r_k, c_k]).
    wts = torch.randn(A.nnz, dtype=dtype, generator=torch.Generator().manual_seed(0))
    (g,) = torch.autograd.grad((sla.selected_inverse(A.with_values(v)).values * wts).sum().real, v)
    dd = d.clone().requires_grad_()
    inv = torch.linalg.inv(dd)
    (gd,) = torch.autograd.grad((inv[A.pattern.row, A.pattern.col] * wts).sum().real, dd)
    torch.testing.assert_close(g, gd[A.pattern.row, A.pattern.col], rtol=1e-9, atol=1e-12)


def test_batched_selected_inverse():
    d = make("spd", 10, F64, seed=3)
    A = sla.SparseTensor.from_dense(d)
    vals = torch.stack([A.values, 3 * A.values]).requires_grad_()
    got = sla.diag_inverse(A.with_values(vals))
    torch.testing.assert_close(
        got, torch.stack([torch.linalg.inv(d).diagonal(), torch.linalg.inv(3 * d).diagonal()])
    )
    torch.autograd.gradcheck(lambda w: sla.diag_inverse(A.with_values(w)), (vals,))


def test_methods_on_sparse_tensor():
    A = poisson2d(4)
    d = A.to_dense()
    torch.testing.assert_close(A.logdet(), torch.logdet(d))
    torch.testing.assert_close(A.slogdet()[1], torch.linalg.slogdet(d)[1])
    torch.testing.assert_close(A.det(), torch.linalg.det(d))
    torch.testing.assert_close(A.diag_inverse(), torch.linalg.inv(d).diagonal())
    torch.testing.assert_close(A.selected_inverse().values, torch.linalg.inv(d)[A.pattern.row, A.pattern.col])


def test_bad_arguments():
    A = poisson2d(3)
    with pytest.raises(sla.InvalidArgumentError, match="square"):
        sla.slogdet(sla.SparseTensor.from_dense(torch.ones(2, 3, dtype=F64)))
    with pytest.raises(sla.InvalidArgumentError, match="method"):
        sla.slogdet(A, method="cg")
    with pytest.raises(sla.InvalidArgumentError, match="slq"):
        sla.slogdet(A, method="slq")
    with pytest.raises(sla.InvalidArgumentError, match="rows"):
        sla.inverse_entries(A, torch.tensor([0, 9]), torch.tensor([0, 0]))
    with pytest.raises(sla.InvalidArgumentError, match="rows, cols"):
        sla.inverse_entries(A, torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(sla.InvalidArgumentError, match="NaN"):
        sla.logdet(A.with_values(A.values * math.nan))
    with pytest.raises(sla.InvalidArgumentError, match="symmetric"):
        sla.slogdet(sla.SparseTensor.from_dense(make("general", 6)), method="cholesky")
    with pytest.raises(sla.NotPositiveDefiniteError):
        sla.slogdet(sla.SparseTensor.from_dense(make("indefinite", 6)), method="cholesky")
    # auto on an indefinite matrix with a positive diagonal: Cholesky breaks down, LU gives the answer.
    d = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)
    torch.testing.assert_close(sla.slogdet(sla.SparseTensor.from_dense(d))[0], torch.tensor(-1.0, dtype=F64))


def test_refuses_to_factor_beyond_the_memory_budget_and_points_to_slq():
    A = poisson2d(20)
    choice = sla.explain(A, operation="logdet")
    predicted = choice.impl.predicted_solve_bytes(A, choice.method, 1)
    if predicted < 0:  # an Eigen-only build: no backend predicts factor sizes, so no budget can be checked
        pytest.skip(f"backend {choice.backend!r} of this build gives no factor-size prediction")
    old = sla.get_memory_budget()
    try:
        sla.set_memory_budget(0.5 * predicted)  # the pattern fits, the factors do not
        with pytest.raises(sla.InvalidArgumentError, match="slq"):
            sla.logdet(A)
    finally:
        sla.set_memory_budget(old)


# -- the stochastic estimate ---------------------------------------------------------------------------
def test_slq_estimate_is_within_its_standard_error_and_reproducible():
    A = poisson2d(30)
    exact = float(torch.linalg.slogdet(A.to_dense())[1])
    est, se = sla.logdet(A, method="slq", probes=64, lanczos_steps=30, seed=0)
    assert abs(float(est) - exact) < 4 * float(se) and float(se) < 0.01 * abs(exact)
    est2, se2 = sla.logdet(A, method="slq", probes=64, lanczos_steps=30, seed=0)
    assert float(est2) == float(est) and float(se2) == float(se)
    c = sla.explain(A, operation="logdet", method="slq")
    assert c.kind == "stochastic" and any("APPROXIMATE" in r for r in c.reasons)


def test_slq_gradient_is_an_unbiased_estimate_of_the_exact_one():
    A = poisson2d(8)
    v = A.values.clone().requires_grad_()
    est, _ = sla.logdet(A.with_values(v), method="slq", probes=4000, seed=1)
    est.backward()
    exact = torch.linalg.inv(A.to_dense()).T[A.pattern.row, A.pattern.col]
    assert float((v.grad - exact).norm() / exact.norm()) < 0.1


def test_slq_refuses_what_it_cannot_estimate():
    A = poisson2d(5)
    with pytest.raises(sla.InvalidArgumentError, match="positive definite"):
        sla.logdet(A.with_values(-A.values), method="slq", seed=0)
    with pytest.raises(sla.InvalidArgumentError, match="symmetric"):
        sla.logdet(sla.SparseTensor.from_dense(make("general", 6)), method="slq")
    with pytest.raises(sla.InvalidArgumentError, match="probes"):
        sla.logdet(A, method="slq", probes=1)


def test_hermitian_method_on_a_pattern_without_mirrored_entries():
    # Symmetric values, but one mirrored pair stored on one side only (the other is an absent zero).
    d = make("spd", 8, F64, seed=11)
    d[0, 5] = d[5, 0] = 0.0
    A0 = sla.SparseTensor.from_dense(d)
    extra = sla.SparseTensor(
        torch.cat([A0.values, torch.zeros(1, dtype=F64)]),
        torch.cat([A0.pattern.row, torch.tensor([0])]),
        torch.cat([A0.pattern.col, torch.tensor([5])]),
        (8, 8),
    )  # (0, 5) stored as an explicit zero, (5, 0) absent
    assert not extra.pattern.is_structurally_symmetric
    for method in ("cholesky", "ldl", "lu"):
        v = extra.values.clone().requires_grad_()
        sign, logabs = sla.slogdet(extra.with_values(v), method=method)
        torch.testing.assert_close(logabs, torch.linalg.slogdet(d)[1])
        logabs.backward()
        inv = torch.linalg.inv(d)
        torch.testing.assert_close(v.grad, inv.T[extra.pattern.row, extra.pattern.col])
