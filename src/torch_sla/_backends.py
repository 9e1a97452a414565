"""Backend registry and the one function that chooses a backend and a method.

``choose(A, backend, method)`` is the whole of ``backend="auto"`` / ``method="auto"``; ``explain`` prints
its reasons. Backends declare what they can do; nothing else in the package branches on backend names
except the code that builds a backend's factor.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from typing import TYPE_CHECKING

import torch

from .errors import BackendUnavailableError, InvalidArgumentError

if TYPE_CHECKING:
    from ._sparse_tensor import SparseTensor

DIRECT_METHODS = ("cholesky", "ldl", "lu")
_ALL_DTYPES = ("float32", "float64", "complex64", "complex128")


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What a backend can do, and whether it can run here."""

    name: str
    kind: str  # "direct" for now
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
        if _dtype_name(dtype) not in self.dtypes:
            return f"backend '{self.name}' does not support dtype {dtype}"
        if method not in self.methods:
            return f"backend '{self.name}' has no method '{method}' (it has {', '.join(self.methods)})"
        return None


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


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

    def __str__(self) -> str:
        lines = [f"backend={self.backend!r}, method={self.method!r}"]
        if self.fallback:
            lines[0] += f", fallback={self.fallback!r}"
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def choose(A: SparseTensor, backend: str = "auto", method: str = "auto") -> Choice:
    """Pick the backend and method for a direct solve of ``A`` (the whole of ``auto``)."""
    reg = backends()
    reasons: list[str] = []
    if method != "auto" and method not in DIRECT_METHODS:
        raise InvalidArgumentError(f"method: expected 'auto' or one of {DIRECT_METHODS}, got {method!r}")
    if backend != "auto" and backend not in reg:
        raise InvalidArgumentError(f"backend: expected 'auto' or one of {tuple(reg)}, got {backend!r}")

    # Method: Cholesky for symmetric/Hermitian matrices with a positive real diagonal (a necessary
    # condition for positive definiteness; a failed Cholesky falls back to LU), LU otherwise.
    fallback = None
    if method == "auto":
        if A.shape[-1] != A.shape[-2]:
            raise InvalidArgumentError(f"A: a direct solve needs a square matrix, got shape {A.shape}")
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
                    f"{name}: fastest available backend for {A.device.type}/{_dtype_name(A.dtype)}/{method}"
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


def explain(A, b=None, *, backend: str = "auto", method: str = "auto") -> Choice:
    """What ``solve(A, b, backend=..., method=...)`` would use, and why. Printable.

    ``A`` may be anything :func:`torch_sla.solve` accepts.
    """
    from ._solve import as_sparse_tensor

    A = as_sparse_tensor(A)
    c = choose(A, backend, method)
    c.reasons.insert(
        0,
        f"A: shape {A.shape}, nnz {A.nnz}, dtype {_dtype_name(A.dtype)}, device {A.device}, "
        f"symmetric={A.is_symmetric()}, hermitian={A.is_hermitian()}",
    )
    if b is not None:
        b = torch.as_tensor(b)
        c.reasons.insert(1, f"b: shape {tuple(b.shape)}, dtype {_dtype_name(b.dtype)}")
    return c
