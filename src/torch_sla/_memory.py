"""The memory budget: the most memory one call may plan to take before torch_sla changes course (an
iterative solve instead of a factorization) or refuses with a clear error (a matrix whose index arrays
alone would not fit)."""

from __future__ import annotations

import functools
import os

from .errors import InvalidArgumentError

_MEMORY_BUDGET: float | None = None


def set_memory_budget(nbytes: float | None) -> None:
    """Largest predicted memory (bytes) a factorization may take before ``method="auto"`` switches to an
    iterative method, and the bound on the index arrays a new matrix may allocate. ``None`` restores the
    default: half of the physical memory."""
    global _MEMORY_BUDGET
    if nbytes is not None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float)) or not nbytes > 0:
            raise InvalidArgumentError(f"nbytes: must be a positive number or None, got {nbytes!r}")
    _MEMORY_BUDGET = None if nbytes is None else float(nbytes)


def explicit_memory_budget() -> float | None:
    """The budget the caller set with ``set_memory_budget``, or None when it is the default."""
    return _MEMORY_BUDGET


def get_memory_budget() -> float:
    """The budget ``set_memory_budget`` set (default: half of the physical memory)."""
    if _MEMORY_BUDGET is not None:
        return _MEMORY_BUDGET
    return _default_budget()


@functools.lru_cache(maxsize=1)
def _default_budget() -> float:
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8e9


def fmt_bytes(nbytes: float) -> str:
    """``3.2 GB``-style size for messages."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


def check_budget(nbytes: float, what: str, exc: type[Exception] = InvalidArgumentError) -> None:
    """Raise ``exc`` when an allocation of ``nbytes`` planned for ``what`` exceeds the memory budget."""
    budget = get_memory_budget()
    if nbytes > budget:
        raise exc(
            f"{what} would need {fmt_bytes(nbytes)}, more than the memory budget of {fmt_bytes(budget)} "
            "(torch_sla.set_memory_budget raises it)"
        )
