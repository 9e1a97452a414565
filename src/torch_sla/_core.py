"""The C++ core (the nanobind module ``torch_sla._C``), imported in this one place.

A broken or missing build leaves the package importable: the backends that need the core report
themselves unavailable (with the import error), and :func:`core` raises a clear error.
"""

from __future__ import annotations

import functools

from .errors import BackendUnavailableError

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - a broken install
    _C = None
    IMPORT_ERROR: str | None = str(exc)
else:
    IMPORT_ERROR = None


def core():
    """The ``torch_sla._C`` module, or :class:`BackendUnavailableError` saying why it cannot be loaded."""
    if _C is None:  # pragma: no cover - a broken install
        raise BackendUnavailableError(f"the torch_sla C++ core failed to import: {IMPORT_ERROR}")
    return _C


@functools.lru_cache(maxsize=1)
def _build_info() -> dict:
    if _C is None:  # pragma: no cover
        return {"error": IMPORT_ERROR}
    return dict(_C.build_info())


def core_build_info() -> dict:
    """What the core was built with (``suitesparse``, ``openmp``, ``cuda_compiled``, versions, the CUDA
    device count, ...), or ``{"error": ...}``. Asked once per process: counting CUDA devices starts the
    CUDA driver, which should not happen again and again (nor before a fork that did not need it)."""
    return dict(_build_info())


def core_missing(needs_cuda: bool = False) -> str | None:
    """Why the backends of the C++ core cannot run in this build, or None: the core failed to import, or
    (``needs_cuda``) it was compiled without its CUDA part."""
    info = core_build_info()
    if "error" in info:
        return f"the C++ core failed to import: {IMPORT_ERROR}"
    if needs_cuda and not info.get("cuda_compiled"):
        return "the C++ core was built without CUDA (SLA_WITH_CUDA=OFF); rebuild with a CUDA toolkit"
    return None
