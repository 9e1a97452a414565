"""eigsh and svds: agreement with dense eigh/svd, gradients (gradcheck through Hermitian
parametrizations, since only Hermitian perturbations are admissible), degenerate eigenvalues, and errors."""

from __future__ import annotations

import os
import runpy
import sys
import warnings

import pytest
import torch

import torch_sla as sla
from conftest import poisson2d

F64, C128 = torch.float64, torch.complex128
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hermitian_sparse(n: int, density: float, seed: int, dtype=F64) -> torch.Tensor:
    """A dense Hermitian matrix with a sparse pattern, a full diagonal and well separated eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n, n, dtype=dtype, generator=g) * (torch.rand(n, n, generator=g) < density)
    return D + D.mH + torch.diag(torch.arange(n, dtype=F64).to(dtype))


def mass_matrix(n: int) -> torch.Tensor:
    return (
        2.0 * torch.eye(n, dtype=F64)
        + 0.4 * torch.diag(torch.ones(n - 1, dtype=F64), 1)
        + 0.4 * torch.diag(torch.ones(n - 1, dtype=F64), -1)
    )


def hermitian_parametrization(A: sla.SparseTensor):
    """``p -> values`` with ``values`` Hermitian on A's (structurally symmetric) pattern."""
    _, perm = A.pattern.transpose()

    def herm(p):
        return (p + p[perm].conj()) / 2

    return herm


def dense_reference(D, k, which, sigma=None, Mden=None):
    if Mden is None:
        lam, V = torch.linalg.eigh(D)
    else:
        L = torch.linalg.cholesky(Mden)
        C = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, D, upper=False).mH, upper=False)
        lam, Y = torch.linalg.eigh(C)
        V = torch.linalg.solve_triangular(L.mH, Y, upper=True)
    if sigma is not None:
        idx = torch.argsort((lam - sigma).abs())[:k]
    elif which in ("LA", "largest"):
        idx = torch.argsort(lam, descending=True)[:k]
    elif which in ("SA", "smallest"):
        idx = torch.argsort(lam)[:k]
    elif which == "LM":
        idx = torch.argsort(lam.abs(), descending=True)[:k]
    else:
        idx = torch.argsort(lam.abs())[:k]
    idx = idx[torch.argsort(lam[idx])]
    return lam[idx], V[:, idx]


def projector(V, Mden=None):
    return V @ V.mH if Mden is None else V @ V.mH @ Mden


CASES = [
    ({"which": "LA", "method": "lanczos"}, None),
    ({"which": "SA", "method": "lanczos"}, None),
    ({"which": "LM", "method": "lanczos"}, None),
    ({"which": "SM", "method": "lanczos"}, None),
    ({"which": "largest", "method": "lobpcg"}, None),
    ({"which": "smallest", "method": "lobpcg"}, None),
    ({"sigma": 7.3, "method": "lanczos"}, 7.3),
    ({"which": "SA", "method": "dense"}, None),
]


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("kw,sigma", CASES)
def test_values_and_subspaces_match_dense_eigh(kw, sigma, dtype):
    D = hermitian_sparse(30, 0.15, seed=1, dtype=dtype)
    A = sla.SparseTensor.from_dense(D)
    w, V, info = sla.eigsh(A, 4, return_info=True, **kw)
    which = kw.get("which", "LM")
    lam, U = dense_reference(D, 4, which, sigma)
    assert info.converged and max(info.residuals) <= 1e-10
    torch.testing.assert_close(w, lam, rtol=1e-10, atol=1e-10)
    assert torch.all(w[1:] >= w[:-1])  # ascending, like SciPy
    torch.testing.assert_close(projector(V), projector(U), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(V.mH @ V, torch.eye(4, dtype=dtype), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [{"which": "LA"}, {"which": "SA"}, {"sigma": 1.5}, {"which": "SM"}, {"which": "LA", "method": "lobpcg"}],
)
def test_generalized_problem_matches_dense_and_is_m_orthonormal(kw):
    n = 30
    D = hermitian_sparse(n, 0.15, seed=2)
    Mden = mass_matrix(n)
    A, M = sla.SparseTensor.from_dense(D), sla.SparseTensor.from_dense(Mden)
    w, V = sla.eigsh(A, 3, M=M, method=kw.pop("method", "lanczos"), **kw)
    lam, U = dense_reference(D, 3, kw.get("which", "LM"), kw.get("sigma"), Mden)
    torch.testing.assert_close(w, lam, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(V.mT @ Mden @ V, torch.eye(3, dtype=F64), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(projector(V, Mden), projector(U, Mden), rtol=1e-8, atol=1e-8)
    R = D @ V - Mden @ V * w
    assert R.abs().max() < 1e-8  # tol (1e-10) times ||A|| + |lambda| ||M||


def test_repeated_eigenvalues_of_the_2d_laplacian():
    A = poisson2d(9)
    D = A.to_dense()
    lam, U = dense_reference(D, 4, "SA")
    for kw in ({"which": "SA", "method": "lanczos"}, {"sigma": 0.0}, {"which": "SA", "method": "lobpcg"}):
        w, V = sla.eigsh(A, 4, **kw)
        torch.testing.assert_close(w, lam, rtol=1e-10, atol=1e-12)
        assert abs(w[1] - w[2]) < 1e-10  # a double eigenvalue: both copies found
        torch.testing.assert_close(projector(V), projector(U), rtol=1e-8, atol=1e-8)
    lam, U = dense_reference(D, 6, "LA")  # a closed set: two double eigenvalues, the 7th is apart
    w, V = sla.eigsh(A, 6, which="LA", method="lanczos")
    torch.testing.assert_close(w, lam, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(projector(V), projector(U), rtol=1e-8, atol=1e-8)


BLOCK_CASES = [
    ({"which": "LA"}, None, False),
    ({"which": "SA"}, None, False),
    ({"sigma": 7.3}, 7.3, False),
    ({"which": "LA"}, None, True),
    ({"sigma": 1.5}, 1.5, True),
]


@pytest.mark.parametrize("block", [1, 2, 3])
@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("kw,sigma,generalized", BLOCK_CASES)
def test_block_lanczos_with_restarts_matches_dense_eigh(kw, sigma, generalized, dtype, block):
    n, k = 40, 4
    D = hermitian_sparse(n, 0.15, seed=11, dtype=dtype)
    Mden = mass_matrix(n).to(dtype) if generalized else None
    A = sla.SparseTensor.from_dense(D)
    M = sla.SparseTensor.from_dense(Mden) if generalized else None
    w, V, info = sla.eigsh(A, k, M=M, ncv=12, block_size=block, method="lanczos", return_info=True, **kw)
    assert info.block_size == block and info.restarts > 0 and info.converged
    lam, U = dense_reference(D, k, kw.get("which", "LM"), sigma, Mden)
    torch.testing.assert_close(w, lam, rtol=1e-10, atol=1e-10)
    G = V.mH @ V if Mden is None else V.mH @ Mden @ V
    torch.testing.assert_close(G, torch.eye(k, dtype=dtype), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(projector(V, Mden), projector(U, Mden), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("block", [1, 2, 3, 5])
def test_clusters_larger_than_the_block_are_completed(block):
    # eigenvalues 0..4, each 8 times, in a random orthonormal basis: a Krylov space of one vector spans 5
    # dimensions (an invariant subspace after 5 steps), one of b vectors 5 b; the 10 largest are 4 (8
    # copies) and 3 (2 of 8), so every block size below 8 must find missing copies in later passes
    n = 40
    g = torch.Generator().manual_seed(12)
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))
    lam = torch.arange(5, dtype=F64).repeat_interleave(8)
    D = Q @ torch.diag(lam) @ Q.mT
    A = sla.SparseTensor.from_dense((D + D.mT) / 2)
    w, V, info = sla.eigsh(A, 10, which="LA", ncv=24, block_size=block, method="lanczos", return_info=True)
    expected = torch.tensor([3.0, 3.0] + [4.0] * 8, dtype=F64)
    assert info.converged and info.block_size == block
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(V.mT @ V, torch.eye(10, dtype=F64), rtol=0, atol=1e-10)
    assert (D @ V - V * w).abs().max() < 1e-9


def test_block_size_defaults_and_limits():
    A = poisson2d(10)
    _, _, info = sla.eigsh(A, 4, sigma=0.0, return_info=True)
    assert info.block_size == 3  # shift-invert: one solve with 3 right-hand sides per step
    _, _, info = sla.eigsh(A, 4, which="LA", return_info=True)
    assert info.block_size == 1
    _, _, info = sla.eigsh(A, 4, sigma=0.0, ncv=10, block_size=8, return_info=True)
    assert info.block_size == 3  # (ncv - k) / 2: two blocks of expansion per restart
    _, _, info = sla.eigsh(A, 4, which="SA", method="lobpcg", return_info=True)
    assert info.block_size == 0
    with pytest.raises(sla.InvalidArgumentError, match="block_size: must lie in"):
        sla.eigsh(A, 4, block_size=0)
    with pytest.raises(sla.InvalidArgumentError, match="block_size: expected an integer"):
        sla.eigsh(A, 4, block_size=2.0)
    with pytest.raises(sla.InvalidArgumentError, match="block_size: applies to method='lanczos'"):
        sla.eigsh(A, 4, which="SA", method="lobpcg", block_size=2)


def test_shift_invert_blocks_take_fewer_solves_than_vectors():
    A = poisson2d(30)
    lam = torch.linalg.eigvalsh(A.to_dense())[:6]
    w1, _, one = sla.eigsh(A, 6, sigma=0.0, block_size=1, return_info=True)
    w3, _, three = sla.eigsh(A, 6, sigma=0.0, return_info=True)
    torch.testing.assert_close(w1, lam, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w3, lam, rtol=1e-10, atol=1e-12)
    # a block of 3 needs about as many vectors but a third as many (multi-right-hand-side) solves
    assert three.iterations / 3 < 0.6 * one.iterations


def test_degenerate_pair_gradients_exact_for_the_eigenspace_and_warned_otherwise():
    A = poisson2d(4)  # eigenvalues l11 < l12 = l21 < l22 < l13 = l31
    herm = hermitian_parametrization(A)
    p = A.values.clone().requires_grad_()

    def proj_loss(q):  # depends only on the eigenspace of the 4 smallest
        w, V = sla.eigsh(A.with_values(herm(q)), 4, sigma=0.0)
        return (V @ V.mT)[:6, :9], w[[0, 3]], w[1] + w[2]  # a double eigenvalue: only its sum

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no warning: the loss is a function of the eigenspace
        assert torch.autograd.gradcheck(proj_loss, (p,), atol=1e-6)
    _, V = sla.eigsh(A.with_values(herm(p)), 4, sigma=0.0)
    with pytest.warns(RuntimeWarning, match=r"eigenvalues 1 and 2 are \(nearly\) degenerate"):
        (V.abs() ** 4).sum(0).mul(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)).sum().backward()


def _losses(k, dtype):
    weights = torch.arange(1.0, k + 1, dtype=F64)
    return {
        "eigenvalues": lambda w, V: w,
        "sum_of_eigenvalues": lambda w, V: w.sum(),
        "projector": lambda w, V: (
            torch.view_as_real(V @ V.mH)[:6, :5] if dtype == C128 else (V @ V.mH)[:6, :5]
        ),
        "fourth_powers": lambda w, V: ((V.abs() ** 4).sum(0) * weights).sum(),
    }


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize(
    "kw",
    [
        {"which": "LA", "method": "lanczos"},
        {"sigma": 2.2},
        {"which": "SA", "method": "lobpcg", "tol": 1e-13},
        {"which": "SA", "method": "dense"},
    ],
)
@pytest.mark.parametrize("loss", ["eigenvalues", "sum_of_eigenvalues", "projector", "fourth_powers"])
def test_gradcheck_standard(kw, loss, dtype):
    D = hermitian_sparse(14, 0.25, seed=3, dtype=dtype)
    A = sla.SparseTensor.from_dense(D)
    herm = hermitian_parametrization(A)
    f = _losses(3, dtype)[loss]
    p = A.values.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda q: f(*sla.eigsh(A.with_values(herm(q)), 3, **kw)), (p,), atol=1e-6, fast_mode=True
    )


@pytest.mark.parametrize(
    "kw", [{"which": "LA", "method": "lanczos"}, {"sigma": 0.5}, {"which": "SA", "method": "dense"}]
)
@pytest.mark.parametrize("loss", ["eigenvalues", "projector", "fourth_powers"])
def test_gradcheck_generalized_to_a_and_m(kw, loss):
    n = 14
    A = sla.SparseTensor.from_dense(hermitian_sparse(n, 0.25, seed=4))
    M = sla.SparseTensor.from_dense(mass_matrix(n))
    ha, hm = hermitian_parametrization(A), hermitian_parametrization(M)
    f = _losses(3, F64)[loss]
    p, q = A.values.clone().requires_grad_(), M.values.clone().requires_grad_()

    def run(pp, qq):
        return f(*sla.eigsh(A.with_values(ha(pp)), 3, M=M.with_values(hm(qq)), **kw))

    assert torch.autograd.gradcheck(run, (p, q), atol=1e-6, fast_mode=True)


def test_gradient_of_eigenvalues_is_the_outer_product_on_the_pattern():
    D = hermitian_sparse(25, 0.2, seed=5)
    A = sla.SparseTensor.from_dense(D)
    v = A.values.clone().requires_grad_()
    w, V = sla.eigsh(A.with_values(v), 3, which="LA", method="lanczos")
    g = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    (w * g).sum().backward()
    expected = ((V * g) @ V.mT)[A.pattern.row, A.pattern.col]
    torch.testing.assert_close(v.grad, expected.detach())


def test_gradient_with_create_graph_matches_the_plain_one():
    # with create_graph the pattern products stay differentiable (a gather instead of a sampled product)
    D = hermitian_sparse(25, 0.2, seed=5)
    A = sla.SparseTensor.from_dense(D)
    herm = hermitian_parametrization(A)
    p = A.values.clone().requires_grad_()

    def loss(q):
        w = sla.eigsh(A.with_values(herm(q)), 3, which="LA", method="lanczos", return_eigenvectors=False)
        return (w**2).sum()

    (plain,) = torch.autograd.grad(loss(p), p)
    (graph,) = torch.autograd.grad(loss(p), p, create_graph=True)
    assert graph.requires_grad
    torch.testing.assert_close(graph.detach(), plain, rtol=1e-10, atol=1e-12)


def test_batched_values_solve_member_by_member():
    A0 = poisson2d(6)
    g = torch.Generator().manual_seed(1)
    V = (A0.values * (1 + 0.3 * torch.rand(3, 1, dtype=F64, generator=g))).requires_grad_()
    w, X = sla.eigsh(A0.with_values(V), 4, sigma=0.0)  # a closed cluster: l11, l12 = l21, l22
    assert w.shape == (3, 4) and X.shape == (3, 36, 4)
    (w.sum() + (X @ X.mT)[:, :5].sum()).backward()
    for i in range(3):
        vi = V[i].detach().clone().requires_grad_()
        wi, Xi = sla.eigsh(A0.with_values(vi), 4, sigma=0.0)
        torch.testing.assert_close(w[i].detach(), wi.detach())
        (wi.sum() + (Xi @ Xi.mT)[:5].sum()).backward()
        torch.testing.assert_close(V.grad[i], vi.grad, rtol=1e-7, atol=1e-9)


def test_lobpcg_with_a_preconditioner_converges_faster():
    A = poisson2d(20)
    D = A.to_dense()
    Dinv = torch.linalg.inv(D)
    _, _, plain = sla.eigsh(A, 3, which="SA", method="lobpcg", return_info=True)
    w, _, pre = sla.eigsh(
        A, 3, which="SA", method="lobpcg", preconditioner=lambda r: Dinv @ r, return_info=True
    )
    torch.testing.assert_close(w, torch.linalg.eigvalsh(D)[:3], rtol=1e-10, atol=1e-12)
    assert pre.converged and pre.iterations < plain.iterations


def test_auto_uses_dense_for_small_problems_and_info_and_methods():
    A = poisson2d(4)
    w, V, info = sla.eigsh(A, 2, return_info=True)
    assert info.method == "dense" and info.converged
    w2 = A.eigsh(2, return_eigenvectors=False)
    torch.testing.assert_close(w, w2)
    A = poisson2d(8)
    w, V, info = A.eigsh(3, which="SA", return_info=True)
    assert info.method == "lanczos" and info.iterations > 0 and len(info.residuals) == 3


def test_on_fail_warns_or_raises():
    A = poisson2d(12)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sla.eigsh(A, 4, which="SA", method="lanczos", maxiter=25)
    with pytest.raises(sla.ConvergenceError, match="did not converge"):
        sla.eigsh(A, 4, which="SA", method="lanczos", maxiter=25, on_fail="raise")


def test_bad_arguments_are_named():
    A = poisson2d(5)
    E = sla.InvalidArgumentError
    with pytest.raises(E, match="k: must be smaller than n"):
        sla.eigsh(A, 25)
    with pytest.raises(E, match="k:"):
        sla.eigsh(A, 0)
    with pytest.raises(E, match="which:"):
        sla.eigsh(A, 2, which="BE")
    with pytest.raises(E, match="sigma:"):
        sla.eigsh(A, 2, sigma=1j)
    with pytest.raises(E, match="sigma:"):
        sla.eigsh(A, 2, sigma=float("nan"))
    with pytest.raises(E, match="which: with sigma"):
        sla.eigsh(A, 2, sigma=1.0, which="LA")
    with pytest.raises(E, match="ncv:"):
        sla.eigsh(A, 3, ncv=2)
    with pytest.raises(E, match="method:"):
        sla.eigsh(A, 2, method="arnoldi")
    with pytest.raises(E, match="method: 'lobpcg'"):
        sla.eigsh(A, 2, sigma=0.0, method="lobpcg")
    with pytest.raises(E, match="preconditioner:"):
        sla.eigsh(A, 2, method="lanczos", preconditioner=lambda r: r)
    with pytest.raises(E, match="on_fail:"):
        sla.eigsh(A, 2, on_fail="ignore")
    with pytest.raises(E, match="tol:"):
        sla.eigsh(A, 2, tol=-1.0)
    R = sla.SparseTensor(torch.ones(3, dtype=F64), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 3]), (3, 4))
    with pytest.raises(E, match="square"):
        sla.eigsh(R, 1)
    N = sla.SparseTensor.from_dense(torch.tensor([[2.0, 1.0, 0], [0, 2, 0], [0, 0, 3]], dtype=F64))
    with pytest.raises(E, match="needs a symmetric matrix"):
        sla.eigsh(N, 1)
    with pytest.raises(E, match="M: expected shape"):
        sla.eigsh(A, 2, M=poisson2d(4))
    Mneg = sla.SparseTensor.from_dense(-mass_matrix(25))
    with pytest.raises(sla.NotPositiveDefiniteError, match="M: must be Hermitian positive definite"):
        sla.eigsh(A, 2, M=Mneg, which="LA", method="lanczos")
    with pytest.raises(E, match="which: svds"):
        sla.svds(R, 1, which="SM")
    with pytest.raises(E, match="k: must be smaller than min"):
        sla.svds(R, 3)


def random_rectangular(m, n, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(m, n, dtype=dtype, generator=g) * (torch.rand(m, n, generator=g) < 0.3)
    D[torch.arange(min(m, n)), torch.arange(min(m, n))] += 3.0
    return D


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("shape", [(30, 20), (20, 30)])
def test_svds_matches_torch_svd(shape, dtype):
    D = random_rectangular(*shape, seed=6, dtype=dtype)
    A = sla.SparseTensor.from_dense(D)
    u, s, vh = sla.svds(A, 4)
    U, S, Vh = torch.linalg.svd(D)
    torch.testing.assert_close(s, S[:4], rtol=1e-10, atol=1e-10)
    assert u.shape == (shape[0], 4) and vh.shape == (4, shape[1])
    torch.testing.assert_close(
        u @ torch.diag(s).to(dtype) @ vh, U[:, :4] @ torch.diag(S[:4]).to(dtype) @ Vh[:4]
    )
    torch.testing.assert_close(u.mH @ u, torch.eye(4, dtype=dtype), rtol=1e-10, atol=1e-10)
    assert torch.allclose(A.svds(4, return_singular_vectors=False), s)


@pytest.mark.parametrize("dtype", [F64, C128])
def test_svds_gradcheck(dtype):
    D = random_rectangular(12, 9, seed=7, dtype=dtype)
    A = sla.SparseTensor.from_dense(D)
    v = A.values.clone().requires_grad_()
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=F64).to(dtype)

    def values(x):
        return sla.svds(A.with_values(x), 3, return_singular_vectors=False)

    def triplets(x):  # sum_i w_i u_i v_i^H: invariant under the joint sign/phase of (u_i, v_i)
        u, s, vh = sla.svds(A.with_values(x), 3)
        out = (u * weights) @ vh
        return torch.view_as_real(out) if dtype == C128 else out

    assert torch.autograd.gradcheck(values, (v,), atol=1e-6, fast_mode=True)
    assert torch.autograd.gradcheck(triplets, (v,), atol=1e-6, fast_mode=True)
    # d s_i = Re(u_i^H dA v_i): the singular values' gradient on the pattern
    x = A.values.clone().requires_grad_()
    u, s, vh = sla.svds(A.with_values(x), 3)
    s.sum().backward()
    expected = (u @ vh)[A.pattern.row, A.pattern.col]
    torch.testing.assert_close(x.grad, expected.detach(), rtol=1e-8, atol=1e-10)


def test_vibration_modes_example_runs(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vibration_modes.py", "--grid", "8"])
    runpy.run_path(os.path.join(ROOT, "examples", "vibration_modes.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "lowest frequencies" in out and "gradient check" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_lobpcg_and_lanczos_with_gradients():
    A = poisson2d(10)
    lam = torch.linalg.eigvalsh(A.to_dense())
    Ac = A.to("cuda")
    for kw in ({"which": "SA"}, {"which": "LA", "method": "lanczos"}):
        v = Ac.values.clone().requires_grad_()
        w, V, info = sla.eigsh(Ac.with_values(v), 3, return_info=True, **kw)
        assert w.device.type == "cuda" and info.method == ("lobpcg" if "method" not in kw else "lanczos")
        ref = lam[:3] if kw["which"] == "SA" else lam[-3:]
        torch.testing.assert_close(w.cpu(), ref, rtol=1e-9, atol=1e-9)
        (w.sum() + (V @ V.mT)[:4].sum()).backward()
        assert torch.isfinite(v.grad).all()
