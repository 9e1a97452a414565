"""Smoothed-aggregation algebraic multigrid as a preconditioner: the hierarchy is set up by the C++ core
on the CPU; the C++ Krylov solvers apply its cycle directly, and the torch backend applies the same cycle
with torch ops on the hierarchy exported to tensors on any device.

Reuse: a hierarchy is kept on the sparsity pattern (one per dtype and structural options). A later setup
for new values on that pattern with ``amg_setup="auto"`` keeps its aggregates and every sparsity pattern
(SpGEMM patterns, the coarse analysis) and recomputes the numbers only, when the strong connections of
the new values are those of the kept hierarchy (else it sets up anew); ``"values-only"`` reuses whatever
the strong connections, ``"full"`` never reuses.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch import Tensor

from ._checks import core_array, to_core
from ._core import core
from .errors import InvalidArgumentError

AMG_CYCLES = ("V", "W")
AMG_SMOOTHERS = ("jacobi", "chebyshev", "sgs")
AMG_SETUPS = ("auto", "full", "values-only")
TORCH_SMOOTHERS = ("jacobi", "chebyshev")


class AmgHierarchy:
    """A smoothed-aggregation AMG hierarchy built by the core. ``print(h)`` shows its levels (rows, nnz),
    operator and grid complexities and setup time.

    Attributes: ``levels`` (list of ``(rows, nnz)``), ``operator_complexity`` (sum of nnz over levels /
    nnz of A), ``grid_complexity`` (sum of rows / rows of A), ``setup_time`` (seconds), ``values_only``
    (built by a values-only setup that kept the aggregates of an earlier hierarchy).
    """

    def __init__(self, handle, options):
        self.handle = handle
        self.options = options
        self.levels = [
            (int(r), int(z)) for r, _, z in (handle.level_shape(i, "A") for i in range(handle.num_levels))
        ]
        self.operator_complexity = float(handle.operator_complexity)
        self.grid_complexity = float(handle.grid_complexity)
        self.setup_time = float(handle.setup_seconds)
        self.values_only = bool(handle.values_only)
        self._torch: dict = {}

    def __str__(self) -> str:
        return self.handle.describe()

    __repr__ = __str__

    def summary(self) -> dict:
        """The hierarchy as plain numbers (for ``SolveInfo.hierarchy``)."""
        return {
            "levels": list(self.levels),
            "operator_complexity": self.operator_complexity,
            "grid_complexity": self.grid_complexity,
            "setup_time": self.setup_time,
            "setup": "values-only" if self.values_only else "full",
        }

    def _matrix(self, level: int, which: str, device) -> Tensor:
        rows, cols, nnz = self.handle.level_shape(level, which)
        dtype = self.options["dtype"]
        indptr = torch.empty(rows + 1, dtype=torch.int64)
        indices = torch.empty(nnz, dtype=torch.int32)
        values = torch.empty(nnz, dtype=dtype)
        self.handle.export_matrix(level, which, indptr, indices, values)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                indptr.to(torch.int32).to(device),
                indices.to(device),
                values.to(device),
                (rows, cols),
                check_invariants=False,  # built by the core: sorted, in range
            )

    def near_nullspace(self, level: int) -> Tensor:
        """Level ``level``'s near-null space, shape ``(rows, k)``: on level 0 the one given (or the
        constant), below it the coarse coefficients ``B_{l+1}`` with ``T_l B_{l+1} = B_l`` (``T_l``: the
        tentative prolongator)."""
        rows = self.levels[level][0] if 0 <= level < len(self.levels) else 0
        out = torch.empty(rows, self.handle.near_nullspace_columns, dtype=self.options["dtype"])
        self.handle.export_near_nullspace(level, out)
        return out

    def torch_cycle(self, device, transpose: bool) -> TorchAmgCycle:
        """The cycle (or its transpose) with torch ops on ``device`` (exported once per device)."""
        key = (str(device), transpose and not self.handle.symmetric)
        c = self._torch.get(key)
        if c is None:
            c = self._torch[key] = TorchAmgCycle(self, torch.device(device), key[1])
        return c


class TorchAmgCycle:
    """The core's cycle written with torch ops: ``z = M^{-1} r`` for ``r`` of shape ``(n, k)``, on the
    device the hierarchy was exported to. The last level is solved by a dense LU factorization."""

    def __init__(self, h: AmgHierarchy, device: torch.device, transpose: bool):
        o = h.options
        if o["smoother"] not in TORCH_SMOOTHERS:
            raise InvalidArgumentError(
                f"amg_smoother: {o['smoother']!r} runs on the core backend only; the torch backend has "
                f"{', '.join(TORCH_SMOOTHERS)}"
            )
        self.smoother, self.cycle, self.sweeps, self.degree = (
            o["smoother"],
            o["cycle"],
            o["sweeps"],
            o["degree"],
        )
        H = h.handle
        self.L = []
        nl = H.num_levels
        for i in range(nl):
            n = h.levels[i][0]
            dinv = torch.empty(n, dtype=o["dtype"])
            H.export_inv_diag(i, dinv)
            lvl = {
                "A": h._matrix(i, "T" if transpose else "A", device),
                "dinv": dinv.to(device)[:, None],
                "rho": float(H.spectral_radius(i)),
            }
            if i + 1 < nl:
                lvl["P"] = h._matrix(i, "P", device)
                lvl["R"] = h._matrix(i, "R", device)
            self.L.append(lvl)
        coarse = self.L[-1]["A"].to_dense()
        self.lu = torch.linalg.lu_factor(coarse)

    def __call__(self, r: Tensor) -> Tensor:
        return self._cycle(0, r, None)

    def _smooth(self, lvl: dict, b: Tensor, x: Tensor | None) -> Tensor:
        A, dinv, rho = lvl["A"], lvl["dinv"], lvl["rho"]
        for _ in range(self.sweeps):
            zero = x is None
            if self.smoother == "jacobi":
                w = 4.0 / (3.0 * rho)
                x = (w * dinv) * b if zero else x + (w * dinv) * (b - A @ x)
                continue
            hi = 1.1 * rho
            lo = hi / 30.0
            theta, delta = 0.5 * (hi + lo), 0.5 * (hi - lo)
            sigma = theta / delta
            rho_k = 1.0 / sigma
            r = dinv * b if zero else (b - A @ x) * dinv
            x = torch.zeros_like(b) if zero else x
            d = r * (1.0 / theta)
            for k in range(1, self.degree + 1):
                x = x + d
                if k >= self.degree:
                    break
                r = b - A @ x
                rho_n = 1.0 / (2.0 * sigma - rho_k)
                d = (rho_n * rho_k) * d + (2.0 * rho_n / delta) * (dinv * r)
                rho_k = rho_n
        return x

    def _cycle(self, level: int, b: Tensor, x: Tensor | None) -> Tensor:
        lvl = self.L[level]
        if level + 1 == len(self.L):
            if x is None:
                return torch.linalg.lu_solve(*self.lu, b)
            return x + torch.linalg.lu_solve(*self.lu, b - lvl["A"] @ x)
        x = self._smooth(lvl, b, x)
        bc = lvl["R"] @ (b - lvl["A"] @ x)
        visits = 2 if self.cycle == "W" and level + 2 < len(self.L) else 1
        xc = None
        for _ in range(visits):
            xc = self._cycle(level + 1, bc, xc)
        x = x + lvl["P"] @ xc
        return self._smooth(lvl, b, x)


def amg_options(opts, dtype: torch.dtype, auto_smoother: str) -> dict:
    """The AMG part of validated KrylovOptions, as the core takes it (``amg_smoother="auto"`` is
    ``auto_smoother``, the backend's choice)."""
    return {
        "dtype": dtype,
        "strength": opts.amg_strength,
        "truncation": opts.amg_truncation,
        "coarse_drop": opts.amg_coarse_drop,
        "block_size": opts.amg_block_size,
        "cycle": opts.amg_cycle,
        "smoother": auto_smoother if opts.amg_smoother == "auto" else opts.amg_smoother,
        "sweeps": opts.amg_sweeps,
        "degree": opts.amg_degree,
        "max_coarse": opts.amg_max_coarse,
        "setup": opts.amg_setup,
    }


def build_amg(
    pattern, values: Tensor, opts, *, near_nullspace=None, auto_smoother: str = "sgs"
) -> AmgHierarchy:
    """The hierarchy of the matrix (pattern, values (nnz,)): set up on the CPU by the core, reusing the
    aggregates of the hierarchy kept on the pattern as ``amg_setup`` says (see the module docstring)."""
    if values.is_complex():
        raise InvalidArgumentError(f"preconditioner: 'amg' needs a real matrix, got dtype {values.dtype}")
    o = amg_options(opts, values.dtype, auto_smoother)
    ns = None
    if near_nullspace is not None:
        ns = torch.as_tensor(near_nullspace)
        ns = ns[:, None] if ns.dim() == 1 else ns
        if ns.dim() != 2 or ns.shape[0] != pattern.n_rows:
            raise InvalidArgumentError(
                f"amg_near_nullspace: expected {pattern.n_rows} rows (one per row of A), got shape "
                f"{tuple(near_nullspace.shape)}"
            )
        ns = to_core(ns.detach().to(device="cpu", dtype=values.dtype).contiguous())
    if pattern.n_rows % o["block_size"] != 0:
        raise InvalidArgumentError(
            f"amg_block_size: {o['block_size']} does not divide the {pattern.n_rows} rows of A"
        )
    k = 1 if ns is None else ns.shape[1]
    key = ("amg", values.dtype, o["strength"], o["truncation"], o["coarse_drop"], o["max_coarse"])
    key += (o["block_size"], k)
    prev = pattern._cache.get(key) if o["setup"] != "full" else None
    if o["setup"] == "values-only" and prev is None:
        raise InvalidArgumentError(
            "amg_setup: 'values-only' needs an earlier AMG setup on this sparsity pattern with the same "
            "amg_strength, amg_truncation, amg_coarse_drop, amg_max_coarse, amg_block_size, number of "
            "near-null-space vectors and dtype; use 'auto' or 'full' for the first one"
        )
    t0 = time.perf_counter()
    handle = core().make_amg(
        pattern.core_handle(),
        core_array(to_core(values.detach().cpu())),
        o["strength"],
        o["cycle"],
        o["smoother"],
        o["sweeps"],
        o["degree"],
        o["max_coarse"],
        25,
        None if ns is None else core_array(ns),
        torch.get_num_threads(),
        prev.handle if prev is not None else None,
        o["setup"] == "auto",
        o["truncation"],
        o["coarse_drop"],
        o["block_size"],
    )
    h = AmgHierarchy(handle, o)
    h.setup_time = time.perf_counter() - t0
    pattern._cache[key] = h
    return h


__all__ = ["AmgHierarchy", "TorchAmgCycle", "build_amg", "amg_options"]
