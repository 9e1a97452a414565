"""Argument checks and conversions shared by every entry point.

This is the lowest module of the package: it imports nothing from torch_sla but the exceptions, so any
module may import it. Each check names the argument in its message and says what was expected.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import os

import torch
from torch.utils.dlpack import to_dlpack

from .errors import InvalidArgumentError

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


_DTYPE_NAMES: dict = {}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float64`` -> ``"float64"`` (the names the C++ core uses)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).replace("torch.", "")
    return name


def as_int(value, name: str, *, lo: int = 0, hi: int = INT64_MAX) -> int:
    """``value`` as a Python int in ``[lo, hi]``: ints, NumPy ints and integral 0-d tensors are accepted;
    floats (even integral ones), bools and anything else are rejected."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name}: expected an integer, got a bool ({value})")
    try:
        v = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"{name}: expected an integer, got {value!r} ({type(value).__name__})"
        ) from None
    if not lo <= v <= hi:
        raise InvalidArgumentError(f"{name}: must lie in [{lo}, {hi}], got {v}")
    return int(v)


def as_float(
    value,
    name: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    open_lo: bool = False,
    open_hi: bool = False,
) -> float:
    """``value`` as a finite float in the interval ``[lo, hi]`` (ends open where asked)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise InvalidArgumentError(f"{name}: expected a real number, got {value!r} ({type(value).__name__})")
    try:
        v = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgumentError(f"{name}: expected a real number, got {value!r}") from None
    below = v <= lo if open_lo else v < lo
    above = v >= hi if open_hi else v > hi
    if not math.isfinite(v) or below or above:
        interval = ("(" if open_lo else "[") + f"{lo}, {hi}" + (")" if open_hi else "]")
        raise InvalidArgumentError(f"{name}: must be a finite number in {interval}, got {v}")
    return v


def as_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints; non-integral entries such as ``3.9`` are rejected
    rather than truncated."""
    if isinstance(shape, torch.Tensor):
        shape = shape.tolist()
    try:
        items = tuple(shape)
    except TypeError:
        raise InvalidArgumentError(f"{name}: expected a sequence of integers, got {shape!r}") from None
    out = []
    for s in items:
        if isinstance(s, bool):
            raise InvalidArgumentError(f"{name}: sizes must be integers, got {items}")
        try:
            out.append(int(operator.index(s)))
        except TypeError:
            raise InvalidArgumentError(f"{name}: sizes must be integers, got {items}") from None
    if any(s < 0 for s in out):
        raise InvalidArgumentError(f"{name}: sizes must be non-negative, got {tuple(out)}")
    if any(s > INT64_MAX for s in out):
        raise InvalidArgumentError(f"{name}: sizes must fit in int64, got {tuple(out)}")
    return tuple(out)


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite. A finite sum proves it in one reduction (NaN or Inf in
    any entry makes the sum NaN or Inf); only when the sum is not finite (possibly an overflow of
    finite entries) are the entries tested one by one."""
    if t.requires_grad:
        t = t.detach()  # (cheaper than a no_grad block, which small solves would pay on every call)
    s = t.sum()
    if s.is_complex():
        s = torch.view_as_real(s).sum()
    if math.isfinite(s.item()):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(t: torch.Tensor, what: str) -> None:
    """Raise when ``t`` holds NaN or Inf."""
    if t.numel() and not all_finite(t):
        raise InvalidArgumentError(
            f"{what}: contains NaN or Inf (pass check_finite=False to skip this check)"
        )


def to_core(t: torch.Tensor) -> torch.Tensor:
    """``t`` as the C++ core reads it: plain memory, C-contiguous.

    A tensor may be a lazy view whose memory differs from its value: ``x.conj()`` only sets a conjugate
    bit, ``-x`` of such a view a negative bit. The core reads raw memory through DLPack, so both are
    materialized here, at every crossing into C++.
    """
    if t.is_conj() or t.is_neg() or not t.is_contiguous():
        return t.resolve_conj().resolve_neg().contiguous()
    return t


def core_array(t: torch.Tensor):
    """``t`` handed to the C++ core: a DLPack capsule of its plain, C-contiguous memory (see
    :func:`to_core`). The capsule shares ``t``'s memory, so the core may write into it. Made directly
    rather than through the ``Tensor.__dlpack__`` protocol, whose Python-level checks cost about ten times
    as much (~1.7 us per array, several arrays per call: noticeable next to the solve of a small system).
    Tensors that require grad must be detached first."""
    return to_dlpack(to_core(t))


def stream_of(t: torch.Tensor) -> int:
    """The ``cudaStream_t`` (as an integer) of torch's current stream on ``t``'s device, which the core's CUDA
    work is queued on so that it runs after (and before) torch's own work there; 0 for a CPU tensor."""
    if t.device.type != "cuda":
        return 0
    return torch.cuda.current_stream(t.device).cuda_stream


def fs_path(path, what: str = "path") -> bytes:
    """A file-system path (str, bytes or os.PathLike) as bytes, the form the C++ core opens; names that
    are not valid UTF-8 keep their exact bytes."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise InvalidArgumentError(
            f"{what}: expected a str, bytes or os.PathLike, got {type(path).__name__}"
        ) from None
    return os.fsencode(p)


def plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` without torch.func wrappers: under ``grad`` the underlying tensor, under ``vmap`` the whole
    stack with the vmapped dims in front. For checks and planning (finiteness, symmetry, the diagonal)
    on every member at once; never for values that carry gradients."""
    F = torch._C._functorch
    while F.is_functorch_wrapped_tensor(t):
        bdim = F.maybe_get_bdim(t)
        inner = F.get_unwrapped(t)
        t = inner.movedim(bdim, 0) if bdim is not None and bdim >= 0 else inner
    return t


def is_wrapped(t: torch.Tensor) -> bool:
    """Whether ``t`` is a torch.func wrapper (inside grad, vmap, jvp, ...)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def outside_transforms(fn):
    """Run ``fn`` with torch.func transforms switched off: for the structure derived from a sparsity
    pattern (cached for later calls, so it must be made of plain tensors) and for the checks and
    planning that read plain values."""

    current_level = torch._C._functorch.maybe_current_level

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if current_level() is None:  # no transform active: nothing to switch off
            return fn(*args, **kwargs)
        with torch._C._DisableFuncTorch():
            return fn(*args, **kwargs)

    return wrapper
