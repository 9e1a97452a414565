"""Options of a solve, as one validated dataclass passed from the entry point to the backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ._checks import INT32_MAX, as_float, as_int
from .errors import InvalidArgumentError

_VALIDATED: dict = {}


@dataclasses.dataclass
class KrylovOptions:
    """Options of an iterative solve (see :func:`torch_sla.solve` for their meaning).

    Built with :meth:`from_kwargs`, which validates every field and names the bad one.
    """

    rtol: float = 1e-8
    atol: float = 0.0
    maxiter: int | None = None
    x0: torch.Tensor | None = None
    restart: int = 30
    preconditioner: Any = "auto"
    callback: Callable[[int, float], None] | None = None
    return_info: bool = False
    on_fail: str = "warn"
    check_every: int = 10
    omega: float = 1.0
    degree: int = 4
    amg_cycle: str = "V"
    amg_smoother: str = "auto"
    amg_strength: float = 0.02
    amg_truncation: float = 0.01
    amg_coarse_drop: float = 0.02
    amg_sweeps: int = 1
    amg_degree: int = 2
    amg_max_coarse: int = 500
    amg_setup: str = "auto"
    amg_near_nullspace: Any = None
    amg_block_size: int = 1

    FIELDS = (
        "rtol",
        "atol",
        "maxiter",
        "x0",
        "restart",
        "preconditioner",
        "callback",
        "return_info",
        "on_fail",
        "check_every",
        "omega",
        "degree",
        "amg_cycle",
        "amg_smoother",
        "amg_strength",
        "amg_truncation",
        "amg_coarse_drop",
        "amg_sweeps",
        "amg_degree",
        "amg_max_coarse",
        "amg_setup",
        "amg_near_nullspace",
        "amg_block_size",
    )

    @classmethod
    def from_kwargs(cls, kwargs: dict, *, allowed: tuple[str, ...] | None = None) -> KrylovOptions:
        """Validated options from keyword arguments; an unknown keyword raises ``TypeError`` as Python
        does, a bad value :class:`InvalidArgumentError` naming it."""
        if not kwargs:
            return _DEFAULTS  # valid, and shared like every validated instance
        key = hit = None
        if all(type(v) in (int, float, str, bool, type(None)) for v in kwargs.values()):
            # numbers and names only (no tensor, callable or matrix is kept alive here): validated once
            key = (tuple(sorted(kwargs.items())), allowed)
            hit = _VALIDATED.get(key)
        if hit is not None:
            return hit  # shared: options are never changed after validation (use dataclasses.replace)
        o = cls._validate(kwargs, allowed)
        if key is not None and len(_VALIDATED) < 256:
            _VALIDATED[key] = o
        return o

    @classmethod
    def _validate(cls, kwargs: dict, allowed: tuple[str, ...] | None) -> KrylovOptions:
        allowed = cls.FIELDS if allowed is None else allowed
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}")
        o = cls(**kwargs)
        o.rtol = as_float(o.rtol, "rtol", lo=0.0)
        o.atol = as_float(o.atol, "atol", lo=0.0)
        if not (o.rtol > 0 or o.atol > 0):
            raise InvalidArgumentError(f"rtol: need rtol > 0 (or atol > 0), got rtol={o.rtol}, atol={o.atol}")
        if o.maxiter is not None:
            o.maxiter = as_int(o.maxiter, "maxiter", lo=1, hi=2**62)
        o.restart = as_int(o.restart, "restart", lo=1, hi=INT32_MAX)
        o.check_every = as_int(o.check_every, "check_every", lo=1, hi=2**62)
        o.omega = as_float(o.omega, "omega", lo=0.0, hi=2.0, open_lo=True, open_hi=True)
        o.degree = as_int(o.degree, "degree", lo=1, hi=1000)
        if o.on_fail not in ("warn", "raise"):
            raise InvalidArgumentError(f"on_fail: expected 'warn' or 'raise', got {o.on_fail!r}")
        if o.callback is not None and not callable(o.callback):
            raise InvalidArgumentError(
                f"callback: expected a callable (iteration, residual) or None, got {o.callback!r}"
            )
        o.return_info = bool(o.return_info)
        if o.amg_cycle not in ("V", "W"):
            raise InvalidArgumentError(f"amg_cycle: expected 'V' or 'W', got {o.amg_cycle!r}")
        if o.amg_smoother not in ("auto", "jacobi", "chebyshev", "sgs"):
            raise InvalidArgumentError(
                f"amg_smoother: expected 'auto', 'jacobi', 'chebyshev' or 'sgs', got {o.amg_smoother!r}"
            )
        o.amg_strength = as_float(o.amg_strength, "amg_strength", lo=0.0, hi=1.0, open_hi=True)
        o.amg_truncation = as_float(o.amg_truncation, "amg_truncation", lo=0.0, hi=1.0, open_hi=True)
        o.amg_coarse_drop = as_float(o.amg_coarse_drop, "amg_coarse_drop", lo=0.0, hi=1.0, open_hi=True)
        o.amg_sweeps = as_int(o.amg_sweeps, "amg_sweeps", lo=1, hi=100)
        o.amg_degree = as_int(o.amg_degree, "amg_degree", lo=1, hi=100)
        o.amg_max_coarse = as_int(o.amg_max_coarse, "amg_max_coarse", lo=1, hi=100000)
        if o.amg_setup not in ("auto", "full", "values-only"):
            raise InvalidArgumentError(
                f"amg_setup: expected 'auto', 'full' or 'values-only', got {o.amg_setup!r}"
            )
        if o.amg_near_nullspace is not None:
            ns = torch.as_tensor(o.amg_near_nullspace)
            if (
                ns.dim() not in (1, 2)
                or ns.is_complex()
                or (ns.dim() == 2 and not 1 <= ns.shape[1] <= 64)
                or not bool(torch.isfinite(ns).all())
            ):
                raise InvalidArgumentError(
                    "amg_near_nullspace: expected a real finite vector with one value per row of A, or a "
                    f"(rows, k) matrix of 1 <= k <= 64 such vectors, got shape {tuple(ns.shape)}"
                )
            o.amg_near_nullspace = ns
        o.amg_block_size = as_int(o.amg_block_size, "amg_block_size", lo=1, hi=INT32_MAX)
        return o

    def max_iterations(self, n: int) -> int:
        """``maxiter``, or its default ``10 n``."""
        return self.maxiter if self.maxiter is not None else 10 * max(n, 1)


_DEFAULTS = KrylovOptions()
