"""Bad input gives a clear exception naming the argument, never a crash or a silent wrong answer."""

from __future__ import annotations

import pytest
import torch

import torch_sla as sla
from conftest import DIRECT_BACKENDS, poisson2d, random_sparse

F64 = torch.float64


def coo(vals, rows, cols, shape, dtype=F64):
    return sla.SparseTensor(torch.tensor(vals, dtype=dtype), torch.tensor(rows), torch.tensor(cols), shape)


def test_exception_hierarchy():
    assert issubclass(sla.SingularMatrixError, ValueError)
    assert issubclass(sla.NotPositiveDefiniteError, ValueError)
    assert issubclass(sla.MatrixMarketError, ValueError)
    assert issubclass(sla.InvalidArgumentError, ValueError)
    assert issubclass(sla.BackendUnavailableError, RuntimeError)
    assert issubclass(sla.ConvergenceError, RuntimeError)
    for cls in (sla.SingularMatrixError, sla.BackendUnavailableError):
        assert issubclass(cls, sla.TorchSlaError)


def test_non_square_matrix():
    A = coo([1.0, 2.0], [0, 1], [0, 2], (2, 3))
    with pytest.raises(ValueError, match=r"A: .*square.*\(2, 3\)"):
        A.solve(torch.ones(2, dtype=F64))


def test_b_shape_mismatch():
    A = poisson2d(3)
    with pytest.raises(ValueError, match=r"b: expected shape \(9,\)"):
        A.solve(torch.ones(8, dtype=F64))
    with pytest.raises(ValueError, match="b: expected shape"):
        A.solve(torch.ones(2, 9, 1, dtype=F64))


@pytest.mark.parametrize("bad", [[-1, 0], [0, 5]])
def test_out_of_range_indices(bad):
    with pytest.raises(ValueError, match=r"row_indices: index -?\d+ is out of range"):
        coo([1.0, 1.0], bad, [0, 1], (2, 2))
    with pytest.raises(ValueError, match=r"col_indices: index -?\d+ is out of range"):
        coo([1.0, 1.0], [0, 1], bad, (2, 2))


def test_index_and_value_validation():
    with pytest.raises(ValueError, match="row_indices: dtype must be int32 or int64"):
        sla.SparseTensor(torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), (2, 2))
    with pytest.raises(ValueError, match="col_indices: has 1 entries"):
        sla.SparseTensor(torch.ones(2, dtype=F64), torch.tensor([0, 1]), torch.tensor([0]), (2, 2))
    with pytest.raises(ValueError, match=r"values: expected shape \(\*batch, 2\)"):
        sla.SparseTensor(torch.ones(3, dtype=F64), torch.tensor([0, 1]), torch.tensor([0, 1]), (2, 2))
    with pytest.raises(ValueError, match="values: dtype torch.int64 is not supported"):
        sla.SparseTensor(torch.ones(2, dtype=torch.int64), torch.tensor([0, 1]), torch.tensor([0, 1]), (2, 2))
    with pytest.raises(ValueError, match="shape: sizes must be non-negative"):
        sla.SparseTensor(
            torch.ones(0, dtype=F64),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.int64),
            (-1, 2),
        )
    with pytest.raises(ValueError, match="shape: expected"):
        coo([1.0], [0], [0], (1,))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf_checked_by_default(bad):
    A = coo([1.0, bad], [0, 1], [0, 1], (2, 2))
    with pytest.raises(ValueError, match=r"A.values: contains NaN or Inf .*check_finite=False"):
        A.solve(torch.ones(2, dtype=F64))
    B = coo([1.0, 2.0], [0, 1], [0, 1], (2, 2))
    with pytest.raises(ValueError, match="b: contains NaN or Inf"):
        B.solve(torch.tensor([1.0, bad], dtype=F64))
    # Skipping the check is allowed (and then the answer carries the NaN/Inf through).
    x = B.solve(torch.tensor([1.0, bad], dtype=F64), check_finite=False)
    assert not torch.isfinite(x).all()


def test_structurally_singular(backend):
    A = coo([1.0, 2.0], [0, 0], [0, 1], (2, 2))  # row 1 empty
    with pytest.raises(sla.SingularMatrixError, match="row 1 has no stored entries"):
        A.solve(torch.ones(2, dtype=F64), backend=backend)
    A = coo([1.0, 2.0], [0, 1], [0, 0], (2, 2))  # column 1 empty
    with pytest.raises(sla.SingularMatrixError, match="column 1 has no stored entries"):
        A.solve(torch.ones(2, dtype=F64), backend=backend)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_numerically_singular(backend, dtype):
    A = coo([1.0, 2.0, 2.0, 4.0], [0, 0, 1, 1], [0, 1, 0, 1], (2, 2), dtype=dtype)
    with pytest.raises(sla.SingularMatrixError, match="singular"):
        A.solve(torch.ones(2, dtype=dtype), backend=backend, method="lu")
    # Larger: a duplicated row in a random matrix.
    dense = random_sparse(20, 0.3, kind="general", seed=3)
    dense[5] = dense[7]
    with pytest.raises(sla.SingularMatrixError):
        sla.SparseTensor.from_dense(dense).solve(torch.ones(20, dtype=F64), backend=backend)


def test_singular_ldl_and_auto_spd_singular():
    if "suitesparse" not in DIRECT_BACKENDS and "eigen" not in DIRECT_BACKENDS:
        pytest.skip("needs the C++ core")
    # Symmetric PSD, singular: [[1, 1], [1, 1]] -> auto tries Cholesky, falls back to LU, LU reports.
    A = coo([1.0, 1.0, 1.0, 1.0], [0, 0, 1, 1], [0, 1, 0, 1], (2, 2))
    with pytest.raises(sla.SingularMatrixError):
        A.solve(torch.ones(2, dtype=F64))
    for be in [b for b in DIRECT_BACKENDS if b != "scipy"]:
        with pytest.raises(sla.SingularMatrixError):
            A.solve(torch.ones(2, dtype=F64), backend=be, method="ldl")


def test_dtype_and_device_mismatch():
    A = poisson2d(3)
    with pytest.raises(ValueError, match=r"b: dtype torch.float32 does not match A's dtype torch.float64"):
        A.solve(torch.ones(9, dtype=torch.float32))
    with pytest.raises(ValueError, match="b: on device meta but A is on cpu"):
        A.solve(torch.ones(9, dtype=F64, device="meta"))
    with pytest.raises(ValueError, match="col_indices: on device"):
        sla.SparseTensor(
            torch.ones(1, dtype=F64), torch.tensor([0]), torch.tensor([0], device="meta"), (1, 1)
        )


def test_unknown_backend_and_method():
    A = poisson2d(3)
    with pytest.raises(ValueError, match="backend: expected 'auto' or one of"):
        A.solve(torch.ones(9, dtype=F64), backend="magma")
    with pytest.raises(ValueError, match="method: expected 'auto' or one of"):
        A.solve(torch.ones(9, dtype=F64), method="qr")
    if sla.backends()["scipy"].available:
        with pytest.raises(sla.BackendUnavailableError, match="scipy' has no method 'cholesky'"):
            A.solve(torch.ones(9, dtype=F64), backend="scipy", method="cholesky")


def test_dense_tensor_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="from_dense"):
        sla.solve(torch.eye(3, dtype=F64), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="A: expected a SparseTensor"):
        sla.solve([1, 2, 3], torch.ones(3, dtype=F64))


def test_bad_csr_arrays():
    with pytest.raises(ValueError, match="crow_indices"):
        sla.SparseTensor.from_csr(
            torch.ones(2, dtype=F64), torch.tensor([0, 2, 1]), torch.tensor([0, 1]), (2, 2)
        )
    with pytest.raises(ValueError, match="col_indices: must be sorted and unique"):
        sla.SparseTensor.from_csr(
            torch.ones(2, dtype=F64), torch.tensor([0, 2, 2]), torch.tensor([1, 0]), (2, 2)
        )
    with pytest.raises(ValueError, match=r"col_indices: entries must lie in \[0, 2\)"):
        sla.SparseTensor.from_csr(
            torch.ones(2, dtype=F64), torch.tensor([0, 1, 2]), torch.tensor([0, 2]), (2, 2)
        )


def test_core_validates_before_touching_memory():
    from torch_sla import _C

    crow = torch.tensor([0, 2, 1], dtype=torch.int64)
    col = torch.tensor([0, 7], dtype=torch.int64)
    with pytest.raises(sla.InvalidArgumentError, match="A: "):
        _C.analyze("eigen", "lu", "float64", 2, 2, crow, col)
    with pytest.raises(
        sla.InvalidArgumentError, match="crow_indices, col_indices: must both be int32 or both int64"
    ):
        _C.analyze("eigen", "lu", "float64", 2, 2, crow.to(torch.int32), col)
    sym = _C.analyze("eigen", "lu", "float64", 2, 2, torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(sla.InvalidArgumentError, match="values: expected 2 entries, got 3"):
        _C.factorize(sym, torch.ones(3, dtype=F64))
    with pytest.raises(sla.InvalidArgumentError, match="values: dtype does not match"):
        _C.factorize(sym, torch.ones(2, dtype=torch.float32))
