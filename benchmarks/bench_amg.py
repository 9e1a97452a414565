"""Smoothed-aggregation AMG against IC(0)-CG, a direct solve and PyAMG, each baseline measured in the same
run (interleaved, best of ``--repeats``).

    python benchmarks/bench_amg.py [--quick] [--json out.json] [--grid2d 1000] [--grid3d 100]

1. 2D Poisson (``--grid2d``^2, default 1000^2): AMG-CG (core backend, setup + solve to rtol 1e-8) against
   IC(0)-CG (core) and PyAMG ``smoothed_aggregation_solver(A).solve(b, accel="cg", tol=1e-8)``, both with
   their setup. Targets: IC(0)-CG / AMG-CG >= 5; PyAMG / AMG-CG >= 2; operator complexity <= 1.5.
2. 3D Poisson (``--grid3d``^3, default 100^3): AMG-CG iterations <= 25; against a CHOLMOD Cholesky solve
   (factorization + solve) and PyAMG (>= 2); operator complexity <= 1.5.
3. Values-only re-setup (new values on the same pattern, the aggregates kept) against a full setup, on
   both problems: target <= 0.5.

Every case prints the setup / solve split of AMG-CG and PyAMG (where the time goes) and the load
average before and after it (the machine may be shared). The last lines list every target with its
ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import problems  # noqa: E402
import torch_sla as sla  # noqa: E402

try:
    import pyamg
except ImportError:  # the PyAMG comparisons are skipped
    pyamg = None

RTOL = 1e-8


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleaved(fns: dict, repeats: int) -> dict:
    """Best wall time of each function (and its last result), the runs interleaved."""
    best = {k: (float("inf"), None) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, out = timed(fn)
            if t < best[k][0]:
                best[k] = (t, out)
    return best


def amg_cg(A0: sla.SparseTensor, b: torch.Tensor, **kw):
    A = A0.with_values(A0.values.clone())  # new values: a fresh setup, nothing cached
    x, info = sla.solve(
        A,
        b,
        method="cg",
        backend="core",
        preconditioner="amg",
        rtol=RTOL,
        amg_setup="full",
        return_info=True,
        **kw,
    )
    return x, info


def rel_res(S, x: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(b - S @ x) / np.linalg.norm(b))


def load() -> float:
    """The 1-minute load average (of the whole machine)."""
    return os.getloadavg()[0]


def pyamg_cg(S, b: np.ndarray):
    t0 = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(S)
    setup = time.perf_counter() - t0
    res: list = []
    x = ml.solve(b, accel="cg", tol=RTOL, residuals=res, maxiter=500)
    return x, len(res) - 1, ml.operator_complexity(), setup, time.perf_counter() - t0 - setup, ml


def cycle_profile(h, ml, cycles: int = 5) -> list:
    """Per level, the seconds one V-cycle spends on the level's own work (smoothing, residual,
    restriction, prolongation; on the last level the direct solve): ours from the core's timers, PyAMG's
    by running the same steps of its cycle (``MultilevelSolver.__solve``) level by level. Plus our
    setup time per level."""
    n = h.levels[0][0]
    r = torch.randn(n, 1, dtype=torch.float64)
    z = torch.empty_like(r)
    before = h.handle.cycle_level_seconds
    for _ in range(cycles):
        h.handle.apply(r, z, "N")
    ours = [(a - b) / cycles for a, b in zip(h.handle.cycle_level_seconds, before)]
    rows = []
    py_levels = ml.levels if ml is not None else []
    for i in range(max(len(ours), len(py_levels))):
        row = {"level": i}
        if i < len(ours):
            row.update(
                rows=h.levels[i][0],
                nnz=h.levels[i][1],
                setup_s=h.handle.setup_level_seconds[i],
                cycle_s=ours[i],
            )
        if i < len(py_levels):
            lvl = py_levels[i]
            b = np.random.default_rng(i).standard_normal(lvl.A.shape[0])
            t0 = time.perf_counter()
            for _ in range(cycles):
                if i + 1 < len(py_levels):
                    x = np.zeros_like(b)
                    lvl.presmoother(lvl.A, x, b)
                    coarse_b = lvl.R @ (b - lvl.A @ x)
                    x += lvl.P @ np.zeros_like(coarse_b)
                    lvl.postsmoother(lvl.A, x, b)
                else:
                    ml.coarse_solver(lvl.A, b)
            row.update(
                pyamg_rows=lvl.A.shape[0],
                pyamg_nnz=lvl.A.nnz,
                pyamg_cycle_s=(time.perf_counter() - t0) / cycles,
            )
        rows.append(row)
    return rows


def print_profile(rows: list) -> None:
    print("  where the time goes, per level (one V-cycle; our setup):")
    print("   level |        rows         nnz   setup s  cycle ms |  PyAMG rows         nnz  cycle ms")
    for r in rows:
        ours = (
            f"{r['rows']:11d} {r['nnz']:11d} {r['setup_s']:9.3f} {1e3 * r['cycle_s']:9.2f}"
            if "rows" in r
            else " " * 43
        )
        py = (
            f"{r['pyamg_rows']:11d} {r['pyamg_nnz']:11d} {1e3 * r['pyamg_cycle_s']:9.2f}"
            if "pyamg_rows" in r
            else ""
        )
        print(f"   {r['level']:5d} | {ours} | {py}")


def ratio_row(name, base_s, ours_s, target, fn) -> dict:
    r = base_s / ours_s
    return {"case": name, "baseline_s": base_s, "amg_s": ours_s, "ratio": r, "target": target, "met": fn(r)}


def bench_2d(m: int, repeats: int, with_ic0: bool) -> dict:
    S = problems.poisson2d(m)
    A = sla.SparseTensor.from_scipy(S)
    n = A.shape[0]
    b = torch.ones(n, dtype=torch.float64)
    bn = b.numpy()
    fns = {"amg": lambda: amg_cg(A, b)}
    if with_ic0:
        fns["ic0"] = lambda: sla.solve(
            A.with_values(A.values.clone()),
            b,
            method="cg",
            backend="core",
            preconditioner="ic0",
            rtol=RTOL,
            return_info=True,
            maxiter=100000,
        )
    if pyamg is not None:
        fns["pyamg"] = lambda: pyamg_cg(S, bn)
    load0 = load()
    best = interleaved(fns, repeats)
    t_amg, (x, info) = best["amg"]
    h = info.hierarchy
    out = {
        "problem": f"2D Poisson {m}^2 (n = {n})",
        "load": [load0, load()],
        "amg": {
            "total_s": t_amg,
            "setup_s": info.setup_time,
            "solve_s": info.solve_time,
            "iterations": info.iterations,
            "residual": rel_res(S, x.numpy(), bn),
            "operator_complexity": h.operator_complexity,
            "grid_complexity": h.grid_complexity,
            "levels": h.levels,
        },
        "ratios": [],
    }
    if with_ic0:
        t_ic0, (xi, ii) = best["ic0"]
        out["ic0"] = {"total_s": t_ic0, "iterations": ii.iterations, "residual": rel_res(S, xi.numpy(), bn)}
        out["ratios"].append(ratio_row("IC(0)-CG / AMG-CG", t_ic0, t_amg, ">= 5", lambda r: r >= 5))
    if pyamg is not None:
        t_py, (xp, itp, ocp, sp, so, ml) = best["pyamg"]
        out["pyamg"] = {
            "total_s": t_py,
            "setup_s": sp,
            "solve_s": so,
            "iterations": itp,
            "operator_complexity": ocp,
            "residual": rel_res(S, xp, bn),
        }
        out["ratios"].append(ratio_row("PyAMG / AMG-CG", t_py, t_amg, ">= 2", lambda r: r >= 2))
        out["profile"] = cycle_profile(h, ml)
    oc = h.operator_complexity
    out["ratios"].append({"case": "operator complexity", "ratio": oc, "target": "<= 1.5", "met": oc <= 1.5})
    return out


def bench_3d(m: int, repeats: int, with_direct: bool) -> dict:
    S = problems.poisson3d(m)
    A = sla.SparseTensor.from_scipy(S)
    n = A.shape[0]
    b = torch.ones(n, dtype=torch.float64)
    bn = b.numpy()
    fns = {"amg": lambda: amg_cg(A, b)}
    if with_direct:
        fns["cholmod"] = lambda: sla.solve(
            A.with_values(A.values.clone()), b, backend="suitesparse", method="cholesky"
        )
    if pyamg is not None:
        fns["pyamg"] = lambda: pyamg_cg(S, bn)
    load0 = load()
    best = interleaved(fns, repeats)
    t_amg, (x, info) = best["amg"]
    h = info.hierarchy
    out = {
        "problem": f"3D Poisson {m}^3 (n = {n})",
        "load": [load0, load()],
        "amg": {
            "total_s": t_amg,
            "setup_s": info.setup_time,
            "solve_s": info.solve_time,
            "iterations": info.iterations,
            "residual": rel_res(S, x.numpy(), bn),
            "operator_complexity": h.operator_complexity,
            "grid_complexity": h.grid_complexity,
            "levels": h.levels,
        },
        "ratios": [
            {
                "case": "AMG-CG iterations",
                "ratio": info.iterations,
                "target": "<= 25",
                "met": info.iterations <= 25,
            }
        ],
    }
    if with_direct:
        t_d, xd = best["cholmod"]
        out["cholmod"] = {"total_s": t_d, "residual": rel_res(S, xd.numpy(), bn)}
        out["ratios"].append(ratio_row("CHOLMOD / AMG-CG", t_d, t_amg, "(reported)", lambda r: True))
    if pyamg is not None:
        t_py, (xp, itp, ocp, sp, so, ml) = best["pyamg"]
        out["pyamg"] = {
            "total_s": t_py,
            "setup_s": sp,
            "solve_s": so,
            "iterations": itp,
            "operator_complexity": ocp,
            "residual": rel_res(S, xp, bn),
        }
        out["ratios"].append(ratio_row("PyAMG / AMG-CG", t_py, t_amg, ">= 2", lambda r: r >= 2))
        out["profile"] = cycle_profile(h, ml)
    oc = h.operator_complexity
    out["ratios"].append({"case": "operator complexity", "ratio": oc, "target": "<= 1.5", "met": oc <= 1.5})
    return out


def bench_reuse(name: str, S, repeats: int) -> dict:
    A = sla.SparseTensor.from_scipy(S)
    b = torch.ones(A.shape[0], dtype=torch.float64)
    scale = [1.0]

    def setup(mode):
        scale[0] *= 1.01  # new values each time (the same strong connections)
        B = A.with_values(A.values * scale[0])
        return sla.solve(
            B,
            b,
            method="cg",
            backend="core",
            preconditioner="amg",
            amg_setup=mode,
            rtol=RTOL,
            return_info=True,
        )[1]

    setup("full")  # the hierarchy a values-only setup reuses
    load0 = load()
    full, vo = float("inf"), float("inf")
    for _ in range(repeats):
        full = min(full, setup("full").hierarchy.setup_time)
        i = setup("values-only")
        assert i.hierarchy.values_only
        vo = min(vo, i.hierarchy.setup_time)
    return {
        "problem": name,
        "load": [load0, load()],
        "full_setup_s": full,
        "values_only_setup_s": vo,
        "ratios": [
            {
                "case": "values-only / full setup",
                "ratio": vo / full,
                "target": "<= 0.5",
                "met": vo / full <= 0.5,
            }
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not a measurement)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid2d", type=int, default=1000)
    ap.add_argument("--grid3d", type=int, default=100)
    ap.add_argument("--no-ic0", action="store_true", help="skip the IC(0)-CG baseline (slow at full size)")
    ap.add_argument("--no-direct", action="store_true", help="skip the CHOLMOD baseline of the 3D case")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m2, m3 = (100, 16) if args.quick else (args.grid2d, args.grid3d)
    reps = 1 if args.quick else args.repeats
    results = {
        "threads": args.threads,
        "pyamg": None if pyamg is None else pyamg.__version__,
        "poisson2d": bench_2d(m2, reps, not args.no_ic0),
        "poisson3d": bench_3d(m3, reps, not args.no_direct),
        "reuse": bench_reuse(f"2D Poisson {m2}^2, setup reuse", problems.poisson2d(m2), reps),
        "reuse3d": bench_reuse(f"3D Poisson {m3}^3, setup reuse", problems.poisson3d(m3), reps),
    }
    if pyamg is None:
        print("PyAMG is not installed: its comparisons are skipped")
    targets = []
    for key in ("poisson2d", "poisson3d", "reuse", "reuse3d"):
        r = results[key]
        print(f"{r['problem']} (load {r['load'][0]:.1f} -> {r['load'][1]:.1f}):")
        if "amg" in r:
            a = r["amg"]
            print(
                f"  AMG-CG: {a['total_s']:.3f} s (setup {a['setup_s']:.3f} s, solve {a['solve_s']:.3f} s), "
                f"{a['iterations']} iterations, residual {a['residual']:.1e}, operator complexity "
                f"{a['operator_complexity']:.3f}, grid complexity {a['grid_complexity']:.3f}, "
                f"levels (rows, nnz) {a['levels']}"
            )
            for other in ("ic0", "cholmod", "pyamg"):
                if other in r:
                    o = r[other]
                    extra = f", {o['iterations']} iterations" if "iterations" in o else ""
                    if "setup_s" in o:
                        extra += f" (setup {o['setup_s']:.3f} s, solve {o['solve_s']:.3f} s)"
                    if "operator_complexity" in o:
                        extra += f", operator complexity {o['operator_complexity']:.3f}"
                    print(f"  {other}: {o['total_s']:.3f} s{extra}, residual {o['residual']:.1e}")
            if "profile" in r:
                print_profile(r["profile"])
        else:
            print(
                f"  full setup {r['full_setup_s']:.3f} s, values-only setup {r['values_only_setup_s']:.3f} s"
            )
        for row in r["ratios"]:
            targets.append((r["problem"].split(" (")[0].split(",")[0], row))
    print(f"targets ({args.threads} threads, best of {reps}):")
    for problem, row in targets:
        met = "met" if row["met"] else "NOT met"
        print(f"  {problem}: {row['case']}: {row['ratio']:.3g} (target {row['target']}: {met})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
