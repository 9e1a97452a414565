"""Direct-solver benchmarks for the foundation: torch_sla against SciPy and against the same backend
driven from C++, each baseline measured in the same run. Prints a table of times and ratios.

    python benchmarks/bench_direct.py [--cpp-bench build/cpp/bench_direct] [--quick] [--json out.json]

Every time is the best of `--repeats` runs (wall clock) with torch/BLAS limited to `--threads` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, os.path.dirname(__file__))
import problems  # noqa: E402
import torch_sla as sla  # noqa: E402


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def scipy_spsolve(m, b) -> float:
    return spla.spsolve(m.tocsc(), b)


def bench_vs_scipy(name, m, repeats, scipy_repeats):
    A = sla.SparseTensor.from_scipy(m)
    b_np = np.ones(m.shape[0])
    b = torch.from_numpy(b_np)

    def ours():
        sla.clear_analysis_cache()  # a cold solve: ordering + symbolic + numeric + solve
        return sla.solve(A, b)

    x = ours()
    t_ours = best_of(ours, repeats)
    x_ref = scipy_spsolve(m, b_np)
    t_scipy = best_of(lambda: scipy_spsolve(m, b_np), scipy_repeats)
    err = float(np.abs(x.numpy() - x_ref).max() / np.abs(x_ref).max())
    method = sla.explain(A).method
    return {
        "case": name,
        "n": m.shape[0],
        "nnz": m.nnz,
        "method": method,
        "torch_sla_s": t_ours,
        "scipy_s": t_scipy,
        "speedup": t_scipy / t_ours,
        "max_rel_diff": err,
    }


def bench_python_overhead(cpp_bench, problem, grid, repeats, threads):
    out = subprocess.run(
        [cpp_bench, problem, str(grid), "cholesky", str(repeats), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpp = json.loads(out.strip().splitlines()[-1])
    m = problems.poisson3d(grid) if problem == "poisson3d" else problems.poisson2d(grid)
    A = sla.SparseTensor.from_scipy(m)
    b = torch.ones(m.shape[0], dtype=torch.float64)

    def ours():
        sla.clear_analysis_cache()
        return sla.solve(A, b, backend="suitesparse", method="cholesky")

    ours()
    t_py = best_of(ours, repeats)
    return {
        "case": f"{problem} {grid}",
        "n": cpp["n"],
        "cpp_s": cpp["total_s"],
        "python_s": t_py,
        "ratio": t_py / cpp["total_s"],
    }


def bench_backward_and_reuse(m, repeats):
    A0 = sla.SparseTensor.from_scipy(m)
    v0, r, c = A0.to_coo()
    b = torch.ones(m.shape[0], dtype=torch.float64)
    rng = torch.Generator().manual_seed(0)

    def new_values():
        # Same pattern, new SPD values: scale rows and columns symmetrically (D A D).
        d = 1.0 + 0.1 * torch.rand(m.shape[0], generator=rng, dtype=torch.float64)
        return v0 * d[r] * d[c]

    # Steady state of a training loop: pattern analysed once already.
    sla.solve(sla.SparseTensor(new_values(), r, c, A0.shape), b)

    def forward():
        vals = new_values().requires_grad_()
        bb = b.clone().requires_grad_()
        return sla.SparseTensor(vals, r, c, A0.shape).solve(bb), vals, bb

    def forward_backward():
        x, vals, bb = forward()
        x.sum().backward()
        assert vals.grad is not None and bb.grad is not None

    t_fwd = best_of(forward, repeats)
    t_fb = best_of(forward_backward, repeats)

    def first():
        sla.clear_analysis_cache()
        sla.SparseTensor(new_values(), r, c, A0.shape).solve(b)

    def second():
        sla.SparseTensor(new_values(), r, c, A0.shape).solve(b)

    t_first = best_of(first, repeats)
    first()
    t_second = best_of(second, repeats)
    return {
        "forward_s": t_fwd,
        "forward_backward_s": t_fb,
        "fb_over_f": t_fb / t_fwd,
        "first_solve_s": t_first,
        "second_solve_s": t_second,
        "second_over_first": t_second / t_first,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpp-bench", default=None, help="path of the C++ bench_direct executable")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smaller problems (a smoke run, not the targets)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    q = args.quick
    results = {"threads": args.threads}

    print(
        f"torch_sla direct-solver benchmarks ({args.threads} threads, best of {args.repeats}, float64, one rhs)"
    )
    sla.show_backends()
    cases = [
        ("SPD 3D Poisson", problems.poisson3d(16 if q else 40), 10.0),
        ("SPD 2D Poisson", problems.poisson2d(100 if q else 500), 3.0),
        ("unsym. 2D conv-diff", problems.convection_diffusion2d(60 if q else 300), 2.0),
    ]
    print(
        f"\n{'case':<22}{'n':>9}{'method':>10}{'torch_sla':>11}{'scipy':>10}{'speedup':>9}{'target':>8}  ok"
    )
    results["vs_scipy"] = []
    for name, m, target in cases:
        r = bench_vs_scipy(name, m, args.repeats, 1 if m.shape[0] > 50000 else args.repeats)
        r["target"] = target
        results["vs_scipy"].append(r)
        ok = "yes" if r["speedup"] >= target else "NO"
        print(
            f"{name:<22}{r['n']:>9}{r['method']:>10}{r['torch_sla_s']:>10.3f}s{r['scipy_s']:>9.3f}s"
            f"{r['speedup']:>8.1f}x{'>=' + str(target):>8}  {ok}  (max rel diff {r['max_rel_diff']:.1e})"
        )

    if args.cpp_bench:
        grid = 20 if q else 40
        r = bench_python_overhead(args.cpp_bench, "poisson3d", grid, args.repeats, args.threads)
        results["python_overhead"] = r
        ok = "yes" if r["ratio"] <= 1.15 else "NO"
        print(
            f"\nPython overhead, {r['case']} (n={r['n']}), CHOLMOD analyze+factorize+solve: "
            f"C++ {r['cpp_s']:.3f}s, Python {r['python_s']:.3f}s, ratio {r['ratio']:.3f} (target <= 1.15) {ok}"
        )
    else:
        print("\nPython overhead: skipped (pass --cpp-bench build/cpp/bench_direct; `make bench` does)")

    r = bench_backward_and_reuse(problems.poisson3d(16 if q else 40), args.repeats)
    results["autograd_and_reuse"] = r
    print(
        f"\n3D Poisson forward (factorize+solve, analysis cached) {r['forward_s']:.3f}s, forward+backward "
        f"{r['forward_backward_s']:.3f}s: ratio {r['fb_over_f']:.3f} (target <= 1.3) "
        f"{'yes' if r['fb_over_f'] <= 1.3 else 'NO'}"
    )
    print(
        f"3D Poisson first solve (cold analysis) {r['first_solve_s']:.3f}s, second solve same pattern new values "
        f"{r['second_solve_s']:.3f}s: ratio {r['second_over_first']:.3f} (target <= 0.85) "
        f"{'yes' if r['second_over_first'] <= 0.85 else 'NO'}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
