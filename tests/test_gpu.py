"""GPU backends: cuDSS (direct), the fused CUDA kernels (CG, SpMV), CuPy, and the torch kernels on CUDA.

The first part runs everywhere: how ``auto`` ranks the GPU backends (pure functions of the registry, asked
about a CUDA device that need not exist), the memory rule, how cuDSS is looked for and why it is reported
unavailable, and that the bindings of the CUDA part are there. The second part needs a CUDA device and skips
without one: every direct and iterative method on CUDA in float64 and complex128 (gradcheck, agreement with
the CPU backends), uniform batches, the analysis cache, the errors of singular and indefinite matrices, mixed
devices.
"""

from __future__ import annotations

import gc
import os
import pathlib
import subprocess
import sys

import pytest
import torch

import torch_sla as sla
from conftest import poisson2d, random_sparse, same_package_preamble
from torch_sla import _direct, _iterative, _registry
from torch_sla._core import core, core_build_info
from torch_sla._options import KrylovOptions

F64, C128 = torch.float64, torch.complex128
CUDA = torch.device("cuda", 0)
INFO = core_build_info()
HAS_GPU = torch.cuda.is_available() and INFO.get("cuda_device_count", 0) > 0
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")
needs_cudss = pytest.mark.skipif(
    not (HAS_GPU and sla.backends()["cudss"].available),
    reason="no CUDA device" if not HAS_GPU else "cuDSS is not installed (pip install nvidia-cudss-cu13)",
)
ROOT = pathlib.Path(__file__).resolve().parents[1]


# -- everywhere: dispatch, availability, the library search, the bindings ---------------------------------
@pytest.fixture
def all_available(monkeypatch):
    """Every GPU backend reported available (their availability is cached on the objects)."""
    for name in ("cudss", "cupy", "cuda", "cupy_krylov"):
        monkeypatch.setattr(sla.backends()[name], "_avail", (True, "test"), raising=False)
    return sla.backends()


def test_cuda_preference_lists_put_cudss_and_the_cuda_kernels_first():
    assert [b.name for b in _registry.preference("cuda", "direct")] == ["cudss", "cupy"]
    assert [b.name for b in _registry.preference("cuda", "iterative")] == ["cuda", "torch", "cupy_krylov"]


def test_direct_candidates_on_cuda_follow_the_order_and_sizes(all_available, monkeypatch):
    here, passed = _registry.direct_candidates(CUDA, F64, "lu", n=1000)
    assert [b.name for b in here] == ["cudss", "cupy"] and passed == []
    # cuDSS has Cholesky and LDL^T, CuPy LU only
    here, passed = _registry.direct_candidates(CUDA, C128, "cholesky", n=1000)
    assert [b.name for b in here] == ["cudss"] and "has no method 'cholesky'" in passed[0]
    # CuPy's host factorization is passed over for large matrices, with the reason
    big = sla.backends()["cupy"].max_auto_size + 1
    here, passed = _registry.direct_candidates(CUDA, F64, "lu", n=big)
    assert [b.name for b in here] == ["cudss"]
    assert f"above n = {big - 1}" in passed[0]
    # without cuDSS: CuPy for small matrices, nothing for large ones (then auto goes iterative)
    monkeypatch.setattr(sla.backends()["cudss"], "_avail", (False, "libcudss not found"))
    here, passed = _registry.direct_candidates(CUDA, F64, "lu", n=1000)
    assert [b.name for b in here] == ["cupy"] and "libcudss not found" in passed[0]
    here, passed = _registry.direct_candidates(CUDA, F64, "lu", n=big)
    assert here == [] and len(passed) == 2


def test_iterative_candidates_on_cuda_take_the_kernels_for_cg_only(all_available):
    names = lambda h: [b.name for b in h]  # noqa: E731
    assert names(_registry.iterative_candidates(CUDA, F64, "cg")[0]) == ["cuda", "torch", "cupy_krylov"]
    assert names(_registry.iterative_candidates(CUDA, C128, "gmres")[0]) == ["torch", "cupy_krylov"]
    assert names(_registry.iterative_candidates(CUDA, F64, "minres")[0]) == ["torch"]
    # options the CUDA kernels do not run go to the torch kernels
    amg = KrylovOptions.from_kwargs({"preconditioner": "amg"})
    here, passed = _registry.iterative_candidates(CUDA, F64, "cg", amg)
    assert names(here) == ["torch"] and "no preconditioner 'amg'" in passed[0]
    cb = KrylovOptions.from_kwargs({"callback": lambda k, r: None})
    here, passed = _registry.iterative_candidates(CUDA, F64, "cg", cb)
    assert names(here) == ["torch"] and "takes no callback" in passed[0]
    jac = KrylovOptions.from_kwargs({"preconditioner": "jacobi"})
    assert names(_registry.iterative_candidates(CUDA, F64, "cg", jac)[0])[0] == "cuda"


def test_cuda_memory_budget_is_a_fraction_of_the_free_memory():
    budget, note = _registry.cuda_memory_budget(10e9, 80e9, None)
    assert budget == pytest.approx(_registry.DEVICE_MEMORY_FRACTION * 10e9)
    assert "10.0 GB free of 80.0 GB" in note
    # a smaller budget set by the caller wins, and says so
    budget, note = _registry.cuda_memory_budget(10e9, 80e9, 1e9)
    assert budget == 1e9 and note.startswith("the memory budget (1.0 GB")
    assert _registry.cuda_memory_budget(10e9, 80e9, 1e12)[0] == pytest.approx(8e9)


def test_memory_budget_for_asks_the_device(monkeypatch):
    monkeypatch.setattr(_registry, "device_memory", lambda device: (2e9, 16e9))
    budget, note = _registry.memory_budget_for(CUDA)
    assert budget == pytest.approx(1.6e9) and "2.0 GB free of 16.0 GB" in note
    budget, note = _registry.memory_budget_for(torch.device("cpu"))
    assert budget == sla.get_memory_budget() and note.startswith("the memory budget")


def test_auto_falls_back_when_the_chosen_kernels_cannot_run_the_options(monkeypatch):
    # The same rule on the CPU: a backend auto chose that refuses the options hands over to the next one.
    monkeypatch.setattr(
        _iterative.CoreKrylovBackend, "accepts", lambda self, opts: "refused for the test", raising=False
    )
    A = poisson2d(6)
    x, info = sla.solve(A, torch.ones(36, dtype=F64), method="cg", return_info=True)
    assert info.backend == "torch" and info.converged
    torch.testing.assert_close(A.to_dense() @ x, torch.ones(36, dtype=F64))
    # a backend the caller named is kept
    x, info = sla.solve(A, torch.ones(36, dtype=F64), method="cg", backend="core", return_info=True)
    assert info.backend == "core"


def test_merge_columns_reports_the_worst_column():
    a = {
        "iterations": 3,
        "residual": 1e-9,
        "converged": True,
        "reason": "converged",
        "residual_history": [1, 0.1],
    }
    b = {"iterations": 5, "residual": 1e-3, "converged": False, "reason": "maxiter", "residual_history": [2]}
    m = _iterative.merge_columns([a, b])
    assert m["iterations"] == 5 and m["residual"] == 1e-3 and not m["converged"] and m["reason"] == "maxiter"
    assert m["residual_history"] == [2, 0.1]


def test_cudss_candidates_search_the_wheel_folders(tmp_path):
    def lib(*parts):
        p = tmp_path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        return str(p)

    site_a, site_b = tmp_path / "a", tmp_path / "b"
    cu12 = lib("a", "nvidia", "cu12", "lib", "libcudss.so.1")
    cu13 = lib("a", "nvidia", "cu13", "lib", "libcudss.so.1")
    old = lib("b", "nvidia", "cudss", "lib", "libcudss.so.0")
    dirs = [str(site_a), str(site_b), str(site_a)]
    # the wheel of torch's CUDA major version first, every existing file once, missing ones left out
    assert _direct.cudss_candidates(dirs, "13.0") == [cu13, cu12, old]
    assert _direct.cudss_candidates(dirs, "12.8") == [cu12, cu13, old]
    assert _direct.cudss_candidates(dirs, None) == [cu13, cu12, old]
    assert _direct.cudss_candidates([str(tmp_path / "none")], "13.0") == []


def test_show_backends_says_why_each_gpu_backend_is_unavailable():
    rows = {b.name: b for b in sla.show_backends(file=open(os.devnull, "w"))}
    for name in ("cudss", "cuda", "cupy", "cupy_krylov"):
        b = rows[name]
        assert b.devices == ("cuda",)
        assert b.note, f"{name}: no note"
        if not b.available:  # the note says why: no build with CUDA, no library, no device
            assert any(w in b.note for w in ("CUDA", "cuDSS", "libcudss", "CuPy", "device")), b.note


@pytest.mark.skipif(not INFO.get("cuda_compiled"), reason="the core was built without CUDA")
def test_cuda_bindings_are_there_and_check_their_arguments():
    C = core()
    for name in ("load_cudss", "analyze_cudss", "cuda_cg", "cuda_spmv", "cuda_device_count"):
        assert hasattr(C, name), name
    i32 = torch.zeros(3, dtype=torch.int32)
    v = torch.ones(2, dtype=F64)
    # CPU tensors are refused with the argument named, never read as device memory
    with pytest.raises(
        sla.InvalidArgumentError, match="values: on the CPU; the CUDA kernels take CUDA tensors"
    ):
        C.cuda_cg(i32, i32[:2], v, 2, v, v.clone(), 1e-8, 0.0, 10, True)
    with pytest.raises(sla.InvalidArgumentError, match="values: on the CPU"):
        C.cuda_spmv(i32, i32[:2], v, 2, 2, v.view(1, 2), v.view(1, 2).clone())
    with pytest.raises(sla.InvalidArgumentError, match="backend 'cudss' runs on a CUDA device"):
        C.analyze("cudss", "lu", "float64", poisson2d(3).pattern.core_handle())
    assert C.backend_available("cudss") == sla.backends()["cudss"].available


@pytest.mark.skipif(not INFO.get("cuda_compiled"), reason="the core was built without CUDA")
def test_load_cudss_reports_every_place_it_tried(tmp_path, monkeypatch):
    C = core()
    if C.load_cudss([])[0]:
        pytest.skip("cuDSS is loaded in this process (a GPU machine): the search is over")
    fake = tmp_path / "libcudss.so.1"
    fake.write_text("not a library")
    monkeypatch.delenv("TORCH_SLA_CUDSS", raising=False)
    loaded, why = C.load_cudss([str(fake)])
    assert not loaded and str(fake) in why and "could not be loaded" in why and "nvidia-cudss-cu13" in why
    monkeypatch.setenv("TORCH_SLA_CUDSS", "none")
    assert C.load_cudss([str(fake)]) == (False, "disabled by the environment variable TORCH_SLA_CUDSS=none")
    monkeypatch.setenv("TORCH_SLA_CUDSS", str(tmp_path / "missing.so"))
    loaded, why = C.load_cudss([])
    assert not loaded and "TORCH_SLA_CUDSS" in why and "missing.so" in why
    with pytest.raises(sla.BackendUnavailableError, match="backend 'cudss' is not available"):
        C.analyze_cudss("lu", "float64", poisson2d(3).pattern.core_handle(), 0)


@pytest.mark.skipif(HAS_GPU, reason="checks the message given without a CUDA device")
def test_gpu_benchmark_exits_with_a_clear_message_without_a_gpu():
    # the benchmark run with the package under test
    run = same_package_preamble() + (
        f"import runpy; sys.argv = ['bench_gpu.py']; "
        f"runpy.run_path({str(ROOT / 'benchmarks' / 'bench_gpu.py')!r}, run_name='__main__')"
    )
    r = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no CUDA device" in r.stderr


# -- on a GPU --------------------------------------------------------------------------------------------
def sparse(dense: torch.Tensor, device="cuda") -> sla.SparseTensor:
    """A dense test matrix as a SparseTensor (on the GPU by default)."""
    idx = dense.nonzero().t()
    return sla.SparseTensor(dense[idx[0], idx[1]], idx[0], idx[1], tuple(dense.shape)).to(device)


KINDS = {"cholesky": "spd", "ldl": "symmetric", "lu": "general"}


@needs_cudss
@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("method", ["cholesky", "ldl", "lu"])
def test_cudss_agrees_with_the_cpu_and_the_dense_reference(method, dtype):
    D = random_sparse(40, 0.1, dtype=dtype, kind=KINDS[method], seed=3)
    b = torch.randn(40, 3, dtype=dtype)
    x = sparse(D).solve(b.cuda(), backend="cudss", method=method)
    assert x.device.type == "cuda"
    torch.testing.assert_close(x.cpu(), torch.linalg.solve(D, b))
    torch.testing.assert_close(x.cpu(), sparse(D, "cpu").solve(b, method=method))


@needs_cudss
@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("method", ["cholesky", "ldl", "lu"])
def test_cudss_gradcheck(method, dtype):
    D = random_sparse(8, 0.3, dtype=dtype, kind=KINDS[method], seed=5)
    A = sparse(D)
    v = A.values.detach().clone().requires_grad_()
    b = torch.randn(8, dtype=dtype, device="cuda", requires_grad=True)
    # Hermitian methods read one triangle: perturb the values symmetrically (the gradient is on the pattern)
    f = lambda vv, bb: A.with_values(vv).solve(bb, backend="cudss", method=method, check_symmetry=False)  # noqa: E731
    if method == "lu":
        assert torch.autograd.gradcheck(f, (v, b))
    else:
        assert torch.autograd.gradcheck(lambda bb: f(v.detach(), bb), (b,))
        # the values' gradient agrees with the CPU backends'
        xv = A.with_values(v).solve(b.detach(), backend="cudss", method=method)
        (gv,) = torch.autograd.grad(xv.abs().sum(), v)
        vc = v.detach().cpu().requires_grad_()
        xc = A.to("cpu").with_values(vc).solve(b.detach().cpu(), method=method)
        (gc_,) = torch.autograd.grad(xc.abs().sum(), vc)
        torch.testing.assert_close(gv.cpu(), gc_)


@needs_cudss
def test_cudss_is_auto_on_cuda_and_explain_says_why():
    A = poisson2d(10).to("cuda")
    c = sla.explain(A, torch.ones(100, dtype=F64, device="cuda"))
    assert c.backend == "cudss" and c.method == "cholesky"
    assert "free device memory" in str(c) or "memory budget" in str(c)


@needs_cudss
def test_cudss_uniform_batch_matches_member_solves():
    A = poisson2d(8)
    scales = torch.tensor([1.0, 2.0, 3.5, 0.5], dtype=F64)
    values = scales[:, None] * A.values[None, :]
    Ab = sla.SparseTensor._from_pattern(values, A.pattern).to("cuda")
    b = torch.randn(4, 64, 2, dtype=F64)
    x = Ab.solve(b.cuda(), backend="cudss", method="cholesky")
    for i in range(4):
        Ai = A.with_values(values[i])
        torch.testing.assert_close(x[i].cpu(), Ai.solve(b[i]))
    # backward through the batch: one adjoint solve of the whole batch
    vb = Ab.values.detach().clone().requires_grad_()
    xb = Ab.with_values(vb).solve(b.cuda(), backend="cudss", method="cholesky")
    (g,) = torch.autograd.grad(xb.sum(), vb)
    assert torch.isfinite(g).all()


@needs_cudss
def test_cudss_second_factorization_of_a_pattern_skips_the_analysis():
    sla.clear_analysis_cache()
    A = sparse(random_sparse(30, 0.15, kind="general", seed=9))
    f1 = sla.factorize(A, backend="cudss", method="lu")
    assert not f1.info["analysis_reused"]
    sym, _ = sla.backends()["cudss"].analyze(A, "lu")
    assert sym.analysis_count == 1  # analysed once, in analyze
    del f1
    gc.collect()
    f2 = sla.factorize(A.with_values(A.values * 2), backend="cudss", method="lu")
    assert f2.info["analysis_reused"] and sym.analysis_count == 1
    b = torch.ones(30, dtype=F64, device="cuda")
    torch.testing.assert_close((A.to_dense() * 2) @ f2.solve(b), b)


@needs_cudss
def test_cudss_errors_match_the_cpu():
    singular = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    with pytest.raises(sla.SingularMatrixError):
        sparse(singular).solve(torch.ones(3, dtype=F64, device="cuda"), backend="cudss", method="lu")
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)
    with pytest.raises(sla.NotPositiveDefiniteError):
        sparse(indefinite).solve(torch.ones(2, dtype=F64, device="cuda"), backend="cudss", method="cholesky")
    # auto: Cholesky breaks down, LU takes over (as on the CPU)
    x = sparse(indefinite).solve(torch.ones(2, dtype=F64, device="cuda"))
    torch.testing.assert_close(x.cpu(), torch.linalg.solve(indefinite, torch.ones(2, dtype=F64)))
    A = sla.SparseTensor(torch.tensor([1.0]), torch.tensor([0]), torch.tensor([0]), (2, 2)).to("cuda")
    with pytest.raises(sla.SingularMatrixError, match="structurally singular"):
        A.solve(torch.ones(2, dtype=F64, device="cuda"), backend="cudss", method="lu")


@needs_gpu
def test_mixed_devices_give_a_clear_error():
    A = poisson2d(4).to("cuda")
    with pytest.raises(sla.InvalidArgumentError, match="b: on device cpu but A is on cuda"):
        A.solve(torch.ones(16, dtype=F64))


@needs_gpu
@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("backend", ["cuda", "torch"])
def test_cg_on_cuda_agrees_and_gradchecks(backend, dtype):
    D = random_sparse(30, 0.1, dtype=dtype, kind="spd", seed=2)
    A = sparse(D)
    b = torch.randn(30, 2, dtype=dtype)
    x, info = A.solve(b.cuda(), method="cg", backend=backend, rtol=1e-12, return_info=True)
    assert info.backend == backend and info.converged
    torch.testing.assert_close(x.cpu(), torch.linalg.solve(D, b))
    small = sparse(random_sparse(8, 0.3, dtype=dtype, kind="spd", seed=1))
    bb = torch.randn(8, dtype=dtype, device="cuda", requires_grad=True)
    v = small.values.detach().clone().requires_grad_()

    def f(vv, rhs):
        return small.with_values(vv).solve(
            rhs, method="cg", backend=backend, rtol=1e-13, check_symmetry=False
        )

    assert torch.autograd.gradcheck(lambda rhs: f(v.detach(), rhs), (bb,), atol=1e-6, rtol=1e-5)


@needs_gpu
@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("method", ["bicgstab", "gmres", "minres"])
def test_torch_krylov_on_cuda(method, dtype):
    kind = "symmetric" if method == "minres" else "general"
    D = random_sparse(30, 0.1, dtype=dtype, kind=kind, seed=4)
    b = torch.randn(30, dtype=dtype)
    v = sparse(D).values.detach().clone().requires_grad_()
    x = sparse(D).with_values(v).solve(b.cuda(), method=method, rtol=1e-12)
    torch.testing.assert_close(x.cpu(), torch.linalg.solve(D, b), atol=1e-8, rtol=1e-8)
    (g,) = torch.autograd.grad(x.real.sum(), v)
    assert torch.isfinite(g).all()


@needs_gpu
def test_cuda_cg_is_auto_for_spd_iterative_solves_and_jacobi_converges():
    A = poisson2d(30).to("cuda")
    b = torch.ones(900, dtype=F64, device="cuda")
    x, info = A.solve(b, method="cg", return_info=True)
    assert info.backend == "cuda" and info.preconditioner == "jacobi" and info.converged
    torch.testing.assert_close(A @ x, b)
    # a check every iteration or every 50 gives the same answer
    x1 = A.solve(b, method="cg", check_every=1)
    x50 = A.solve(b, method="cg", check_every=50)
    torch.testing.assert_close(x1, x50)
    # not positive definite: CG reports a breakdown instead of returning garbage
    N = A.with_values(-A.values)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        _, bad = N.solve(
            b, method="cg", backend="cuda", preconditioner="none", return_info=True, on_fail="warn"
        )
    assert not bad.converged and "breakdown" in bad.reason


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.complex64, C128])
def test_cuda_spmv_matches_torch(dtype):
    D = random_sparse(50, 0.2, dtype=dtype, kind="general", seed=7)
    A = sparse(D)
    crow, col = A.pattern.csr_for_core()
    x = torch.randn(5, 50, dtype=dtype, device="cuda")  # five right-hand sides in one pass
    y = torch.empty_like(x)
    core().cuda_spmv(crow, col, A.values, 50, 50, x, y, torch.cuda.current_stream().cuda_stream)
    tol = 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-12
    torch.testing.assert_close(y, (D.cuda() @ x.t()).t(), atol=tol, rtol=tol)


@needs_cudss
def test_cudss_runs_on_the_current_stream():
    A = poisson2d(20).to("cuda")
    b = torch.randn(400, dtype=F64, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        bb = b * 2  # queued on s: the solve must come after it
        x = A.solve(bb, backend="cudss")
    s.synchronize()
    torch.testing.assert_close(A @ x, 2 * b)
