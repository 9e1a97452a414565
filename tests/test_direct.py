"""Direct solves: correctness on every backend and method, against dense torch.linalg.solve."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla
from conftest import DIRECT_BACKENDS, poisson2d, random_sparse

DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10, torch.complex64: 1e-4, torch.complex128: 1e-10}


def methods_for(backend, kind):
    ms = ["lu"]
    if backend != "scipy" and kind in ("spd",):
        ms += ["cholesky", "ldl"]
    if backend != "scipy" and kind == "symmetric":
        ms += ["ldl"]
    return ms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["general", "spd", "symmetric"])
def test_solve_matches_dense(backend, dtype, kind):
    dense = random_sparse(30, 0.15, dtype=dtype, kind=kind, seed=1)
    A = sla.SparseTensor.from_dense(dense)
    b = torch.randn(30, 3, dtype=torch.float64).to(dtype)
    ref = torch.linalg.solve(
        dense.to(torch.complex128 if dtype.is_complex else torch.float64),
        b.to(torch.complex128 if dtype.is_complex else torch.float64),
    )
    for method in methods_for(backend, kind):
        x = A.solve(b, backend=backend, method=method)
        assert x.dtype == dtype and x.shape == b.shape
        err = (x.to(ref.dtype) - ref).abs().max() / ref.abs().max()
        assert err < TOL[dtype], (backend, method, float(err))


def test_auto_picks_cholesky_for_spd_and_lu_otherwise():
    A = poisson2d(6)
    f = A.factorize()
    assert f.method == "cholesky"
    assert f.backend == DIRECT_BACKENDS[0]
    G = sla.SparseTensor.from_dense(random_sparse(20, 0.2, kind="general"))
    assert G.factorize().method == "lu"
    S = sla.SparseTensor.from_dense(random_sparse(20, 0.2, kind="symmetric"))
    assert S.factorize().method == "lu"  # diagonal has negative entries


def test_auto_falls_back_to_lu_when_cholesky_breaks_down():
    # Symmetric with a positive diagonal but indefinite: [[1, 2], [2, 1]].
    A = sla.SparseTensor(
        torch.tensor([1.0, 2.0, 2.0, 1.0], dtype=torch.float64),
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0, 1, 0, 1]),
        (2, 2),
    )
    f = A.factorize()
    assert f.method == "lu"
    assert any("fell back" in r for r in f.info["reasons"])
    x = f.solve(torch.tensor([3.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(x, torch.tensor([1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("backend", [b for b in DIRECT_BACKENDS if b != "scipy"])  # scipy: LU only
def test_explicit_cholesky_on_indefinite_raises(backend):
    A = sla.SparseTensor(
        torch.tensor([1.0, 2.0, 2.0, 1.0], dtype=torch.float64),
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0, 1, 0, 1]),
        (2, 2),
    )
    with pytest.raises(sla.NotPositiveDefiniteError, match="not positive definite"):
        A.solve(torch.ones(2, dtype=torch.float64), backend=backend, method="cholesky")


def test_batched_values_share_pattern(backend):
    base = poisson2d(5)
    scales = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    values = base.values[None, :] * scales[:, None]
    values = values + torch.linspace(0, 0.1, base.nnz, dtype=torch.float64)[None, :] * (
        base.row_indices == base.col_indices
    )
    A = base.with_values(values)
    assert A.shape == (3, 25, 25)
    b = torch.randn(3, 25, 2, dtype=torch.float64)
    x = A.solve(b, backend=backend)
    dense = A.to_dense()
    torch.testing.assert_close(x, torch.linalg.solve(dense, b))
    # Unbatched b is broadcast over the batch.
    b1 = torch.randn(25, dtype=torch.float64)
    x1 = A.solve(b1, backend=backend)
    assert x1.shape == (3, 25)
    torch.testing.assert_close(x1, torch.linalg.solve(dense, b1.expand(3, 25).unsqueeze(-1)).squeeze(-1))


def test_second_factorization_reuses_analysis():
    sla.clear_analysis_cache()
    A = poisson2d(8)
    f1 = A.factorize(backend=DIRECT_BACKENDS[0])
    assert f1.info["analysis_reused"] is (DIRECT_BACKENDS[0] == "scipy")
    # A new SparseTensor, built from COO again, with new values and the same pattern.
    v, r, c = A.to_coo()
    B = sla.SparseTensor(v * 3.0, r, c, A.shape)
    f2 = B.factorize(backend=DIRECT_BACKENDS[0])
    if DIRECT_BACKENDS[0] != "scipy":
        assert f2.info["analysis_reused"] is True
    b = torch.ones(64, dtype=torch.float64)
    torch.testing.assert_close(f2.solve(b), f1.solve(b) / 3.0)


def test_factorization_solve_adjoint():
    dense = random_sparse(15, 0.3, dtype=torch.complex128, kind="general", seed=3)
    f = sla.SparseTensor.from_dense(dense).factorize()
    b = torch.randn(15, dtype=torch.complex128)
    torch.testing.assert_close(f.solve_adjoint(b), torch.linalg.solve(dense.mH, b))


def test_entry_points_accept_all_matrix_forms():
    import scipy.sparse as sp

    dense = random_sparse(12, 0.3, kind="general", seed=4)
    b = torch.randn(12, dtype=torch.float64)
    ref = torch.linalg.solve(dense, b)
    A = sla.SparseTensor.from_dense(dense)
    v, r, c = A.to_coo()
    forms = [
        A,
        dense.to_sparse_coo(),
        dense.to_sparse_csr(),
        sp.csr_matrix(dense.numpy()),
        sp.coo_matrix(dense.numpy()),
        (v, r, c, (12, 12)),
        (v, r.to(torch.int32), c.to(torch.int32), (12, 12)),
    ]
    for form in forms:
        torch.testing.assert_close(sla.solve(form, b), ref)
    torch.testing.assert_close(sla.spsolve(v, r, c, (12, 12), b), ref)


def test_empty_matrix_is_a_valid_solve():
    A = sla.SparseTensor(
        torch.zeros(0, dtype=torch.float64),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=torch.int64),
        (0, 0),
    )
    x = A.solve(torch.zeros(0, dtype=torch.float64))
    assert x.shape == (0,)
    x = A.solve(torch.zeros(0, 2, dtype=torch.float64))
    assert x.shape == (0, 2)


def test_explain_and_show_backends(capsys):
    A = poisson2d(4)
    c = sla.explain(A, torch.ones(16, dtype=torch.float64))
    text = str(c)
    assert "cholesky" in text and "symmetric=True" in text
    rows = sla.show_backends()
    out = capsys.readouterr().out
    assert "suitesparse" in out and "eigen" in out and "scipy" in out
    assert {r.name for r in rows} == {
        "suitesparse",
        "eigen",
        "scipy",
        "pardiso",
        "core",
        "torch",
        "cudss",
        "cuda",
        "cupy",
        "cupy_krylov",
    }
    G = sla.SparseTensor.from_dense(random_sparse(10, 0.3, kind="general"))
    assert "LU" in str(sla.explain(G))


def test_backends_agree_with_each_other():
    dense = random_sparse(40, 0.1, kind="general", seed=7)
    A = sla.SparseTensor.from_dense(dense)
    b = torch.randn(40, 2, dtype=torch.float64)
    xs = [A.solve(b, backend=be, method="lu") for be in DIRECT_BACKENDS]
    for x in xs[1:]:
        torch.testing.assert_close(x, xs[0])


def test_duplicates_are_summed_like_torch():
    row = torch.tensor([0, 0, 1, 1, 0])
    col = torch.tensor([0, 1, 1, 0, 0])
    val = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    A = sla.SparseTensor(val, row, col, (2, 2))
    ref = torch.sparse_coo_tensor(torch.stack([row, col]), val, (2, 2)).to_dense()
    torch.testing.assert_close(A.to_dense(), ref)
    assert A.nnz == 4
