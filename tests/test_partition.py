"""Row partitions (METIS k-way, coordinate bisection, contiguous blocks, given): validity, edge cut against
a SciPy recomputation, quality on grids, determinism, int32 patterns and bad input."""

from __future__ import annotations

import pathlib
import runpy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import torch_sla as sla
from conftest import poisson2d
from torch_sla import _partition
from torch_sla._core import core, core_build_info

ROOT = pathlib.Path(__file__).resolve().parent.parent
needs_metis = pytest.mark.skipif(not sla.metis_available(), reason="the core was built without METIS")


def grid_coords(m: int) -> torch.Tensor:
    i = torch.arange(m * m)
    return torch.stack([i % m, i // m], dim=1).to(torch.float64)


def permuted(A: sla.SparseTensor, perm: torch.Tensor) -> sla.SparseTensor:
    """P A P^T: row and column i of A become perm[i]."""
    val, row, col = A.to_coo()
    return sla.SparseTensor(val, perm[row], perm[col], A.shape)


def scipy_edge_cut(A, owner: torch.Tensor) -> int:
    """Undirected off-diagonal edges of the graph of A + A^T between parts, counted by SciPy."""
    S = A.to_scipy() if isinstance(A, sla.SparseTensor) else sp.csr_matrix(A)
    S = S.copy()
    S.data[:] = 1.0
    G = sp.triu((S + S.T).tocoo(), k=1).tocoo()
    o = owner.numpy()
    return int(np.count_nonzero(o[G.row] != o[G.col]))


def check_valid(P: sla.Partition, n: int, k: int) -> None:
    assert P.n == n and P.num_parts == k
    assert P.owner.dtype == torch.int64 and P.owner.shape == (n,) and P.owner.device.type == "cpu"
    assert int(P.owner.min()) >= 0 and int(P.owner.max()) < k
    sizes = torch.bincount(P.owner, minlength=k)
    assert tuple(sizes.tolist()) == P.part_sizes and sum(P.part_sizes) == n and min(P.part_sizes) > 0
    assert P.imbalance == pytest.approx(max(P.part_sizes) * k / n)
    rows = [P.rows(p) for p in range(k)]
    for p, r in enumerate(rows):  # sorted, owned by p, and together every row exactly once
        assert r.dtype == torch.int64 and torch.equal(r, torch.sort(r).values)
        assert bool((P.owner[r] == p).all())
    assert torch.equal(torch.sort(torch.cat(rows)).values, torch.arange(n))


def random_pattern(n: int, density: float, seed: int) -> sla.SparseTensor:
    """A nonsymmetric random pattern (the graph comes from A + A^T)."""
    g = torch.Generator().manual_seed(seed)
    dense = (torch.rand(n, n, generator=g) < density).to(torch.float64)
    return sla.SparseTensor.from_dense(dense + torch.eye(n, dtype=torch.float64))


def all_methods(A, k: int, coords: torch.Tensor):
    yield sla.partition_simple(A, k)
    yield sla.partition_coordinates(coords, k, A=A)
    yield sla.make_partition(A, k, owner=torch.arange(A.shape[0]) % k)
    if sla.metis_available():
        yield sla.partition_graph_metis(A, k, seed=1)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_every_method_gives_a_valid_partition_whose_edge_cut_scipy_confirms(k):
    A = random_pattern(40, 0.08, seed=k)
    coords = torch.randn(40, 3, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    methods = set()
    for P in all_methods(A, k, coords):
        check_valid(P, 40, k)
        assert P.edge_cut == scipy_edge_cut(A, P.owner), P
        methods.add(P.method)
    assert methods >= {"contiguous", "coordinates", "given"}
    if k == 1:
        assert all(P.edge_cut == 0 for P in all_methods(A, k, coords))


@needs_metis
def test_metis_cut_on_a_permuted_grid_is_far_below_the_contiguous_cut():
    m = 30
    A = permuted(poisson2d(m), torch.randperm(m * m, generator=torch.Generator().manual_seed(0)))
    metis = sla.partition_graph_metis(A, 4)
    blocks = sla.partition_simple(A, 4)
    check_valid(metis, m * m, 4)
    assert metis.edge_cut == scipy_edge_cut(A, metis.owner)
    assert metis.edge_cut <= 3 * m  # two straight cuts: 2 m = 60
    assert blocks.edge_cut > 10 * metis.edge_cut  # random rows: most of the 2 m (m - 1) edges are cut


@needs_metis
def test_metis_balances_a_100x100_grid_into_4_and_is_deterministic():
    A = poisson2d(100)
    P = sla.partition_graph_metis(A, 4, seed=3)
    assert P.imbalance <= 1.05 and P.edge_cut <= 300
    Q = sla.partition_graph_metis(A, 4, seed=3)
    assert torch.equal(P.owner, Q.owner) and P == Q and hash(P) == hash(Q)
    assert P.method == "metis" and sla.make_partition(A, 4, seed=3) == P  # auto picks METIS


@needs_metis
def test_metis_as_many_parts_as_rows_and_edgeless_graphs_leave_no_part_empty():
    A = poisson2d(3)
    check_valid(sla.partition_graph_metis(A, 9), 9, 9)
    D = sla.SparseTensor.from_dense(torch.eye(12, dtype=torch.float64))
    for k in (2, 5, 12):
        P = sla.partition_graph_metis(D, k)
        check_valid(P, 12, k)
        assert P.edge_cut == 0


@needs_metis
def test_metis_balances_vertex_weights():
    # A path of 15 whose first 3 rows weigh 4: the halves of equal weight are {0, 1, 2} and the rest.
    n = 15
    i = torch.arange(n - 1)
    A = sla.SparseTensor(torch.ones(n - 1, dtype=torch.float64), i, i + 1, (n, n))
    w = torch.ones(n, dtype=torch.int64)
    w[:3] = 4
    P = sla.partition_graph_metis(A, 2, vertex_weights=w)
    assert P.edge_cut == 1 and P.part_sizes[int(P.owner[0])] == 3
    assert sla.make_partition(A, 2, vertex_weights=w.tolist()) == P


def test_coordinate_bisection_cuts_a_grid_straight():
    m = 20
    A = poisson2d(m)
    P = sla.partition_coordinates(grid_coords(m), 2, A=A)
    assert P.edge_cut == m and P.part_sizes == (200, 200) and P.imbalance == 1.0
    assert torch.equal(P.rows(0), torch.nonzero(torch.arange(m * m) % m < m // 2).flatten())
    Q = sla.partition_coordinates(grid_coords(m), 4, A=A)
    assert Q.edge_cut == 2 * m and Q.part_sizes == (100,) * 4
    # Without A the cut is unknown (-1); any number of parts gets floor / ceil(n / k) points.
    R = sla.partition_coordinates(grid_coords(m).to(torch.float32), 7)
    check_valid(R, m * m, 7)
    assert R.edge_cut == -1 and set(R.part_sizes) == {57, 58}
    assert "edge_cut=unknown" in repr(R)


def test_contiguous_blocks_and_their_cut_on_a_path():
    P = sla.partition_simple(10, 4)
    assert P.owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3] and P.edge_cut == -1
    assert P.rows(1).tolist() == [3, 4, 5] and P.imbalance == pytest.approx(3 / 2.5)
    i = torch.arange(9)
    path = sla.SparseTensor(torch.ones(9, dtype=torch.float64), i + 1, i, (10, 10))  # lower triangle only
    assert sla.partition_simple(path, 4).edge_cut == 3
    assert sla.make_partition(path, 4, method="contiguous").owner.tolist() == P.owner.tolist()


def test_int32_and_int64_patterns_give_the_same_partitions():
    A = permuted(poisson2d(12), torch.randperm(144, generator=torch.Generator().manual_seed(1)))
    crow, col = A.crow_indices, A.col_indices
    with warnings.catch_warnings():  # torch: "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        t32 = torch.sparse_csr_tensor(
            crow.to(torch.int32), col.to(torch.int32), A.values, A.shape, check_invariants=True
        )
    assert t32.crow_indices().dtype == torch.int32
    P32 = sla.make_partition(t32, 3, method="contiguous")
    assert P32.edge_cut == sla.partition_simple(A, 3).edge_cut == scipy_edge_cut(A, P32.owner)
    owner = P32.owner
    q32 = core().partition_quality(144, crow.to(torch.int32), col.to(torch.int32), owner, 3)
    q64 = core().partition_quality(144, crow, col, owner, 3)
    assert q32 == q64
    if sla.metis_available():
        o32, o64 = torch.empty(144, dtype=torch.int64), torch.empty(144, dtype=torch.int64)
        core().partition_metis(144, crow.to(torch.int32), col.to(torch.int32), 3, None, 5, o32)
        core().partition_metis(144, crow, col, 3, None, 5, o64)
        assert torch.equal(o32, o64)
        assert torch.equal(sla.partition_graph_metis(t32, 3, seed=5).owner, o64)


def test_given_owner_is_validated_and_copied():
    A = poisson2d(4)
    owner = torch.arange(16, dtype=torch.int32) // 4
    P = sla.make_partition(A, 4, owner=owner)
    assert P.method == "given" and P.edge_cut == 12 and P.owner.dtype == torch.int64
    owner[0] = 3  # the partition keeps its own copy
    assert int(P.owner[0]) == 0
    assert sla.make_partition(A, 4, method="given", owner=P.owner.tolist()) == P


def test_auto_without_metis_uses_coordinates_then_contiguous(monkeypatch):
    A = poisson2d(6)
    monkeypatch.setattr(_partition, "metis_available", lambda: False)
    assert sla.make_partition(A, 2, coords=grid_coords(6)).method == "coordinates"
    assert sla.make_partition(A, 2).method == "contiguous"
    assert sla.make_partition(A, 2, owner=torch.arange(36) % 2).method == "given"


def test_partition_object():
    P = sla.partition_simple(poisson2d(4), 2)
    text = repr(P)
    assert text == "Partition(n=16, parts=2, method='contiguous', edge_cut=4, imbalance=1.000)"
    assert "\n" not in text
    with pytest.raises(AttributeError):
        P.num_parts = 3
    assert P != sla.partition_simple(poisson2d(4), 4)
    with pytest.raises(sla.InvalidArgumentError, match=r"p: must lie in \[0, 1\]"):
        P.rows(2)
    with pytest.raises(sla.InvalidArgumentError, match="owner: expected an int64 CPU tensor"):
        sla.Partition(torch.zeros(3), 1, "given", 0, (3,), 1.0)
    with pytest.raises(sla.InvalidArgumentError, match="part_sizes"):
        sla.Partition(torch.zeros(3, dtype=torch.int64), 1, "given", 0, (2,), 1.0)


def test_metis_availability_follows_the_build():
    assert sla.metis_available() == core_build_info()["metis"]
    if not sla.metis_available():  # a build without METIS (-DSLA_WITH_METIS=OFF or no libmetis)
        with pytest.raises(sla.BackendUnavailableError, match="METIS is not compiled into this build"):
            sla.partition_graph_metis(poisson2d(3), 2)
        assert sla.make_partition(poisson2d(3), 2).method == "contiguous"


def test_show_backends_mentions_metis(capsys):
    sla.show_backends()
    assert f"metis={sla.metis_available()}" in capsys.readouterr().out


def test_bad_input_gives_clear_errors():
    A = poisson2d(3)
    err = sla.InvalidArgumentError
    for bad in (0, -1):
        with pytest.raises(err, match=r"num_parts: must lie in \[1,"):
            sla.make_partition(A, bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(err, match="num_parts: expected an integer"):
            sla.partition_simple(A, bad)
    with pytest.raises(err, match="num_parts: 10 parts of 9 rows would leave a part empty"):
        sla.partition_coordinates(grid_coords(3), 10)
    with pytest.raises(err, match="num_parts: 10 parts of 9 rows"):
        sla.make_partition(A, 10, method="contiguous")
    with pytest.raises(err, match=r"n_or_A: must lie in \[1,"):
        sla.partition_simple(0, 1)
    with pytest.raises(err, match="A: expected a square matrix"):
        sla.make_partition(sla.SparseTensor.from_dense(torch.ones(2, 3, dtype=torch.float64)), 2)
    with pytest.raises(err, match="A: a dense tensor was given"):
        sla.make_partition(torch.eye(3), 2)
    with pytest.raises(err, match="n_or_A: expected a square SparseTensor"):
        sla.partition_simple(torch.eye(3), 2)
    with pytest.raises(err, match="method: expected one of"):
        sla.make_partition(A, 2, method="spectral")
    with pytest.raises(err, match="owner: method='given' needs the owner array"):
        sla.make_partition(A, 2, method="given")
    with pytest.raises(err, match="owner: a given owner array needs method='given'"):
        sla.make_partition(A, 2, method="contiguous", owner=torch.zeros(9, dtype=torch.int64))
    with pytest.raises(err, match="coords: method='coordinates' needs the points"):
        sla.make_partition(A, 2, method="coordinates")
    # coords: shape, dtype, finiteness, and its length against A
    for bad in (torch.zeros(9), torch.zeros(9, 0), torch.zeros(9, 2, dtype=torch.complex128), "xy"):
        with pytest.raises(err, match="coords: expected a real tensor of shape"):
            sla.partition_coordinates(bad, 2)
    xy = grid_coords(3)
    xy[4, 1] = float("nan")
    with pytest.raises(err, match=r"coords: entry \(4, 1\) is not finite"):
        sla.partition_coordinates(xy, 2)
    with pytest.raises(err, match="A: has 9 rows but coords has 16 points"):
        sla.partition_coordinates(grid_coords(4), 2, A=A)
    # owner: dtype, shape, range, empty parts
    for bad in (torch.zeros(9), torch.zeros(8, dtype=torch.int64), torch.zeros(9, dtype=torch.bool)):
        with pytest.raises(err, match=r"owner: expected an integer tensor of shape \(9,\)"):
            sla.make_partition(A, 1, owner=bad)
    with pytest.raises(err, match=r"owner: entry 2 is 5, outside \[0, 2\)"):
        sla.make_partition(A, 2, owner=[0, 1, 5, 0, 0, 0, 0, 0, 0])
    with pytest.raises(err, match="owner: part 2 owns no row"):
        sla.make_partition(A, 3, owner=[0, 1, 1, 0, 0, 0, 0, 0, 0])


@needs_metis
def test_bad_metis_input_gives_clear_errors():
    A = poisson2d(3)
    err = sla.InvalidArgumentError
    for bad in (torch.ones(9), torch.ones(8, dtype=torch.int64), [1.0] * 9):
        with pytest.raises(err, match=r"vertex_weights: expected an integer tensor of shape \(9,\)"):
            sla.partition_graph_metis(A, 2, vertex_weights=bad)
    with pytest.raises(err, match="vertex_weights: must be positive integers, got 0 at row 4"):
        sla.partition_graph_metis(A, 2, vertex_weights=[1, 1, 1, 1, 0, 1, 1, 1, 1])
    with pytest.raises(err, match=r"seed: must lie in \[0,"):
        sla.partition_graph_metis(A, 2, seed=-1)
    # The core checks its arrays too (the Python layer is bypassed here).
    owner = torch.empty(9, dtype=torch.int64)
    with pytest.raises(err, match="col_indices: expected crow_indices"):
        core().partition_metis(9, A.crow_indices, A.col_indices[:-1], 2, None, 0, owner)
    with pytest.raises(err, match="must both be int32 or both int64"):
        core().partition_metis(9, A.crow_indices, A.col_indices.to(torch.int32), 2, None, 0, owner)
    bad_col = A.col_indices.clone()
    bad_col[3] = 9
    with pytest.raises(err, match=r"column index 9 at entry 3 is out of range \[0, 9\)"):
        core().partition_metis(9, A.crow_indices, bad_col, 2, None, 0, owner)
    with pytest.raises(err, match="owner: dtype must be int64"):
        core().partition_metis(9, A.crow_indices, A.col_indices, 2, None, 0, owner.to(torch.int32))


def test_partition_benchmark_quick_run(tmp_path, capsys):
    bench = runpy.run_path(str(ROOT / "benchmarks" / "bench_partition.py"), run_name="bench_partition")
    results = bench["main"](["--quick", "--json", str(tmp_path / "partition.json")])
    assert "load:" in capsys.readouterr().out
    for case in results["cases"]:
        for row in case["rows"]:
            assert row["contiguous"]["halo"] > row["rcb"]["halo"] > 0
            if results["metis"]:
                assert row["halo_contiguous_over_metis"] > 2 and row["metis"]["imbalance"] <= 1.05
