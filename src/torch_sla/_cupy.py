"""CuPy backends, when CuPy is installed: ``cupyx.scipy.sparse.linalg`` on CUDA tensors, through DLPack
without copies. The baseline GPU users know, and the last resort on CUDA: the direct one (``splu``:
SuperLU's factorization, then triangular solves on the GPU) ranks after cuDSS, the iterative one (CG,
GMRES) after the CUDA kernels and the torch kernels. Work runs on torch's current stream."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ._checks import to_core
from ._iterative import KrylovBackend, KrylovSolver, merge_columns
from ._registry import Backend, register
from ._sparse_tensor import SparseTensor
from .errors import InvalidArgumentError, SingularMatrixError

try:
    import cupy
    import cupyx.scipy.sparse as cupy_sparse
    import cupyx.scipy.sparse.linalg as cupy_linalg
except Exception as exc:  # ImportError, or a CuPy whose CUDA libraries do not load
    cupy = cupy_sparse = cupy_linalg = None
    CUPY_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    CUPY_ERROR = None


def cupy_availability() -> tuple[bool, str]:
    """(whether the CuPy backends can run, a note)."""
    if cupy is None:
        return False, f"CuPy is not importable ({CUPY_ERROR}); pip install cupy-cuda13x (or -cuda12x)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver
        return False, f"CuPy {cupy.__version__} sees no CUDA device ({type(exc).__name__}: {exc})"
    if count == 0:
        return False, f"CuPy {cupy.__version__} sees no CUDA device"
    return True, f"CuPy {cupy.__version__}: cupyx.scipy.sparse.linalg"


def cupy_csr(A: SparseTensor, values: torch.Tensor):
    """A's pattern with ``values`` as a ``cupyx.scipy.sparse.csr_matrix`` sharing their memory (DLPack)."""
    crow, col = A.pattern.csr_for_core()
    if crow.dtype != torch.int32:
        raise InvalidArgumentError(
            f"A: CuPy takes 32-bit indices; A has {A.nnz} entries and {A.shape[-1]} rows"
        )
    return cupy_sparse.csr_matrix(
        (cupy.from_dlpack(to_core(values)), cupy.from_dlpack(col), cupy.from_dlpack(crow)), shape=A.shape[-2:]
    )


def on_torch_stream(t: torch.Tensor):
    """CuPy's stream context for torch's current stream on ``t``'s device (so that both order their work)."""
    return cupy.cuda.ExternalStream(torch.cuda.current_stream(t.device).cuda_stream)


class _CupyFactor:
    """``cupyx.scipy.sparse.linalg.splu`` of one matrix."""

    __slots__ = ("lu", "device", "nnz")

    def __init__(self, lu, device: torch.device, nnz: int):
        self.lu, self.device, self.nnz = lu, device, nnz

    def solve(self, b: torch.Tensor, op: str) -> torch.Tensor:
        trans = "N" if op == "N" else ("H" if b.is_complex() else "T")
        with on_torch_stream(b):
            x = self.lu.solve(cupy.from_dlpack(to_core(b.detach())), trans=trans)
        return torch.from_dlpack(x)

    @property
    def factor_nnz(self) -> int:
        return self.nnz


class CupyDirectBackend(Backend):
    """``cupyx.scipy.sparse.linalg.splu`` on a CUDA device: the factorization is SciPy's SuperLU of a copy
    on the host, the solves triangular solves on the GPU. For small and medium matrices only: ``auto``
    passes over it above ``max_auto_size`` rows."""

    name = "cupy"
    kind = "direct"
    devices = ("cuda",)
    methods = ("lu",)
    operations = frozenset({"solve", "factorize", "batch"})
    priority = {"cuda": 1}
    max_auto_size = 200_000
    size_note = "CuPy's splu factorizes on the host (SuperLU) and copies the factors to the device"

    def availability(self) -> tuple[bool, str]:
        ok, note = cupy_availability()
        return ok, note + (": splu (SuperLU factors, GPU triangular solves)" if ok else "")

    def factorize(self, A: SparseTensor, method: str) -> tuple[list, bool]:
        factors = []
        for v in A.values.detach().reshape(A.batch_size, A.nnz):
            with on_torch_stream(v):
                M = cupy_csr(A, v).tocsc()
                try:
                    lu = cupy_linalg.splu(M)
                except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
                    raise SingularMatrixError(f"A is singular: {exc}") from exc
                piv = cupy.abs(lu.U.diagonal()).get() if hasattr(lu, "U") else None
            if piv is not None and piv.size:
                eps = float(np.finfo(piv.dtype).eps)
                ratio = float(piv.min() / piv.max()) if piv.max() > 0 else 0.0
                if not ratio >= eps:
                    raise SingularMatrixError(
                        f"A is singular to working precision: the lu factorization's pivot ratio is {ratio:.3g}, "
                        f"below machine epsilon {eps:.3g}"
                    )
            nnz = int(lu.L.nnz + lu.U.nnz) if hasattr(lu, "L") else 0
            factors.append(_CupyFactor(lu, v.device, nnz))
        return factors, False


class CupyKrylovBackend(KrylovBackend):
    """``cupyx.scipy.sparse.linalg`` CG and GMRES, without preconditioner: a comparison column, last in
    ``auto``'s order on CUDA."""

    name = "cupy_krylov"
    devices = ("cuda",)
    methods = ("cg", "gmres")
    preconditioners = ()
    priority = {"cuda": 2}

    def availability(self) -> tuple[bool, str]:
        ok, note = cupy_availability()
        return ok, note + (": cg, gmres" if ok else "")

    def auto_preconditioner(self, A: SparseTensor, method: str) -> tuple[str, str]:
        return "none", f"backend '{self.name}' has no preconditioners"

    def accepts(self, opts) -> str | None:
        if opts.callback is not None:
            return f"backend '{self.name}' takes no callback"
        pre = opts.preconditioner
        if pre is None or (isinstance(pre, str) and pre in ("auto", "none")):
            return None
        return f"backend '{self.name}' has no preconditioners"

    def build_preconditioners(self, solver: KrylovSolver, name: str):
        return name

    def solve_member(self, solver: KrylovSolver, i: int, b: torch.Tensor, x0, op: str):
        pattern, values = solver.operator_values(op)
        A = SparseTensor._from_pattern(values[i], pattern)
        o = solver.opts
        fn = getattr(cupy_linalg, solver.method)
        params = inspect.signature(fn).parameters
        tol_name = "rtol" if "rtol" in params else "tol"
        extra = {"restart": min(o.restart, solver.n)} if solver.method == "gmres" else {}
        cols, results = [], []
        with on_torch_stream(b):
            M = cupy_csr(A, values[i])
            for j in range(b.shape[1]):
                bj = cupy.from_dlpack(to_core(b[:, j]))
                count = [0]

                def counter(_xk, count=count):
                    count[0] += 1

                kw = {
                    tol_name: o.rtol,
                    "atol": o.atol,
                    "maxiter": o.max_iterations(solver.n),
                    "callback": counter,
                }
                x0j = None if x0 is None else cupy.from_dlpack(to_core(x0[:, j]))
                xj, flag = fn(M, bj, x0=x0j, **kw, **extra)
                bn = float(cupy.linalg.norm(bj))
                res = float(cupy.linalg.norm(bj - M @ xj)) / (bn if bn > 0 else 1.0)
                cols.append(torch.from_dlpack(xj))
                results.append(
                    {
                        "iterations": count[0],
                        "residual": res,
                        "converged": flag == 0,
                        "reason": "converged" if flag == 0 else f"cupyx {solver.method} returned info {flag}",
                        "residual_history": [],
                    }
                )
        return torch.stack(cols, dim=1), merge_columns(results)


for _backend in (CupyDirectBackend(), CupyKrylovBackend()):
    register(_backend)
