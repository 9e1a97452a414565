"""The entry points of torch_sla._C for the architecture's next layer, called directly: the device contract,
CsrPattern (a pattern validated once), the batched factorizations and Krylov solves, and the build's CUDA
report. Arrays are NumPy or torch CPU arrays; a CUDA array is imitated by a DLPack capsule that says so."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from torch_sla import _C, errors

SUITESPARSE = _C.backend_available("suitesparse")
DIRECT_BACKENDS = ["eigen"] + (["suitesparse"] if SUITESPARSE else [])


# -- helpers ------------------------------------------------------------------------------------------
def poisson2d(m: int, shift: float = 0.0):
    """The 5-point Laplacian on an m x m grid (SPD), CSR with sorted columns: (n, crow, col, values)."""
    n = m * m
    crow, col, val = [0], [], []
    for r in range(n):
        x, y = r % m, r // m
        for c, v in ((r - m, -1.0), (r - 1, -1.0), (r, 4.0 + shift), (r + 1, -1.0), (r + m, -1.0)):
            if c == r - m and y == 0 or c == r + m and y == m - 1:
                continue
            if c == r - 1 and x == 0 or c == r + 1 and x == m - 1:
                continue
            col.append(c)
            val.append(v)
        crow.append(len(col))
    return n, np.array(crow, dtype=np.int64), np.array(col, dtype=np.int64), np.array(val)


def batch_values(values: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """(count, nnz) C-contiguous: each member the matrix with its diagonal shifted differently (still SPD)."""
    rng = np.random.default_rng(seed)
    out = np.repeat(values[None, :], count, axis=0)
    out *= 1.0 + 0.5 * rng.random((count, 1))
    return np.ascontiguousarray(out)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class FakeCudaArray:
    """A DLPack capsule describing `host` (a float64 or int64 NumPy array) as if it lived on cuda:<index>.

    Only the device tag is fake: the binding must refuse the array before reading its memory, so the test
    needs no GPU. A capsule is consumed by one import, so each use takes a fresh one (`capsule()`)."""

    def __init__(self, host: np.ndarray, index: int = 0):
        self.host = np.ascontiguousarray(host)
        self.index = index

    def capsule(self):
        h = self.host
        self._shape = (ctypes.c_int64 * h.ndim)(*h.shape)
        self._mt = _DLManagedTensor()
        t = self._mt.dl_tensor
        t.data = h.ctypes.data
        t.device = _DLDevice(2, self.index)  # kDLCUDA
        t.ndim = h.ndim
        code = 0 if h.dtype.kind == "i" else 2  # kDLInt, kDLFloat
        t.dtype = _DLDataType(code, h.dtype.itemsize * 8, 1)
        t.shape = self._shape
        t.strides = None
        t.byte_offset = 0
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self._mt), b"dltensor", None)


# -- 1. the device contract ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", DIRECT_BACKENDS)
def test_symbolic_and_numeric_report_the_cpu(backend):
    n, crow, col, val = poisson2d(4)
    sym = _C.analyze(backend, "cholesky", "float64", n, n, crow, col)
    num = _C.factorize(sym, val)
    assert sym.device == "cpu" and num.device == "cpu"
    with pytest.raises(AttributeError):
        sym.device = "cuda:0"
    # NumPy arrays and torch CPU tensors both still work.
    b = np.ones((1, n))
    x_np, x_t = np.empty((1, n)), torch.empty(1, n, dtype=torch.float64)
    num.solve(b, x_np)
    num.solve(torch.from_numpy(b), x_t)
    np.testing.assert_array_equal(x_np, x_t.numpy())


def test_a_cuda_array_reaching_a_cpu_entry_point_is_named():
    n, crow, col, val = poisson2d(3)
    sym = _C.analyze("eigen", "cholesky", "float64", n, n, crow, col)
    fake = FakeCudaArray(val)
    with pytest.raises(errors.InvalidArgumentError, match=r"values: on cuda:0, this backend runs on the CPU"):
        _C.factorize(sym, fake.capsule())
    with pytest.raises(
        errors.InvalidArgumentError, match=r"crow_indices: on cuda:1, this backend runs on the CPU"
    ):
        _C.analyze("eigen", "cholesky", "float64", n, n, FakeCudaArray(crow, 1).capsule(), col)
    num = _C.factorize(sym, val)
    with pytest.raises(errors.InvalidArgumentError, match=r"b: on cuda:0, this backend runs on the CPU"):
        num.solve(FakeCudaArray(np.ones((1, n))).capsule(), np.empty((1, n)))
    x = np.zeros((n, 1))
    with pytest.raises(errors.InvalidArgumentError, match=r"b: on cuda:0"):
        _C.krylov_solve("cg", n, crow, col, val, FakeCudaArray(np.ones((n, 1))).capsule(), x, None)


def test_outputs_must_be_contiguous_rather_than_silently_copied():
    n, crow, col, val = poisson2d(3)
    num = _C.factorize(_C.analyze("eigen", "cholesky", "float64", n, n, crow, col), val)
    wide = np.zeros((1, 2 * n))
    with pytest.raises(errors.InvalidArgumentError, match="x: must be C-contiguous"):
        num.solve(np.ones((1, n)), wide[:, ::2])
    y = torch.zeros(2 * n, 1, dtype=torch.float64)[::2]
    with pytest.raises(errors.InvalidArgumentError, match="y: must be C-contiguous"):
        _C.spmv(n, n, crow, col, val, np.ones((n, 1)), y)


# -- the CUDA part of the build -----------------------------------------------------------------------
def test_build_info_reports_the_cuda_part():
    info = _C.build_info()
    assert isinstance(info["cuda_compiled"], bool)
    if info["cuda_compiled"]:
        # The runtime is linked statically: the module imported, even without a driver or a GPU.
        count = _C.cuda_device_count()
        assert count == info["cuda_device_count"] >= 0
        assert _C.cuda_runtime_version() == info["cuda_runtime_version"]
        assert info["cuda_runtime_version"].split(".")[0].isdigit()
        if torch.version.cuda is not None and torch.cuda.is_available():
            assert count == torch.cuda.device_count()
    else:
        assert info["cuda_device_count"] == 0 and info["cuda_runtime_version"] is None
        for fn in (_C.cuda_device_count, _C.cuda_runtime_version):
            with pytest.raises(
                errors.BackendUnavailableError, match=r"built without CUDA \(SLA_WITH_CUDA=OFF\)"
            ):
                fn()


# -- 2. CsrPattern ------------------------------------------------------------------------------------
def test_csr_pattern_validates_once_and_owns_its_indices():
    n, crow, col, val = poisson2d(5)
    for index_dtype in (np.int64, np.int32):
        c, j = crow.astype(index_dtype), col.astype(index_dtype)
        p = _C.CsrPattern(n, n, c, j)
        assert (p.n_rows, p.n_cols, p.nnz, p.index_bits, p.device) == (n, n, len(col), 32, "cpu")
        assert p.memory_bytes >= 4 * (n + 1 + len(col))
        assert f"nnz={len(col)}" in repr(p)
        c[:] = 0  # the core kept its own copy
        j[:] = -1
        y = np.empty((n, 1))
        _C.spmv(p, val, np.ones((n, 1)), y)
        ref = np.empty((n, 1))
        _C.spmv(n, n, crow, col, val, np.ones((n, 1)), ref)
        np.testing.assert_array_equal(y, ref)
    for attr in ("nnz", "n_rows", "n_cols", "index_bits", "memory_bytes"):
        with pytest.raises(AttributeError):
            setattr(p, attr, 1)


def test_csr_pattern_rejects_bad_patterns_and_values():
    with pytest.raises(errors.InvalidArgumentError, match="A: column indices of row 0 are not sorted"):
        _C.CsrPattern(2, 2, np.array([0, 2, 3]), np.array([1, 0, 1]))
    with pytest.raises(errors.InvalidArgumentError, match="must both be int32 or both int64"):
        _C.CsrPattern(2, 2, np.array([0, 1, 2], dtype=np.int32), np.array([0, 1]))
    with pytest.raises(errors.InvalidArgumentError, match="crow_indices: on cuda:0"):
        _C.CsrPattern(2, 2, FakeCudaArray(np.array([0, 1, 2])).capsule(), np.array([0, 1]))
    n, crow, col, val = poisson2d(3)
    p = _C.CsrPattern(n, n, crow, col)
    with pytest.raises(
        errors.InvalidArgumentError,
        match=rf"values: expected {len(col)} entries \(the pattern's nnz\), got 3",
    ):
        _C.spmv(p, val[:3], np.ones((n, 1)), np.empty((n, 1)))
    with pytest.raises(errors.InvalidArgumentError, match="values: dtype must be"):
        _C.make_preconditioner("jacobi", p, np.ones(len(col), dtype=np.int64))
    with pytest.raises(errors.InvalidArgumentError, match="values: on cuda:0"):
        _C.krylov_solve("cg", p, FakeCudaArray(val).capsule(), np.ones((n, 1)), np.zeros((n, 1)))
    with pytest.raises(errors.InvalidArgumentError, match="square"):
        _C.analyze("eigen", "lu", "float64", _C.CsrPattern(2, 3, np.array([0, 1, 2]), np.array([0, 2])))


@pytest.mark.parametrize("backend", DIRECT_BACKENDS)
def test_analyze_with_a_pattern_equals_analyze_with_arrays(backend):
    n, crow, col, val = poisson2d(6)
    p = _C.CsrPattern(n, n, crow, col)
    b = np.random.default_rng(1).standard_normal((2, n))
    for method in ("cholesky", "ldl", "lu"):
        x1, x2 = np.empty_like(b), np.empty_like(b)
        _C.factorize(_C.analyze(backend, method, "float64", n, n, crow, col), val).solve(b, x1)
        sym = _C.analyze(backend, method, "float64", p)
        assert (sym.n, sym.nnz, sym.device) == (n, len(col), "cpu")
        _C.factorize(sym, val).solve(b, x2)
        np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("method", ["cg", "bicgstab", "gmres", "minres"])
def test_krylov_with_a_pattern_equals_krylov_with_arrays(method):
    n, crow, col, val = poisson2d(7)
    p = _C.CsrPattern(n, n, crow, col)
    b = np.random.default_rng(2).standard_normal((n, 2))
    m1 = _C.make_preconditioner("ilu0", n, crow.astype(np.int32), col.astype(np.int32), val)
    m2 = _C.make_preconditioner("ilu0", p, val)
    x1, x2 = np.zeros_like(b), np.zeros_like(b)
    seen = []
    r1 = _C.krylov_solve(method, n, crow.astype(np.int32), col.astype(np.int32), val, b, x1, m1, rtol=1e-10)
    r2 = _C.krylov_solve(
        method, p, val, b, x2, m2, rtol=1e-10, record_history=True, callback=lambda i, r: seen.append(i)
    )
    assert r1["converged"] and r2["converged"]
    assert r1["iterations"] == r2["iterations"] and len(r2["residual_history"]) == r2["iterations"]
    assert seen
    np.testing.assert_array_equal(x1, x2)
