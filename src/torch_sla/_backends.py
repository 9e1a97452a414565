"""Backend registry and the one function that chooses a backend and a method.

``choose(A, backend, method)`` is the whole of ``backend="auto"`` / ``method="auto"``; ``explain`` prints
its reasons. Backends declare what they can do; nothing else in the package branches on backend names
except the code that builds a backend's factor.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import math
from typing import TYPE_CHECKING

import torch

from ._checks import dtype_name
from ._memory import fmt_bytes, get_memory_budget
from .errors import BackendUnavailableError, InvalidArgumentError, SingularMatrixError

if TYPE_CHECKING:
    from ._sparse_tensor import SparseTensor

DIRECT_METHODS = ("cholesky", "ldl", "lu")
ITERATIVE_METHODS = ("cg", "bicgstab", "gmres", "minres")
_ALL_DTYPES = ("float32", "float64", "complex64", "complex128")


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What a backend can do, and whether it can run here."""

    name: str
    kind: str  # "direct" or "iterative"
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    methods: tuple[str, ...]
    differentiable: bool
    available: bool
    note: str

    def supports(self, device: torch.device, dtype: torch.dtype, method: str) -> str | None:
        """None if the backend can run this, else the reason it cannot."""
        if not self.available:
            return f"backend '{self.name}' is not available: {self.note}"
        if device.type not in self.devices:
            return f"backend '{self.name}' runs on {', '.join(self.devices)}, not {device.type}"
        if dtype_name(dtype) not in self.dtypes:
            return f"backend '{self.name}' does not support dtype {dtype}"
        if method not in self.methods:
            return f"backend '{self.name}' has no method '{method}' (it has {', '.join(self.methods)})"
        return None


def _core_build_info() -> dict:
    try:
        from . import _C
    except ImportError as exc:  # pragma: no cover - a broken install
        return {"error": str(exc)}
    return dict(_C.build_info())


def _registry() -> dict[str, BackendInfo]:
    info = _core_build_info()
    core_ok = "error" not in info
    ss = core_ok and bool(info.get("suitesparse"))
    scipy_ok = importlib.util.find_spec("scipy") is not None
    return {
        "suitesparse": BackendInfo(
            name="suitesparse",
            kind="direct",
            devices=("cpu",),
            dtypes=_ALL_DTYPES,
            methods=DIRECT_METHODS,
            differentiable=True,
            available=ss,
            note=(
                f"SuiteSparse {info.get('suitesparse_version')}: CHOLMOD (LL^T supernodal/simplicial, "
                "LDL^T), UMFPACK (LU); float32/complex64 are computed in double precision"
                if ss
                else "SuiteSparse was not found when the C++ core was built (Eigen-only build)"
            ),
        ),
        "eigen": BackendInfo(
            name="eigen",
            kind="direct",
            devices=("cpu",),
            dtypes=_ALL_DTYPES,
            methods=DIRECT_METHODS,
            differentiable=True,
            available=core_ok,
            note=(
                f"Eigen {info.get('eigen_version')}: SimplicialLLT, SimplicialLDLT, SparseLU in the input precision"
                if core_ok
                else f"the C++ core failed to import: {info.get('error')}"
            ),
        ),
        "core": BackendInfo(
            name="core",
            kind="iterative",
            devices=("cpu",),
            dtypes=_ALL_DTYPES,
            methods=ITERATIVE_METHODS,
            differentiable=True,
            available=core_ok,
            note="C++ Krylov solvers (OpenMP, fused kernels, int32 indices); jacobi/ssor/ic0/ilu0 preconditioners",
        ),
        "torch": BackendInfo(
            name="torch",
            kind="iterative",
            devices=("cpu", "cuda", "mps", "xpu"),
            dtypes=_ALL_DTYPES,
            methods=ITERATIVE_METHODS,
            differentiable=True,
            available=True,
            note="PyTorch-native Krylov solvers on any device; jacobi/chebyshev preconditioners; matrix-free",
        ),
        "scipy": BackendInfo(
            name="scipy",
            kind="direct",
            devices=("cpu",),
            dtypes=_ALL_DTYPES,
            methods=("lu",),
            differentiable=True,
            available=scipy_ok,
            note="scipy.sparse.linalg.splu (SuperLU), the reference most users know",
        ),
    }


_REGISTRY: dict[str, BackendInfo] | None = None

# Order in which backend="auto" tries direct backends on the CPU: fastest first.
_CPU_DIRECT_PREFERENCE = ("suitesparse", "eigen", "scipy")
_ITERATIVE_PREFERENCE = ("core", "torch")


def backends() -> dict[str, BackendInfo]:
    """The registry: name -> :class:`BackendInfo`."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    return _REGISTRY


def show_backends(file=None) -> list[BackendInfo]:
    """Print a table of the backends (name, available, devices, dtypes, methods) and return them."""
    rows = list(backends().values())
    out = io.StringIO()
    out.write(f"{'backend':<12} {'available':<10} {'devices':<8} {'methods':<18} notes\n")
    for b in rows:
        out.write(
            f"{b.name:<12} {('yes' if b.available else 'no'):<10} {','.join(b.devices):<8} "
            f"{','.join(b.methods):<18} {b.note}\n"
        )
    info = _core_build_info()
    out.write(
        f"C++ core: openmp={info.get('openmp')}, cuda toolkit at build={info.get('cuda_toolkit_at_build')}; "
        "no GPU backend in this version\n"
    )
    print(out.getvalue(), end="", file=file)
    return rows


@dataclasses.dataclass
class Choice:
    """The outcome of ``choose``: a backend, a method, what to do if the method fails, and why."""

    backend: str
    method: str
    fallback: str | None
    reasons: list[str]
    kind: str = "direct"

    def __str__(self) -> str:
        lines = [f"{self.kind} solve: backend={self.backend!r}, method={self.method!r}"]
        if self.fallback:
            lines[0] += f", fallback={self.fallback!r}"
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


# Methods that read A as Hermitian: Cholesky and LDL^T factor the lower triangle only; CG and MINRES
# (and their adjoint solves) assume A^H = A.
HERMITIAN_METHODS = ("cholesky", "ldl", "cg", "minres")


def symmetry_tolerance(dtype: torch.dtype) -> float:
    """Largest relative asymmetry ``max|A - A^H| / max|A|`` that the Hermitian methods accept: 100 units
    of roundoff of the dtype, room for assembly in a different summation order and no more."""
    return 100.0 * torch.finfo(dtype).eps


def check_hermitian(A: SparseTensor, method: str) -> None:
    """Raise when a method that reads A as Hermitian is asked for a matrix that is not (cached per
    values)."""
    defect = A.asymmetry(hermitian=True)
    tol = symmetry_tolerance(A.dtype)
    if defect <= tol or math.isnan(defect):  # NaN values: the factorization or solve reports them
        return
    what = "Hermitian" if A.dtype.is_complex else "symmetric"
    other = "lu" if method in DIRECT_METHODS else "gmres' or 'bicgstab"
    raise InvalidArgumentError(
        f"method: {method!r} needs a {what} matrix, but max|A - A^{'H' if A.dtype.is_complex else 'T'}| / "
        f"max|A| is {defect:.3g} (tolerance {tol:.3g}); it would return a wrong answer. Use method='{other}', "
        f"or pass check_symmetry=False if A is {what} up to an error you accept"
    )


def choose(
    A: SparseTensor, backend: str = "auto", method: str = "auto", *, check_symmetry: bool = True
) -> Choice:
    """Pick the backend and method for a solve of ``A`` (the whole of ``auto``).

    An explicit Hermitian method (``cholesky``, ``ldl``, ``cg``, ``minres``) on a matrix that is not
    Hermitian raises :class:`InvalidArgumentError` unless ``check_symmetry=False``."""
    reg = backends()
    reasons: list[str] = []
    if method != "auto" and method not in DIRECT_METHODS + ITERATIVE_METHODS:
        raise InvalidArgumentError(
            f"method: expected 'auto' or one of {DIRECT_METHODS + ITERATIVE_METHODS}, got {method!r}"
        )
    if backend != "auto" and backend not in reg:
        raise InvalidArgumentError(f"backend: expected 'auto' or one of {tuple(reg)}, got {backend!r}")
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: a solve needs a square matrix, got shape {A.shape}")
    if check_symmetry and method in HERMITIAN_METHODS:
        check_hermitian(A, method)
    explicit_iterative_backend = backend != "auto" and reg[backend].kind == "iterative"
    no_direct_here = all(reg[b].supports(A.device, A.dtype, "lu") is not None for b in _CPU_DIRECT_PREFERENCE)
    if method in ITERATIVE_METHODS or (method == "auto" and (explicit_iterative_backend or no_direct_here)):
        if method == "auto":
            method = _auto_krylov(A, reasons)
            if no_direct_here and not explicit_iterative_backend:
                reasons.insert(0, f"no direct backend runs on {A.device.type}: iterative")
        else:
            reasons.append(f"method {method!r} requested")
        return _choose_iterative(A, backend, method, reasons)

    # Method: Cholesky for symmetric/Hermitian matrices with a positive real diagonal (a necessary
    # condition for positive definiteness; a failed Cholesky falls back to LU), LU otherwise.
    fallback = None
    if method == "auto":
        herm = A.is_hermitian()
        posdiag = herm and A.has_positive_real_diagonal()
        if posdiag and A.pattern._cache.get("cholesky_failed"):
            method = "lu"
            reasons.append(
                "symmetric with positive diagonal, but Cholesky failed earlier on this pattern: LU"
            )
        elif posdiag:
            method, fallback = "cholesky", "lu"
            reasons.append(
                ("Hermitian" if A.dtype.is_complex else "symmetric")
                + " with a positive real diagonal: Cholesky (LU if it breaks down: not positive definite)"
            )
        else:
            method = "lu"
            reasons.append(
                "not symmetric/Hermitian: LU"
                if not herm
                else "symmetric but the diagonal is not all positive: LU"
            )
    else:
        reasons.append(f"method {method!r} requested")

    if backend == "auto":
        tried = []
        for name in _CPU_DIRECT_PREFERENCE:
            why_not = reg[name].supports(A.device, A.dtype, method)
            if why_not is None:
                backend = name
                reasons.append(
                    f"{name}: fastest available backend for {A.device.type}/{dtype_name(A.dtype)}/{method}"
                )
                break
            tried.append(why_not)
        else:
            raise BackendUnavailableError(
                f"A: no direct backend can solve on device {A.device} with dtype {A.dtype} and method "
                f"{method!r}: " + "; ".join(tried) + ". Move the matrix to the CPU with A.to('cpu')."
            )
    else:
        if fallback is not None and method not in reg[backend].methods:
            reasons.append(f"backend {backend!r} has no {method}: {fallback} instead")
            method, fallback = fallback, None
        why_not = reg[backend].supports(A.device, A.dtype, method)
        if why_not is not None:
            raise BackendUnavailableError(why_not)
        reasons.append(f"backend {backend!r} requested")
    return Choice(backend, method, fallback, reasons)


def _auto_krylov(A, reasons: list[str]) -> str:
    """CG for Hermitian matrices with a positive real diagonal, MINRES for other Hermitian ones, GMRES else."""
    if A.is_hermitian():
        if A.has_positive_real_diagonal():
            reasons.append("Hermitian with a positive diagonal: CG")
            return "cg"
        reasons.append("Hermitian, diagonal not all positive (maybe indefinite): MINRES")
        return "minres"
    reasons.append("not Hermitian: GMRES")
    return "gmres"


def _choose_iterative(A, backend: str, method: str, reasons: list[str]) -> Choice:
    from ._iterative import _auto_preconditioner

    reg = backends()
    if backend == "auto":
        for name in _ITERATIVE_PREFERENCE:
            if reg[name].supports(A.device, A.dtype, method) is None:
                reasons.append(f"{name}: fastest iterative backend for {A.device.type}/{dtype_name(A.dtype)}")
                backend = name
                break
        else:
            raise BackendUnavailableError(f"A: no iterative backend runs {method} on {A.device}")
    else:
        why_not = reg[backend].supports(A.device, A.dtype, method)
        if why_not is not None:
            raise BackendUnavailableError(why_not)
        reasons.append(f"backend {backend!r} requested")
    pre = _auto_preconditioner(A, method, backend)
    reasons.append(
        f"preconditioner='auto' would be {pre!r}: Jacobi for CG/MINRES when the diagonal is positive, "
        "ILU(0) for GMRES/BiCGStab on core (Jacobi on torch) when it is nonzero, else none"
    )
    return Choice(backend, method, None, reasons, kind="iterative")


def predicted_solve_bytes(A: SparseTensor, sym, nrhs: int = 1) -> float:
    """Peak memory a direct solve of ``A`` is predicted to take, from the symbolic analysis ``sym``:
    the factors of every batch member plus what the solve allocates besides them (-1 when the backend
    gives no factor-size prediction).

    Besides the factors (``sym.predicted_factor_bytes``) a solve holds the analysis (``sym.memory_bytes``:
    the CSC plan and the library's symbolic data), the pattern's derived arrays and the transient ones of
    the analysis (expanded rows, int32 copies, the transpose permutation of the symmetry check, the
    ordering's workspace: about 48 bytes per entry and 96 per row), the library's numeric workspace and
    its copy of the values, and per right-hand side a handful of ``n``-vectors (b, x, the transposed and
    converted copies the core makes, autograd's saved x). Calibrated against the measured peak memory of
    solves of diagonal, 2-D and 3-D Poisson and convection-diffusion matrices (``n`` up to 4e6), which it
    exceeds by 0-35%."""
    factor = float(sym.predicted_factor_bytes)
    if factor < 0:
        return -1.0
    n, nnz = A.shape[-1], A.nnz
    item = A.values.element_size()
    batch = max(1, A.batch_size)
    per_matrix = factor + 16.0 * (n + nnz) + 2.0 * item * nnz
    pattern = float(getattr(sym, "memory_bytes", 24 * (n + nnz))) + 48.0 * nnz + 96.0 * n
    vectors = 8.0 * item * n * max(1, nrhs) * batch
    return batch * per_matrix + pattern + vectors


def plan(
    A, backend: str = "auto", method: str = "auto", *, check_symmetry: bool = True, nrhs: int = 1
) -> Choice:
    """``choose`` plus the memory check of ``method="auto"``: when the predicted peak memory of a direct
    solve (factors and the rest, :func:`predicted_solve_bytes`) would not fit the memory budget
    (:func:`set_memory_budget`), solve iteratively instead. A structurally singular matrix (an empty row
    or column) raises :class:`SingularMatrixError` before any analysis."""
    c = choose(A, backend, method, check_symmetry=check_symmetry)
    if c.kind != "direct":
        return c
    if A.shape[-1] > 0:
        empty = A.pattern.empty_row_or_col()
        if empty is not None:
            raise SingularMatrixError(f"A is structurally singular: {empty}")
    if method != "auto" or backend != "auto" or c.backend == "scipy" or A.shape[-1] == 0:
        return c
    from ._direct import _analysis

    sym, _ = _analysis(A, c.backend, c.method)
    predicted = predicted_solve_bytes(A, sym, nrhs)
    budget = get_memory_budget()
    if predicted < 0:
        c.reasons.append(
            f"backend {c.backend!r} gives no factor-size prediction: the memory budget is not checked"
        )
        return c
    if predicted <= budget:
        c.reasons.append(
            f"predicted peak memory {fmt_bytes(predicted)} (factors and workspace) fits the memory budget "
            f"({fmt_bytes(budget)})"
        )
        return c
    reasons = [
        f"predicted peak memory {fmt_bytes(predicted)} (factors and workspace) exceeds the memory budget "
        f"({fmt_bytes(budget)}): iterative"
    ]
    return _choose_iterative(A, "auto", _auto_krylov(A, reasons), reasons)


def explain(A, b=None, *, backend: str = "auto", method: str = "auto", check_symmetry: bool = True) -> Choice:
    """What ``solve(A, b, backend=..., method=...)`` would use, and why. Printable.

    ``A`` may be anything :func:`torch_sla.solve` accepts.
    """
    from ._solve import as_sparse_tensor

    A = as_sparse_tensor(A)
    c = plan(A, backend, method, check_symmetry=check_symmetry)
    c.reasons.insert(
        0,
        f"A: shape {A.shape}, nnz {A.nnz}, dtype {dtype_name(A.dtype)}, device {A.device}, "
        f"symmetric={A.is_symmetric()}, hermitian={A.is_hermitian()}",
    )
    if b is not None:
        b = torch.as_tensor(b)
        c.reasons.insert(1, f"b: shape {tuple(b.shape)}, dtype {dtype_name(b.dtype)}")
    return c
