"""The backend registry and the one function that chooses a backend and a method.

A backend is an object (a :class:`Backend` subclass) that declares what it can do: its devices, dtypes,
methods, operations, its preference rank per device, and (direct backends) a factor-size prediction or
(iterative backends) a preconditioner policy. Backends register themselves with :func:`register`;
nothing outside a backend's own class branches on its name. ``choose(A, backend, method)`` is the whole
of ``backend="auto"`` / ``method="auto"``, ``plan`` adds the memory-budget check, and ``explain`` prints
their reasons. The :class:`Choice` they return carries the backend object down to the solve.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
import time
from typing import Any, ClassVar

import torch

from . import _costmodel
from ._checks import dtype_name
from ._core import core_build_info
from ._memory import explicit_memory_budget, fmt_bytes, get_memory_budget
from ._sparse_tensor import SparseTensor, as_sparse_tensor
from .errors import BackendUnavailableError, InvalidArgumentError, SingularMatrixError

DIRECT_METHODS = ("cholesky", "ldl", "lu")
ITERATIVE_METHODS = ("cg", "bicgstab", "gmres", "minres")
ALL_DTYPES = ("float32", "float64", "complex64", "complex128")
# Methods that read A as Hermitian: Cholesky and LDL^T factor the lower triangle only; CG and MINRES
# (and their adjoint solves) assume A^H = A.
HERMITIAN_METHODS = ("cholesky", "ldl", "cg", "minres")


class Backend:
    """A solver backend: what it declares, and the operations ``choose`` and the solves call.

    Class attributes a backend sets: ``name``, ``kind`` ("direct" or "iterative"), ``devices`` (torch
    device types), ``dtypes``, ``methods``, ``operations`` (of "solve", "factorize", "batch", later
    "logdet", "selected_inverse", ...), ``preconditioners`` (iterative) and ``priority`` (device type ->
    rank: ``auto`` tries the backends of a kind on a device in increasing rank; a device missing from it
    is never chosen automatically). ``availability()`` says whether it can run in this build.

    Direct backends implement ``factorize`` (and ``analyze`` / ``predicted_factor_bytes`` when they have
    a symbolic analysis); iterative backends ``auto_preconditioner``, ``build_preconditioners`` and
    ``solve_member``. The solves call these through the :class:`Choice`, never by name.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    devices: ClassVar[tuple[str, ...]]
    dtypes: ClassVar[tuple[str, ...]] = ALL_DTYPES
    methods: ClassVar[tuple[str, ...]]
    operations: ClassVar[frozenset[str]] = frozenset({"solve"})
    preconditioners: ClassVar[tuple[str, ...]] = ()
    priority: ClassVar[dict[str, int]] = {}
    differentiable: ClassVar[bool] = True
    # Fill-reducing orderings a direct backend accepts ("default": its own choice), and those tune() times.
    orderings: ClassVar[tuple[str, ...]] = ("default",)
    tune_orderings: ClassVar[tuple[str, ...]] = ("default",)
    # ``auto`` passes over this backend for matrices of order above this (None: no limit), and says why.
    max_auto_size: ClassVar[int | None] = None
    size_note: ClassVar[str] = ""

    def availability(self) -> tuple[bool, str]:
        """(whether it can run in this build, a one-line note)."""
        return True, ""

    @property
    def available(self) -> bool:
        return self._availability()[0]

    @property
    def note(self) -> str:
        return self._availability()[1]

    def _availability(self) -> tuple[bool, str]:
        cached = getattr(self, "_avail", None)
        if cached is None:
            cached = self._avail = self.availability()
        return cached

    def supports_operation(self, operation: str, method: str) -> bool:
        """Whether ``operation`` ("solve", "logdet", "selected_inverse", ...) runs with ``method``. The
        default reads ``operations``; a backend that has an operation for some methods only overrides it."""
        return operation in self.operations

    def supports(
        self, device: torch.device, dtype: torch.dtype, method: str, operation: str = "solve"
    ) -> str | None:
        """None if the backend can run this, else the reason it cannot."""
        if not self.available:
            return f"backend '{self.name}' is not available: {self.note}"
        if device.type not in self.devices:
            return f"backend '{self.name}' runs on {', '.join(self.devices)}, not {device.type}"
        if dtype_name(dtype) not in self.dtypes:
            return f"backend '{self.name}' does not support dtype {dtype}"
        if method not in self.methods:
            return f"backend '{self.name}' has no method '{method}' (it has {', '.join(self.methods)})"
        if not self.supports_operation(operation, method):
            return f"backend '{self.name}' has no {operation} with method '{method}'"
        return None

    def accepts(self, opts) -> str | None:
        """Iterative backends: None when this backend runs a solve with these :class:`KrylovOptions`
        (preconditioner, callback, ...), else why not; ``auto`` then takes the next backend that does."""
        return None

    # -- direct backends ---------------------------------------------------------------------------
    def predicted_solve_bytes(
        self, A: SparseTensor, method: str, nrhs: int, ordering: str = "default"
    ) -> float:
        """Peak memory of a direct solve predicted before factorizing (-1: no prediction)."""
        return -1.0

    def auto_ordering(self, flops: float, factor_nnz: float, dense_rows: float = 1.0) -> str:
        """The ordering ``auto`` gives this backend, from the probe analysis's predicted flops and
        factor entries and the ratio of A's longest row to its mean row (see :mod:`_costmodel`)."""
        return "default"

    def probe_analysis(self, A: SparseTensor, method: str):
        """A symbolic analysis of A whose ``predicted_flops`` feeds the cost model of ``auto``, or None
        when this backend predicts no flops for ``method`` before seeing the values."""
        return None

    def cold_solve_seconds(self, A: SparseTensor, method: str, ordering: str = "default") -> float:
        """Wall-clock seconds of a solve of a new pattern (analysis, factorization, one right-hand
        side), bypassing every cache: what the cost model is calibrated with."""
        b = torch.ones(A.shape[-1], 1, dtype=A.dtype)
        t0 = time.perf_counter()
        factors, _ = self.factorize(A, method)
        factors[0].solve(b, "N")
        return time.perf_counter() - t0

    def __repr__(self) -> str:
        return f"<backend {self.name!r}: {self.kind}, {', '.join(self.devices)}>"


# The public name of a registry entry (what ``backends()`` and ``show_backends()`` return).
BackendInfo = Backend

_REGISTRY: dict[str, Backend] = {}
_GENERATION = [0]  # bumped by register(): plans cached before a registration are not reused


def generation() -> int:
    """A counter of registrations, part of the key of cached plans."""
    return _GENERATION[0]


def register(backend: Backend) -> Backend:
    """Add a backend to the registry (replacing one of the same name). A new backend is added by
    implementing a :class:`Backend` and registering it; the tests draw their parameters from here."""
    if backend.kind not in ("direct", "iterative"):
        raise InvalidArgumentError(f"backend.kind: expected 'direct' or 'iterative', got {backend.kind!r}")
    _REGISTRY[backend.name] = backend
    _GENERATION[0] += 1
    return backend


def backends() -> dict[str, Backend]:
    """The registry: name -> backend (with ``name``, ``kind``, ``devices``, ``dtypes``, ``methods``,
    ``operations``, ``available``, ``note``)."""
    return dict(_REGISTRY)


def preference(device_type: str, kind: str) -> list[Backend]:
    """The backends of ``kind`` that ``auto`` tries on ``device_type``, in order."""
    ranked = [b for b in _REGISTRY.values() if b.kind == kind and device_type in b.priority]
    return sorted(ranked, key=lambda b: b.priority[device_type])


def direct_candidates(
    device: torch.device, dtype: torch.dtype, method: str, operation: str = "solve", n: int = 0
) -> tuple[list[Backend], list[str]]:
    """The direct backends ``auto`` may take for an ``n`` x ``n`` matrix on ``device``, in the device's
    order of preference, and why each other one registered for the device was passed over (not available,
    no such dtype, method or operation, or ``n`` above its ``max_auto_size``). It reads the registry only,
    so it answers for any device, present on this machine or not (on CUDA: cuDSS, then CuPy)."""
    here, passed = [], []
    for b in preference(device.type, "direct"):
        why = b.supports(device, dtype, method, operation)
        if why is None and b.max_auto_size is not None and n > b.max_auto_size:
            why = f"backend '{b.name}' is not chosen automatically above n = {b.max_auto_size} (n = {n}): {b.size_note}"
        if why is None:
            here.append(b)
        else:
            passed.append(why)
    return here, passed


def iterative_candidates(
    device: torch.device, dtype: torch.dtype, method: str, opts=None
) -> tuple[list[Backend], list[str]]:
    """The iterative backends ``auto`` may take for ``method`` on ``device`` (in order) and why the others
    were passed over; with ``opts`` (:class:`KrylovOptions`), only those that run these options (on CUDA
    the fused CUDA kernels, then the torch kernels, then CuPy)."""
    here, passed = [], []
    for b in preference(device.type, "iterative"):
        why = b.supports(device, dtype, method)
        if why is None and opts is not None:
            why = b.accepts(opts)
        if why is None:
            here.append(b)
        else:
            passed.append(why)
    return here, passed


# The fraction of the free device memory a factorization on a GPU may plan to take: its library allocates
# workspace beyond the predicted factors, and torch's own tensors need room next to them.
DEVICE_MEMORY_FRACTION = 0.8


def cuda_memory_budget(free_bytes: float, total_bytes: float, explicit: float | None) -> tuple[float, str]:
    """(bytes a factorization on a CUDA device may plan to take, a description) from the device's free and
    total memory (``torch.cuda.mem_get_info``) and the budget the caller set with ``set_memory_budget``
    (None: not set): ``DEVICE_MEMORY_FRACTION`` of the free memory, or the caller's budget when smaller."""
    budget = DEVICE_MEMORY_FRACTION * float(free_bytes)
    note = (
        f"{DEVICE_MEMORY_FRACTION:.0%} of the free device memory ({fmt_bytes(free_bytes)} free of "
        f"{fmt_bytes(total_bytes)}): {fmt_bytes(budget)}"
    )
    if explicit is not None and explicit < budget:
        return float(explicit), f"the memory budget ({fmt_bytes(explicit)}, smaller than {note})"
    return budget, note


def device_memory(device: torch.device) -> tuple[int, int]:
    """(free, total) bytes of a CUDA device (``torch.cuda.mem_get_info``)."""
    return torch.cuda.mem_get_info(device)


def memory_budget_for(device: torch.device) -> tuple[float, str]:
    """(the bytes a factorization on ``device`` may plan to take, what that is): the memory budget on the
    CPU; on CUDA :func:`cuda_memory_budget` of the device's free memory now."""
    if device.type == "cuda":
        free, total = device_memory(device)
        return cuda_memory_budget(free, total, explicit_memory_budget())
    budget = get_memory_budget()
    return budget, f"the memory budget ({fmt_bytes(budget)})"


def show_backends(file=None) -> list[Backend]:
    """Print a table of the backends (name, available, devices, methods, notes) and return them."""
    rows = list(_REGISTRY.values())
    out = io.StringIO()
    out.write(f"{'backend':<12} {'available':<10} {'devices':<16} {'methods':<26} notes\n")
    for b in rows:
        out.write(
            f"{b.name:<12} {('yes' if b.available else 'no'):<10} {','.join(b.devices):<16} "
            f"{','.join(b.methods):<26} {b.note}\n"
        )
    info = core_build_info()
    out.write(
        f"C++ core: openmp={info.get('openmp')}, metis={info.get('metis')} (graph partitioning), "
        f"CUDA compiled={info.get('cuda_compiled')} "
        f"(runtime {info.get('cuda_runtime_version')}, {info.get('cuda_device_count', 0)} device(s) visible)\n"
    )
    print(out.getvalue(), end="", file=file)
    return rows


@dataclasses.dataclass
class Choice:
    """The outcome of ``choose``: a backend (its name and the object), a method, what to do if the
    method fails, and why."""

    backend: str
    method: str
    fallback: str | None
    reasons: list[str]
    kind: str = "direct"
    preconditioner: Any = None  # iterative: what preconditioner="auto" resolves to
    ordering: str = "default"  # direct: the fill-reducing ordering ("default": the backend's own)
    requested_backend: bool = False  # the caller named the backend (``auto`` did not choose it)

    @property
    def impl(self) -> Backend:
        """The backend object that runs the solve."""
        return _REGISTRY[self.backend]

    def __str__(self) -> str:
        lines = [f"{self.kind} solve: backend={self.backend!r}, method={self.method!r}"]
        if self.ordering != "default":
            lines[0] += f", ordering={self.ordering!r}"
        if self.fallback:
            lines[0] += f", fallback={self.fallback!r}"
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


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
    A: SparseTensor,
    backend: str = "auto",
    method: str = "auto",
    *,
    check_symmetry: bool = True,
    operation: str = "solve",
) -> Choice:
    """Pick the backend and method for a solve of ``A`` (the whole of ``auto``).

    An explicit Hermitian method (``cholesky``, ``ldl``, ``cg``, ``minres``) on a matrix that is not
    Hermitian raises :class:`InvalidArgumentError` unless ``check_symmetry=False``. ``operation`` other
    than "solve" (e.g. "logdet", "selected_inverse") asks for a direct backend that declares it."""
    reasons: list[str] = []
    if method != "auto" and method not in DIRECT_METHODS + ITERATIVE_METHODS:
        raise InvalidArgumentError(
            f"method: expected 'auto' or one of {DIRECT_METHODS + ITERATIVE_METHODS}, got {method!r}"
        )
    if backend != "auto" and backend not in _REGISTRY:
        raise InvalidArgumentError(f"backend: expected 'auto' or one of {tuple(_REGISTRY)}, got {backend!r}")
    if A.shape[-1] != A.shape[-2]:
        raise InvalidArgumentError(f"A: a solve needs a square matrix, got shape {A.shape}")
    if check_symmetry and method in HERMITIAN_METHODS:
        check_hermitian(A, method)
    explicit = _REGISTRY.get(backend)
    direct_here, direct_passed = direct_candidates(A.device, A.dtype, "lu", "solve", A.shape[-1])
    if operation != "solve" and (
        method in ITERATIVE_METHODS or (explicit is not None and explicit.kind != "direct")
    ):
        raise InvalidArgumentError(
            f"method: {operation} needs a factorization (a direct method and backend), got method={method!r}, "
            f"backend={backend!r}"
        )
    if operation == "solve" and (
        method in ITERATIVE_METHODS
        or (method == "auto" and ((explicit is not None and explicit.kind == "iterative") or not direct_here))
    ):
        if method == "auto":
            method = _auto_krylov(A, reasons)
            if not direct_here and explicit is None:
                why = "; ".join(direct_passed) if direct_passed else "none is registered for this device"
                reasons.insert(0, f"no direct backend can take A on {A.device.type} ({why}): iterative")
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

    ordering = "default"
    if explicit is None:
        here, tried = direct_candidates(A.device, A.dtype, method, operation, A.shape[-1])
        if A.device.type != "cpu":
            reasons += [f"passed over: {t}" for t in tried]
        if not here:
            raise BackendUnavailableError(
                f"A: no direct backend can {operation} on device {A.device} with dtype {A.dtype} and method "
                f"{method!r}: "
                + "; ".join(tried or ["none is registered for this device"])
                + ". Move the matrix to the CPU with A.to('cpu') or use an iterative method."
            )
        picked, ordering, decided = _auto_backend(A, method, here, reasons)
        backend = picked.name
        if not decided:
            reasons.append(
                f"{backend}: fastest available backend for {A.device.type}/{dtype_name(A.dtype)}/{method}"
                + ("" if operation == "solve" else f" with {operation}")
            )
    else:
        if explicit.kind != "direct":
            raise InvalidArgumentError(f"backend: {backend!r} is iterative; method {method!r} is direct")
        if fallback is not None and method not in explicit.methods:
            reasons.append(f"backend {backend!r} has no {method}: {fallback} instead")
            method, fallback = fallback, None
        why_not = explicit.supports(A.device, A.dtype, method, operation)
        if why_not is not None:
            raise BackendUnavailableError(why_not)
        reasons.append(f"backend {backend!r} requested")
    return Choice(backend, method, fallback, reasons, ordering=ordering)


def with_ordering(choice: Choice, ordering: str) -> Choice:
    """``choice`` with the fill-reducing ordering the caller asked for ("auto": unchanged)."""
    if ordering == "auto":
        return choice
    if choice.kind != "direct":
        raise InvalidArgumentError(
            f"ordering: applies to direct factorizations, but method {choice.method!r} is iterative"
        )
    allowed = choice.impl.orderings
    if ordering not in allowed:
        raise InvalidArgumentError(
            f"ordering: backend {choice.backend!r} takes one of {('auto',) + tuple(allowed)}, got {ordering!r}"
        )
    if ordering == choice.ordering:
        return choice
    return dataclasses.replace(
        choice, ordering=ordering, reasons=[*choice.reasons, f"ordering {ordering!r} requested"]
    )


# Winners of tune(): (pattern fingerprint, dtype, method) -> (backend, ordering, {candidate: seconds}).
_TUNED: dict[tuple, tuple[str, str, dict[str, float]]] = {}
_TUNE_LOCK = threading.Lock()


def _auto_backend(
    A: SparseTensor, method: str, here: list[Backend], reasons: list[str]
) -> tuple[Backend, str, bool]:
    """The backend (and ordering) ``auto`` takes among ``here`` (those that can run this), in order:
    the winner of :func:`tune` for this pattern; the least predicted time of the cost model (CPU, more
    than one candidate, a calibration); the first in the registry's order. The flag says whether a
    measurement decided (its reason is added then)."""
    tuned = _TUNED.get((A.pattern.fingerprint, dtype_name(A.dtype), method))
    names = {b.name: b for b in here}
    if tuned is not None and tuned[0] in names:
        times = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in sorted(tuned[2].items(), key=lambda kv: kv[1]))
        reasons.append(f"autotuned for this pattern (factorize + solve, timed): {times}")
        return names[tuned[0]], tuned[1], True
    first = here[0]
    if A.device.type != "cpu" or A.shape[-1] == 0 or len(here) < 2:
        return first, "default", False
    if _costmodel.setting() == "off":
        reasons.append(f"cost model off ({_costmodel.ENV}=off): the registry's order")
        return first, "default", False
    probe = next((b for b in here if b.probe_analysis(A, method) is not None), None)
    if probe is None:
        return first, "default", False
    everyone = [b for b in preference("cpu", "direct") if b.available]
    model = _costmodel.model_for(everyone, probe)
    if model is None:
        return first, "default", False
    sym = probe.probe_analysis(A, method)
    flops, fnnz = max(float(sym.predicted_flops), 0.0), max(float(sym.predicted_factor_nnz), 1.0)
    predicted = []
    for b in here:
        t = model.predict(f"{b.name}:{method}", float(A.nnz), flops)
        if t is not None:
            predicted.append((t, b, b.auto_ordering(flops, fnnz, _costmodel.dense_rows(A))))
    if not predicted:
        return first, "default", False
    predicted.sort(key=lambda item: item[0])
    t, best, order = predicted[0]
    table = ", ".join(
        f"{b.name}" + ("" if o == "default" else f"[{o}]") + f" {p * 1e3:.1f} ms" for p, b, o in predicted
    )
    reasons.append(
        f"cost model ({model.source}; {probe.name}'s analysis predicts {flops:.3g} flops, "
        f"{flops / fnnz:.0f} per factor entry): predicted cold solve {table}; {best.name}"
        + ("" if order == "default" else f" with ordering {order!r}")
    )
    return best, order, True


def tune(A, method: str = "auto", *, repeats: int = 2) -> Choice:
    """Time every CPU direct backend (and ordering) that can solve ``A`` once — factorization with the
    analysis cached plus one solve, the cost of a step of a training loop — and remember the fastest for
    A's pattern, dtype and method: ``backend="auto"`` takes it from then on (``autotune=True`` in
    :func:`solve` / :func:`factorize` calls this on first use). Returns the resulting choice."""
    A = as_sparse_tensor(A)
    c = choose(A, "auto", method)
    if c.kind != "direct" or A.device.type != "cpu" or A.shape[-1] == 0:
        return c
    key = (A.pattern.fingerprint, dtype_name(A.dtype), c.method)
    b = torch.ones(A.shape[-1], 1, dtype=A.dtype)
    one = A if A.batch_size <= 1 else A.with_values(A.values.reshape(A.batch_size, A.nnz)[0])
    times: dict[str, float] = {}
    winner: tuple[float, str, str] | None = None
    for be in preference("cpu", "direct"):
        if be.supports(A.device, A.dtype, c.method) is not None:
            continue
        for o in be.tune_orderings:
            flags = {} if o == "default" else {"ordering": o}
            try:
                be.factorize(one, c.method, **flags)  # the analysis, cached: not timed
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    factors, _ = be.factorize(one, c.method, **flags)
                    factors[0].solve(b, "N")
                    best = min(best, time.perf_counter() - t0)
            except (SingularMatrixError, ValueError, RuntimeError):
                continue  # this candidate cannot factor A (e.g. not positive definite): not a winner
            label = be.name + ("" if o == "default" else f"[{o}]")
            times[label] = best
            if winner is None or best < winner[0]:
                winner = (best, be.name, o)
    if winner is not None:
        with _TUNE_LOCK:
            _TUNED[key] = (winner[1], winner[2], times)
            _GENERATION[0] += 1  # plans cached before are not reused
    return choose(A, "auto", c.method)


def tuned(A: SparseTensor, method: str) -> bool:
    """Whether :func:`tune` has timed A's pattern (dtype, method; any method for "auto")."""
    fp, dt = A.pattern.fingerprint, dtype_name(A.dtype)
    return any(k[0] == fp and k[1] == dt and method in ("auto", k[2]) for k in _TUNED)


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
    explicit = _REGISTRY.get(backend)
    requested = explicit is not None
    if explicit is None:
        here, passed = iterative_candidates(A.device, A.dtype, method)
        if not here:
            raise BackendUnavailableError(
                f"A: no iterative backend runs {method} on {A.device}: "
                + "; ".join(passed or ["none registered"])
            )
        explicit = here[0]
        if A.device.type != "cpu":
            reasons += [f"passed over: {t}" for t in passed]
        reasons.append(
            f"{explicit.name}: fastest iterative backend for {A.device.type}/{dtype_name(A.dtype)}"
        )
    else:
        if explicit.kind != "iterative":
            raise InvalidArgumentError(
                f"backend: {backend!r} is a direct backend; method {method!r} is iterative"
            )
        why_not = explicit.supports(A.device, A.dtype, method)
        if why_not is not None:
            raise BackendUnavailableError(why_not)
        reasons.append(f"backend {backend!r} requested")
    pre, why = explicit.auto_preconditioner(A, method)
    reasons.append(f"preconditioner='auto' would be {pre!r}: {why}")
    return Choice(
        explicit.name,
        method,
        None,
        reasons,
        kind="iterative",
        preconditioner=pre,
        requested_backend=requested,
    )


def plan(
    A: SparseTensor,
    backend: str = "auto",
    method: str = "auto",
    *,
    check_symmetry: bool = True,
    nrhs: int = 1,
) -> Choice:
    """``choose`` plus the checks before a direct solve: a structurally singular matrix (an empty row or
    column) raises :class:`SingularMatrixError` before any analysis, and with ``method="auto"`` a
    factorization whose predicted peak memory (the backend's ``predicted_solve_bytes``) would not fit
    the memory budget (:func:`set_memory_budget`) is replaced by an iterative solve."""
    c = choose(A, backend, method, check_symmetry=check_symmetry)
    if c.kind != "direct":
        return c
    if A.shape[-1] > 0:
        empty = A.pattern.empty_row_or_col()
        if empty is not None:
            raise SingularMatrixError(f"A is structurally singular: {empty}")
    if method != "auto" or backend != "auto" or A.shape[-1] == 0 or A.batch_size == 0:
        return c
    predicted = c.impl.predicted_solve_bytes(A, c.method, nrhs, c.ordering)
    if predicted < 0:
        c.reasons.append(
            f"backend {c.backend!r} gives no memory prediction: the memory budget is not checked"
        )
        return c
    budget, what = memory_budget_for(A.device)
    where = "" if A.device.type == "cpu" else f" on {A.device}"
    if predicted <= budget:
        c.reasons.append(
            f"predicted peak memory{where} {fmt_bytes(predicted)} (factors and workspace) fits {what}"
        )
        return c
    reasons = [
        f"predicted peak memory{where} {fmt_bytes(predicted)} (factors and workspace) exceeds {what}: iterative"
    ]
    return _choose_iterative(A, "auto", _auto_krylov(A, reasons), reasons)


def explain(
    A,
    b=None,
    *,
    backend: str = "auto",
    method: str = "auto",
    check_symmetry: bool = True,
    operation: str = "solve",
) -> Choice:
    """What ``solve(A, b, backend=..., method=...)`` would use, and why. Printable.

    ``A`` may be anything :func:`torch_sla.solve` accepts. ``operation="logdet"`` (or
    ``"selected_inverse"``) explains :func:`torch_sla.logdet` (:func:`torch_sla.selected_inverse`)
    instead; ``method="slq"`` with ``"logdet"`` is the stochastic estimate, labelled as approximate.
    """
    A = as_sparse_tensor(A)
    nrhs = 1
    if b is not None:
        b = torch.as_tensor(b)
        nrhs = b.shape[-1] if b.dim() == len(A.batch_shape) + 2 else 1
    if operation == "logdet" and method == "slq":
        c = Choice(
            "torch",
            "slq",
            None,
            [
                "method 'slq' requested: stochastic Lanczos quadrature, an APPROXIMATE estimate of log det A "
                "returned with its standard error (Hermitian positive definite A; never chosen automatically)"
            ],
            kind="stochastic",
        )
    elif operation != "solve":
        c = choose(A, backend, method, check_symmetry=check_symmetry, operation=operation)
    else:
        c = plan(A, backend, method, check_symmetry=check_symmetry, nrhs=nrhs)
    c.reasons.insert(
        0,
        f"A: shape {A.shape}, nnz {A.nnz}, dtype {dtype_name(A.dtype)}, device {A.device}, "
        f"symmetric={A.is_symmetric()}, hermitian={A.is_hermitian()}",
    )
    if b is not None:
        c.reasons.insert(1, f"b: shape {tuple(b.shape)}, dtype {dtype_name(b.dtype)}")
    for key, h in list(A.pattern._cache.items()):  # AMG hierarchies kept on the pattern (see _amg)
        if isinstance(key, tuple) and key and key[0] == "amg":
            c.reasons.append(
                f"preconditioner='amg': a hierarchy of this pattern is kept ({len(h.levels)} levels, operator "
                f"complexity {h.operator_complexity:.2f}, {'values-only' if h.values_only else 'full'} setup "
                f"{h.setup_time:.3g} s); amg_setup='auto' reuses its aggregates for new values whose strong "
                "connections are unchanged"
            )
    return c
