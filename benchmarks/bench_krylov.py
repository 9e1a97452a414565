"""Krylov benchmarks: bandwidth efficiency of CG, speed against SciPy, IC(0) against Jacobi, and the
memory of forward + backward against the iteration count. Baselines are measured in the same run.

    python benchmarks/bench_krylov.py --stream build/cpp/bench_stream [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, os.path.dirname(__file__))
import problems  # noqa: E402
import torch_sla as sla  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def stream_triad(exe: str, threads: int) -> float:
    out = subprocess.run(
        [exe, "20000000", "10", str(threads)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["gbps"] * 1e9


def cg_bytes_per_iteration(n: int, nnz: int, index_bytes: int = 4, value_bytes: int = 8) -> float:
    """Bytes one Jacobi-preconditioned CG iteration must move, with the two passes that the least
    traffic allows (every vector crossing memory once per pass, neighbours served from cache):
      pass A: p = D^{-1} r + beta p_old and q = A p (and p.q): values, column indices, row pointers;
              read D^{-1}, r, p_old; write p, q;
      pass B: x += alpha p, r -= alpha q (and r.D^{-1}r, r.r): read x, p, r, q, D^{-1}; write x, r.
    """
    matrix = nnz * (value_bytes + index_bytes) + (n + 1) * index_bytes
    return float(matrix + (5 + 7) * n * value_bytes)


def time_cg_iterations(A, b, backend, iters, threads, repeats=3):
    """Best-of-`repeats` time per iteration of CG+Jacobi run for exactly `iters` iterations."""
    torch.set_num_threads(threads)
    best = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A.solve(b, method="cg", backend=backend, preconditioner="jacobi", rtol=1e-30, maxiter=5)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            _, info = A.solve(
                b,
                method="cg",
                backend=backend,
                preconditioner="jacobi",
                rtol=1e-30,
                maxiter=iters,
                return_info=True,
                check_every=50,
            )
            best = min(best, (time.perf_counter() - t0) / info.iterations)
    return best


def solve_to_rtol(A, m, b, rtol, backend):
    t0 = time.perf_counter()
    x, info = A.solve(
        b,
        method="cg",
        backend=backend,
        preconditioner="jacobi",
        rtol=rtol,
        maxiter=100000,
        return_info=True,
        check_every=25,
    )
    t = time.perf_counter() - t0
    return t, info.iterations, float(np.linalg.norm(m @ x.numpy() - b.numpy()) / np.linalg.norm(b.numpy()))


def scipy_cg_to_rtol(m, b, rtol):
    M = sp.diags(1.0 / m.diagonal()).tocsr()
    count = [0]
    t0 = time.perf_counter()
    x, _ = spla.cg(
        m, b, rtol=rtol, maxiter=100000, M=M, callback=lambda xk: count.__setitem__(0, count[0] + 1)
    )
    t = time.perf_counter() - t0
    return t, count[0], float(np.linalg.norm(m @ x - b) / np.linalg.norm(b))


_MEM_CHILD = r"""
import resource, sys, json, warnings, torch
sys.path.insert(0, {here!r})
import problems, torch_sla as sla
torch.set_num_threads(2)
grid, iters, mode = {grid}, {iters}, {mode!r}
A0 = sla.SparseTensor.from_scipy(problems.poisson2d(grid))
n = A0.shape[0]
b = torch.ones(n, dtype=torch.float64, requires_grad=True)
v = A0.values.clone().requires_grad_()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
base = rss()
if mode == "naive":
    A = A0.with_values(v)
    x = torch.zeros(n, dtype=torch.float64); r = b - A @ x; p = r; rr = (r * r).sum()
    for _ in range(iters):
        q = A @ p; a = rr / (p * q).sum(); x = x + a * p; r = r - a * q
        rr_new = (r * r).sum(); p = r + (rr_new / rr) * p; rr = rr_new
else:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = A0.with_values(v).solve(b, method="cg", backend=mode, preconditioner="jacobi", rtol=1e-30, maxiter=iters)
x.sum().backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"peak_minus_base": peak - base}}))
"""


def peak_memory(grid: int, iters: int, mode: str) -> float:
    code = _MEM_CHILD.format(here=HERE, grid=grid, iters=iters, mode=mode)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_minus_base"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stream", required=True, help="path of the bench_stream executable")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    q = args.quick
    res = {"threads": args.threads}
    backends = ["core", "torch"]

    bw = stream_triad(args.stream, args.threads)
    res["triad_gbps"] = bw / 1e9
    grid = 200 if q else 1000
    m = problems.poisson2d(grid)
    A = sla.SparseTensor.from_scipy(m)
    b = torch.ones(m.shape[0], dtype=torch.float64)
    n, nnz = m.shape[0], m.nnz
    bound = cg_bytes_per_iteration(n, nnz) / bw
    print(f"Krylov benchmarks ({args.threads} threads, float64)")
    print(f"STREAM triad: {bw / 1e9:.1f} GB/s; 2D Poisson {grid}^2: n={n}, nnz={nnz}")
    print(
        f"CG+Jacobi bandwidth bound: {cg_bytes_per_iteration(n, nnz) / 1e6:.1f} MB/iteration -> {bound * 1e3:.2f} ms"
    )
    res["bandwidth"] = {}
    for be in backends:
        t = time_cg_iterations(A, b, be, 50 if q else 300, args.threads)
        eff = bound / t
        res["bandwidth"][be] = {"ms_per_iteration": t * 1e3, "fraction_of_bound": eff}
        target = " (target >= 0.70: " + ("met)" if eff >= 0.7 else "NOT met)") if be == "core" else ""
        print(f"  {be:<5} CG+Jacobi: {t * 1e3:.2f} ms/iteration = {eff:.2f} of the bound{target}")

    rtol = 1e-6
    reps = 1 if q else 2
    print(
        f"\nCG+Jacobi to rtol {rtol}, 2D Poisson {grid}^2 (SciPy with M = D^-1), best of {reps}, interleaved:"
    )
    runs = {"scipy": [], "core": [], "torch": []}
    for _ in range(reps):  # interleaved, so that a slow phase of a shared machine hits all alike
        runs["scipy"].append(scipy_cg_to_rtol(m, b.numpy(), rtol))
        for be in ("core", "torch"):
            runs[be].append(solve_to_rtol(A, m, b, rtol, be))
    ts, its_s, rs = min(runs["scipy"])
    print(f"  scipy  {ts:.2f} s, {its_s} iterations, residual {rs:.1e}")
    res["vs_scipy"] = {"scipy_s": ts, "scipy_iterations": its_s}
    for be, target in (("core", 3.0), ("torch", 1.5)):
        t, its, r = min(runs[be])
        res["vs_scipy"][be] = {"s": t, "iterations": its, "speedup": ts / t}
        ok = "met" if ts / t >= target else "NOT met"
        print(
            f"  {be:<6} {t:.2f} s, {its} iterations, residual {r:.1e}: {ts / t:.2f}x faster (target >= {target}: {ok})"
        )

    g2 = 100 if q else 500
    m2 = problems.poisson2d(g2)
    A2 = sla.SparseTensor.from_scipy(m2)
    b2 = torch.ones(m2.shape[0], dtype=torch.float64)
    out = {"jacobi": (float("inf"), 0), "ic0": (float("inf"), 0)}
    for _ in range(3):
        for pre in ("jacobi", "ic0"):
            t0 = time.perf_counter()
            _, info = A2.solve(
                b2,
                method="cg",
                backend="core",
                preconditioner=pre,
                rtol=1e-8,
                maxiter=100000,
                return_info=True,
            )
            out[pre] = min(out[pre], (time.perf_counter() - t0, info.iterations))
    ratio_it = out["jacobi"][1] / out["ic0"][1]
    res["ic0_vs_jacobi"] = {"jacobi": out["jacobi"], "ic0": out["ic0"]}
    print(
        f"\nCG on 2D Poisson {g2}^2 to rtol 1e-8 (best of 3): Jacobi {out['jacobi'][1]} it / {out['jacobi'][0]:.2f} s, "
        f"IC(0) {out['ic0'][1]} it / {out['ic0'][0]:.2f} s: {ratio_it:.2f}x fewer iterations "
        f"(target >= 2: {'met' if ratio_it >= 2 else 'NOT met'}), time ratio IC(0)/Jacobi "
        f"{out['ic0'][0] / out['jacobi'][0]:.2f} ({'faster' if out['ic0'][0] < out['jacobi'][0] else 'NOT faster'})"
    )

    g3 = 100 if q else 300
    print(f"\nPeak memory above the baseline, forward + backward, 2D Poisson {g3}^2 (n={g3 * g3}):")
    res["memory"] = {}
    for be in backends:
        m10, m1000 = peak_memory(g3, 10, be), peak_memory(g3, 1000, be)
        diff = abs(m1000 - m10) / max(m10, 1)
        res["memory"][be] = {"10": m10, "1000": m1000, "relative_difference": diff}
        print(
            f"  {be:<5} CG: 10 iterations {m10 / 1e6:.1f} MB, 1000 iterations {m1000 / 1e6:.1f} MB: "
            f"difference {diff * 100:.1f}% (target < 10%: {'met' if diff < 0.1 else 'NOT met'})"
        )
    naive = {it: peak_memory(g3, it, "naive") for it in (10, 30, 100)}
    res["memory"]["naive_autograd"] = naive
    print(
        "  naive autograd through the CG iterations: "
        + ", ".join(f"{it} iterations {v / 1e6:.1f} MB" for it, v in naive.items())
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
