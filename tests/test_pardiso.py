"""The PARDISO backend (Intel MKL, loaded at run time): every method and dtype against dense solves and
the other backends, gradients, the adjoint solve, refactorization with new values, singular and
indefinite matrices, batches and threads; and, without MKL, a clear error and an ``auto`` that works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

import torch_sla as sla
from conftest import poisson2d, random_sparse, same_package_preamble

F32, F64, C64, C128 = torch.float32, torch.float64, torch.complex64, torch.complex128
PARDISO = sla.backends()["pardiso"]
needs_pardiso = pytest.mark.skipif(not PARDISO.available, reason=f"PARDISO not loaded: {PARDISO.note}")
TOL = {F32: 1e-4, F64: 1e-11, C64: 1e-4, C128: 1e-11}
KINDS = {"cholesky": "spd", "ldl": "symmetric", "lu": "general"}


def _wide(dtype):
    return C128 if dtype.is_complex else F64


@needs_pardiso
@pytest.mark.parametrize("dtype", [F32, F64, C64, C128])
@pytest.mark.parametrize("method", ["cholesky", "ldl", "lu"])
def test_every_method_and_dtype_matches_dense_and_suitesparse(method, dtype):
    dense = random_sparse(40, 0.1, dtype=dtype, kind=KINDS[method], seed=2)
    A = sla.SparseTensor.from_dense(dense)
    b = torch.randn(40, 3, dtype=F64).to(dtype)
    f = A.factorize(backend="pardiso", method=method)
    assert f.backend == "pardiso" and f.method == method and f.info["factor_nnz"] > 0
    ref = torch.linalg.solve(dense.to(_wide(dtype)), b.to(_wide(dtype)))
    for x, r in (
        (f.solve(b), ref),
        (f.solve_adjoint(b), torch.linalg.solve(dense.mH.to(_wide(dtype)), b.to(_wide(dtype)))),
    ):
        assert x.dtype == dtype
        assert (x.to(r.dtype) - r).abs().max() / r.abs().max() < TOL[dtype]
    if dtype in (F64, C128):  # the other backend of the same method: CHOLMOD / UMFPACK, or Eigen
        other_name = "suitesparse" if sla.backends()["suitesparse"].available else "eigen"
        other = A.solve(b, backend=other_name, method=method)
        torch.testing.assert_close(f.solve(b), other, rtol=1e-10, atol=1e-12)


@needs_pardiso
@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("method", ["cholesky", "ldl", "lu"])
def test_gradcheck_and_dense_gradient(method, dtype):
    dense = random_sparse(7, 0.4, dtype=dtype, kind=KINDS[method], seed=4)
    row, col = torch.nonzero(dense, as_tuple=True)
    v = dense[row, col].clone().requires_grad_()
    b = torch.randn(7, 2, dtype=dtype, requires_grad=True)

    def f(values, rhs):
        A = sla.SparseTensor(values, row, col, (7, 7))
        if method != "lu":  # keep the perturbed matrix Hermitian
            A = A.with_values(0.5 * (A.values + A.H().values))
        return A.solve(rhs, backend="pardiso", method=method)

    assert torch.autograd.gradcheck(f, (v, b), eps=1e-6, atol=1e-6, rtol=1e-5)
    w = torch.randn(7, 2, dtype=dtype)
    (f(v, b) * w).real.sum().backward()
    v2, b2 = v.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    D = torch.zeros(7, 7, dtype=dtype).index_put((row, col), v2)
    if method != "lu":
        D = 0.5 * (D + D.mH)
    (torch.linalg.solve(D, b2) * w).real.sum().backward()
    torch.testing.assert_close(v.grad, v2.grad)
    torch.testing.assert_close(b.grad, b2.grad)


@needs_pardiso
def test_refactorization_with_new_values_reuses_the_analysis():
    sla.clear_analysis_cache()
    A = poisson2d(12)
    b = torch.randn(144, dtype=F64)
    f1 = A.factorize(backend="pardiso", method="lu")
    assert f1.info["analysis_reused"] is False
    for scale in (2.0, 0.5, 3.0):  # a training loop: same pattern, new values
        B = A.with_values(A.values * scale)
        f = B.factorize(backend="pardiso", method="lu")
        assert f.info["analysis_reused"] is True
        torch.testing.assert_close(f.solve(b), f1.solve(b) / scale)
    # Values whose large entries moved off the diagonal: the kept matching no longer fits, the
    # factorization analyses these values again and is still exact.
    D = torch.tensor([[0.0, 1.0, 5.0], [4.0, 0.0, 1.0], [1.0, 6.0, 0.0]], dtype=F64)
    full = sla.SparseTensor.from_dense(torch.ones(3, 3, dtype=F64) + 3 * torch.eye(3, dtype=F64))
    x_full = full.solve(torch.ones(3, dtype=F64), backend="pardiso", method="lu")
    moved = full.with_values(D.reshape(-1))
    x_moved = moved.solve(torch.ones(3, dtype=F64), backend="pardiso", method="lu")
    torch.testing.assert_close(x_moved, torch.linalg.solve(D, torch.ones(3, dtype=F64)))
    torch.testing.assert_close(x_full, torch.linalg.solve(full.to_dense(), torch.ones(3, dtype=F64)))


@needs_pardiso
def test_several_right_hand_sides_and_batches():
    base = poisson2d(6)
    values = torch.stack([base.values * s for s in (1.0, 2.0, 4.0)])
    A = base.with_values(values)
    b = torch.randn(3, 36, 5, dtype=F64)
    x = A.solve(b, backend="pardiso", method="cholesky")
    torch.testing.assert_close(x, torch.linalg.solve(A.to_dense(), b))


@needs_pardiso
def test_singular_and_indefinite_matrices_give_the_same_errors_as_the_other_backends():
    singular = sla.SparseTensor.from_dense(torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64))
    for method in ("lu", "ldl"):
        with pytest.raises(sla.SingularMatrixError, match="singular"):
            singular.solve(torch.ones(2, dtype=F64), backend="pardiso", method=method)
    indefinite = sla.SparseTensor.from_dense(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64))
    with pytest.raises(sla.NotPositiveDefiniteError, match="not positive definite"):
        indefinite.solve(torch.ones(2, dtype=F64), backend="pardiso", method="cholesky")
    # LDL^T pivots: [[1, 2], [2, 1]] x = (3, 3) gives x = (1, 1); a saddle point without diagonal entries.
    x = indefinite.solve(torch.tensor([3.0, 3.0], dtype=F64), backend="pardiso", method="ldl")
    torch.testing.assert_close(x, torch.ones(2, dtype=F64))
    saddle = sla.SparseTensor(torch.ones(2, dtype=F64), torch.tensor([0, 1]), torch.tensor([1, 0]), (2, 2))
    x = saddle.solve(torch.tensor([2.0, 3.0], dtype=F64), backend="pardiso", method="ldl")
    torch.testing.assert_close(x, torch.tensor([3.0, 2.0], dtype=F64))
    bad = poisson2d(3)
    bad = bad.with_values(bad.values.clone().index_fill_(0, torch.tensor([0]), float("nan")))
    with pytest.raises(sla.SingularMatrixError, match="NaN or Inf"):
        bad.solve(torch.ones(9, dtype=F64), backend="pardiso", check_finite=False)


@needs_pardiso
def test_concurrent_solves_from_threads():
    A = sla.SparseTensor.from_dense(random_sparse(60, 0.08, kind="general", seed=9))
    f = A.factorize(backend="pardiso", method="lu")
    bs = [torch.randn(60, dtype=F64) for _ in range(8)]
    out: list = [None] * len(bs)

    def work(i):
        out[i] = f.solve(bs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(bs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dense = A.to_dense()
    for x, b in zip(out, bs):
        torch.testing.assert_close(dense @ x, b)


def test_without_mkl_the_backend_says_why_and_auto_still_solves():
    # A fresh process in which the library cannot be found: TORCH_SLA_MKL_RT names a missing file.
    script = same_package_preamble() + textwrap.dedent(
        """
        import torch, torch_sla as sla
        b = sla.backends()["pardiso"]
        assert not b.available and "TORCH_SLA_MKL_RT" in b.note and "no_such_libmkl_rt.so" in b.note, b.note
        A = sla.SparseTensor.from_dense(torch.tensor([[4.0, 1.0], [2.0, 3.0]], dtype=torch.float64))
        try:
            A.solve(torch.ones(2, dtype=torch.float64), backend="pardiso")
        except sla.BackendUnavailableError as e:
            assert "pardiso" in str(e) and "TORCH_SLA_MKL_RT" in str(e), str(e)
        else:
            raise AssertionError("no error")
        x = A.solve(torch.ones(2, dtype=torch.float64))
        assert torch.allclose(A.to_dense() @ x, torch.ones(2, dtype=torch.float64))
        assert sla.explain(A).backend != "pardiso"
        print("ok")
        """
    )
    env = dict(os.environ, TORCH_SLA_MKL_RT="/nonexistent/no_such_libmkl_rt.so")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
