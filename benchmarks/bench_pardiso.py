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


def auto_table(quick: bool, repeats: int) -> list[dict]:
    """backend="auto" against every backend on matrices of different structure, cold (new pattern):
    auto should be within 10% of the fastest on each."""
    s = 0.5 if quick else 1.0
    mats = [
        ("2D Poisson", problems.poisson2d(int(200 * s))),
        ("2D Poisson", problems.poisson2d(int(400 * s))),
        ("3D Poisson", problems.poisson3d(int(20 * s))),
        ("3D Poisson", problems.poisson3d(int(32 * s))),
        ("conv-diff 2D", problems.convection_diffusion2d(int(150 * s))),
        ("conv-diff 2D", problems.convection_diffusion2d(int(300 * s))),
        ("conv-diff 3D", problems.convection_diffusion3d(int(24 * s))),
        ("banded SPD (bw 60)", problems.banded_spd(int(60000 * s), 60)),
        ("block-arrow SPD", problems.block_arrow_spd(int(400 * s), 60, 200)),
        ("geometric graph Lapl.", problems.geometric_graph_laplacian(int(60000 * s))),
    ]
    names = [b.name for b in sla.backends().values() if b.kind == "direct" and b.available]
    print(f"\nauto against every backend, cold, best of {repeats} interleaved (load {load()})")
    print(
        f"{'matrix':<24}{'n':>8}{'method':>9}  "
        + "".join(f"{n:>13}" for n in names + ["pardiso[amd]"])
        + f"{'auto':>11}  auto picked        auto/best"
    )
    out = []
    for label, m in mats:
        A = sla.SparseTensor.from_scipy(m)
        b = torch.ones(m.shape[0], dtype=torch.float64)
        method = sla.explain(A).method
        contenders = {}
        for name in names:
            if method in sla.backends()[name].methods:
                contenders[name] = cold_solve(A, b, backend=name, method=method)
        contenders["pardiso[amd]"] = cold_solve_ordered(A, b, "pardiso", method, "amd")
        contenders["auto"] = cold_solve(A, b)
        t = interleaved(contenders, repeats)
        c = sla.explain(A)
        picked = c.backend + ("" if c.ordering == "default" else f"[{c.ordering}]")
        best = min(v for k, v in t.items() if k != "auto")
        ratio = t["auto"] / best
        cells = "".join(f"{t[n]:>12.3f}s" if n in t else f"{'-':>13}" for n in names + ["pardiso[amd]"])
        print(
            f"{label:<24}{m.shape[0]:>8}{method:>9}  {cells}{t['auto']:>10.3f}s  {picked:<18} "
            f"{ratio:.2f} {'ok' if ratio <= 1.1 else 'NO'}",
            flush=True,
        )
        out.append(
            {
                "matrix": label,
                "n": m.shape[0],
                "method": method,
                "times_s": t,
                "auto_picked": picked,
                "auto_over_best": ratio,
            }
        )
    return out


def cold_solve_ordered(A, b, backend, method, ordering):
    """A cold solve with a given fill-reducing ordering (through the backend's own factorize)."""
    impl = sla.backends()[backend]

    def run():
        sla.clear_analysis_cache()
        factors, _ = impl.factorize(A, method, ordering=ordering)
        return factors[0].solve(b.reshape(-1, 1), "N")

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small problems: a smoke run, not the targets")
    p.add_argument("--json", default=None)
    p.add_argument("--table-only", action="store_true", help="only the table of auto against every backend")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    q, reps = args.quick, args.repeats
    if not sla.backends()["pardiso"].available:
        print(f"PARDISO is not available: {sla.backends()['pardiso'].note}")
        return
    print(
        f"PARDISO benchmarks: {args.threads} threads, best of {reps} interleaved rounds, float64, load {load()}"
    )
    results = {"threads": args.threads, "load_before": load(), "rows": []}
    rows = results["rows"]
    t0 = time.perf_counter()
    c = sla.explain(sla.SparseTensor.from_scipy(problems.poisson2d(30)))  # loads or calibrates the cost model
    print(
        f"cost model: {next((r for r in c.reasons if r.startswith('cost model')), 'not used')[:100]}... "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    if args.table_only:
        results["auto_table"] = auto_table(q, reps)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return

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
    results["auto_table"] = auto_table(q, reps)
    results["load_after"] = load()
    print(f"load after: {results['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
