"""The core's determinant and selected-inversion bindings: Numeric.slogdet, Numeric.inverse_entries and
factorize(..., allow_singular=True), against NumPy's dense results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torch_sla import _C, errors

_BACKENDS = ["eigen"] + (["suitesparse"] if _C.backend_available("suitesparse") else [])


def _csr(dense: np.ndarray):
    rows, cols = np.nonzero(dense)
    crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=dense.shape[0]))]).astype(np.int64)
    return crow, cols.astype(np.int64), dense[rows, cols], rows.astype(np.int64)


def _matrix(method: str, dtype: str, n: int = 9, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    complex_ = dtype.startswith("complex")
    a = rng.standard_normal((n, n)) * (rng.random((n, n)) < 0.3)
    if complex_:
        a = a + 1j * rng.standard_normal((n, n)) * (a != 0)
    if method != "lu":
        a = np.tril(a, -1)
        a = a + a.conj().T
    signs = np.ones(n) if method == "cholesky" else rng.choice([-1.0, 1.0], n)
    a = a + np.diag(signs * (np.abs(a).sum(axis=1) + np.abs(a).sum(axis=0) + 1.0))
    return a.astype(np.complex128 if complex_ else np.float64)


@pytest.mark.parametrize("backend", _BACKENDS)
@pytest.mark.parametrize("method", ["cholesky", "ldl", "lu"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
def test_slogdet_and_inverse_entries_match_dense(backend, method, dtype):
    a = _matrix(method, dtype)
    n = a.shape[0]
    crow, col, val, row = _csr(a)
    sym = _C.analyze(backend, method, dtype, n, n, crow, col)
    values = torch.from_numpy(val).to(getattr(torch, dtype))
    num = _C.factorize(sym, values)
    exact = np.zeros_like(a)
    exact[row, col] = values.numpy()  # the matrix as factorized (float32 rounding included)
    sign, logabs = num.slogdet()
    ref_sign, ref_logabs = np.linalg.slogdet(exact)
    tol = 1e-4 if (backend == "eigen" and dtype == "float32") else 1e-9
    assert isinstance(logabs, float)
    if dtype.startswith("complex"):
        assert isinstance(sign, complex)
    else:
        assert isinstance(sign, float) and sign in (1.0, -1.0)
    assert abs(sign - ref_sign) < tol and abs(logabs - ref_logabs) < tol * (1 + abs(ref_logabs))

    # A^{-T} on A's pattern: the positions the gradient of logdet reads.
    out = torch.empty(len(row), dtype=values.dtype)
    rows_t, cols_t = torch.from_numpy(col), torch.from_numpy(row)
    if backend == "eigen" and method == "lu":
        with pytest.raises(errors.BackendUnavailableError, match="selected inversion"):
            num.inverse_entries(rows_t, cols_t, out)
        return
    num.inverse_entries(rows_t, cols_t, out)
    inv = np.linalg.inv(exact)
    tol = 1e-3 if (backend == "eigen" and dtype == "float32") else (1e-6 if dtype == "float32" else 1e-10)
    np.testing.assert_allclose(out.numpy(), inv[col, row], atol=tol * np.abs(inv).max())


def test_large_diagonal_slogdet_does_not_overflow():
    n = 1_000_000
    crow, col = np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64)
    backend = "suitesparse" if "suitesparse" in _BACKENDS else "eigen"
    sym = _C.analyze(backend, "cholesky", "float64", n, n, crow, col)
    sign, logabs = _C.factorize(sym, np.full(n, 10.0)).slogdet()
    assert sign == 1.0 and logabs == pytest.approx(n * math.log(10.0), rel=1e-12)


@pytest.mark.skipif("suitesparse" not in _BACKENDS, reason="SuiteSparse not compiled in")
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_allow_singular(dtype):
    crow, col = np.array([0, 2, 4], dtype=np.int64), np.array([0, 1, 0, 1], dtype=np.int64)
    values = np.ones(4, dtype=dtype)
    for method in ("lu", "ldl"):
        sym = _C.analyze("suitesparse", method, dtype, 2, 2, crow, col)
        with pytest.raises(errors.SingularMatrixError):
            _C.factorize(sym, values)
        num = _C.factorize(sym, values, allow_singular=True)
        sign, logabs = num.slogdet()
        assert sign == 0 and logabs == -math.inf
        assert isinstance(sign, complex if dtype == "complex128" else float)
        x = np.empty((1, 2), dtype=dtype)
        with pytest.raises(errors.SingularMatrixError, match="zero pivot"):
            num.solve(np.ones((1, 2), dtype=dtype), x)
        idx = np.zeros(1, dtype=np.int64)
        with pytest.raises(errors.SingularMatrixError, match="zero pivot"):
            num.inverse_entries(idx, idx, np.empty(1, dtype=dtype))
        batch = _C.factorize_batch(sym, np.stack([values, 2 * values + np.array([1, 0, 0, 1])]), allow_singular=True)
        assert batch[0].slogdet()[1] == -math.inf and batch[1].slogdet()[1] == pytest.approx(math.log(5.0))
    sym = _C.analyze("suitesparse", "cholesky", dtype, 2, 2, crow, col)
    with pytest.raises(errors.NotPositiveDefiniteError):
        _C.factorize(sym, values, allow_singular=True)


@pytest.mark.parametrize("backend", _BACKENDS)
def test_inverse_entries_argument_errors(backend):
    # Two decoupled blocks: (0, 3) is in no factor's pattern.
    a = np.array([[4.0, 1, 0, 0], [1, 3, 0, 0], [0, 0, 5, 2], [0, 0, 2, 6]])
    crow, col, val, _ = _csr(a)
    num = _C.factorize(_C.analyze(backend, "cholesky", "float64", 4, 4, crow, col), val)
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    with pytest.raises(errors.InvalidArgumentError, match=r"position \(0, 3\)"):
        num.inverse_entries(i64(0, 0), i64(1, 3), np.empty(2))
    with pytest.raises(errors.InvalidArgumentError, match="out of range"):
        num.inverse_entries(i64(4), i64(0), np.empty(1))
    with pytest.raises(errors.InvalidArgumentError, match="int64"):
        num.inverse_entries(np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.int32), np.empty(1))
    with pytest.raises(errors.InvalidArgumentError, match="lengths differ"):
        num.inverse_entries(i64(0, 1), i64(0), np.empty(2))
    with pytest.raises(errors.InvalidArgumentError, match="out: dtype"):
        num.inverse_entries(i64(0), i64(0), np.empty(1, dtype=np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="out: expected 1 entries"):
        num.inverse_entries(i64(0), i64(0), np.empty(2))
    out = np.empty(2)
    num.inverse_entries(i64(0, 3), i64(1, 2), out)
    inv = np.linalg.inv(a)
    np.testing.assert_allclose(out, [inv[0, 1], inv[3, 2]], rtol=1e-12)
