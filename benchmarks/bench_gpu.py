"""GPU backends against their baselines, measured in the same run (needs a CUDA device).

    python benchmarks/bench_gpu.py [--m3 60] [--m2 2000] [--cg-iterations 300] [--repeats 3]
                                   [--raw-bench build/cpp/bench_cudss_raw] [--json out.json]

Rows:
- cuDSS, 3-D Poisson m3^3 (float64, Cholesky): torch_sla's path against raw cuDSS calls from C++
  (``bench_cudss_raw``, built with the C++ tests when cuDSS's headers are found): a cold solve (new pattern:
  analysis, factorization, solve), a warm forward (new values, same pattern: factorization and solve),
  forward + backward over forward, and the re-solve ratio (warm / cold). CuPy's spsolve on the same matrix
  is a comparison column when CuPy is installed.
- CG, 2-D Poisson m2^2 (float64, Jacobi): the fused CUDA kernels' time per iteration, the bytes an
  iteration must move at least (the matrix once, the vectors of the fused kernels) over a device-to-device
  copy's bandwidth measured here (the HBM bound), and the torch-native CG on the same problem.

Targets (issue 14): cuDSS forward within 1.2x of raw cuDSS; forward + backward <= 1.3x forward; re-solve
<= 0.5x the first solve; CUDA CG >= 70% of the copy bandwidth and >= 1.5x the torch-native CG.
Exits with status 2 and a message on stderr when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import problems  # noqa: E402
import torch_sla as sla  # noqa: E402
from torch_sla._core import core  # noqa: E402
from torch_sla._cupy import cupy_csr  # noqa: E402

try:
    import cupy
    import cupyx.scipy.sparse.linalg as cupy_linalg
except Exception:  # CuPy is a comparison column only
    cupy = cupy_linalg = None


def copy_bandwidth(dev, timed) -> float:
    """The HBM bound: GB/s of a device-to-device copy of 1 GB (read + write), best of five."""
    src = torch.empty(2**27, dtype=torch.float64, device=dev).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 8 / timed(lambda: dst.copy_(src), 5) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m3", type=int, default=60, help="3-D Poisson grid for the cuDSS rows")
    ap.add_argument("--m2", type=int, default=2000, help="2-D Poisson grid for the CG rows")
    ap.add_argument("--cg-iterations", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--raw-bench", default=os.path.join("build", "cpp", "bench_cudss_raw"))
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    if not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine "
            "(scripts/gpu_check.sh)",
            file=sys.stderr,
        )
        return 2

    dev = torch.device("cuda")
    results: dict = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__}
    print(f"device: {results['device']}; torch {torch.__version__}")
    sla.show_backends()

    def timed(fn, repeats=args.repeats):
        best = float("inf")
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best

    # -- cuDSS -------------------------------------------------------------------------------------------
    A = sla.as_sparse_tensor(problems.poisson3d(args.m3)).to(dev)
    n = A.shape[-1]
    b = torch.ones(n, dtype=torch.float64, device=dev)
    row: dict = {"problem": f"3-D Poisson {args.m3}^3", "n": n, "nnz": A.nnz}
    if sla.backends()["cudss"].available:

        def cold():
            sla.clear_analysis_cache()
            return A.solve(b, backend="cudss", method="cholesky")

        def warm():
            return A.solve(b, backend="cudss", method="cholesky")

        def fwd_bwd():
            v = A.values.detach().clone().requires_grad_()
            x = A.with_values(v).solve(b, backend="cudss", method="cholesky")
            x.sum().backward()

        warm()  # the analysis is cached from here on
        row["ours_cold_s"] = timed(cold)
        row["ours_forward_s"] = timed(warm)
        row["ours_forward_backward_s"] = timed(fwd_bwd)
        row["forward_backward_over_forward"] = row["ours_forward_backward_s"] / row["ours_forward_s"]
        row["resolve_over_first"] = row["ours_forward_s"] / row["ours_cold_s"]
        if os.path.exists(args.raw_bench):
            out = subprocess.run(
                [args.raw_bench, str(args.m3), str(args.repeats)], capture_output=True, text=True, check=False
            )
            if out.returncode == 0:
                raw = json.loads(out.stdout.strip().splitlines()[-1])
                row["raw"] = raw
                row["forward_over_raw"] = row["ours_forward_s"] / raw["factorize_solve_s"]
                row["cold_over_raw"] = row["ours_cold_s"] / raw["cold_s"]
            else:
                row["raw_error"] = out.stderr.strip()[-500:]
        else:
            row["raw_error"] = f"{args.raw_bench} not built (configure the C++ tests with cuDSS's headers)"
    else:
        row["ours_error"] = sla.backends()["cudss"].note
    if sla.backends()["cupy"].available:
        try:
            M = cupy_csr(A, A.values)
            rhs = cupy.from_dlpack(b)
            row["cupy_spsolve_s"] = timed(lambda: cupy_linalg.spsolve(M, rhs), 1)
        except Exception as exc:  # a comparison column: report, do not stop the benchmark
            row["cupy_error"] = f"{type(exc).__name__}: {exc}"
    results["cudss"] = row
    print(json.dumps(row, indent=1))

    # -- CG ----------------------------------------------------------------------------------------------
    P = sla.as_sparse_tensor(problems.poisson2d(args.m2)).to(dev)
    n2, nnz2 = P.shape[-1], P.nnz
    b2 = torch.ones(n2, dtype=torch.float64, device=dev)
    k = args.cg_iterations
    cg: dict = {"problem": f"2-D Poisson {args.m2}^2", "n": n2, "nnz": nnz2, "iterations": k}
    cg["copy_gbps"] = copy_bandwidth(dev, timed)
    # Least traffic of one Jacobi-PCG iteration as the kernels organise it: the matrix once (values, int32
    # column indices, row pointers); SpMV reads p, writes q; the update reads x, p, r, q, 1/diag and writes
    # x, r; the new direction reads r, 1/diag, p and writes p.
    cg["bytes_per_iteration"] = 12 * nnz2 + 4 * (n2 + 1) + 8 * n2 * (2 + 7 + 4)
    if sla.backends()["cuda"].available:
        crow, col = P.pattern.csr_for_core()
        C = core()
        stream = torch.cuda.current_stream().cuda_stream

        def kernels():
            x = torch.zeros(n2, dtype=torch.float64, device=dev)
            # rtol = atol = 0: exactly k iterations (the residual of a k-step CG is not zero)
            C.cuda_cg(crow, col, P.values, n2, b2, x, 0.0, 0.0, k, True, 50, False, stream)

        kernels()
        t = timed(kernels)
        cg["cuda_s_per_iteration"] = t / k
        cg["cuda_gbps"] = cg["bytes_per_iteration"] / cg["cuda_s_per_iteration"] / 1e9
        cg["cuda_over_copy_bandwidth"] = cg["cuda_gbps"] / cg["copy_gbps"]
    else:
        cg["cuda_error"] = sla.backends()["cuda"].note

    def torch_cg():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            P.solve(b2, method="cg", backend="torch", preconditioner="jacobi", rtol=1e-300, maxiter=k)

    torch_cg()
    cg["torch_s_per_iteration"] = timed(torch_cg) / k
    if "cuda_s_per_iteration" in cg:
        cg["cuda_speedup_over_torch"] = cg["torch_s_per_iteration"] / cg["cuda_s_per_iteration"]
    results["cg"] = cg
    print(json.dumps(cg, indent=1))

    print("\nsummary (targets in brackets)")
    r, c = results["cudss"], results["cg"]

    def show(label, key, d, target):
        v = d.get(key)
        print(f"  {label:<44} {'n/a' if v is None else f'{v:.3f}':>8}  [{target}]")

    show("cuDSS forward / raw cuDSS (factorize+solve)", "forward_over_raw", r, "<= 1.2")
    show("cuDSS cold solve / raw cuDSS (analysis+...)", "cold_over_raw", r, "<= 1.2")
    show("cuDSS forward+backward / forward", "forward_backward_over_forward", r, "<= 1.3")
    show("cuDSS re-solve (new values) / first solve", "resolve_over_first", r, "<= 0.5")
    show("CUDA CG bandwidth / copy bandwidth", "cuda_over_copy_bandwidth", c, ">= 0.7")
    show("CUDA CG speed-up over torch-native CG", "cuda_speedup_over_torch", c, ">= 1.5")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
