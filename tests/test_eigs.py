"""eigs: eigenpairs of non-Hermitian sparse matrices against torch.linalg.eig, every `which`, shift-invert,
the conjugate-pair rule, eigenvalue and eigenvector gradients (gradcheck, dense reference), refusals."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla
from torch_sla._eigs import _score

F64, C128 = torch.float64, torch.complex128


def unsymmetric(n: int, density: float, dtype=F64, seed: int = 0) -> torch.Tensor:
    """A random sparse non-normal matrix with a spread-out spectrum."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=g) < density
    D = torch.randn(n, n, generator=g, dtype=F64)
    if dtype.is_complex:
        D = torch.complex(D, torch.randn(n, n, generator=g, dtype=F64))
    return (D * mask + 0.5 * torch.eye(n)).to(dtype)


def check_pairs(D: torch.Tensor, w: torch.Tensor, V: torch.Tensor, tol: float = 1e-8) -> None:
    """Unit columns, residuals, and each column's largest entry real positive."""
    assert V.shape == (D.shape[0], w.shape[0]) and w.dtype == V.dtype and w.is_complex()
    normA = torch.linalg.matrix_norm(D).item()
    res = torch.linalg.vector_norm(D.to(V.dtype) @ V - V * w, dim=0)
    assert res.max().item() <= tol * normA
    torch.testing.assert_close(torch.linalg.vector_norm(V, dim=0), torch.ones(w.shape[0], dtype=F64))
    top = V[V.abs().argmax(0), torch.arange(V.shape[1])]
    assert (top.imag.abs() < 1e-12).all() and (top.real > 0).all()


def expected(D: torch.Tensor, which: str, sigma, count: int) -> torch.Tensor:
    ref = torch.linalg.eigvals(D)
    return ref[torch.argsort(_score(ref, which, sigma), descending=True)][:count]


def same_set(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-7) -> None:
    assert a.shape == b.shape
    dist = (a[:, None] - b[None, :]).abs()
    assert dist.min(1).values.max().item() < atol and dist.min(0).values.max().item() < atol


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("which", ["LM", "SM", "LR", "SR", "LI", "SI"])
def test_agrees_with_dense_eig_for_each_which(dtype, which):
    D = unsymmetric(50, 0.15, dtype, seed=1)
    A = sla.SparseTensor.from_dense(D)
    w, V, info = sla.eigs(A, 4, which, return_info=True)
    assert info.converged and info.method == ("shift-invert arnoldi" if which == "SM" else "arnoldi")
    assert len(w) in (4, 5) and len(info.residuals) == len(w) and info.residual <= 1e-10
    same_set(w, expected(D, which, 0j if which == "SM" else None, len(w)))
    check_pairs(D, w, V)
    scores = _score(w, which, 0j if which == "SM" else None)
    assert (scores[:-1] >= scores[1:] - 1e-8).all()  # best first


@pytest.mark.parametrize("dtype, sigma", [(F64, 0.3), (F64, 0.3 + 0.2j), (C128, 0.3), (C128, -0.5 + 1.0j)])
def test_shift_invert_finds_the_eigenvalues_nearest_sigma(dtype, sigma):
    D = unsymmetric(40, 0.2, dtype, seed=2)
    A = sla.SparseTensor.from_dense(D)
    w, V, info = sla.eigs(A, 3, sigma=sigma, return_info=True)
    assert info.method == "shift-invert arnoldi" and info.sigma == complex(sigma)
    same_set(w, expected(D, "LM", complex(sigma), len(w)))
    check_pairs(D, w, V)
    d = (w - sigma).abs()
    assert (d[:-1] <= d[1:] + 1e-10).all()


def test_conjugate_pair_split_by_the_cut_is_returned_whole():
    # real block-diagonal: 5, 4 +- 1i, 3, 2 +- 0.5i, then small real eigenvalues
    n = 30
    D = torch.diag(torch.linspace(0.1, 1.0, n, dtype=F64))
    D[0, 0] = 5.0
    D[1:3, 1:3] = torch.tensor([[4.0, 1.0], [-1.0, 4.0]])
    D[3, 3] = 3.0
    D[4:6, 4:6] = torch.tensor([[2.0, 0.5], [-0.5, 2.0]])
    D[0, 7] = D[9, 2] = 0.3  # not normal
    A = sla.SparseTensor.from_dense(D)
    for k, want in [
        (1, [5]),
        (2, [5, 4 + 1j, 4 - 1j]),
        (3, [5, 4 + 1j, 4 - 1j]),
        (4, [5, 4 + 1j, 4 - 1j, 3]),
    ]:
        w = sla.eigs(A, k, return_eigenvectors=False)
        torch.testing.assert_close(w, torch.tensor(want, dtype=C128), atol=1e-9, rtol=0)
    w = sla.eigs(A, 5, return_eigenvectors=False)
    assert len(w) == 6 and w[4].imag > 0 and w[5].imag < 0  # positive imaginary part first
    w, V = sla.eigs(A, 5)
    assert (w[[0, 3]].imag == 0).all() and (V[:, [0, 3]].imag == 0).all()  # real pairs are exactly real
    check_pairs(D, w, V)
    # LI: conjugates are not tied, so nothing is added
    w = sla.eigs(A, 2, "LI", return_eigenvectors=False)
    torch.testing.assert_close(w, torch.tensor([4 + 1j, 2 + 0.5j], dtype=C128), atol=1e-9, rtol=0)


def test_aliases_method_and_small_matrices_use_the_dense_solver():
    D = unsymmetric(40, 0.2, C128, seed=4)
    A = sla.SparseTensor.from_dense(D)
    torch.testing.assert_close(A.eigs(3, "largest")[0], sla.eigs(A, 3, "LM")[0])
    torch.testing.assert_close(sla.eigs(A, 3, "smallest")[0], sla.eigs(A, 3, "SM")[0])
    Ds = unsymmetric(12, 0.3, F64, seed=5)
    w, V, info = sla.eigs(sla.SparseTensor.from_dense(Ds), 3, "LR", return_info=True)
    assert info.method == "dense"  # the default basis (ncv = min(n, 20)) is the whole space
    same_set(w, expected(Ds, "LR", None, len(w)), atol=1e-12)
    check_pairs(Ds, w, V, tol=1e-13)
    w2, info2 = sla.eigs(
        sla.SparseTensor.from_dense(Ds), 3, "LR", ncv=8, return_eigenvectors=False, return_info=True
    )
    assert info2.method == "arnoldi"
    torch.testing.assert_close(w2, w, atol=1e-9, rtol=0)


def test_nonconvergence_warns_or_raises():
    D = unsymmetric(60, 0.1, F64, seed=6)
    A = sla.SparseTensor.from_dense(D)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        w, info = sla.eigs(A, 4, "SR", maxiter=1, ncv=7, return_eigenvectors=False, return_info=True)
    assert not info.converged and info.iterations == 1 and "maxiter" in info.reason
    with pytest.raises(sla.ConvergenceError, match=r"eigs: arnoldi did not converge.*Raise maxiter"):
        sla.eigs(A, 4, "SR", maxiter=1, ncv=7, on_fail="raise")


# -- gradients -------------------------------------------------------------------------------------------
CASES = [
    ({"ncv": 8}, "arnoldi"),
    ({"sigma": 0.3, "ncv": 8}, "shift-invert"),
    ({"which": "LI", "ncv": 8}, "arnoldi LI"),
    ({}, "dense"),
]


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("kw", [c[0] for c in CASES], ids=[c[1] for c in CASES])
def test_eigenvalue_gradcheck(dtype, kw):
    n = 16 if kw else 8
    A = sla.SparseTensor.from_dense(unsymmetric(n, 0.25, dtype, seed=3))
    v = A.values.clone().requires_grad_()

    def f(vv):
        w = sla.eigs(A.with_values(vv), 2, tol=1e-13, return_eigenvectors=False, **kw)
        return w if dtype.is_complex else torch.stack([w.real, w.imag, w.abs() ** 2])

    # the Krylov paths in fast mode (random directions), the dense one in full
    assert torch.autograd.gradcheck(f, (v,), atol=1e-6, fast_mode=bool(kw))


@pytest.mark.parametrize("dtype", [F64, C128])
def test_eigenvalue_gradient_matches_dense_eig(dtype):
    D = unsymmetric(40, 0.15, dtype, seed=7)
    A = sla.SparseTensor.from_dense(D)
    v = A.values.clone().requires_grad_()
    w = sla.eigs(A.with_values(v), 3, return_eigenvectors=False)
    weights = torch.arange(1, len(w) + 1, dtype=F64)
    loss = (weights * (w.abs() ** 2 + w.real * w.imag)).sum()
    (gv,) = torch.autograd.grad(loss, v)
    Dr = D.clone().requires_grad_()
    ref = torch.linalg.eigvals(Dr)
    idx = [int((ref.detach() - x).abs().argmin()) for x in w.detach()]
    r = ref[idx]
    (gd,) = torch.autograd.grad((weights * (r.abs() ** 2 + r.real * r.imag)).sum(), Dr)
    assert gv.dtype == dtype
    torch.testing.assert_close(gv, gd[A.pattern.row, A.pattern.col], rtol=1e-6, atol=1e-8)


def test_only_eigenvalues_with_a_gradient_are_differentiated():
    A = sla.SparseTensor.from_dense(unsymmetric(40, 0.15, F64, seed=8))
    v = A.values.clone().requires_grad_()
    w, V = sla.eigs(A.with_values(v), 3)
    (w[0].real * 2).backward()  # the vectors are returned but not used: fine
    assert v.grad is not None and torch.isfinite(v.grad).all()
    with torch.no_grad():
        assert sla.eigs(A.with_values(v), 3)[0].grad_fn is None


def jordan(n: int) -> torch.Tensor:
    D = torch.diag(torch.linspace(0, 2, n, dtype=F64))
    D[n - 3 :, n - 3 :] = torch.tensor([[5.0, 1, 0], [0, 5, 1], [0, 0, 5]])  # a 3x3 Jordan block at 5
    D[0, 5], D[4, 1] = 0.3, -0.2
    return D


@pytest.mark.parametrize("kw", [{}, {"ncv": 40}, {"sigma": 4.9}], ids=["arnoldi", "dense", "shift-invert"])
def test_defective_eigenvalue_gradient_is_refused(kw):
    A = sla.SparseTensor.from_dense(jordan(40))
    v = A.values.clone().requires_grad_()
    w = sla.eigs(A.with_values(v), 2, return_eigenvectors=False, **kw)
    assert (w[0] - 5).abs() < 1e-4
    with pytest.raises(
        sla.InvalidArgumentError, match=r"A: eigenvalue 0 \(lambda = 5.*defective or repeated"
    ):
        (w[0].abs() ** 2).backward(retain_graph=True)
    # another, simple eigenvalue of the same matrix still has its gradient
    w2 = sla.eigs(A.with_values(v), 1, sigma=-0.1, return_eigenvectors=False)
    w2.real.sum().backward()
    assert torch.isfinite(v.grad).all()


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize(
    "kw", [c[0] for c in CASES[:2] + CASES[3:]], ids=["arnoldi", "shift-invert", "dense"]
)
def test_eigenvector_gradcheck(dtype, kw):
    n = 16 if kw else 8
    A = sla.SparseTensor.from_dense(unsymmetric(n, 0.25, dtype, seed=3))
    v = A.values.clone().requires_grad_()

    def f(vv):
        w, V = sla.eigs(A.with_values(vv), 2, tol=1e-13, **kw)
        return torch.cat([w, V.reshape(-1)])

    assert torch.autograd.gradcheck(f, (v,), atol=1e-6, fast_mode=bool(kw))


@pytest.mark.parametrize("dtype", [F64, C128])
def test_eigenvector_gradient_matches_dense_eig(dtype):
    # |V|^2 does not depend on the phase convention, so torch.linalg.eig's gradient is the reference
    D = unsymmetric(40, 0.15, dtype, seed=7)
    A = sla.SparseTensor.from_dense(D)
    v = A.values.clone().requires_grad_()
    w, V = sla.eigs(A.with_values(v), 3)
    weights = torch.randn(V.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    (gv,) = torch.autograd.grad((weights * V.abs() ** 2).sum() + w.real.sum(), v)
    Dr = D.clone().requires_grad_()
    L, R = torch.linalg.eig(Dr)
    idx = [int((L.detach() - x).abs().argmin()) for x in w.detach()]
    (gd,) = torch.autograd.grad((weights * R[:, idx].abs() ** 2).sum() + L[idx].real.sum(), Dr)
    torch.testing.assert_close(gv, gd[A.pattern.row, A.pattern.col], rtol=1e-6, atol=1e-7)


def test_eigenvector_gradient_of_a_defective_eigenvalue_and_double_backward_are_refused():
    A = sla.SparseTensor.from_dense(jordan(40))
    v = A.values.clone().requires_grad_()
    w, V = sla.eigs(A.with_values(v), 1)
    with pytest.raises(sla.InvalidArgumentError, match="defective or repeated"):
        V[0, 0].real.backward()
    A2 = sla.SparseTensor.from_dense(unsymmetric(40, 0.15, F64, seed=9))
    v2 = A2.values.clone().requires_grad_()
    with pytest.raises(NotImplementedError, match="second derivatives are not supported"):
        torch.autograd.grad(sla.eigs(A2.with_values(v2), 2)[0].real.sum(), v2, create_graph=True)


def test_repeated_eigenvalue_gradient_is_refused():
    D = jordan(40)
    D[-2, -1] = 0.0
    D[-3, -2] = 0.0  # 5 is now a triple semisimple eigenvalue: no derivative
    A = sla.SparseTensor.from_dense(D)
    v = A.values.clone().requires_grad_()
    for kw in ({}, {"ncv": 40}):
        w, V = sla.eigs(A.with_values(v), 1, **kw)
        with pytest.raises(
            sla.InvalidArgumentError, match=r"A: eigenvalue 0 \(lambda = 5.*defective or repeated \(another"
        ):
            w.real.sum().backward(retain_graph=True)
        with pytest.raises(sla.InvalidArgumentError, match="defective or repeated"):
            V.real.sum().backward()


# -- errors ----------------------------------------------------------------------------------------------
def test_bad_arguments():
    D = unsymmetric(10, 0.3, F64)
    A = sla.SparseTensor.from_dense(D)
    bad = [
        ({"k": 0}, r"k: must satisfy 1 <= k <= n - 2 = 8 for a \(10, 10\) matrix, got 0"),
        ({"k": -1}, "k: must satisfy"),
        ({"k": 9}, "k: must satisfy 1 <= k <= n - 2 = 8"),
        ({"k": 2.0}, "k: expected an integer"),
        ({"which": "BE"}, "which: expected one of"),
        ({"which": "LR", "sigma": 1.0}, "which: with sigma only 'LM'"),
        ({"sigma": float("nan")}, "sigma: must be finite"),
        ({"sigma": "0"}, "sigma: expected a real or complex number"),
        ({"sigma": torch.ones(2)}, "sigma: expected a number"),
        ({"ncv": 2}, r"ncv: must satisfy 2 < ncv <= n = 10"),
        ({"ncv": 11}, "ncv: must satisfy"),
        ({"tol": -1.0}, "tol: must be"),
        ({"maxiter": 0}, "maxiter: must lie in"),
        ({"on_fail": "ignore"}, "on_fail: expected"),
        ({"v0": torch.ones(3)}, r"v0: expected shape \(10,\)"),
        ({"v0": torch.zeros(10), "ncv": 6}, "v0: must be finite and nonzero"),
    ]
    for kw, msg in bad:
        with pytest.raises(sla.InvalidArgumentError, match=msg):
            sla.eigs(A, **{"k": 2, **kw})
    with pytest.raises(sla.InvalidArgumentError, match=r"A: eigs needs a square matrix, got shape \(3, 4\)"):
        sla.eigs(sla.SparseTensor.from_dense(torch.ones(3, 4, dtype=F64)), 1)
    batch = sla.SparseTensor(torch.ones(2, 10, dtype=F64), torch.arange(10), torch.arange(10), (2, 10, 10))
    with pytest.raises(sla.InvalidArgumentError, match="A: eigs takes one matrix, got a batch"):
        sla.eigs(batch, 2)
    for x in (float("nan"), float("inf")):
        Dn = D.clone()
        Dn[0, 0] = x
        with pytest.raises(sla.InvalidArgumentError, match="A.values: contains NaN or Inf"):
            sla.eigs(sla.SparseTensor.from_dense(Dn), 2)


def test_v0_and_the_zero_matrix():
    D = unsymmetric(40, 0.15, F64, seed=10)
    A = sla.SparseTensor.from_dense(D)
    w1 = sla.eigs(A, 3, return_eigenvectors=False)
    w2 = sla.eigs(A, 3, return_eigenvectors=False, v0=torch.arange(40, dtype=F64) + 1)
    torch.testing.assert_close(w1, w2, atol=1e-9, rtol=0)
    Z = sla.SparseTensor(
        torch.zeros(3, dtype=F64), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), (30, 30)
    )
    w, V = sla.eigs(Z, 2)
    assert (w == 0).all() and V.shape == (30, 2)


def test_smallest_magnitude_of_a_singular_matrix_and_transforms_are_refused():
    D = unsymmetric(30, 0.2, F64, seed=11)
    D[:, 4] = 0  # singular: SM runs shift-invert at 0
    with pytest.raises(sla.SingularMatrixError):
        sla.eigs(sla.SparseTensor.from_dense(D), 2, "SM")
    A = sla.SparseTensor.from_dense(unsymmetric(30, 0.2, F64, seed=12))
    with pytest.raises(sla.InvalidArgumentError, match="A: eigs does not run under torch.func"):
        torch.func.grad(lambda v: sla.eigs(A.with_values(v), 2)[0].real.sum())(A.values)


def test_info_and_hermitian_input():
    g = torch.Generator().manual_seed(13)
    B = torch.randn(40, 40, dtype=F64, generator=g) * (torch.rand(40, 40, generator=g) < 0.1)
    D = B + B.T + torch.diag(torch.arange(40, dtype=F64))
    w, V, info = sla.eigs(sla.SparseTensor.from_dense(D), 3, "LR", return_info=True)
    ref = torch.linalg.eigvalsh(D).flip(0)[:3]
    torch.testing.assert_close(w, ref.to(C128), atol=1e-9, rtol=0)
    assert (w.imag == 0).all() and info.which == "LR" and info.sigma is None
    assert info.nconv == 3 and info.matvecs >= info.iterations >= 1 and info.reason == "converged"
