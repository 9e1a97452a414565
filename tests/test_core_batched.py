"""The entry points of torch_sla._C for the architecture's next layer, called directly: the device contract,
CsrPattern (a pattern validated once), the batched factorizations and Krylov solves, and the build's CUDA
report. Arrays are NumPy or torch CPU arrays; a CUDA array is imitated by a DLPack capsule that says so."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

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


# -- 3. batched entry points --------------------------------------------------------------------------
DIRECT_CASES = [(b, m) for b in DIRECT_BACKENDS for m in ("cholesky", "ldl", "lu")]


@pytest.mark.parametrize("backend, method", DIRECT_CASES)
@pytest.mark.parametrize("threads", [1, 2, 0])
def test_factorize_batch_equals_a_loop_of_factorize(backend, method, threads):
    n, crow, col, val = poisson2d(8)
    B, nrhs = 5, 3
    values = batch_values(val, B)
    sym = _C.analyze(backend, method, "float64", n, n, crow, col)
    batch = _C.factorize_batch(sym, values, threads=threads)
    assert len(batch) == B and batch.device == "cpu" and batch.symbolic.n == n
    members = [batch[i] for i in range(B)]
    assert batch[-1].factor_nnz == members[-1].factor_nnz
    assert [m.factor_nnz for m in batch] == [m.factor_nnz for m in members]  # iterable as a sequence
    with pytest.raises(IndexError):
        batch[B]
    b = np.random.default_rng(5).standard_normal((B, nrhs, n))
    x = np.empty_like(b)
    batch.solve(b, x, "N", threads)
    total = 0
    for i in range(B):
        one = _C.factorize(sym, values[i])
        total += one.factor_nnz
        xi, xm = np.empty((nrhs, n)), np.empty((nrhs, n))
        one.solve(b[i], xi)
        members[i].solve(b[i], xm)
        np.testing.assert_array_equal(x[i], xi)
        np.testing.assert_array_equal(xm, xi)
    assert batch.factor_nnz == total
    # torch tensors work the same way.
    xt = torch.empty(B, nrhs, n, dtype=torch.float64)
    batch.solve(torch.from_numpy(b), xt, "H")
    if method != "lu":  # symmetric: A^H = A
        np.testing.assert_array_equal(xt.numpy(), x)


@pytest.mark.parametrize("backend, method", DIRECT_CASES)
def test_a_failing_member_is_named(backend, method):
    n, crow, col, val = poisson2d(5)
    values = batch_values(val, 6)
    values[3] = 0.0  # singular, and not positive definite
    values[5] = 0.0
    sym = _C.analyze(backend, method, "float64", n, n, crow, col)
    kind = errors.NotPositiveDefiniteError if method == "cholesky" else errors.SingularMatrixError
    for threads in (1, 2, 4):
        with pytest.raises(kind, match=r"^batch member 3: "):
            _C.factorize_batch(sym, values, threads=threads)


def test_factorize_batch_checks_its_arguments():
    n, crow, col, val = poisson2d(3)
    sym = _C.analyze("eigen", "cholesky", "float64", n, n, crow, col)
    values = batch_values(val, 2)
    with pytest.raises(errors.InvalidArgumentError, match=rf"values: expected shape \(batch, {len(col)}\)"):
        _C.factorize_batch(sym, values[:, :-1])
    with pytest.raises(errors.InvalidArgumentError, match="values: expected 2 dimensions"):
        _C.factorize_batch(sym, val)
    with pytest.raises(errors.InvalidArgumentError, match="values: dtype does not match"):
        _C.factorize_batch(sym, values.astype(np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="values: on cuda:0"):
        _C.factorize_batch(sym, FakeCudaArray(values).capsule())
    batch = _C.factorize_batch(sym, values)
    assert len(_C.factorize_batch(sym, values[:0])) == 0
    with pytest.raises(errors.InvalidArgumentError, match=rf"b: expected shape \(2, nrhs, {n}\)"):
        batch.solve(np.ones((3, 1, n)), np.empty((3, 1, n)))
    with pytest.raises(errors.InvalidArgumentError, match="x: must be C-contiguous"):
        batch.solve(np.ones((2, 1, n)), np.empty((2, 1, 2 * n))[:, :, ::2])
    with pytest.raises(errors.InvalidArgumentError, match="op: expected 'N' or 'H'"):
        batch.solve(np.ones((2, 1, n)), np.empty((2, 1, n)), "T")


KRYLOV_METHODS = ["cg", "bicgstab", "gmres", "minres"]


@pytest.mark.parametrize("method", KRYLOV_METHODS)
@pytest.mark.parametrize("threads", [1, 2, 16])
def test_krylov_solve_batch_equals_a_loop_of_krylov_solve(method, threads):
    n, crow, col, val = poisson2d(9)
    B, k = 5, 2
    p = _C.CsrPattern(n, n, crow, col)
    values = batch_values(val, B, seed=3)
    b = np.random.default_rng(4).standard_normal((B, n, k))
    pre = [_C.make_preconditioner("ic0", p, values[i]) if i % 2 == 0 else None for i in range(B)]
    x = np.zeros_like(b)
    results = _C.krylov_solve_batch(
        method, p, values, b, x, pre, rtol=1e-10, threads=threads, record_history=True
    )
    assert len(results) == B
    # Members run one thread each when B >= threads, else in sequence with `threads` inside.
    inner = 1 if threads <= B else threads
    for i in range(B):
        xi = np.zeros((n, k))
        want = _C.krylov_solve(
            method, p, values[i], b[i], xi, pre[i], rtol=1e-10, threads=inner, record_history=True
        )
        assert results[i] == want
        assert results[i]["converged"]
        np.testing.assert_array_equal(x[i], xi)


def test_krylov_solve_batch_preconditioners_and_errors():
    n, crow, col, val = poisson2d(6)
    B = 4
    p = _C.CsrPattern(n, n, crow, col)
    values = batch_values(val, B)
    b, x = np.ones((B, n, 1)), np.zeros((B, n, 1))
    # None for all members; a callable preconditioner (it takes the GIL from the batch's threads).
    assert all(r["converged"] for r in _C.krylov_solve_batch("cg", p, values, b, x, None, threads=2))
    identity = _C.callable_preconditioner(lambda r: r.clone(), "float64", n)
    x[:] = 0
    res = _C.krylov_solve_batch("cg", p, values, b, x, [identity] * B, threads=2)
    assert all(r["converged"] for r in res)
    with pytest.raises(errors.InvalidArgumentError, match="preconds: 3 entries for 4 members"):
        _C.krylov_solve_batch("cg", p, values, b, x, [None] * 3)
    with pytest.raises(
        errors.InvalidArgumentError, match=r"preconds\[1\]: expected a Preconditioner or None"
    ):
        _C.krylov_solve_batch("cg", p, values, b, x, [None, "jacobi", None, None])
    small = _C.make_preconditioner("jacobi", 2, np.array([0, 1, 2]), np.array([0, 1]), np.ones(2))
    with pytest.raises(errors.InvalidArgumentError, match=r"preconds\[2\]: built for another matrix size"):
        _C.krylov_solve_batch("cg", p, values, b, x, [None, None, small, None])
    with pytest.raises(errors.InvalidArgumentError, match=rf"b: expected shape \(4, {n}, k\)"):
        _C.krylov_solve_batch("cg", p, values, b[:3], x[:3])
    with pytest.raises(errors.InvalidArgumentError, match="x: shape"):
        _C.krylov_solve_batch("cg", p, values, b, np.zeros((B, n, 2)))
    with pytest.raises(errors.InvalidArgumentError, match="values: expected shape"):
        _C.krylov_solve_batch("cg", p, values[:, 1:], b, x)
    with pytest.raises(errors.InvalidArgumentError, match="^batch member 0: maxiter"):
        _C.krylov_solve_batch("gmres", p, values, b, x, maxiter=0, threads=2)
    # A Python exception raised by a member's preconditioner comes out as it is.

    def fail(r):
        raise _Stop("preconditioner failed")

    with pytest.raises(_Stop):
        _C.krylov_solve_batch(
            "cg", p, values, b, x, [None, _C.callable_preconditioner(fail, "float64", n), None, None]
        )


class _Stop(Exception):
    pass


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_a_signal_interrupts_a_krylov_batch():
    n, crow, col, val = poisson2d(
        200
    )  # n = 40,000: a tolerance out of reach keeps every member busy for long
    B = 4
    p = _C.CsrPattern(n, n, crow, col)
    values = batch_values(val, B)
    b, x = np.ones((B, n, 1)), np.zeros((B, n, 1))

    def raise_stop(signum, frame):
        raise _Stop("stop")

    previous = signal.signal(signal.SIGUSR1, raise_stop)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(_Stop):
            _C.krylov_solve_batch("cg", p, values, b, x, rtol=1e-300, maxiter=100_000, threads=2)
        assert time.monotonic() - t0 < 3.0
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
