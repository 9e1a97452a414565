"""PARDISO (MKL) against SciPy and against the other backends of torch_sla, in the same run.

    python benchmarks/bench_pardiso.py [--threads 2] [--repeats 3] [--quick] [--json out.json]

Every contender of a case runs once per round, the rounds interleaved (so a change of the machine's
load hits them alike), and each keeps its best round. "cold" means a new pattern: the analysis cache is
cleared before each solve, so the ordering and the symbolic analysis are part of the time. The SciPy
baseline of a forward + backward pass is what a wrapper without kept factors does: ``spsolve(A, b)``,
then ``spsolve(A^T, g)`` for the adjoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, os.path.dirname(__file__))
import problems  # noqa: E402
import torch_sla as sla  # noqa: E402


def load() -> str:
    """The 1-minute load average (the machine may be shared)."""
    return f"{os.getloadavg()[0]:.2f}"


def interleaved(contenders: dict, repeats: int) -> dict[str, float]:
    """Best wall-clock time of each contender over ``repeats`` rounds, the contenders taking turns."""
    best = {name: float("inf") for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def cold_solve(A, b, **kw):
    def run():
        sla.clear_analysis_cache()
        return sla.solve(A, b, **kw)

    return run


def cold_forward_backward(A, b, **kw):
    """A training step on a new pattern: solve with gradients to the values and b, then backward."""

    def run():
        sla.clear_analysis_cache()
        values = A.values.detach().clone().requires_grad_()
        bb = b.clone().requires_grad_()
        x = sla.solve(A.with_values(values), bb, **kw)
        x.sum().backward()
        return values.grad

    return run


def scipy_forward(m, b):
    csc = m.tocsc()
    return lambda: spla.spsolve(csc, b)


def scipy_forward_backward(m, b):
    csc, csc_t = m.tocsc(), m.T.tocsc()
    g = np.ones(m.shape[0])

    def run():
        x = spla.spsolve(csc, b)
        lam = spla.spsolve(csc_t, g)  # the adjoint solve; the values' gradient is -lam x^T on the pattern
        return x, lam

    return run


def row(case, times, baseline, target=None, against=None):
    base = times[baseline]
    out = {"case": case, "times_s": times, "baseline": baseline, "speedups": {}}
    cells = []
    for name, t in times.items():
        if name == baseline:
            continue
        out["speedups"][name] = base / t
        cells.append(f"{name} {t:.3f}s ({base / t:.2f}x)")
    line = f"{case:<34} {baseline} {base:.3f}s | " + ", ".join(cells)
    if target is not None:
        ratio = base / times[against]
        out.update(target=target, measured=ratio, met=ratio >= target)
        line += f"  [{against} >= {target}x: {'yes' if ratio >= target else 'NO'}]"
    print(line, flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small problems: a smoke run, not the targets")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    q, reps = args.quick, args.repeats
    if not sla.backends()["pardiso"].available:
        print(f"PARDISO is not available: {sla.backends()['pardiso'].note}")
        return
    print(f"PARDISO benchmarks: {args.threads} threads, best of {reps} interleaved rounds, float64, load {load()}")
    results = {"threads": args.threads, "load_before": load(), "rows": []}
    rows = results["rows"]

    # Unsymmetric convection-diffusion: forward >= 2x SciPy, forward + backward >= 3x.
    m = problems.convection_diffusion2d(60 if q else 300)
    A, b_np = sla.SparseTensor.from_scipy(m), np.ones(m.shape[0])
    b = torch.from_numpy(b_np)
    case = f"conv-diff {int(m.shape[0] ** 0.5)}^2 forward, cold"
    t = interleaved(
        {
            "scipy": scipy_forward(m, b_np),
            "pardiso": cold_solve(A, b, backend="pardiso"),
            "suitesparse": cold_solve(A, b, backend="suitesparse"),
            "auto": cold_solve(A, b),
        },
        reps,
    )
    rows.append(row(case, t, "scipy", 2.0, "pardiso"))
    case = f"conv-diff {int(m.shape[0] ** 0.5)}^2 forward+backward, cold"
    t = interleaved(
        {
            "scipy": scipy_forward_backward(m, b_np),
            "pardiso": cold_forward_backward(A, b, backend="pardiso"),
            "suitesparse": cold_forward_backward(A, b, backend="suitesparse"),
            "auto": cold_forward_backward(A, b),
        },
        reps,
    )
    rows.append(row(case, t, "scipy", 3.0, "pardiso"))

    # 2D Poisson, cold: >= 3x SciPy (the original target).
    m = problems.poisson2d(100 if q else 500)
    A, b_np = sla.SparseTensor.from_scipy(m), np.ones(m.shape[0])
    b = torch.from_numpy(b_np)
    t = interleaved(
        {
            "scipy": scipy_forward(m, b_np),
            "pardiso": cold_solve(A, b, backend="pardiso"),
            "suitesparse": cold_solve(A, b, backend="suitesparse"),
            "auto": cold_solve(A, b),
        },
        reps,
    )
    rows.append(row(f"2D Poisson {int(m.shape[0] ** 0.5)}^2, cold", t, "scipy", 3.0, "auto"))

    # 3D Poisson: PARDISO forward >= 1.3x our CHOLMOD path (cold, and with the analysis cached).
    m = problems.poisson3d(16 if q else 40)
    A = sla.SparseTensor.from_scipy(m)
    b = torch.ones(m.shape[0], dtype=torch.float64)
    t = interleaved(
        {
            "cholmod": cold_solve(A, b, backend="suitesparse", method="cholesky"),
            "pardiso": cold_solve(A, b, backend="pardiso", method="cholesky"),
            "auto": cold_solve(A, b),
        },
        reps,
    )
    rows.append(row(f"3D Poisson {round(m.shape[0] ** (1 / 3))}^3, cold", t, "cholmod", 1.3, "pardiso"))
    sla.clear_analysis_cache()
    t = interleaved(
        {
            "cholmod": lambda: sla.solve(A, b, backend="suitesparse", method="cholesky"),
            "pardiso": lambda: sla.solve(A, b, backend="pardiso", method="cholesky"),
        },
        reps,
    )
    rows.append(row(f"3D Poisson {round(m.shape[0] ** (1 / 3))}^3, analysis cached", t, "cholmod"))
    results["load_after"] = load()
    print(f"load after: {results['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
