"""SparseTensor construction, conversions and structure queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_sla as sla
from conftest import DIRECT_BACKENDS, random_sparse


def test_round_trips_dense_torch_scipy():
    dense = random_sparse(9, 0.3, dtype=torch.complex128, kind="general", seed=1)
    A = sla.SparseTensor.from_dense(dense)
    torch.testing.assert_close(A.to_dense(), dense)
    torch.testing.assert_close(sla.SparseTensor.from_torch_sparse(A.to_torch_sparse()).to_dense(), dense)
    coo = A.to_torch_sparse(torch.sparse_coo)
    torch.testing.assert_close(coo.to_dense(), dense)
    torch.testing.assert_close(sla.SparseTensor.from_torch_sparse(coo).to_dense(), dense)
    np.testing.assert_allclose(A.to_scipy().toarray(), dense.numpy())
    torch.testing.assert_close(sla.SparseTensor.from_scipy(A.to_scipy()).to_dense(), dense)
    # Integer scipy matrices become float64.
    assert sla.SparseTensor.from_scipy(sp.identity(3, dtype=np.int32, format="csr")).dtype == torch.float64


def test_transpose_conjugate_and_symmetry_queries():
    dense = random_sparse(8, 0.4, dtype=torch.complex128, kind="general", seed=2)
    A = sla.SparseTensor.from_dense(dense)
    torch.testing.assert_close(A.T().to_dense(), dense.T)
    torch.testing.assert_close(A.H().to_dense(), dense.mH)
    assert not A.is_symmetric() and not A.is_hermitian()
    H = sla.SparseTensor.from_dense(dense + dense.mH)
    assert H.is_hermitian() and not H.is_symmetric()
    S = sla.SparseTensor.from_dense(dense + dense.T)
    assert S.is_symmetric() and not S.is_hermitian()


def test_symmetry_cache_follows_in_place_changes():
    A = sla.SparseTensor.from_dense(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    assert A.is_symmetric()
    A.values[1] = 5.0  # in-place change bumps the version counter
    assert not A.is_symmetric()


def test_batched_shapes_and_conversions():
    dense = torch.stack([random_sparse(6, 0.4, kind="general", seed=s) for s in range(2)])
    A = sla.SparseTensor.from_dense(dense)
    assert A.shape == (2, 6, 6) and A.batch_shape == (2,)
    torch.testing.assert_close(A.to_dense(), dense)
    torch.testing.assert_close(A.to_torch_sparse().to_dense(), dense)
    torch.testing.assert_close(A.T().to_dense(), dense.transpose(-1, -2))
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(A @ x, dense @ x)
    with pytest.raises(ValueError, match="to_scipy needs an unbatched matrix"):
        A.to_scipy()


def test_to_dtype_and_requires_grad():
    A = sla.SparseTensor.from_dense(torch.eye(3, dtype=torch.float64))
    B = A.to(dtype=torch.float32)
    assert B.dtype == torch.float32 and B.pattern is A.pattern
    assert A.requires_grad_().requires_grad
    assert not A.detach().requires_grad
    with pytest.raises(ValueError, match="dtype"):
        A.to(dtype=torch.int32)


def test_coo_index_dtypes_and_order():
    row = torch.tensor([2, 0, 1], dtype=torch.int32)
    col = torch.tensor([0, 2, 1], dtype=torch.int32)
    A = sla.SparseTensor(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), row, col, (3, 3))
    assert A.crow_indices.dtype == torch.int64
    torch.testing.assert_close(A.values, torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64))  # CSR order
    assert repr(A).startswith("SparseTensor(shape=(3, 3), nnz=3")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 25),
    density=st.floats(0.0, 0.5),
    seed=st.integers(0, 10_000),
    complex_=st.booleans(),
    k=st.integers(1, 3),
)
def test_property_random_solves_match_dense(n, density, seed, complex_, k):
    dtype = torch.complex128 if complex_ else torch.float64
    dense = random_sparse(n, density, dtype=dtype, kind="general", seed=seed)
    A = sla.SparseTensor.from_dense(dense)
    b = torch.randn(n, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).to(dtype)
    ref = torch.linalg.solve(dense, b)
    for backend in DIRECT_BACKENDS:
        torch.testing.assert_close(A.solve(b, backend=backend), ref, rtol=1e-9, atol=1e-11)


def test_shifted_matrix_for_shift_invert():
    from torch_sla._sparse_tensor import shifted

    d = torch.tensor([[2.0, 1, 0], [0, 3, 0], [1, 0, 0]], dtype=torch.float64)  # (2, 2) not stored
    m = torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    A, M = sla.SparseTensor.from_dense(d), sla.SparseTensor.from_dense(m)
    torch.testing.assert_close(shifted(A, 0.5).to_dense(), d - 0.5 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(shifted(A, 0.5, M).to_dense(), d - 0.5 * m)
    assert shifted(A, 0.0).pattern.diag_positions is not None  # every diagonal entry stored
    batched = A.with_values(torch.stack([A.values, 2 * A.values]))
    torch.testing.assert_close(shifted(batched, 1.0, M).to_dense()[1], 2 * d - m)
    v = A.values.clone().requires_grad_()
    w = M.values.clone().requires_grad_()
    torch.autograd.gradcheck(lambda v, w: shifted(A.with_values(v), 0.3, M.with_values(w)).to_dense(), (v, w))
    for bad, msg in ((math.inf, "finite"), ("x", "number"), (1j, "complex"), (torch.ones(2), "number")):
        with pytest.raises(sla.InvalidArgumentError, match=msg):
            shifted(A, bad)
    with pytest.raises(sla.InvalidArgumentError, match="M:"):
        shifted(A, 1.0, sla.SparseTensor.from_dense(torch.eye(2, dtype=torch.float64)))


def test_shifted_keeps_a_pattern_that_holds_the_diagonal():
    from torch_sla._sparse_tensor import shifted

    d = torch.tensor([[2.0, 1, 0], [1, 3, 0.5], [0, 0.5, 4]], dtype=torch.float64)
    m = torch.tensor([[1.0, 0.2, 0], [0.2, 2, 0.1], [0, 0.1, 0.5]], dtype=torch.float64)  # A's pattern
    A, M = sla.SparseTensor.from_dense(d), sla.SparseTensor.from_dense(m)
    eye = torch.eye(3, dtype=torch.float64)
    S = shifted(A, 0.5)
    assert S.pattern is A.pattern  # values only: no new pattern
    torch.testing.assert_close(S.to_dense(), d - 0.5 * eye)
    S = shifted(A, 0.5, M)
    assert S.pattern is A.pattern
    torch.testing.assert_close(S.to_dense(), d - 0.5 * m)
    Md = sla.SparseTensor.from_dense(torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)))
    S = shifted(A, 0.5, Md)  # a different pattern: the union
    assert S.pattern is not A.pattern
    torch.testing.assert_close(S.to_dense(), d - 0.5 * Md.to_dense())
    batched = A.with_values(torch.stack([A.values, 2 * A.values]))
    torch.testing.assert_close(shifted(batched, 1.0).to_dense()[1], 2 * d - eye)
    torch.testing.assert_close(shifted(batched, 1.0, M).to_dense()[1], 2 * d - m)
    v = A.values.clone().requires_grad_()
    w = M.values.clone().requires_grad_()
    torch.autograd.gradcheck(lambda v: shifted(A.with_values(v), 0.3).to_dense(), (v,))
    torch.autograd.gradcheck(lambda v, w: shifted(A.with_values(v), 0.3, M.with_values(w)).to_dense(), (v, w))


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_transpose_keeps_the_index_type_and_detects_structural_symmetry(index_dtype):
    m = sp.random(30, 30, density=0.2, random_state=0, format="csr")
    m = (m + m.T + sp.eye(30)).tocsr()
    A = sla.SparseTensor.from_csr(
        torch.from_numpy(m.data),
        torch.from_numpy(m.indptr).to(index_dtype),
        torch.from_numpy(m.indices).to(index_dtype),
        m.shape,
    )
    pt, perm = A.pattern.transpose()
    assert pt.crow.dtype == A.pattern.crow.dtype and pt.col.dtype == A.pattern.col.dtype
    assert A.pattern.is_structurally_symmetric
    torch.testing.assert_close(A.values[perm], torch.from_numpy(m.T.tocsr().data))
