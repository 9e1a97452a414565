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
