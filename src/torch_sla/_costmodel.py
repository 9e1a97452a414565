"""The cost model behind ``backend="auto"`` for CPU direct solves: predicted seconds per candidate.

A candidate is a backend with the ordering it would get (its ``auto_ordering``). Its predicted time for
a cold solve (analysis, numeric factorization, one solve) of ``A`` with a method is

    t = c0 + c1 * nnz(A) + c2 * flops

where ``flops`` is the factorization's flop count predicted by one symbolic analysis, the *probe* (the
first candidate whose analysis gives a prediction: CHOLMOD for Cholesky / LDL^T, UMFPACK for LU; it is
cached, so it is no extra work when that backend wins). The coefficients of each candidate and method are
fitted (non-negative least squares on relative errors) to cold solves of generated 2-D and 3-D Poisson
and convection-diffusion matrices timed on this machine: a micro-benchmark of a few seconds, run on first
use and kept on disk (``$XDG_CACHE_HOME/torch_sla/calibration.json``), keyed by the machine, the thread
count and the backends' versions.

``TORCH_SLA_CALIBRATION=off`` turns the model off (``auto`` then takes the registry's order);
``TORCH_SLA_CALIBRATION=/path/file.json`` reads (or writes) that file instead. A file whose signature is
``"any"`` is used on any machine, which makes the choice deterministic (the tests do that).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import threading
import time
from typing import Any

import numpy as np
import torch

from ._sparse_tensor import SparseTensor

ENV = "TORCH_SLA_CALIBRATION"
FORMAT = 1
_LOCK = threading.Lock()
_MODELS: dict[str, Model | None] = {}  # by signature


@dataclasses.dataclass
class Model:
    """Fitted coefficients (c0, c1, c2) per "backend:method", where they came from, and how long the
    calibration took."""

    coefficients: dict[str, list[float]]
    source: str
    signature: str = ""
    seconds: float = 0.0

    def predict(self, key: str, nnz: float, flops: float) -> float | None:
        c = self.coefficients.get(key)
        if c is None:
            return None
        return float(c[0] + c[1] * nnz + c[2] * flops)


def setting() -> str:
    """``off``, a file path, or ``default`` (the user cache directory)."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "none", "false"):
        return "off"
    return value or "default"


def cache_file() -> str:
    value = setting()
    if value not in ("off", "default"):
        return value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "torch_sla", "calibration.json")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def signature(candidates: list[Any]) -> str:
    """The machine, the thread count and the candidates with their versions (their notes)."""
    parts = {
        "format": FORMAT,
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "candidates": sorted(f"{b.name}: {b.note}" for b in candidates),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# -- generated calibration problems (torch only) ---------------------------------------------------------
def _grid(dims: tuple[int, ...], convection: float) -> SparseTensor:
    """Finite differences on a grid: the Laplacian (2 d on the diagonal, -1 to each neighbour), plus an
    upwind convection term of strength ``convection`` along each axis (unsymmetric when nonzero)."""
    n = int(np.prod(dims))
    idx = torch.arange(n)
    coords, stride = [], 1
    for m in dims:
        coords.append((idx // stride) % m)
        stride *= m
    rows, cols, vals = [idx], [idx], [torch.full((n,), 2.0 * len(dims) + convection * len(dims))]
    stride = 1
    for axis, m in enumerate(dims):
        for step, extra in ((1, 0.0), (-1, -convection)):
            ok = (coords[axis] + step >= 0) & (coords[axis] + step < m)
            rows.append(idx[ok])
            cols.append(idx[ok] + step * stride)
            vals.append(torch.full((int(ok.sum()),), -1.0 + extra))
        stride *= m
    return SparseTensor(torch.cat(vals).double(), torch.cat(rows), torch.cat(cols), (n, n))


def problems(method: str) -> list[SparseTensor]:
    """Small and medium 2-D and 3-D matrices: symmetric positive definite for Cholesky / LDL^T,
    convection-diffusion for LU."""
    conv = 0.0 if method != "lu" else 0.6
    return [_grid(d, conv) for d in ((40, 40), (100, 100), (10, 10, 10), (16, 16, 16))]


def dense_rows(A: SparseTensor) -> float:
    """The longest row of A's pattern over its mean row length (cached on the pattern)."""
    p = A.pattern
    cached = p._cache.get("dense_rows")
    if cached is None:
        lengths = p.crow[1:] - p.crow[:-1]
        mean = max(float(A.nnz) / max(A.shape[-1], 1), 1.0)
        cached = p._cache["dense_rows"] = float(lengths.max()) / mean if lengths.numel() else 1.0
    return cached


def _fit(features: np.ndarray, seconds: np.ndarray) -> list[float]:
    """Non-negative (c0, c1, c2) minimising the relative errors of c . features against seconds."""
    rows = features / seconds[:, None]
    scale = np.maximum(rows.max(axis=0), 1e-300)
    a = rows / scale
    # Projected gradient on the normal equations: three unknowns, a handful of rows.
    ata, atb = a.T @ a, a.T @ np.ones(len(seconds))
    x = np.linalg.lstsq(a, np.ones(len(seconds)), rcond=None)[0].clip(min=0.0)
    step = 1.0 / max(np.linalg.eigvalsh(ata).max(), 1e-300)
    for _ in range(5000):
        x = (x - step * (ata @ x - atb)).clip(min=0.0)
    return [float(v) for v in x / scale]


def calibrate(candidates: list[Any], probe: Any) -> Model:
    """Time every candidate's cold solve on the calibration problems of each method it has (with the
    ordering ``auto`` would give it), and fit."""
    start = time.perf_counter()
    coefficients: dict[str, list[float]] = {}
    for method in ("cholesky", "ldl", "lu"):
        here = [b for b in candidates if method in b.methods]
        if len(here) < 2 or method not in probe.methods:
            continue
        mats = problems(method)
        feats, stats = [], []
        for A in mats:
            sym = probe.probe_analysis(A, method)
            flops, fnnz = max(float(sym.predicted_flops), 0.0), max(float(sym.predicted_factor_nnz), 1.0)
            feats.append([1.0, float(A.nnz), flops])
            stats.append((flops, fnnz))
        for b in here:
            times = []
            for A, (flops, fnnz) in zip(mats, stats):
                order = b.auto_ordering(flops, fnnz, dense_rows(A))
                best = min(b.cold_solve_seconds(A, method, order) for _ in range(2))
                times.append(max(best, 1e-6))
            coefficients[f"{b.name}:{method}"] = _fit(np.array(feats), np.array(times))
    return Model(coefficients, "calibrated now", seconds=time.perf_counter() - start)


def _read(path: str, sig: str) -> Model | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    entry = data.get("any") or data.get(sig)
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    return Model(
        {k: [float(x) for x in v] for k, v in entry["coefficients"].items()},
        f"calibration file {path}",
        signature="any" if "any" in data else sig,
        seconds=float(entry.get("seconds", 0.0)),
    )


def _write(path: str, sig: str, model: Model) -> None:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        data[sig] = {"format": FORMAT, "coefficients": model.coefficients, "seconds": model.seconds}
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError:  # a read-only cache directory: the model still serves this process
        pass


def model_for(candidates: list[Any], probe: Any) -> Model | None:
    """The calibrated model for these candidates on this machine (None when the model is off)."""
    if setting() == "off":
        return None
    sig = signature(candidates)
    with _LOCK:
        if sig in _MODELS:
            return _MODELS[sig]
        path = cache_file()
        model = _read(path, sig)
        if model is None:
            model = calibrate(candidates, probe)
            model.signature = sig
            _write(path, sig, model)
        _MODELS[sig] = model
        return model


def forget() -> None:
    """Drop the models loaded in this process (the next choice reads or calibrates again)."""
    with _LOCK:
        _MODELS.clear()
