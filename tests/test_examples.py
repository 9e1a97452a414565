"""The example and the benchmark script run end to end (at toy sizes; `make demo` / `make bench` run
the real sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import same_package_preamble

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_inverse_problem_demo_runs_and_writes_png(tmp_path):
    out = tmp_path / "demo.png"
    r = run(["examples/inverse_diffusion.py", "--grid", "24", "--iters", "4", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("iter ") == 4
    losses = [float(line.split()[3]) for line in r.stdout.splitlines() if line.startswith("iter ")]
    assert losses[-1] < losses[0]  # gradient descent through the solves makes progress
    assert out.exists() and out.stat().st_size > 10_000
    assert f"wrote {out}" in r.stdout


@pytest.mark.skipif(
    not os.path.exists(os.path.join(ROOT, "build", "cpp", "bench_direct")),
    reason="the C++ benchmark binary is built by `make test-cpp`",
)
def test_benchmark_script_quick_run(tmp_path):
    js = tmp_path / "bench.json"
    r = run(
        [
            "benchmarks/bench_direct.py",
            "--quick",
            "--repeats",
            "1",
            "--json",
            str(js),
            "--cpp-bench",
            os.path.join(ROOT, "build", "cpp", "bench_direct"),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(js.read_text())
    assert len(data["vs_scipy"]) == 3
    for row in data["vs_scipy"]:
        assert row["max_rel_diff"] < 1e-8 and row["speedup"] > 0
    assert data["python_overhead"]["ratio"] > 0
    assert 0 < data["autograd_and_reuse"]["fb_over_f"]


@pytest.mark.skipif(
    not os.path.exists(os.path.join(ROOT, "build", "cpp", "bench_stream")),
    reason="the C++ STREAM binary is built by `make test-cpp`",
)
def test_krylov_benchmark_quick_run(tmp_path):
    js = tmp_path / "krylov.json"
    r = run(
        [
            "benchmarks/bench_krylov.py",
            "--quick",
            "--json",
            str(js),
            "--stream",
            os.path.join(ROOT, "build", "cpp", "bench_stream"),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(js.read_text())
    assert data["triad_gbps"] > 0
    assert data["bandwidth"]["core"]["ms_per_iteration"] > 0
    it_j, it_ic = data["ic0_vs_jacobi"]["jacobi"][1], data["ic0_vs_jacobi"]["ic0"][1]
    assert it_ic < it_j
    # The adjoint-based backward keeps memory flat in the iteration count.
    assert data["memory"]["core"]["relative_difference"] < 0.5


def test_api_benchmark_quick_run(tmp_path):
    js = tmp_path / "api.json"
    r = run(["benchmarks/bench_api.py", "--quick", "--json", str(js)], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(js.read_text())
    assert data["compile"]["loss_rel_diff"] < 1e-10  # the compiled step computes what eager computes
    assert all(row["raw_us"] > 0 and row["api_us"] > 0 for row in data["overhead"])


def test_gmrf_marginal_likelihood_example_recovers_the_parameters(tmp_path):
    r = run(["examples/gmrf_marginal_likelihood.py", "--grid", "24", "--steps", "120"], tmp_path)
    assert r.returncode == 0, r.stderr
    losses = [
        float(line.split("=")[1].split()[0]) for line in r.stdout.splitlines() if line.startswith("step")
    ]
    assert losses[-1] < losses[0]
    fitted = r.stdout.split("fitted: ")[1].split(";")[0]
    sigma = float(fitted.split("sigma ")[1])
    assert abs(sigma - 0.5) < 0.15  # the noise level is identified well even on a small grid


def test_logdet_benchmark_quick_run(tmp_path):
    js = tmp_path / "logdet.json"
    r = run(["benchmarks/bench_logdet.py", "--quick", "--json", str(js)], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(js.read_text())
    assert len(rows) == 2 and all(row["forward_s"] > 0 and row["selected_inverse_s"] > 0 for row in rows)


def test_nonlinear_inverse_demo_runs_and_writes_png(tmp_path):
    out = tmp_path / "nonlinear.png"
    r = run(["examples/nonlinear_inverse.py", "--grid", "16", "--iters", "4", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("iter ")]
    assert len(lines) == 4
    losses = [float(line.split()[3]) for line in lines]
    assert losses[-1] < losses[0]  # gradient descent through the nonlinear solves makes progress
    assert out.exists() and out.stat().st_size > 10_000
    assert f"wrote {out}" in r.stdout


def test_nonlinear_benchmark_quick_run(tmp_path):
    js = tmp_path / "nonlinear.json"
    r = run(["benchmarks/bench_nonlinear.py", "--quick", "--json", str(js)], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(js.read_text())
    assert all(v <= 1e-10 for v in data["bratu"]["max_abs_F"].values())
    assert data["bratu"]["products_per_assembly"] <= 12
    assert data["gradient"]["adjoint"]["converged"]
    assert all(row["products_per_assembly"] <= 12 for row in data["coloring"])


def test_amg_benchmark_quick_run(tmp_path):
    js = tmp_path / "amg.json"
    r = run(["benchmarks/bench_amg.py", "--quick", "--json", str(js)], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(js.read_text())
    for key in ("poisson2d", "poisson3d"):
        a = data[key]["amg"]
        assert a["residual"] < 1e-7 and a["iterations"] <= 25 and a["operator_complexity"] < 2
        assert all(row["ratio"] > 0 for row in data[key]["ratios"])
    assert data["reuse"]["values_only_setup_s"] > 0


def test_distributed_example_under_torchrun_matches_one_process(tmp_path):
    def misfits(cmd):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return [float(line.split()[3]) for line in r.stdout.splitlines() if line.startswith("iter ")]

    args = ["examples/distributed_poisson.py", "--grid", "24", "--iters", "3"]
    one = misfits([sys.executable, *args])
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = misfits([torchrun, "--standalone", "--nproc-per-node", "2", *args])
    assert len(one) == 3 and one[-1] < one[0]
    assert two == pytest.approx(one, rel=1e-6)


def test_distributed_benchmark_quick_run(tmp_path):
    js = tmp_path / "dist.json"
    r = run(["benchmarks/bench_distributed.py", "--quick", "--json", str(js)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(js.read_text())
    assert data["halo"]["measured"] == data["halo"]["model"]
    assert set(data["iterations"]) == {"1", "2"}  # --quick runs no oversubscribed pools
    assert data["cg"]["per_iteration_2"] > 0 and "communication exceeds compute" in r.stdout


def test_batches_benchmark_quick_run(tmp_path):
    js = tmp_path / "batches.json"
    script = os.path.join(ROOT, "benchmarks", "bench_batches.py")
    boot = same_package_preamble() + (
        f"import runpy; sys.argv = [{script!r}, '--quick', '--json', {str(js)!r}]; "
        f"runpy.run_path({script!r}, run_name='__main__')"
    )
    r = run(["-c", boot], tmp_path)
    assert r.returncode == 0, r.stderr
    graphs, fem, shared = json.loads(js.read_text())["results"]
    assert graphs["graph_batch_s"] > 0 and graphs["arithmetic_s"] > 0 and graphs["vs_scipy_graph"] > 0
    assert fem["ratio_warm"] > 0 and fem["ratio_cold"] > 0 and shared["ratio"] > 0
    assert "per-member overhead" in r.stdout
