"""The measured choice of backend="auto": the cost model (deterministic given a calibration file), its
calibration and on-disk cache, the switch that turns it off, tune() / autotune, and orderings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import torch_sla as sla
from conftest import poisson2d, random_sparse
from torch_sla import _costmodel, _registry

F64 = torch.float64
PARDISO = sla.backends()["pardiso"].available
SUITESPARSE = sla.backends()["suitesparse"].available
needs_suitesparse = pytest.mark.skipif(not SUITESPARSE, reason="the probe analysis is CHOLMOD's / UMFPACK's")


def poisson3d(m: int) -> sla.SparseTensor:
    return _costmodel._grid((m, m, m), 0.0)


@pytest.fixture
def calibration(tmp_path, monkeypatch):
    """Point the cost model at a file of ours; forget the models loaded before and after."""
    path = tmp_path / "calibration.json"
    monkeypatch.setenv(_costmodel.ENV, str(path))
    _costmodel.forget()
    yield path
    _costmodel.forget()


def write(path, coefficients):
    path.write_text(json.dumps({"any": {"format": _costmodel.FORMAT, "coefficients": coefficients}}))


@needs_suitesparse
def test_choice_is_deterministic_given_a_calibration_file(calibration):
    # eigen: cheap per entry, dear per flop; pardiso: a fixed cost, cheap per flop; suitesparse between.
    write(
        calibration,
        {
            "suitesparse:cholesky": [1e-3, 0.0, 1e-9],
            "eigen:cholesky": [0.0, 1e-7, 2e-9],
            "pardiso:cholesky": [1e-2, 0.0, 1e-10],
            "suitesparse:lu": [0.0, 1e-7, 1e-9],
            "eigen:lu": [0.0, 3e-7, 1e-9],
            "scipy:lu": [0.0, 5e-7, 1e-9],
            "pardiso:lu": [0.0, 4e-7, 1e-9],
        },
    )
    small = poisson2d(10)
    c = sla.explain(small)
    assert c.backend == "eigen" and c.method == "cholesky"
    text = str(c)
    assert "cost model (calibration file" in text and "predicted cold solve" in text and "eigen" in text
    big = poisson3d(16)  # about 6e7 flops: the per-flop cost decides
    assert sla.explain(big).backend == ("pardiso" if PARDISO else "suitesparse")
    G = sla.SparseTensor.from_dense(random_sparse(40, 0.1, kind="general"))
    assert sla.explain(G).backend == "suitesparse" and sla.explain(G).method == "lu"
    # The choice is used: the solve runs on it and agrees with an explicit backend.
    b = torch.ones(small.shape[0], dtype=F64)
    torch.testing.assert_close(small.solve(b), small.solve(b, backend="suitesparse"))
    f = small.factorize()
    assert f.backend == "eigen" and "cost model" in " ".join(f.info["reasons"])


def test_pardiso_orders_by_nested_dissection_where_it_pays():
    p = sla.backends()["pardiso"]
    assert p.auto_ordering(flops=1.6e10, factor_nnz=1.4e7) == "metis"  # 3-D Poisson 40^3
    assert p.auto_ordering(flops=2.1e9, factor_nnz=9.2e6) == "amd"  # 2-D Poisson 500^2
    assert p.auto_ordering(flops=2.1e9, factor_nnz=9.2e6, dense_rows=20.0) == "metis"  # a block arrow
    arrow = sla.SparseTensor.from_dense(
        torch.eye(50, dtype=F64) * 4 + torch.nn.functional.pad(torch.ones(1, 50), (0, 0, 49, 0)).double()
    )
    assert _costmodel.dense_rows(arrow) > 8.0 and _costmodel.dense_rows(poisson2d(8)) < 2.0
    assert sla.backends()["suitesparse"].auto_ordering(1e12, 1.0) == "default"


@needs_suitesparse
def test_off_keeps_the_registry_order(monkeypatch):
    monkeypatch.setenv(_costmodel.ENV, "off")
    c = sla.explain(poisson2d(6))
    assert c.backend == "suitesparse" and "cost model off" in str(c)


@needs_suitesparse
def test_calibration_runs_once_and_is_kept_on_disk(calibration, monkeypatch):
    monkeypatch.setattr(
        _costmodel,
        "problems",
        lambda method: [_costmodel._grid((d, d), 0.6 * (method == "lu")) for d in (6, 9, 12)],
    )
    c = sla.explain(poisson2d(8))
    assert "cost model (calibrated now" in str(c)
    data = json.loads(calibration.read_text())
    (entry,) = data.values()
    assert entry["format"] == _costmodel.FORMAT and entry["seconds"] > 0
    for key, coef in entry["coefficients"].items():
        name, method = key.split(":")
        assert name in sla.backends() and method in ("cholesky", "ldl", "lu")
        assert len(coef) == 3 and min(coef) >= 0.0
    # A new process (here: the models forgotten) reads the file instead of timing again.
    _costmodel.forget()
    monkeypatch.setattr(_costmodel, "calibrate", lambda *a: pytest.fail("calibrated again"))
    assert "calibration file" in str(sla.explain(poisson2d(8)))


def test_fit_recovers_known_coefficients():
    feats = np.array([[1.0, 1e3, 1e5], [1.0, 1e4, 1e7], [1.0, 1e5, 1e9], [1.0, 3e4, 1e8]])
    truth = np.array([1e-4, 2e-7, 3e-10])
    coef = _costmodel._fit(feats, feats @ truth)
    assert np.allclose(coef, truth, rtol=1e-3)


def test_tune_times_each_candidate_and_autotune_uses_the_winner(monkeypatch):
    monkeypatch.setattr(_registry, "_TUNED", {})
    A = poisson2d(15)
    c = sla.tune(A)
    assert c.kind == "direct" and "autotuned for this pattern" in str(c)
    assert c.backend in sla.backends()
    # Another matrix of the same pattern and dtype takes the same winner.
    B = A.with_values(A.values * 2.0)
    assert sla.explain(B).backend == c.backend
    b = torch.randn(A.shape[0], dtype=F64)
    torch.testing.assert_close(B.solve(b), A.solve(b) / 2.0)
    # autotune=True tunes a new pattern on its first solve.
    G = sla.SparseTensor.from_dense(random_sparse(30, 0.2, kind="general", seed=1))
    assert not _registry.tuned(G, "auto")
    x = G.solve(torch.ones(30, dtype=F64), autotune=True)
    assert _registry.tuned(G, "auto")
    torch.testing.assert_close(G.to_dense() @ x, torch.ones(30, dtype=F64))


@pytest.mark.parametrize("ordering", ["default", "amd", "metis"])
def test_orderings_give_the_same_solution(ordering):
    A = poisson3d(8)
    b = torch.randn(A.shape[0], dtype=F64)
    ref = torch.linalg.solve(A.to_dense(), b)
    for name in ("suitesparse", "pardiso", "eigen"):
        be = sla.backends()[name]
        if not be.available or ordering not in be.orderings:
            continue
        f = A.factorize(backend=name, method="cholesky", ordering=ordering)
        assert f._choice.ordering == ordering
        torch.testing.assert_close(f.solve(b), ref)
        x = (
            A.solve(b, backend=name, method="lu", ordering=ordering)
            if name != "eigen" or ordering == "default"
            else ref
        )
        torch.testing.assert_close(x, ref)


def test_bad_orderings_are_refused():
    A = poisson2d(4)
    b = torch.ones(16, dtype=F64)
    with pytest.raises(sla.InvalidArgumentError, match="ordering: backend 'eigen' takes one of"):
        A.solve(b, backend="eigen", ordering="metis")
    with pytest.raises(sla.InvalidArgumentError, match="ordering: backend 'scipy'"):
        A.solve(b, backend="scipy", ordering="amd")
    with pytest.raises(sla.InvalidArgumentError, match="ordering: applies to direct"):
        A.solve(b, method="cg", ordering="amd")


@needs_suitesparse
def test_a_batch_of_patterns_factorizes_its_sparse_blocks_with_autos_choice_for_the_largest(
    calibration, monkeypatch
):
    # eigen predicted fastest on a single solve of these blocks: the batch's sparse blocks use it too
    write(
        calibration,
        {
            "suitesparse:cholesky": [1e-2, 0.0, 1e-9],
            "eigen:cholesky": [0.0, 1e-9, 1e-9],
            "pardiso:cholesky": [1e-2, 0.0, 1e-9],
            "suitesparse:lu": [1e-2, 0.0, 1e-9],
            "eigen:lu": [0.0, 1e-9, 1e-9],
            "scipy:lu": [1e-2, 0.0, 1e-9],
            "pardiso:lu": [1e-2, 0.0, 1e-9],
        },
    )
    As = [poisson2d(11), poisson2d(12), poisson2d(3)]  # 121 and 144 rows: sparse blocks; 9: dense
    assert sla.explain(As[1]).backend == "eigen"
    text = str(sla.SparseTensorList(As).explain())
    assert "backend 'eigen' for the sparse blocks: auto's choice for the largest block (144 rows)" in text
    bs = [torch.arange(A.shape[0], dtype=F64) for A in As]
    for A, b, x in zip(As, bs, sla.solve_batch(As, bs)):
        torch.testing.assert_close(x, A.solve(b, backend="suitesparse"))
    # without the cost model: the registry's order for the largest block too
    monkeypatch.setenv(_costmodel.ENV, "off")
    assert "backend 'suitesparse' for the sparse blocks" in str(sla.SparseTensorList(As).explain())
