"""Direct solves: the factorization backends (SuiteSparse, Eigen and PARDISO in the C++ core, SciPy's
SuperLU on the CPU; cuDSS on CUDA devices) and :class:`Factorization`, which autograd differentiates
through with one node per solve."""

from __future__ import annotations

import collections
import dataclasses
import os
import site
import sys
import threading
import time
from typing import Any

import numpy as np
import torch

from ._autograd import pattern_jvp, pattern_vjp, solve_through
from ._checks import as_float, core_array, dtype_name, stream_of, to_core
from ._core import core, core_build_info, core_missing
from ._registry import DIRECT_METHODS, Backend, Choice, register
from ._sparse_tensor import SparseTensor, check_rhs, normalize_rhs, values_version
from .errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    NotPositiveDefiniteError,
    SingularMatrixError,
)


class AnalysisCache:
    """Symbolic analyses by (pattern fingerprint, backend, method, dtype), least recently used first out,
    bounded by the bytes the analyses hold. A new matrix with the same pattern (the normal case in a
    training loop) skips the ordering and symbolic factorization. Safe to use from several threads."""

    def __init__(self, limit_bytes: float):
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple, tuple[Any, int]] = collections.OrderedDict()
        self._bytes = 0
        self.limit_bytes = float(limit_bytes)
        self.hits = self.misses = 0

    def get(self, key: tuple):
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return hit[0]

    def put(self, key: tuple, sym, nbytes: int):
        """Store ``sym`` (unless it alone exceeds the limit) and return the cached analysis for ``key``:
        ``sym``, or the one another thread stored first."""
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                return old[0]
            if nbytes <= self.limit_bytes:
                self._entries[key] = (sym, nbytes)
                self._bytes += nbytes
                self._evict()
            return sym

    def _evict(self) -> None:
        while self._bytes > self.limit_bytes and self._entries:
            _, (_, nbytes) = self._entries.popitem(last=False)
            self._bytes -= nbytes

    def set_limit(self, limit_bytes: float) -> None:
        with self._lock:
            self.limit_bytes = float(limit_bytes)
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def info(self) -> dict:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "limit_bytes": self.limit_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }


_ANALYSIS_CACHE = AnalysisCache(1 << 30)
# The analyses of the members of batches of distinct patterns (solve_batch) live in the core, which looks
# them up per block by the block's exact pattern while the GIL is released: the core's BlockAnalysisCache,
# made on first use, under the same byte limit as the cache above (each its own).
_BLOCK_CACHE: list = []
_BLOCK_CACHE_LOCK = threading.Lock()


def block_analysis_cache():
    """The core's cache of the analyses of batch members (made on first use)."""
    with _BLOCK_CACHE_LOCK:
        if not _BLOCK_CACHE:
            _BLOCK_CACHE.append(core().BlockAnalysisCache(int(_ANALYSIS_CACHE.limit_bytes)))
        return _BLOCK_CACHE[0]


def clear_analysis_cache() -> None:
    """Forget every cached symbolic analysis (those of batch members too)."""
    _ANALYSIS_CACHE.clear()
    with _BLOCK_CACHE_LOCK:
        for c in _BLOCK_CACHE:
            c.clear()


def set_analysis_cache_limit(nbytes: float) -> None:
    """Bound the memory held by cached symbolic analyses (default 1 GiB); 0 disables the cache. The least
    recently used analyses are dropped first. The analyses of the members of batches of distinct patterns
    (:func:`solve_batch`) are kept in a cache of their own under the same limit."""
    limit = as_float(nbytes, "nbytes", lo=0.0)
    _ANALYSIS_CACHE.set_limit(limit)
    with _BLOCK_CACHE_LOCK:
        for c in _BLOCK_CACHE:
            c.set_limit(int(min(limit, 2.0**63)))


def analysis_cache_info() -> dict:
    """``entries``, ``bytes`` (held by the cached analyses), ``limit_bytes``, ``hits`` and ``misses``; the
    same for the analyses of batch members as ``batch_entries``, ``batch_bytes``, ``batch_hits`` and
    ``batch_misses``."""
    info = _ANALYSIS_CACHE.info()
    with _BLOCK_CACHE_LOCK:
        stats = _BLOCK_CACHE[0].stats() if _BLOCK_CACHE else (0, 0, 0, 0, 0)
    entries, nbytes, _, hits, misses = stats
    info.update(batch_entries=entries, batch_bytes=nbytes, batch_hits=hits, batch_misses=misses)
    return info


# -- raw factors: solve without autograd, one per batch member ----------------------------------------
class _CoreFactor:
    """A numeric factorization from the C++ core (SuiteSparse or Eigen)."""

    __slots__ = ("numeric",)

    def __init__(self, numeric):
        self.numeric = numeric

    def solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        # The core takes right-hand sides column-major: (n, k) row-major b is (k, n) after .T.
        return self.solve_columns(b.t(), op).t()

    def solve_columns(self, bt: torch.Tensor, op: str) -> torch.Tensor:
        """Solve for the rows of a (k, n) tensor (k right-hand sides, stored column-major)."""
        bt = to_core(bt)
        xt = torch.empty_like(bt)
        self.numeric.solve(core_array(bt), core_array(xt), op, stream_of(bt))
        return xt

    @property
    def factor_nnz(self) -> int:
        return int(self.numeric.factor_nnz)

    def slogdet(self) -> tuple[complex | float, float]:
        """(sign, log|det|) from the factors; (0, -inf) for a singular matrix."""
        return self.numeric.slogdet()

    def inverse_entries(self, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(A^{-1})[rows[k], cols[k]]`` by selected inversion of the factors (positions the factors
        cover: see :meth:`Factorization.inverse_entries`)."""
        out = torch.empty(rows.numel(), dtype=dtype)
        self.numeric.inverse_entries(core_array(rows), core_array(cols), core_array(out))
        return out


class _CoreBatch:
    """The numeric factorizations of a whole batch from the C++ core (one ``NumericBatch``), solved
    together: ``solve_stack`` takes and returns (B, n, k) stacks."""

    __slots__ = ("batch",)

    def __init__(self, batch):
        self.batch = batch

    def solve_stack(self, b: torch.Tensor, op: str) -> torch.Tensor:
        bt = to_core(b.transpose(1, 2))  # (B, k, n): each member's right-hand sides column-major
        xt = torch.empty_like(bt)
        self.batch.solve(core_array(bt), core_array(xt), op, torch.get_num_threads(), stream_of(bt))
        return xt.transpose(1, 2)

    @property
    def factor_nnz(self) -> int:
        return int(self.batch[0].factor_nnz)  # the first member's, like a list of factors reports

    def members(self) -> list[_CoreFactor]:
        """One factor per batch member (each shares the member's numeric factorization)."""
        return [_CoreFactor(self.batch[i]) for i in range(len(self.batch))]


class _ScipyFactor:
    """``scipy.sparse.linalg.splu`` (SuperLU)."""

    __slots__ = ("lu", "dtype")

    def __init__(self, lu, dtype: torch.dtype):
        self.lu = lu
        self.dtype = dtype

    def solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        x = self.lu.solve(to_core(b.detach()).cpu().numpy(), trans="N" if op == "N" else "H")
        return torch.from_numpy(x).to(self.dtype)

    @property
    def factor_nnz(self) -> int:
        return int(self.lu.L.nnz + self.lu.U.nnz)


_BLAS_THREADS = [0]  # the thread count last given to the BLAS


# -- backends ------------------------------------------------------------------------------------------
class CoreDirectBackend(Backend):
    """A direct backend of the C++ core: a symbolic analysis (cached per pattern, method and dtype),
    then one numeric factorization per batch member sharing it."""

    kind = "direct"
    devices = ("cpu",)
    methods = DIRECT_METHODS
    operations = frozenset({"solve", "factorize", "batch", "logdet", "selected_inverse"})
    orderings = ("default", "amd", "metis")

    def analyze(self, A: SparseTensor, method: str, ordering: str = "default") -> tuple[Any, bool]:
        """The (cached) symbolic analysis of A's pattern; returns (symbolic, reused)."""
        if ordering not in self.orderings:
            raise InvalidArgumentError(
                f"ordering: backend {self.name!r} takes one of {self.orderings}, got {ordering!r}"
            )
        p = A.pattern
        key = (p.fingerprint, self.name, method, dtype_name(A.dtype), ordering)
        sym = _ANALYSIS_CACHE.get(key)
        if sym is not None:
            return sym, True
        sym = core().analyze(self.name, method, dtype_name(A.dtype), p.core_handle(), ordering)
        return _ANALYSIS_CACHE.put(key, sym, int(sym.memory_bytes)), False

    def probe_analysis(self, A: SparseTensor, method: str):
        sym, _ = self.analyze(A, method)
        return sym if sym.predicted_flops >= 0 else None

    def cold_solve_seconds(self, A: SparseTensor, method: str, ordering: str = "default") -> float:
        C = core()
        b = torch.ones(1, A.shape[-1], dtype=A.dtype)
        x = torch.empty_like(b)
        values = core_array(A.values.detach().reshape(A.nnz))
        t0 = time.perf_counter()
        sym = C.analyze(self.name, method, dtype_name(A.dtype), A.pattern.core_handle(), ordering)
        C.factorize(sym, values).solve(core_array(b), core_array(x), "N")
        return time.perf_counter() - t0

    def predicted_solve_bytes(
        self, A: SparseTensor, method: str, nrhs: int, ordering: str = "default"
    ) -> float:
        """Peak memory of a solve, from the symbolic analysis: the factors of every batch member plus
        what the solve allocates besides them (-1 when the analysis gives no factor-size prediction).

        Besides the factors (``predicted_factor_bytes``) a solve holds the analysis (``memory_bytes``:
        the CSC plan and the library's symbolic data), the pattern's derived arrays and the transient
        ones of the analysis (expanded rows, int32 copies, the transpose permutation of the symmetry
        check, the ordering's workspace: about 32 bytes per entry and 48 per row), the library's numeric
        workspace and its copy of the values, and per right-hand side a handful of ``n``-vectors (b, x,
        the transposed and converted copies the core makes, autograd's saved x). Calibrated against the
        measured peak memory of solves of diagonal, 2-D and 3-D Poisson and convection-diffusion
        matrices (``n`` up to 4e6), which it exceeds by 15-30%."""
        sym, _ = self.analyze(A, method, ordering)
        factor = float(sym.predicted_factor_bytes)
        if factor < 0:
            return -1.0
        n, nnz = A.shape[-1], A.nnz
        item = A.values.element_size()
        batch = max(1, A.batch_size)
        per_matrix = factor + 16.0 * (n + nnz) + 2.0 * item * nnz
        pattern = float(sym.memory_bytes) + 32.0 * nnz + 48.0 * n
        vectors = 8.0 * item * n * max(1, nrhs) * batch
        return batch * per_matrix + pattern + vectors

    def factorize(
        self, A: SparseTensor, method: str, allow_singular: bool = False, ordering: str = "default"
    ) -> tuple[list, bool]:
        """The numeric factorization of every batch member; ``allow_singular`` keeps a factor that is
        singular to working precision (for determinants: its solves still raise) instead of raising."""
        C = core()
        flags = {"allow_singular": True} if allow_singular else {}
        threads = torch.get_num_threads()
        if threads != _BLAS_THREADS[0]:  # tell the BLAS under the libraries only when it changes
            C.set_blas_threads(threads)
            _BLAS_THREADS[0] = threads
        sym, reused = self.analyze(A, method, ordering)
        values = A.values.detach()
        stream = stream_of(values)
        if values.dim() > 1 and A.batch_size > 1:
            # the whole batch in one call, members in parallel, the GIL released once
            values = values.reshape(A.batch_size, A.nnz)
            batch = C.factorize_batch(sym, core_array(values), threads, stream=stream, **flags)
            return [_CoreBatch(batch)], reused
        return [
            _CoreFactor(C.factorize(sym, core_array(values.reshape(A.nnz)), stream=stream, **flags))
        ], reused


class SuiteSparseBackend(CoreDirectBackend):
    name = "suitesparse"
    priority = {"cpu": 0}

    def availability(self) -> tuple[bool, str]:
        if (why := core_missing()) is not None:
            return False, why
        info = core_build_info()
        if not info.get("suitesparse"):
            return False, "SuiteSparse was not found when the C++ core was built (Eigen-only build)"
        return True, (
            f"SuiteSparse {info.get('suitesparse_version')}: CHOLMOD (LL^T supernodal/simplicial, LDL^T), "
            "UMFPACK (LU); float32/complex64 are computed in double precision"
        )


class EigenBackend(CoreDirectBackend):
    name = "eigen"
    priority = {"cpu": 1}
    orderings = ("default", "amd")

    def supports_operation(self, operation: str, method: str) -> bool:
        # SparseLU keeps its factors in a supernodal form that the selected inversion does not read; a
        # log-determinant's gradient on it falls back to solves (Factorization.raw_inverse_entries).
        if operation == "selected_inverse" and method == "lu":
            return False
        return operation in self.operations

    def availability(self) -> tuple[bool, str]:
        if (why := core_missing()) is not None:
            return False, why
        info = core_build_info()
        return (
            True,
            f"Eigen {info.get('eigen_version')}: SimplicialLLT, SimplicialLDLT, SparseLU in the input precision",
        )


def mkl_candidates() -> list[str]:
    """Where the ``mkl`` wheel puts MKL's runtime library: the ``lib`` folder of the running Python's
    prefix (the virtual environment). ``TORCH_SLA_MKL_RT`` overrides it (see ``load_pardiso``)."""
    lib = os.path.join(sys.prefix, "lib")
    return [os.path.join(lib, name) for name in ("libmkl_rt.so.3", "libmkl_rt.so.2")]


class PardisoBackend(CoreDirectBackend):
    """Intel MKL PARDISO, loaded at run time from the ``mkl`` wheel (no build-time dependency): supernodal
    LL^T, Bunch-Kaufman LDL^T and LU with weighted matching, on ``torch.get_num_threads()`` threads."""

    name = "pardiso"
    priority = {"cpu": 3}
    # No determinant or selected inversion: PARDISO does not give its pivots or factors back.
    operations = frozenset({"solve", "factorize", "batch"})
    # "default" is METIS nested dissection; its minimum degree costs less to compute and fills more.
    tune_orderings = ("amd", "metis")

    def auto_ordering(self, flops: float, factor_nnz: float, dense_rows: float = 1.0) -> str:
        # Nested dissection pays where the factorization dominates the ordering's cost: many flops per
        # factor entry (large 3-D problems). Measured, cold, 2 threads: 3-D Poisson 40^3 (1123 flops per
        # entry of CHOLMOD's factor) METIS 1.9 s vs minimum degree 3.4 s; 2-D Poisson 500^2 (225) minimum
        # degree 1.3 s vs METIS 2.1 s; convection-diffusion 300^2 (235) about even. PARDISO's minimum
        # degree also breaks down on rows far longer than the mean (a block-arrow matrix with a border:
        # 6.6 s against METIS's 0.44 s).
        return "metis" if flops > 400.0 * factor_nnz or dense_rows > 8.0 else "amd"

    def probe_analysis(self, A: SparseTensor, method: str):
        # Only the positive definite analysis is made without the values (the others match on them).
        return super().probe_analysis(A, method) if method == "cholesky" else None

    def availability(self) -> tuple[bool, str]:
        if (why := core_missing()) is not None:
            return False, why
        loaded, description = core().load_pardiso(mkl_candidates())
        description = " ".join(line.strip() for line in description.splitlines())
        if not loaded:
            return False, description
        return True, f"{description}; float32/complex64 are computed in double precision"

    def factorize(
        self, A: SparseTensor, method: str, allow_singular: bool = False, ordering: str = "default"
    ) -> tuple[list, bool]:
        core().set_pardiso_threads(torch.get_num_threads())
        return super().factorize(A, method, allow_singular, ordering)

    def cold_solve_seconds(self, A: SparseTensor, method: str, ordering: str = "default") -> float:
        core().set_pardiso_threads(torch.get_num_threads())
        return super().cold_solve_seconds(A, method, ordering)


def cudss_candidates(search_dirs: list[str] | None = None, torch_cuda: str | None = None) -> list[str]:
    """Where the ``nvidia-cudss-cu13`` / ``-cu12`` wheels put libcudss, among the existing files: in each
    site-packages folder, ``nvidia/cu13/lib/libcudss.so.1`` and ``nvidia/cu12/lib/libcudss.so.1`` (the
    wheel matching torch's CUDA major version ``torch_cuda`` first), then the older layout
    ``nvidia/cudss/lib/libcudss.so.*``. ``search_dirs`` defaults to the interpreter's site-packages folders.
    ``TORCH_SLA_CUDSS`` overrides the search (see ``load_cudss``)."""
    if search_dirs is None:
        search_dirs = [*site.getsitepackages(), site.getusersitepackages()]
        search_dirs += [p for p in sys.path if p.endswith("site-packages")]
    major = (torch_cuda or "").split(".")[0]
    tags = ("cu12", "cu13") if major == "12" else ("cu13", "cu12")
    out: list[str] = []
    for d in dict.fromkeys(search_dirs):  # in order, once each
        paths = [os.path.join(d, "nvidia", t, "lib", "libcudss.so.1") for t in tags]
        paths += [os.path.join(d, "nvidia", "cudss", "lib", f"libcudss.so.{v}") for v in (1, 0)]
        out += [p for p in paths if os.path.isfile(p) and p not in out]
    return out


class CudssBackend(CoreDirectBackend):
    """NVIDIA cuDSS on a CUDA device (Cholesky, LDL^T, LU), loaded at run time from the
    ``nvidia-cudss-cu13`` / ``-cu12`` wheel: the analysis is cached per pattern like the CPU backends', new
    values refactorize without analysing again, backward solves with the same factors (a transposed solve
    for LU), and a batch sharing one pattern is factorized as one uniform batch. Work runs on torch's
    current stream."""

    name = "cudss"
    devices = ("cuda",)
    priority = {"cuda": 0}
    # No determinant or selected inversion (cuDSS gives no factors back); batches are uniform batches.
    operations = frozenset({"solve", "factorize", "batch"})
    tune_orderings = ("default",)

    def availability(self) -> tuple[bool, str]:
        if (why := core_missing(needs_cuda=True)) is not None:
            return False, why
        info = core_build_info()
        loaded, description = core().load_cudss(cudss_candidates(torch_cuda=torch.version.cuda))
        description = " ".join(line.strip() for line in description.splitlines())
        if not loaded:
            return False, description
        if not info.get("cuda_device_count"):
            why = info.get("cuda_error") or "no CUDA device is visible to the core's CUDA runtime"
            return False, f"{description} is loaded, but {why}"
        return True, f"{description}; analysis cached per pattern, uniform batches, on torch's current stream"

    def analyze(self, A: SparseTensor, method: str, ordering: str = "default") -> tuple[Any, bool]:
        """The (cached) cuDSS analysis of A's pattern on A's device; returns (symbolic, reused)."""
        if ordering not in self.orderings:
            raise InvalidArgumentError(
                f"ordering: backend {self.name!r} takes one of {self.orderings}, got {ordering!r}"
            )
        if A.device.type != "cuda":
            raise InvalidArgumentError(
                f"A: backend 'cudss' runs on a CUDA device, but A is on {A.device}; move it with A.to('cuda')"
            )
        p = A.pattern
        index = A.device.index if A.device.index is not None else torch.cuda.current_device()
        key = (p.fingerprint, self.name, method, dtype_name(A.dtype), ordering, index)
        sym = _ANALYSIS_CACHE.get(key)
        if sym is not None:
            return sym, True
        sym = core().analyze_cudss(
            method, dtype_name(A.dtype), p.core_handle(), index, ordering, stream_of(A.values)
        )
        return _ANALYSIS_CACHE.put(key, sym, int(sym.memory_bytes)), False

    def probe_analysis(self, A: SparseTensor, method: str):
        return None  # the cost model of ``auto`` is calibrated for the CPU backends

    def predicted_solve_bytes(
        self, A: SparseTensor, method: str, nrhs: int, ordering: str = "default"
    ) -> float:
        """Peak device memory of a solve: the factors of every batch member (cuDSS's fill from the analysis),
        cuDSS's copy of the values, the diagonal and scratch vectors of each set of factors, and the
        right-hand sides, solutions and autograd's saved solution."""
        sym, _ = self.analyze(A, method, ordering)
        factor = float(sym.predicted_factor_bytes)
        if factor < 0:
            return -1.0
        item = A.values.element_size()
        batch = max(1, A.batch_size)
        n, nnz = A.shape[-1], A.nnz
        return (
            batch * (factor + item * (nnz + 3 * n))
            + float(sym.memory_bytes)
            + 4.0 * item * n * max(1, nrhs) * batch
        )


class ScipyBackend(Backend):
    """``scipy.sparse.linalg.splu`` (SuperLU), the reference most users know."""

    name = "scipy"
    kind = "direct"
    devices = ("cpu",)
    methods = ("lu",)
    operations = frozenset({"solve", "factorize", "batch"})
    priority = {"cpu": 2}

    def availability(self) -> tuple[bool, str]:
        try:
            import scipy.sparse.linalg  # noqa: F401
        except ImportError:  # pragma: no cover
            return False, "scipy is not installed"
        return True, "scipy.sparse.linalg.splu (SuperLU), the reference most users know"

    def factorize(self, A: SparseTensor, method: str) -> tuple[list, bool]:
        import scipy.sparse.linalg as spla

        factors = []
        for v in A.values.detach().reshape(A.batch_size, A.nnz):
            try:
                lu = spla.splu(A.with_values(v).to_scipy().tocsc())
            except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
                raise SingularMatrixError(f"A is singular: {exc}") from exc
            # Same rule as the C++ backends: a pivot ratio below machine epsilon is singular.
            piv = np.abs(lu.U.diagonal())
            eps = float(np.finfo(lu.U.dtype).eps)
            ratio = float(piv.min() / piv.max()) if piv.size and piv.max() > 0 else 0.0
            if not ratio >= eps:
                raise SingularMatrixError(
                    f"A is singular to working precision: the lu factorization's pivot ratio is {ratio:.3g}, "
                    f"below machine epsilon {eps:.3g}"
                )
            factors.append(_ScipyFactor(lu, A.dtype))
        return factors, False


for _backend in (SuiteSparseBackend(), EigenBackend(), ScipyBackend(), PardisoBackend(), CudssBackend()):
    register(_backend)


class Factorization:
    """A factorized sparse matrix (or batch). ``solve`` reuses the factors and is differentiable.

    Created by :meth:`SparseTensor.factorize` or :func:`torch_sla.factorize`. Gradients flow to ``b`` and
    to the values of the matrix that was factorized; backward solves with the same factors (no
    refactorization).

    The factors belong to the values as they were when ``factorize`` ran. Changing those values in place
    afterwards (``A.values.mul_(3)``) makes every later ``solve`` raise :class:`InvalidArgumentError`:
    call ``factorize`` again. (Assigning a new tensor to ``A.values`` does not affect the factorization,
    which keeps its own reference to the old one.)

    Attributes
    ----------
    backend, method : str
        What was used (after ``auto`` and any fallback).
    info : dict
        ``analysis_reused``, ``factor_nnz`` (fill of the first batch member), ``reasons``.
    """

    def __init__(self, A: SparseTensor, choice: Choice, factors: list, reused: bool):
        self.A = A
        self.backend = choice.backend
        self.method = choice.method
        self._choice = choice
        self._factors = factors
        self._values = A.values
        self._version = values_version(A.values)
        self.info = {
            "analysis_reused": reused,
            "factor_nnz": factors[0].factor_nnz if factors else 0,
            "reasons": list(choice.reasons),
        }

    def __repr__(self) -> str:
        return f"Factorization(backend={self.backend!r}, method={self.method!r}, A={self.A!r})"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.A.shape

    @property
    def pattern(self):
        return self.A.pattern

    def solve(self, b: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """Solve ``A x = b`` with the stored factors.

        ``b`` has shape ``(n,)`` or ``(n, k)`` (broadcast over the batch) or the batch dims in front:
        ``(*batch, n)`` / ``(*batch, n, k)``. Returns ``x`` of the same shape as ``b`` (with the batch).
        Raises :class:`InvalidArgumentError` if the factorized values were changed in place since.
        """
        return self._apply(b, "N", check_finite)

    def solve_adjoint(self, b: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """Solve ``A^H x = b`` (``A^T x = b`` for real matrices) with the stored factors."""
        return self._apply(b, "H", check_finite)

    def _apply(self, b: torch.Tensor, op: str, check_finite: bool) -> torch.Tensor:
        self._check_fresh()
        A = self.A
        b = check_rhs(A, b, check_finite)
        bb, restore = normalize_rhs(A, b, name="b", n=A.shape[-1])
        x = solve_through(self, op, bb, self._values.reshape(A.batch_size, A.nnz))
        return restore(x)

    def _members(self) -> list:
        """One factor per batch member."""
        if self._factors and isinstance(self._factors[0], _CoreBatch):
            return self._factors[0].members()
        return list(self._factors)

    def raw_slogdet(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sign, log|det|) of every batch member as (B,) tensors, without autograd (see
        :func:`torch_sla.slogdet`)."""
        self._check_fresh()
        B = max(self.A.batch_size, 0)
        real = torch.float64 if self.A.dtype in (torch.float64, torch.complex128) else torch.float32
        sign_dtype = self.A.dtype if self.A.dtype.is_complex else real
        if self.A.shape[-1] == 0:  # det of a 0 x 0 matrix is 1
            return torch.ones(B, dtype=sign_dtype), torch.zeros(B, dtype=real)
        pairs = [f.slogdet() for f in self._members()]
        sign = torch.tensor([p[0] for p in pairs], dtype=sign_dtype).reshape(B)
        logabs = torch.tensor([p[1] for p in pairs], dtype=real).reshape(B)
        return sign, logabs

    def raw_inverse_entries(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``(A_b^{-1})[rows[k], cols[k]]`` for every batch member b, a (B, len(rows)) tensor, by selected
        inversion of the factors, without autograd. The positions the factors cover: with Cholesky /
        LDL^T every position of A's pattern and of its transpose; with LU those of A's transpose
        (``(j, i)`` for each stored ``(i, j)``); other positions raise :class:`InvalidArgumentError`."""
        self._check_fresh()
        rows = rows.to(torch.int64).contiguous()
        cols = cols.to(torch.int64).contiguous()
        B = max(self.A.batch_size, 0)
        if rows.numel() == 0 or not self._factors:
            return torch.zeros(B, rows.numel(), dtype=self.A.dtype)
        out = []
        for f in self._members():
            try:
                out.append(f.inverse_entries(rows, cols, self.A.dtype))
            except (BackendUnavailableError, AttributeError):  # no selected inversion in this backend
                out.append(_inverse_entries_by_solves(f, rows, cols, self.A.shape[-1], self.A.dtype))
        return torch.stack(out)

    def _check_fresh(self) -> None:
        if values_version(self._values) != self._version:
            raise InvalidArgumentError(
                "A.values: changed in place after factorize(), so the factors are stale; call "
                "factorize() again (or change values out of place: A.with_values(new_values))"
            )

    # -- the SolverSource and Solver protocols of LinearSolve -----------------------------------------
    def solver_for(self, params) -> Factorization:
        return self  # built from these values by factorize()

    def rebatched(self) -> FactorSource:
        return FactorSource(self.A, self._choice)

    def params_vjp(self, params, left, right):
        return (pattern_vjp(self.A.pattern, left, right),)

    def params_jvp(self, params, tangents, x, op):
        return pattern_jvp(self.A.pattern, tangents[0], x, op)

    def raw_solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        """Solve for a (B, n, k) stack without autograd."""
        if not self._factors:  # n = 0 or an empty batch: nothing to solve
            return torch.zeros_like(b)
        if isinstance(self._factors[0], _CoreBatch):
            return self._factors[0].solve_stack(b, op)
        if len(self._factors) == 1:
            f = self._factors[0]
            if isinstance(f, _CoreFactor) and b.shape[2] == 1 and b.is_contiguous():
                # one vector: (1, n, 1) is (1, n) column-major
                n = b.shape[1]
                return f.solve_columns(b.view(1, n), op).view(1, n, 1)
            return self._factors[0].solve(b[0], op).unsqueeze(0)
        return torch.stack([f.solve(b[i], op) for i, f in enumerate(self._factors)])


def _inverse_entries_by_solves(factor, rows: torch.Tensor, cols: torch.Tensor, n: int, dtype) -> torch.Tensor:
    """``(A^{-1})[rows[k], cols[k]]`` from one solve per distinct column (in blocks of 256 right-hand
    sides): exact, O(n) solves, for factors that have no selected inversion."""
    out = torch.empty(rows.numel(), dtype=dtype)
    distinct, where = torch.unique(cols, return_inverse=True)
    for start in range(0, distinct.numel(), 256):
        chunk = distinct[start : start + 256]
        E = torch.zeros(n, chunk.numel(), dtype=dtype)
        E[chunk, torch.arange(chunk.numel())] = 1
        X = factor.solve(E, "N")  # columns of A^{-1}
        sel = (where >= start) & (where < start + chunk.numel())
        out[sel] = X[rows[sel], where[sel] - start]
    return out


class FactorSource:
    """A factorization of A's pattern built on first use from the values LinearSolve is given (the
    SolverSource protocol): ``solve()`` defers the factorization into LinearSolve's forward, where
    torch.func hands over plain tensors the core can read."""

    def __init__(self, A: SparseTensor, choice: Choice, params: torch.Tensor | None = None):
        self.A, self.choice = A, choice
        self._params = params  # A's own (B, nnz) values, when the caller solves with them untransformed
        self._built: Factorization | None = None

    def solver_for(self, params) -> Factorization:
        if self._built is None:
            values = params[0]
            if values is self._params:  # A itself (factorize_with reads its values detached)
                A = self.A
            else:  # plain values handed over by torch.func, or a rebatched member
                A = SparseTensor._from_pattern(values.detach(), self.A.pattern)
            self._built = factorize_with(A, self.choice)
        return self._built

    def rebatched(self) -> FactorSource:
        return FactorSource(self.A, self.choice)

    def params_vjp(self, params, left, right):
        return (pattern_vjp(self.A.pattern, left, right),)

    def params_jvp(self, params, tangents, x, op):
        return pattern_jvp(self.A.pattern, tangents[0], x, op)


def factorize_with(A: SparseTensor, choice: Choice, *, allow_singular: bool = False) -> Factorization:
    """Factorize ``A`` as ``choice`` (from :func:`~torch_sla._registry.plan`) says; an automatic Cholesky
    that breaks down falls back to ``choice.fallback`` (LU) under a new Choice (``choice`` itself, which
    may be a cached plan, is never changed), and the pattern remembers it. ``allow_singular`` (for
    determinants) keeps a numerically singular factor instead of raising."""
    flags = {"allow_singular": True} if allow_singular else {}
    if choice.ordering != "default":
        flags["ordering"] = choice.ordering
    if choice.kind != "direct":
        raise InvalidArgumentError(
            f"method: factorize() needs a direct method and backend, got method={choice.method!r} on "
            f"backend {choice.backend!r}; use solve() for iterative methods"
        )
    if A.shape[-1] == 0 or A.batch_size == 0:
        return Factorization(A, choice, [], False)
    empty = A.pattern.empty_row_or_col()
    if empty is not None:
        raise SingularMatrixError(f"A is structurally singular: {empty}")
    try:
        factors, reused = choice.impl.factorize(A, choice.method, **flags)
    except NotPositiveDefiniteError:
        if choice.fallback is None:
            raise
        A.pattern._cache["cholesky_failed"] = True  # later plans for this pattern choose LU at once
        why = f"Cholesky broke down (not positive definite): fell back to {choice.fallback}"
        choice = dataclasses.replace(
            choice, method=choice.fallback, fallback=None, reasons=[*choice.reasons, why]
        )
        factors, reused = choice.impl.factorize(A, choice.method, **flags)
    return Factorization(A, choice, factors, reused)
