"""Benchmarks of batched solves: many distinct patterns in one call, and one shared pattern.

    python benchmarks/bench_batches.py [--quick] [--json out.json] [--repeats 3] [--threads 2] [--clock wall]

2 threads, float64, forward and forward + backward, baselines measured in the same run (best of
``--repeats``, the runs of every case interleaved):

1. 10,000 small graphs (n = 20-60, graph Laplacian + 0.1 I, distinct patterns) in one call, as a graph
   batch (one coalesced block-diagonal COO and a ``batch`` vector, the layout of graph-learning
   libraries) and as a list of SparseTensors, against Python loops of ``scipy.sparse.linalg.spsolve`` and
   of our own ``solve`` (both extrapolated from 1,000 members; our loop reuses its matrices, so their
   plans and analyses are cached). Targets: >= 20x SciPy, >= 5x our loop. Also printed: the C++
   factorization and solve alone (the same options, on prepared arrays) and the per-member overhead,
   (time - that arithmetic) / members.
2. 256 FEM-like systems (triangulated 2D grids of n = 2,000-5,000, distinct patterns) against a loop of
   our own single solves, cold (every cached analysis dropped before each call, on both sides; the loop
   gets new matrices, so no cached plan either) and warm (analyses cached on both sides: the loop's per
   pattern fingerprint, the batch's per block pattern). Target: >= 1.7x.
3. One shared pattern, 64 members of 2D Poisson 100^2 (values (64, nnz)), against 64 single solves.
   Target: >= 1.7x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, os.path.dirname(__file__))
import problems  # noqa: E402
import torch_sla as sla  # noqa: E402
from torch_sla import _C  # noqa: E402
from torch_sla._direct import block_analysis_cache  # noqa: E402

CLOCK = [time.perf_counter]  # --clock cpu: time.process_time (the CPU time of every thread of the process)


def interleaved(fns: dict, repeats: int) -> dict:
    """Best time of each function over ``repeats`` rounds, the functions taking turns in every round."""
    clock = CLOCK[0]
    t = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            t[k] = min(t[k], clock() - t0)
    return t


def graph_laplacian(n: int, rng) -> sp.csr_matrix:
    """A random connected graph (a ring plus 2n random chords): Laplacian + 0.1 I."""
    r = np.concatenate([np.arange(n), rng.integers(0, n, 2 * n)])
    c = np.concatenate([(np.arange(n) + 1) % n, rng.integers(0, n, 2 * n)])
    keep = r != c
    W = sp.coo_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(n, n)).tocsr()
    W = ((W + W.T) > 0).astype(np.float64)
    return (sp.diags(np.asarray(W.sum(1)).ravel() + 0.1) - W).tocsr()


def fem_like(nx: int, ny: int) -> sp.csr_matrix:
    """A P1 stiffness-like matrix of a triangulated nx x ny grid (7-point stencil) + a small mass term."""
    n = nx * ny
    idx = np.arange(n).reshape(ny, nx)
    rows, cols = [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        a = idx[: ny - dy, : nx - dx].ravel()
        b = idx[dy:, dx:].ravel()
        rows += [a, b]
        cols += [b, a]
    r, c = np.concatenate(rows), np.concatenate(cols)
    W = sp.coo_matrix((np.ones(r.size), (r, c)), shape=(n, n)).tocsr()
    return (sp.diags(np.asarray(W.sum(1)).ravel() + 0.01) - W).tocsr()


def case_graphs(count: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    mats = [graph_laplacian(int(rng.integers(20, 61)), rng) for _ in range(count)]
    bs_np = [rng.standard_normal(m.shape[0]) for m in mats]
    big = sp.block_diag(mats, format="coo")
    big.sum_duplicates()  # coalesced: row-major order, as graph libraries keep their edge lists
    sizes = np.array([m.shape[0] for m in mats])
    batch = torch.from_numpy(np.repeat(np.arange(count), sizes))
    values = torch.from_numpy(big.data)
    row, col = torch.from_numpy(big.row.astype(np.int64)), torch.from_numpy(big.col.astype(np.int64))
    b = torch.from_numpy(np.concatenate(bs_np))
    As = [sla.SparseTensor.from_scipy(m) for m in mats]
    bs = [torch.from_numpy(x) for x in bs_np]
    v = values.clone().requires_grad_()
    vs = [A.values.clone().requires_grad_() for A in As]
    Ag = [A.with_values(w) for A, w in zip(As, vs)]
    sample = min(1000, count)

    def graph_fb():
        v.grad = None
        sla.solve_graph_batch(v, row, col, b, batch=batch).sum().backward()

    def list_fb():
        torch.cat(sla.solve_batch(Ag, bs)).sum().backward()

    def scipy_loop():
        for m, bb in zip(mats[:sample], bs_np[:sample]):
            spla.spsolve(m.tocsc(), bb)

    def own_loop():
        for A, bb in zip(As[:sample], bs[:sample]):
            sla.solve(A, bb)

    def own_loop_fb():
        for A, bb in zip(Ag[:sample], bs[:sample]):
            sla.solve(A, bb).sum().backward()

    # The arithmetic alone: the C++ per-block factorization and solve on prepared arrays, with the options
    # of the batch call (method chosen per block, values checked for NaN).
    A_all = sla.SparseTensor(values, row, col, (b.numel(), b.numel()))
    offsets = torch.zeros(count + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.from_numpy(sizes), 0)
    handle = A_all.pattern.core_handle()
    bt = b.reshape(1, -1).contiguous()
    threads = torch.get_num_threads()

    def arithmetic():
        f = _C.factorize_blocks(
            "suitesparse",
            "lu",
            "float64",
            handle,
            offsets,
            A_all.values,
            threads,
            96,
            False,
            True,
            True,
            block_analysis_cache(),
        )
        f.solve(bt, torch.empty_like(bt), "N", threads)

    fns = {
        "graph": lambda: sla.solve_graph_batch(values, row, col, b, batch=batch),
        "graph_fb": graph_fb,
        "list": lambda: sla.solve_batch(As, bs),
        "list_fb": list_fb,
        "scipy": scipy_loop,
        "own": own_loop,
        "own_fb": own_loop_fb,
        "arith": arithmetic,
    }
    t = interleaved(fns, repeats)
    scale = count / sample
    scipy_t, own_t, own_fb_t = t["scipy"] * scale, t["own"] * scale, t["own_fb"] * scale
    return {
        "case": f"{count} graphs, n = 20-60 (total n = {b.numel()}, nnz = {values.numel()})",
        "graph_batch_s": t["graph"],
        "graph_batch_fwd_bwd_s": t["graph_fb"],
        "list_s": t["list"],
        "list_fwd_bwd_s": t["list_fb"],
        "scipy_loop_s": scipy_t,
        "own_loop_s": own_t,
        "own_loop_fwd_bwd_s": own_fb_t,
        "arithmetic_s": t["arith"],
        "vs_scipy_graph": scipy_t / t["graph"],
        "vs_own_graph": own_t / t["graph"],
        "vs_own_graph_fwd_bwd": own_fb_t / t["graph_fb"],
        "vs_scipy_list": scipy_t / t["list"],
        "vs_own_list": own_t / t["list"],
        "vs_own_list_fwd_bwd": own_fb_t / t["list_fb"],
        "per_member_overhead_graph_us": (t["graph"] - t["arith"]) / count * 1e6,
        "per_member_overhead_list_us": (t["list"] - t["arith"]) / count * 1e6,
        "met": scipy_t / t["graph"] >= 20 and own_t / t["graph"] >= 5,
    }


def case_fem(count: int, repeats: int, lo: int, hi: int) -> dict:
    rng = np.random.default_rng(1)
    mats = []
    for _ in range(count):
        n = int(rng.integers(lo, hi + 1))
        nx = int(rng.integers(20, 80))
        mats.append(fem_like(nx, max(2, n // nx)))
    As = [sla.SparseTensor.from_scipy(m) for m in mats]
    bs = [torch.ones(A.shape[0], dtype=torch.float64) for A in As]
    vs = [A.values.clone().requires_grad_() for A in As]
    Ag = [A.with_values(w) for A, w in zip(As, vs)]

    def batched_fb():
        torch.cat(sla.solve_batch(Ag, bs)).sum().backward()

    def loop():
        for A, bb in zip(As, bs):
            sla.solve(A, bb)

    def loop_fb():
        for A, bb in zip(Ag, bs):
            sla.solve(A, bb).sum().backward()

    def cold(fn, fresh: bool):
        """fn after dropping every cached analysis; fresh: on new matrices (no cached plan either)."""

        def run():
            sla.clear_analysis_cache()
            if fresh:
                fn([A.with_values(A.values) for A in As], [A.with_values(A.values) for A in Ag])
            else:
                fn(As, Ag)

        return run

    fns = {
        "batch_warm": lambda: sla.solve_batch(As, bs),
        "loop_warm": loop,
        "batch_cold": cold(lambda M, G: sla.solve_batch(M, bs), False),
        "loop_cold": cold(lambda M, G: [sla.solve(A, bb) for A, bb in zip(M, bs)], True),
        "batch_fb_warm": batched_fb,
        "loop_fb_warm": loop_fb,
        "batch_fb_cold": cold(lambda M, G: torch.cat(sla.solve_batch(G, bs)).sum().backward(), False),
        "loop_fb_cold": cold(lambda M, G: [sla.solve(A, bb).sum().backward() for A, bb in zip(G, bs)], True),
    }
    # Warm first, in their own rounds (a cold run clears every cache, which would make the next "warm" run
    # analyse again): each warm contender runs once before timing, so plans and analyses are in place.
    warm = {k: f for k, f in fns.items() if "warm" in k}
    for f in warm.values():
        f()
    t = interleaved(warm, repeats)
    t.update(interleaved({k: f for k, f in fns.items() if "cold" in k}, repeats))
    return {
        "case": f"{count} FEM-like systems, n = {lo}-{hi}, distinct patterns",
        **{f"{k}_s": v for k, v in t.items()},
        "ratio_warm": t["loop_warm"] / t["batch_warm"],
        "ratio_cold": t["loop_cold"] / t["batch_cold"],
        "ratio_fwd_bwd_warm": t["loop_fb_warm"] / t["batch_fb_warm"],
        "ratio_fwd_bwd_cold": t["loop_fb_cold"] / t["batch_fb_cold"],
        "met": min(t["loop_warm"] / t["batch_warm"], t["loop_cold"] / t["batch_cold"]) >= 1.7,
    }


def case_shared(count: int, grid: int, repeats: int) -> dict:
    A = sla.SparseTensor.from_scipy(problems.poisson2d(grid))
    g = torch.Generator().manual_seed(0)
    # members D_i A D_i with positive diagonal D_i: distinct values, all symmetric positive definite
    d = 1 + 0.1 * torch.rand(count, A.shape[0], generator=g, dtype=torch.float64)
    row, col = A.pattern.row, A.pattern.col
    vals = A.values * d[:, row] * d[:, col]
    Ab = A.with_values(vals)
    b = torch.ones(count, A.shape[0], dtype=torch.float64)
    singles = [A.with_values(vals[i]) for i in range(count)]
    vg = vals.clone().requires_grad_()

    def batched_fb():
        vg.grad = None
        sla.solve(A.with_values(vg), b).sum().backward()

    def loop():
        for i, Ai in enumerate(singles):
            sla.solve(Ai, b[i])

    def loop_fb():
        for i in range(count):
            sla.solve(A.with_values(vg[i]), b[i]).sum().backward()

    t = interleaved({"b": lambda: sla.solve(Ab, b), "l": loop, "bfb": batched_fb, "lfb": loop_fb}, repeats)
    return {
        "case": f"shared pattern, {count} members of 2D Poisson {grid}^2",
        "batched_s": t["b"],
        "loop_s": t["l"],
        "ratio": t["l"] / t["b"],
        "batched_fwd_bwd_s": t["bfb"],
        "loop_fwd_bwd_s": t["lfb"],
        "ratio_fwd_bwd": t["lfb"] / t["bfb"],
        "met": t["l"] / t["b"] >= 1.7,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not a measurement)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: CPU time of the process (all its threads) instead of wall time; with --threads 1 the ratios "
        "of the work per member, which a busy machine disturbs far less than wall times",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK[0] = time.process_time
    r = 1 if args.quick else args.repeats
    load = os.getloadavg()
    print(
        f"{args.threads} threads, best of {r}, {args.clock} clock; load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}"
    )
    results = [
        case_graphs(200 if args.quick else 10_000, r),
        case_fem(8 if args.quick else 256, r, 200 if args.quick else 2000, 500 if args.quick else 5000),
        case_shared(4 if args.quick else 64, 20 if args.quick else 100, r),
    ]
    g, f, s = results
    print(
        f"{g['case']}\n"
        f"  graph batch {g['graph_batch_s'] * 1e3:.1f} ms (fwd+bwd {g['graph_batch_fwd_bwd_s'] * 1e3:.1f} ms), "
        f"list {g['list_s'] * 1e3:.1f} ms (fwd+bwd {g['list_fwd_bwd_s'] * 1e3:.1f} ms); SciPy loop "
        f"{g['scipy_loop_s']:.3f} s; our loop {g['own_loop_s']:.3f} s (fwd+bwd {g['own_loop_fwd_bwd_s']:.3f} s); "
        f"C++ arithmetic {g['arithmetic_s'] * 1e3:.1f} ms\n"
        f"  graph batch vs SciPy loop: {g['vs_scipy_graph']:.1f}x (target >= 20: "
        f"{'met' if g['vs_scipy_graph'] >= 20 else 'NOT met'})\n"
        f"  graph batch vs our loop: {g['vs_own_graph']:.1f}x (target >= 5: "
        f"{'met' if g['vs_own_graph'] >= 5 else 'NOT met'}); forward + backward {g['vs_own_graph_fwd_bwd']:.1f}x\n"
        f"  list vs SciPy / our loop: {g['vs_scipy_list']:.1f}x / {g['vs_own_list']:.1f}x; forward + backward "
        f"{g['vs_own_list_fwd_bwd']:.1f}x\n"
        f"  per-member overhead (time / members - arithmetic): graph batch "
        f"{g['per_member_overhead_graph_us']:.2f} us, list {g['per_member_overhead_list_us']:.2f} us"
    )
    print(
        f"{f['case']}\n"
        f"  warm (analyses cached on both sides): batch {f['batch_warm_s']:.3f} s vs loop {f['loop_warm_s']:.3f} s "
        f"= {f['ratio_warm']:.2f}x (target >= 1.7: {'met' if f['ratio_warm'] >= 1.7 else 'NOT met'}); forward + "
        f"backward {f['batch_fb_warm_s']:.3f} s vs {f['loop_fb_warm_s']:.3f} s = {f['ratio_fwd_bwd_warm']:.2f}x\n"
        f"  cold (no cached analysis on either side): batch {f['batch_cold_s']:.3f} s vs loop "
        f"{f['loop_cold_s']:.3f} s = {f['ratio_cold']:.2f}x (target >= 1.7: "
        f"{'met' if f['ratio_cold'] >= 1.7 else 'NOT met'}); forward + backward {f['batch_fb_cold_s']:.3f} s vs "
        f"{f['loop_fb_cold_s']:.3f} s = {f['ratio_fwd_bwd_cold']:.2f}x"
    )
    print(
        f"{s['case']}: batched {s['batched_s']:.3f} s vs loop {s['loop_s']:.3f} s = {s['ratio']:.2f}x "
        f"(target >= 1.7: {'met' if s['met'] else 'NOT met'}); forward + backward {s['batched_fwd_bwd_s']:.3f} s "
        f"vs {s['loop_fwd_bwd_s']:.3f} s = {s['ratio_fwd_bwd']:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"load_average": load, "threads": args.threads, "clock": args.clock, "results": results},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
